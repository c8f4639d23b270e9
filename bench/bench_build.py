"""Whole-build benchmark: tiles/s of `build_dataset` (captioning off) on 1 and 2 workers,
against a serial one-process implementation of the same steps the paper's way; the
shard writer's MB/s against its bound (the slower of a plain sequential write and SHA-256
of the same bytes, both measured in the same run); and the client's
own CPU time per scene and per tile on a catalogue of 20 small scenes.

    python bench/bench_build.py [--scenes 4] [--size 2048] [--zoom 18] [--client-only]

Inputs: simulated 0.4 m scenes (resampled to 0.8 m) with their optical ground as an XYZ
folder. The serial way, per scene: read the whole SICD, scipy full-2-D FFT crop, dense
per-pixel sarpy geolocation, then per tile: dB preview, PIL-pasted mosaic, scipy
map_coordinates per channel, PIL encodes, members appended to one tar per split.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import shutil
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))


def inputs(root: Path, n: int, size: int, zoom: int) -> tuple[list[str], str]:
    from sarlo_dask.sim.optical import simulate_optical_tiles
    from sarlo_dask.sim.scene import SimulationSpec, simulate_scene

    urls = []
    optical = root / f"build_optical_z{zoom}"
    for i in range(n):
        path = root / f"build_{size}_{i}.nitf"
        if not path.exists():
            print(f"simulating {path} ...", flush=True)
            simulate_scene(
                path,
                SimulationSpec(
                    rows=size,
                    cols=size,
                    row_spacing=0.4,
                    col_spacing=0.4,
                    seed=10 + i,
                    collect_start=f"2025-07-{1 + i:02d}T10:00:00",
                    lat=48.71 + 0.05 * i,
                ),
            )
        truth = json.loads(Path(str(path) + ".truth.json").read_text())
        simulate_optical_tiles(optical, truth, zoom=zoom, margin_deg=0.01)
        urls.append(str(path))
    return urls, str(optical)


def serial_paper_way(urls: list[str], optical: str, zoom: int, out: Path) -> int:
    """The same steps, one process, the straightforward way; returns the tiles made."""
    from bench_standardize import paper_geolocate, paper_resample
    from PIL import Image
    from scipy import ndimage

    from sarlo_dask.config import StandardizeConfig
    from sarlo_dask.geometry.resampled import resampled_sicd
    from sarlo_dask.geometry.sicd import open_sicd, read_sicd_meta
    from sarlo_dask.geometry.tiles import tile_windows
    from sarlo_dask.optical.tilemath import global_pixel, tiles_for_bbox
    from sarlo_dask.stages.standardize import plan_scene

    out.mkdir(parents=True, exist_ok=True)
    tiles = 0
    with tarfile.open(out / "all.tar", "w") as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        for url in urls:
            sicd = read_sicd_meta(url)
            plan_rg, plan_az = plan_scene(sicd, StandardizeConfig(), url)
            data = open_sicd(url).slc.values.T  # (rows, cols) as sarpy reads it
            slc = paper_resample(data, (plan_rg.n_out, plan_az.n_out)).T  # (azimuth, range)
            del data
            sicd_out = resampled_sicd(sicd, plan_rg, plan_az, np.zeros((1, 1)), np.zeros((1, 1)))
            llh = paper_geolocate(sicd_out, plan_rg.n_out, plan_az.n_out)
            llh = llh.reshape(plan_rg.n_out, plan_az.n_out, 3)  # (range, azimuth, lat/lon/hae)
            xml = sicd_out.to_xml_string(tag="SICD").encode()
            for w in tile_windows("s", *slc.shape):
                patch = slc[w.slices()]
                amp = np.abs(patch)
                db = 20 * np.log10(np.where(amp > 0, amp, 1e-30))
                lo, hi = np.percentile(db[amp > 0], [1, 99])
                img = (np.clip((db - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)
                buf = io.BytesIO()
                Image.fromarray(img).save(buf, format="PNG")
                add(f"{w.key}.sar.png", buf.getvalue())
                buf = io.BytesIO()
                np.save(buf, patch)
                add(f"{w.key}.sar.npy", buf.getvalue())
                last = w.size - 1
                corners = [(w.a0, w.r0), (w.a0, w.r0 + last), (w.a0 + last, w.r0 + last)]
                corners.append((w.a0 + last, w.r0))
                sar = np.array([(a - w.a0, r - w.r0) for a, r in corners], dtype=float)
                latlon = np.array([llh[r, a, :2] for a, r in corners])
                lat, lon = latlon[:, 0], latlon[:, 1]
                x0, y0, x1, y1 = tiles_for_bbox(lon.min(), lat.min(), lon.max(), lat.max(), zoom)
                canvas = Image.new("RGB", ((x1 - x0 + 1) * 256, (y1 - y0 + 1) * 256))
                for x in range(x0, x1 + 1):
                    for y in range(y0, y1 + 1):
                        p = Path(optical, str(zoom), str(x), f"{y}.png")
                        if p.exists():
                            canvas.paste(
                                Image.open(p).convert("RGB"), ((x - x0) * 256, (y - y0) * 256)
                            )
                mosaic = np.asarray(canvas)
                gx, gy = global_pixel(lon, lat, zoom)
                design = np.column_stack([sar, np.ones(len(sar))])
                target = np.column_stack([gx - x0 * 256 - 0.5, gy - y0 * 256 - 0.5])
                coef = np.linalg.lstsq(design, target, rcond=None)[0].T
                a, r = np.mgrid[0 : w.size, 0 : w.size].astype(float)
                coords = [
                    coef[1, 0] * a + coef[1, 1] * r + coef[1, 2],
                    coef[0, 0] * a + coef[0, 1] * r + coef[0, 2],
                ]
                warped = np.stack(
                    [ndimage.map_coordinates(mosaic[..., c], coords, order=1) for c in range(3)],
                    -1,
                )
                buf = io.BytesIO()
                Image.fromarray(warped.astype(np.uint8)).save(buf, format="PNG")
                add(f"{w.key}.optic.png", buf.getvalue())
                add(f"{w.key}.sicd.xml", xml)
                add(f"{w.key}.meta.json", json.dumps({"key": w.key}).encode())
                tiles += 1
    return tiles


def _warm() -> None:
    import importlib

    for name in (
        "sarlo_dask.pipeline",
        "sarlo_dask.stages.tile_stage",
        "sarlo_dask.optical.pair",
        "scipy.interpolate",
        "scipy.fft",
        "PIL.PngImagePlugin",
        "rasterio",
        "sarpy.geometry.point_projection",
        "sarpy.io.complex.sicd",
        "xarray.backends.zarr",
        "sarlo_dask.stages.standardize",
        "webdataset",
    ):
        importlib.import_module(name)


def ours(urls: list[str], optical: str, zoom: int, root: Path, workers: int) -> tuple[float, int]:
    from distributed import Client, LocalCluster

    from sarlo_dask.build_config import BuildConfig
    from sarlo_dask.config import CaptionConfig, ReleaseConfig, StandardizeConfig, TileConfig
    from sarlo_dask.pipeline import build_dataset

    work, out = root / f"build_work_{workers}", root / f"build_out_{workers}"
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    with (
        LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        client.run(_warm)  # the imports the serial way has done by the time it runs
        t0 = time.perf_counter()
        result = build_dataset(
            urls,
            str(work),
            str(out),
            BuildConfig.of(
                StandardizeConfig(),
                TileConfig(optical=optical, zoom=zoom),
                CaptionConfig(),
                ReleaseConfig(samples_per_shard=16),
            ),
            client,
        )
        seconds = time.perf_counter() - t0
    assert result.exit_code() == 0
    return seconds, result.release.manifest["samples"]


def client_cpu(root: Path, n: int = 20) -> tuple[float, int, int]:
    """(CPU seconds of the driver's thread, scenes, tiles) for a build of `n` small scenes on
    2 workers: what the client itself spends planning, submitting and recording (the
    scheduler's and the client's I/O threads aside). Then an unchanged re-run's."""
    from distributed import Client, LocalCluster

    from sarlo_dask.build_config import BuildConfig
    from sarlo_dask.config import CaptionConfig, ReleaseConfig, StandardizeConfig, TileConfig
    from sarlo_dask.pipeline import build_dataset
    from sarlo_dask.sim.scene import SimulationSpec, simulate_scene

    urls = []
    for i in range(n):
        path = root / f"client_{i:02d}.nitf"
        if not path.exists():
            spec = SimulationSpec(rows=1200, cols=1200, row_spacing=0.4, col_spacing=0.4)
            simulate_scene(path, dataclasses.replace(spec, seed=100 + i))
        urls.append(str(path))
    work, out = root / "client_work", root / "client_out"
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    cfgs = BuildConfig.of(
        StandardizeConfig(min_size=256),
        TileConfig(size=256, stride=256),
        CaptionConfig(),
        ReleaseConfig(samples_per_shard=16),
    )
    cpu = []
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        client.run(_warm)
        for _ in range(2):  # a build, then an unchanged re-run (every unit skipped)
            c0 = time.thread_time()
            result = build_dataset(urls, str(work), str(out), cfgs, client)
            cpu.append(time.thread_time() - c0)
            assert result.exit_code() == 0
    tiles = sum(t.kept + len(t.refused) for t in result.tiles)
    print(
        f"client CPU, {n} scenes / {tiles} tiles on 2 workers: build {cpu[0]:.2f} s = "
        f"{1e3 * cpu[0] / n:.1f} ms per scene (target <= 20), {1e3 * cpu[0] / tiles:.2f} ms "
        f"per tile (target <= 2); unchanged re-run {1e3 * cpu[1] / n:.1f} ms per scene",
        flush=True,
    )
    return cpu[0], n, tiles


def shard_writer(root: Path) -> tuple[float, float, float, float, int]:
    """(ours s, plain s, sha256 s, ours / bound, bytes), medians: rewrite the 2-worker build's
    first shard vs copying its members' bytes into one file sequentially, and vs the SHA-256
    alone of the shard's bytes in memory. The writer must do both (the manifest lists the
    hash) and overlaps them: its bound is the slower of the two, measured beside it in the
    same repetition; ours / bound is the median of the repetitions' ratios."""
    import hashlib

    from sarlo_dask.config import ReleaseConfig
    from sarlo_dask.release.publish import ShardSpec, write_shard
    from sarlo_dask.stages.standardize import open_scene_store
    from sarlo_dask.store import Store, scene_store_url

    work, out = root / "build_work_2", root / "build_out_2"
    marker = json.loads(next(out.glob("train/chunk_000/shard-00000.done.json")).read_text())
    keys = tuple((k.rsplit("_a", 1)[0], k) for k in marker["keys"])
    scenes = {
        sid: {
            "provenance": open_scene_store(scene_store_url(str(work), sid)).attrs.get("provenance"),
        }
        for sid in {s for s, _ in keys}
    }
    spec = ShardSpec("train", 0, "train/chunk_000/shard-00000.tar", keys)
    target = root / "shard_bench"
    shutil.rmtree(target, ignore_errors=True)
    files = [
        p for sid, k in keys for p in sorted((work / "tiles" / sid).glob(f"{k}.*"))
    ]  # the members' bytes (ours also makes sicd.xml, tar headers and the sha256)
    runs: dict[str, list[float]] = {"ours": [], "plain": [], "sha256": [], "ratio": []}
    for _ in range(5):
        # new files each time, as in a build (replacing a 150 MB file costs its deletion)
        shutil.rmtree(target, ignore_errors=True)
        (root / "plain.bin").unlink(missing_ok=True)
        t0 = time.perf_counter()
        m = write_shard(
            spec, Store(str(work)), Store(str(target)), scenes, "bench", ReleaseConfig()
        )
        runs["ours"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        with open(root / "plain.bin", "wb") as f:
            for p in files:
                f.write(p.read_bytes())
        runs["plain"].append(time.perf_counter() - t0)
        data = (target / spec.path).read_bytes()
        t0 = time.perf_counter()
        hashlib.sha256(data).hexdigest()
        runs["sha256"].append(time.perf_counter() - t0)
        del data
        runs["ratio"].append(max(runs["plain"][-1], runs["sha256"][-1]) / runs["ours"][-1])
    ours_s, plain_s, sha_s, ratio = (sorted(runs[k])[2] for k in runs)  # medians of 5
    return ours_s, plain_s, sha_s, ratio, m["bytes"]


def _loop(kind: str, start: Any, times: Any) -> None:
    a = np.ones(64_000_000, "f4")
    start.wait()  # both processes loop at the same time
    t0 = time.perf_counter()
    if kind == "cpu":
        total = 0
        for i in range(10_000_000):
            total += i * i
    else:  # streams 256 MB through memory 16 times
        for _ in range(16):
            a *= 1.0001
    times.put(time.perf_counter() - t0)


def machine_scaling(kind: str) -> float:
    """Throughput of 2 processes over 1 running the same loop: what 2 workers can get here."""
    from multiprocessing import get_context

    ctx = get_context("spawn")

    def timed(n: int) -> float:
        start, times = ctx.Barrier(n), ctx.Queue()
        procs = [ctx.Process(target=_loop, args=(kind, start, times)) for _ in range(n)]
        for p in procs:
            p.start()
        seconds = max(times.get() for _ in procs)
        for p in procs:
            p.join()
        return seconds

    one = sorted(timed(1) for _ in range(3))[1]
    two = sorted(timed(2) for _ in range(3))[1]
    return 2 * one / two


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenes", type=int, default=4)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--zoom", type=int, default=18)
    ap.add_argument("--dir", default=".bench")
    ap.add_argument("--reps", type=int, default=3, help="builds per worker count (median)")
    ap.add_argument("--client-only", action="store_true", help="only the client CPU figures")
    args = ap.parse_args()
    root = Path(args.dir)
    root.mkdir(exist_ok=True)
    client_cpu(root)
    if args.client_only:
        return
    urls, optical = inputs(root, args.scenes, args.size, args.zoom)

    runs: dict[int, list[float]] = {1: [], 2: []}
    counts = set()
    for _ in range(args.reps):  # interleaved: the VM's slow spells hit both alike
        for workers in (1, 2):
            t, n = ours(urls, optical, args.zoom, root, workers)
            runs[workers].append(t)
            counts.add(n)
            print(f"build, {workers} worker(s): {n} tiles in {t:.1f} s", flush=True)
    assert len(counts) == 1
    n1 = n2 = counts.pop()
    t1, t2 = (sorted(runs[w])[len(runs[w]) // 2] for w in (1, 2))  # medians
    ceiling = {kind: machine_scaling(kind) for kind in ("cpu", "memory")}
    t0 = time.perf_counter()
    ns = serial_paper_way(urls, optical, args.zoom, root / "serial_out")
    ts = time.perf_counter() - t0
    assert ns == n1, (ns, n1)
    ours_s, plain_s, sha_s, ratio, size = shard_writer(root)
    print(
        f"{args.scenes} scenes of {args.size} x {args.size} at 0.4 m -> {n1} tiles of 1024 px "
        f"(zoom {args.zoom}, no captions), {os.cpu_count()} cores"
    )
    print(f"serial, paper's way:  {ns / ts:6.2f} tiles/s  ({ts:.1f} s)")
    print(f"build, 1 worker:      {n1 / t1:6.2f} tiles/s  ({t1:.1f} s, median of {args.reps})")
    print(f"build, 2 workers:     {n2 / t2:6.2f} tiles/s  ({t2:.1f} s, median of {args.reps})")
    print(f"scaling 2 / 1 worker: {t1 / t2:6.2f}x  (target >= 1.7x)")
    print(
        "  this machine, 2 processes vs 1 on the same work: "
        f"CPU-bound loop {ceiling['cpu']:.2f}x, memory-bound loop {ceiling['memory']:.2f}x"
    )
    print(f"2 workers / serial:   {ts / t2:6.2f}x  (target >= 3x)")
    mbs = {k: size / v / 1e6 for k, v in (("ours", ours_s), ("plain", plain_s), ("sha", sha_s))}
    print(
        f"shard writer: {mbs['ours']:7.0f} MB/s ({size / 1e6:.0f} MB shard, median of 5); "
        f"measured beside it: plain sequential write {mbs['plain']:.0f} MB/s, SHA-256 "
        f"{mbs['sha']:.0f} MB/s"
    )
    print(
        f"  its bound, the slower of the two: {min(mbs['plain'], mbs['sha']):.0f} MB/s; "
        f"shard writer / bound: {ratio:.2f}x  (target >= 0.9x)"
    )


if __name__ == "__main__":
    main()
