"""Tile stage benchmark: tile + preview + optical warp per SAR tile, ours vs a plain reference.

    python bench/bench_tiles.py [--size 4096] [--zoom 19] [--dir .bench]

One core (one process, one thread). Ours: `tile_stage.make_tile` (window read, validity,
preview, geometry, XYZ mosaic from a local folder, one-gather warp, encodes, writes), over the
windows in the order the build's tasks take them (`tiles.tile_groups`). The
reference does the same steps the straightforward way: PIL-pasted mosaic, scipy
map_coordinates per channel, PIL encodes. Then the XYZ cache hit ratio over the whole scene,
through a loopback HTTP server: downloads / tile lookups.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))


def prepare(root: Path, size: int, zoom: int) -> tuple[str, str]:
    import dask

    from sarlo_dask.config import StandardizeConfig
    from sarlo_dask.geometry.sicd import open_sicd
    from sarlo_dask.sim.optical import simulate_optical_tiles
    from sarlo_dask.sim.scene import SimulationSpec, simulate_scene
    from sarlo_dask.stages.standardize import standardize_scene
    from sarlo_dask.store import scene_store_url

    nitf = root / f"tiles_{size}.nitf"
    work = root / f"tiles_work_{size}"
    store = scene_store_url(str(work), f"tiles_{size}")
    if not Path(store).exists():
        print(f"simulating a {size} x {size} scene at 0.8 m and its optical tiles ...", flush=True)
        simulate_scene(nitf, SimulationSpec(rows=size, cols=size, row_spacing=0.8, col_spacing=0.8))
        with dask.config.set(scheduler="threads"):
            standardize_scene(open_sicd(str(nitf)), StandardizeConfig()).to_zarr(
                store, zarr_format=3, consolidated=True
            )
    optical = root / f"tiles_optical_{size}_z{zoom}"
    truth = json.loads(Path(str(nitf) + ".truth.json").read_text())
    simulate_optical_tiles(optical, truth, zoom=zoom, margin_deg=0.025)
    return store, str(optical)


def reference_tile(store: str, w, optical: str, zoom: int, out_dir: Path) -> None:
    """The straightforward way, step by step; writes its members as ours does."""
    import xarray as xr
    from PIL import Image
    from scipy import ndimage

    from sarlo_dask.optical.pair import fit_points, footprint_bbox
    from sarlo_dask.optical.tilemath import global_pixel, tiles_for_bbox

    ds = xr.open_zarr(store, chunks=None)
    patch = ds.slc.values[w.slices()]
    amp = np.abs(patch)
    db = 20 * np.log10(np.where(amp > 0, amp, 1e-30))
    lo, hi = np.percentile(db[amp > 0], [1, 99])
    img = (np.clip((db - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)
    out = []
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    out.append(buf.getvalue())
    buf = io.BytesIO()
    np.save(buf, patch)
    out.append(buf.getvalue())
    sar, latlon = fit_points(w, ds[["lat", "lon", "hae"]].load(), 0)
    x0, y0, x1, y1 = tiles_for_bbox(*footprint_bbox(latlon, zoom), zoom)
    canvas = Image.new("RGB", ((x1 - x0 + 1) * 256, (y1 - y0 + 1) * 256))
    for x in range(x0, x1 + 1):
        for y in range(y0, y1 + 1):
            p = Path(optical, str(zoom), str(x), f"{y}.png")
            if p.exists():
                canvas.paste(Image.open(p).convert("RGB"), ((x - x0) * 256, (y - y0) * 256))
    mosaic = np.asarray(canvas)
    gx, gy = global_pixel(latlon[:, 1], latlon[:, 0], zoom)
    design = np.column_stack([sar, np.ones(len(sar))])
    coef = np.linalg.lstsq(
        design, np.column_stack([gx - x0 * 256 - 0.5, gy - y0 * 256 - 0.5]), rcond=None
    )[0].T
    a, r = np.mgrid[0 : w.size, 0 : w.size].astype(float)
    coords = [
        coef[1, 0] * a + coef[1, 1] * r + coef[1, 2],
        coef[0, 0] * a + coef[0, 1] * r + coef[0, 2],
    ]
    warped = np.stack(
        [ndimage.map_coordinates(mosaic[..., c], coords, order=1, cval=0) for c in range(3)], -1
    )
    buf = io.BytesIO()
    Image.fromarray(warped.astype(np.uint8)).save(buf, format="PNG")
    out.append(buf.getvalue())
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, data in zip(("sar.png", "sar.npy", "optic.png"), out, strict=True):
        (out_dir / f"{w.key}.{name}").write_bytes(data)


def cache_hit_ratio(store: str, optical: str, zoom: int, root: Path) -> tuple[float, int, int]:
    from sarlo_dask.geometry.tiles import tile_windows
    from sarlo_dask.optical import HTTPTiles, PairConfig, pair_tile
    from sarlo_dask.stages.standardize import open_scene_store

    downloads = [0]

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            downloads[0] += 1
            super().do_GET()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=optical))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    cache = root / "xyz_cache"
    shutil.rmtree(cache, ignore_errors=True)
    source = HTTPTiles(
        f"http://127.0.0.1:{httpd.server_address[1]}/{{z}}/{{x}}/{{y}}.png",
        zoom=zoom,
        cache_dir=str(cache),
    )
    scene = open_scene_store(store, chunks=None)
    ds = scene[["lat", "lon", "hae"]].load()
    lookups = 0
    for w in tile_windows("s", scene.sizes["azimuth"], scene.sizes["range"]):
        _, meta = pair_tile(w, ds, source, PairConfig(zoom=zoom))
        lookups += meta["tiles"]
    httpd.shutdown()
    return 1 - downloads[0] / lookups, downloads[0], lookups


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=4096)  # 49 windows: 9 of a 2048 are all edge
    ap.add_argument("--zoom", type=int, default=19)
    ap.add_argument("--dir", default=".bench")
    args = ap.parse_args()

    from common import measure

    from sarlo_dask.config import TileConfig
    from sarlo_dask.geometry.tiles import tile_groups, tile_windows
    from sarlo_dask.stages.standardize import open_scene_store
    from sarlo_dask.stages.tile_stage import make_tile
    from sarlo_dask.store import Store

    root = Path(args.dir)
    root.mkdir(exist_ok=True)
    store, optical = prepare(root, args.size, args.zoom)
    ds = open_scene_store(store)
    windows = [  # in the build's order: groups of windows that share optical tiles
        w
        for group in tile_groups(
            tile_windows(f"tiles_{args.size}", ds.sizes["azimuth"], ds.sizes["range"])
        )
        for w in group
    ]
    work = Store(store.rsplit("/scenes/", 1)[0])  # tiles go to {work}/tiles, beside the scene
    out = Path(work.path("tiles"))
    cfg = TileConfig(optical=optical, zoom=args.zoom)
    make_tile(work, windows[0], cfg)  # one-time imports outside the timings
    reference_tile(store, windows[0], optical, args.zoom, root / "ref_out")
    shutil.rmtree(out, ignore_errors=True)
    with measure("ours") as ours:
        kept = [make_tile(work, w, cfg) for w in windows]
    assert all(k["optical"] == "ok" for k in kept), kept
    with measure("reference") as ref:
        for w in windows:
            reference_tile(store, w, optical, args.zoom, root / "ref_out")
    n = len(windows)
    print(f"{n} tiles of 1024 px, zoom {args.zoom}, one core")
    print(f"ours:      {n / ours.seconds:6.2f} tiles/s  peak {ours.peak_mb:6.0f} MB")
    print(f"reference: {n / ref.seconds:6.2f} tiles/s  peak {ref.peak_mb:6.0f} MB")
    print(f"ratio:     {ref.seconds / ours.seconds:6.2f}x  (target >= 3x)")
    t0 = time.perf_counter()
    ratio, downloads, lookups = cache_hit_ratio(store, optical, args.zoom, root)
    print(
        f"XYZ cache over the scene: {downloads} downloads for {lookups} tile lookups, "
        f"hit ratio {ratio:.2f} ({time.perf_counter() - t0:.1f} s over HTTP on 127.0.0.1)"
    )


if __name__ == "__main__":
    main()
