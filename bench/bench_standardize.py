"""Scene stage benchmark: ours vs the paper's way, on one 8192 x 8192 0.3 m scene.

    python bench/bench_standardize.py [--size 8192] [--dir .bench]

Prints, side by side from one run: the standardize stage (2 local worker processes) from a
loopback HTTP server (range requests, bytes counted) vs from the local file, and vs a
single-process baseline (scipy.fft full-2-D crop on all cores, then dense per-pixel sarpy
geolocation); resampling alone vs the scipy full-2-D crop; tie-point vs dense geolocation;
peak memory of each (RSS of the process tree above its start).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from common import measure, record, table  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.rangeserver import RangeServer  # noqa: E402


def scene(path: Path, size: int) -> Path:
    from sarlo_dask.sim.scene import SimulationSpec, simulate_scene

    if not path.exists():
        print(f"simulating {path} ({size} x {size} at 0.3 m) ...", flush=True)
        simulate_scene(
            path,
            SimulationSpec(rows=size, cols=size, row_spacing=0.3, col_spacing=0.3, n_targets=4),
        )
    return path


def paper_resample(data_rc: np.ndarray, n_out: tuple[int, int]) -> np.ndarray:
    """The paper's step 2: fft2 of the whole scene, crop the centred spectrum, ifft2."""
    import scipy.fft

    spec = scipy.fft.fftshift(scipy.fft.fft2(data_rc, workers=-1))
    r0 = (spec.shape[0] - n_out[0]) // 2
    c0 = (spec.shape[1] - n_out[1]) // 2
    crop = scipy.fft.ifftshift(spec[r0 : r0 + n_out[0], c0 : c0 + n_out[1]])
    return scipy.fft.ifft2(crop, workers=-1).astype(np.complex64)


