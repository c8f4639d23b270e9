"""XYZ prefetch benchmark: the cost of planning against the tile stage it serves.

    python bench/bench_prefetch.py [--size 4096] [--zoom 19] [--dir .bench]

One core (one process, one thread). The scene of bench_tiles, its optical tiles served over
HTTP on 127.0.0.1: `prefetch_stage.plan_scene_xyz` (tie points, ValidData, footprints, one
cache listing per tile column), then the prefetch tasks, then `tile_stage.make_tiles` over
every window with its tiles cached (it must ask the server for nothing).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).parent))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--zoom", type=int, default=19)
    ap.add_argument("--dir", default=".bench")
    args = ap.parse_args()

    from bench_tiles import prepare

    from sarlo_dask.config import TileConfig
    from sarlo_dask.geometry.tiles import tile_groups, tile_windows
    from sarlo_dask.stages.prefetch_stage import fetch_plan, plan_scene_xyz, prefetch_xyz
    from sarlo_dask.stages.standardize import open_scene_store
    from sarlo_dask.stages.tile_stage import make_tiles
    from sarlo_dask.store import Store

    root = Path(args.dir)
    root.mkdir(exist_ok=True)
    store, optical = prepare(root, args.size, args.zoom)
    asked = [0]

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, *a: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            asked[0] += 1
            super().do_GET()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=optical))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    cache = root / "prefetch_cache"
    shutil.rmtree(cache, ignore_errors=True)
    url = f"http://127.0.0.1:{httpd.server_address[1]}/{{z}}/{{x}}/{{y}}.png"
    cfg = TileConfig(optical=url, zoom=args.zoom, tile_cache=str(cache), device="cpu")
    work = Store(store.rsplit("/scenes/", 1)[0])
    sid = f"tiles_{args.size}"
    ds = open_scene_store(store, chunks=None)
    windows = tile_windows(sid, ds.sizes["azimuth"], ds.sizes["range"])
    plan_scene_xyz(work, sid, windows[:1], cfg)  # one-time imports outside the timings
    t0 = time.perf_counter()
    needs = plan_scene_xyz(work, sid, windows, cfg)
    t_plan = time.perf_counter() - t0
    plan = fetch_plan([needs], cfg.prefetch_tiles)
    t0 = time.perf_counter()
    outcomes = [prefetch_xyz(cfg, g) for g in plan.groups]
    t_fetch, fetched = time.perf_counter() - t0, asked[0]
    shutil.rmtree(work.path("tiles"), ignore_errors=True)
    t0 = time.perf_counter()
    for group in tile_groups(windows):
        make_tiles(work, group, cfg)
    t_tiles = time.perf_counter() - t0
    httpd.shutdown()
    got = sum(o.fetched + o.empty for o in outcomes)
    print(f"{len(windows)} windows of 1024 px ({needs.windows} planned), zoom {args.zoom}")
    print(f"plan:     {t_plan:6.2f} s  {plan.planned} XYZ tiles")
    print(f"prefetch: {t_fetch:6.2f} s  {fetched} requests for {got} tiles")
    print(f"tiles:    {t_tiles:6.2f} s  {asked[0] - fetched} requests (tiles cached)")
    print(f"plan / tile stage: {t_plan / t_tiles:.2%}")


if __name__ == "__main__":
    main()