def paper_geolocate(sicd, n_rows: int, n_cols: int) -> np.ndarray:
    """The paper's step 3: every pixel through sarpy image_to_ground, then ecf_to_geodetic."""
    from sarlo_dask.geometry.geolocation import ecf_to_llh, project_pixels

    rows, cols = np.meshgrid(np.arange(n_rows), np.arange(n_cols), indexing="ij")
    return ecf_to_llh(project_pixels(sicd, rows, cols))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=8192)
    ap.add_argument("--dir", default=".bench")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    import dask
    import dask.array as da
    from distributed import Client, LocalCluster

    from sarlo_dask.config import StandardizeConfig
    from sarlo_dask.geometry.geolocation import geolocate_tie_points, llh_to_ecf, tie_point_step
    from sarlo_dask.geometry.resampled import resampled_sicd
    from sarlo_dask.geometry.sicd import open_sicd, read_sicd_meta
    from sarlo_dask.pipeline import standardize_scenes
    from sarlo_dask.stages.standardize import plan_scene, resample_slc

    root = Path(args.dir)
    root.mkdir(exist_ok=True)
    path = scene(root / f"bench_{args.size}.nitf", args.size)
    cfg = StandardizeConfig()
    sicd = read_sicd_meta(str(path))  # also pays the one-time imports outside the timings
    plan_rg, plan_az = plan_scene(sicd, cfg, str(path))
    n_out = (plan_rg.n_out, plan_az.n_out)
    print(
        f"scene {args.size} x {args.size} -> {n_out[1]} x {n_out[0]} at 0.8 m, "
        f"{os.cpu_count()} cores",
        flush=True,
    )

    # 1. the paper's way, one process: read, full-2-D crop, dense geolocation, write
    base_out = root / "paper"
    shutil.rmtree(base_out, ignore_errors=True)
    base_out.mkdir()
    with measure("paper way") as base_stage:
        data = open_sicd(str(path)).slc.values.T  # (rows, cols) as sarpy reads it
        with measure("scipy full-2-D crop") as base_resample_in_stage:
            out = paper_resample(data, n_out)
        del data
        sicd_out = resampled_sicd(sicd, plan_rg, plan_az, np.zeros((1, 1)), np.zeros((1, 1)))
        with measure("dense sarpy geolocation") as base_geo:
            llh = paper_geolocate(sicd_out, *n_out)
        np.save(base_out / "slc.npy", out)
        np.save(base_out / "llh.npy", llh)
    del out

    # 2. ours: the standardize stage on 2 worker processes, reading the NITF, writing zarr
    work = root / "work"
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(root / "work_http", ignore_errors=True)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        client.run(read_sicd_meta, str(path))  # the same one-time imports, in each worker
        # the first run pays the workers' first tasks (zarr's and the graph's imports): the
        # stage is the median of the three runs after it, each into a fresh store
        stage_runs = []
        for _ in range(4):
            shutil.rmtree(work, ignore_errors=True)
            with measure("standardize stage") as run:
                res = standardize_scenes([str(path)], str(work), cfg, client)
            assert res[0].status == "done", res[0].reason
            stage_runs.append(run)
        first_stage = stage_runs.pop(0)
        ours_stage = sorted(stage_runs, key=lambda m: m.seconds)[1]
        # 2b. the same from a loopback HTTP server answering range requests, counting bytes
        #     (the first run's); the median of three, as for the local file
        server = RangeServer(path.parent)
        http_runs = []
        try:
            for i in range(3):
                shutil.rmtree(root / "work_http", ignore_errors=True)
                with measure("standardize from HTTP") as run:
                    res = standardize_scenes(
                        [f"{server.url}/{path.name}"], str(root / "work_http"), cfg, client
                    )
                assert res[0].status == "done", res[0].reason
                if i == 0:
                    requests, fetched = server.traffic(f"/{path.name}")
                http_runs.append(run)
        finally:
            server.close()
        ours_http = sorted(http_runs, key=lambda m: m.seconds)[1]

    # 3. resampling alone, memory to memory, same two cores; five alternating runs each,
    #    medians compared (this VM's memory-bound timings swing by a third between runs)
    # both get the pixels in the file's layout, (rows, cols) = (range, azimuth), C order;
    # reading them once (the stage's blocks, decoded, two at a time) is the floor's first part
    reads = []
    for _ in range(3):  # the median of three, as for the stage
        with measure("read the scene once") as m:
            data = read_once(path, sicd, cfg.chunk_range)
        reads.append(m)
    floor_read = sorted(reads, key=lambda m: m.seconds)[1]

    def ours_resample(values: np.ndarray) -> np.ndarray:
        with dask.config.set(scheduler="threads", num_workers=2):
            arr = da.from_array(values, chunks=(cfg.chunk_range, -1)).T  # blocks as read
            return np.asarray(resample_slc(arr, sicd, plan_rg, plan_az, cfg)[0].compute())

    runs: dict[str, list] = {"base": [], "ours": []}
    for _ in range(5):
        with measure("scipy full-2-D crop") as m:
            paper_resample(data, n_out)
        runs["base"].append(m)
        with measure("separable") as m:
            ours_resample(data)
        runs["ours"].append(m)
    base_resample = sorted(runs["base"], key=lambda m: m.seconds)[2]  # the medians
    ours_res = sorted(runs["ours"], key=lambda m: m.seconds)[2]
    spread = {k: " ".join(f"{m.seconds:.2f}" for m in v) for k, v in runs.items()}
    # the floor's last part: the resampled pixels written as the stage writes its store
    floor_write = write_alone(ours_resample(data), root / "floor.zarr", cfg.store_chunk)
    del data
    floor_s = floor_read.seconds + ours_res.seconds + floor_write.seconds

    # 4. geolocation: tie points (step chosen for 1 mm) vs every pixel
    with measure("tie points") as ours_geo:
        xml_out = sicd_out.to_xml_string(tag="SICD")  # as the scene stage passes it
        choice = tie_point_step(xml_out, cfg.geolocation_bound_m)
        grid = geolocate_tie_points(xml_out, choice.step)
    interp = grid.interp(tp_azimuth=np.arange(n_out[1]), tp_range=np.arange(n_out[0]))
    got = np.stack([interp[v].values.T.ravel() for v in ("lat", "lon", "hae")], axis=1)
    err = np.linalg.norm(llh_to_ecf(got) - llh_to_ecf(llh.reshape(-1, 3)), axis=1).max()

    print()
    print(
        table(
            [
                ("standardize stage vs paper way", ours_stage, base_stage, ">= 2x"),
                ("standardize: HTTP source vs local file", ours_http, ours_stage, ">= 0.8x"),
                (
                    "resampling vs scipy full-2-D crop",
                    ours_res,
                    base_resample,
                    ">= 1.0x (goal 1.3x)",
                ),
                ("tie-point vs dense geolocation", ours_geo, base_geo, ">= 20x at <= 1 mm"),
            ]
        )
    )
    print(
        f"tie-point step {choice.step} px, max error vs dense {err * 1e3:.3f} mm "
        f"(bound {cfg.geolocation_bound_m * 1e3:.1f} mm)"
    )
    print(f"resampling runs (s): ours {spread['ours']}; scipy full-2-D {spread['base']}")
    size = path.stat().st_size
    print(
        f"HTTP source: {fetched / 1e6:.1f} MB fetched for a {size / 1e6:.1f} MB scene "
        f"({fetched / size:.3f}x) in {requests} requests (bound {size / 2**22 + 20:.0f})"
    )
    print(f"paper way's crop inside its stage: {base_resample_in_stage.seconds:.2f} s")
    ratio = ours_stage.seconds / floor_s
    cli_s = cli_standardize(path, root / "work_cli")
    print(
        f"stage runs (s): first {first_stage.seconds:.2f}, then "
        f"{' '.join(f'{m.seconds:.2f}' for m in stage_runs)}; read once "
        f"{' '.join(f'{m.seconds:.2f}' for m in reads)}; end to end `sarlo standardize "
        f"--workers 2` {cli_s:.2f} s (cluster start and imports included)"
    )
    print(
        f"standardize stage vs its floor: {ratio:.2f}x (target <= 1.3x): "
        f"{ours_stage.seconds:.2f} s against {floor_s:.2f} s = read once "
        f"{floor_read.seconds:.2f} + resample alone {ours_res.seconds:.2f} + write the "
        f"store {floor_write.seconds:.2f}"
    )
    record(
        "standardize",
        {
            "stage_s": round(ours_stage.seconds, 2),
            "paper_s": round(base_stage.seconds, 2),
            "stage_vs_paper": round(base_stage.seconds / ours_stage.seconds, 2),
            "http_vs_local": round(ours_stage.seconds / ours_http.seconds, 2),
            "http_fetched_ratio": round(fetched / size, 3),
            "resample_vs_scipy": round(base_resample.seconds / ours_res.seconds, 2),
            "tie_points_vs_dense": round(base_geo.seconds / ours_geo.seconds, 1),
            "tie_point_error_mm": round(err * 1e3, 3),
            "floor_read_s": round(floor_read.seconds, 2),
            "floor_resample_s": round(ours_res.seconds, 2),
            "floor_write_s": round(floor_write.seconds, 2),
            "floor_s": round(floor_s, 2),
            "stage_vs_floor": round(ratio, 2),
            "stage_peak_mb": round(ours_stage.peak_mb),
            "stage_first_run_s": round(first_stage.seconds, 2),
            "cli_s": round(cli_s, 2),
        },
        vars(args),
    )


def cli_standardize(path: Path, work: Path) -> float:
    """Seconds of `sarlo standardize` as a user runs it, on 2 local workers."""
    import subprocess
    import time

    shutil.rmtree(work, ignore_errors=True)
    sarlo = str(Path(sys.executable).parent / "sarlo")
    t0 = time.perf_counter()
    res = subprocess.run(
        [sarlo, "standardize", str(path), "--work", str(work), "--workers", "2"],
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - t0
    assert res.returncode == 0, res.stderr[-2000:]
    shutil.rmtree(work, ignore_errors=True)
    return seconds


def read_once(path: Path, sicd, block: int) -> np.ndarray:
    """The scene's pixels as complex64 (rows, cols), read as the stage's two workers read
    them: blocks of `block` rows (chunk_range), decoded, on two threads at once (file reads
    and numpy's copies release the GIL), into one array."""
    from concurrent.futures import ThreadPoolExecutor

    from sarlo_dask.io.nitf import pixel_layout, read_rows

    rows, cols = sicd.ImageData.NumRows, sicd.ImageData.NumCols
    with open(path, "rb") as f:
        layout = pixel_layout(f, rows, cols, sicd.ImageData.PixelType)
    out = np.empty((rows, cols), dtype=np.complex64)

    def one(r0: int) -> None:
        with open(path, "rb") as f:
            out[r0 : r0 + block] = read_rows(f, layout, r0, min(rows, r0 + block))

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(one, range(0, rows, block)))
    return out


def write_alone(slc: np.ndarray, where: Path, chunk: int):
    """The resampled pixels, in memory, written to a zarr store in the stage's chunks and
    format (zarr 3, consolidated, two threads): the write alone, the median of three. Only
    `slc`: the stage also writes its tie points and digests its store (its own cost)."""
    import dask.array as da
    import xarray as xr

    runs = []
    for _ in range(3):
        shutil.rmtree(where, ignore_errors=True)
        ds = xr.Dataset({"slc": (("azimuth", "range"), da.from_array(slc, chunks=(chunk, chunk)))})
        with measure("write the store") as m:
            ds.to_zarr(where, mode="w", consolidated=True, zarr_format=3)
        runs.append(m)
    shutil.rmtree(where, ignore_errors=True)
    return sorted(runs, key=lambda m: m.seconds)[1]


if __name__ == "__main__":
    main()
