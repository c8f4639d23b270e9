"""Remote ingest benchmark: a scene served over loopback HTTP (range requests, every byte it
sends counted) standardized on 2, 3 and 4 worker processes, in-process and through
`sarlo standardize` as a user runs it; the bytes fetched against the file's size (target
<= 1.05x at every worker count) and the requests, beside the same scene read from disk
(in-process times on a warmed cluster; the command's include its cluster's start).

    python bench/bench_remote.py [--size 4096] [--dir .bench] [--workers 2 3 4]

Writes bench/results/remote.json (the README cites it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import record  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.rangeserver import RangeServer  # noqa: E402


def scene(path: Path, size: int) -> Path:
    from sarlo_dask.sim.scene import SimulationSpec, simulate_scene

    if not path.exists():
        print(f"simulating {path} ({size} x {size} at 0.3 m) ...", flush=True)
        spec = SimulationSpec(rows=size, cols=size, row_spacing=0.3, col_spacing=0.3)
        simulate_scene(path, spec)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--dir", default=".bench")
    ap.add_argument("--workers", type=int, nargs="+", default=[2, 3, 4])
    args = ap.parse_args()
    from distributed import Client, LocalCluster

    from sarlo_dask.config import StandardizeConfig
    from sarlo_dask.pipeline import standardize_scenes

    root = Path(args.dir)
    root.mkdir(parents=True, exist_ok=True)
    path = scene(root / f"remote_{args.size}.nitf", args.size)
    size = os.path.getsize(path)
    cfg = StandardizeConfig(min_size=64)
    server = RangeServer(path.parent)
    url = f"{server.url}/{path.name}"
    figures: dict[str, float] = {"scene_mb": round(size / 2**20, 1)}
    sarlo = str(Path(sys.executable).parent / "sarlo")
    try:
        for n in args.workers:
            with (
                LocalCluster(n_workers=n, threads_per_worker=1, dashboard_address=":0") as c,
                Client(c) as client,
            ):
                rows = {}
                warm = root / f"remote-work-warm-{n}"  # the workers import what the stage runs
                shutil.rmtree(warm, ignore_errors=True)
                standardize_scenes([str(path)], str(warm), cfg, client)
                for name, source in (("disk", str(path)), ("http", url)):
                    work = root / f"remote-work-{name}-{n}"
                    shutil.rmtree(work, ignore_errors=True)
                    before = server.traffic(f"/{path.name}")
                    t0 = time.perf_counter()
                    res = standardize_scenes([source], str(work), cfg, client)[0]
                    rows[name] = time.perf_counter() - t0
                    assert res.status == "done", res.reason
                requests, sent = (
                    a - b for a, b in zip(server.traffic(f"/{path.name}"), before, strict=True)
                )
            work = root / f"remote-work-cli-{n}"
            shutil.rmtree(work, ignore_errors=True)
            before = server.traffic(f"/{path.name}")
            t0 = time.perf_counter()
            cmd = [sarlo, "standardize", url, "--work", str(work), "--workers", str(n)]
            subprocess.run(cmd + ["--min-size", "64"], check=True, capture_output=True)
            cli_s = time.perf_counter() - t0
            cli_sent = server.traffic(f"/{path.name}")[1] - before[1]
            ratio, cli_ratio = sent / size, cli_sent / size
            print(
                f"{n} workers: in-process {sent / 2**20:.1f} MB in {requests} requests for a "
                f"{size / 2**20:.1f} MB scene ({ratio:.3f}x; target <= 1.05x), "
                f"{rows['http']:.1f} s (from disk {rows['disk']:.1f} s); "
                f"sarlo standardize {cli_ratio:.3f}x in {cli_s:.1f} s"
            )
            figures[f"fetched_ratio_{n}"] = round(ratio, 3)
            figures[f"requests_{n}"] = requests
            figures[f"cli_fetched_ratio_{n}"] = round(cli_ratio, 3)
            figures[f"http_s_{n}"] = round(rows["http"], 1)
            figures[f"disk_s_{n}"] = round(rows["disk"], 1)
            figures[f"cli_s_{n}"] = round(cli_s, 1)
    finally:
        server.close()
    record("remote", figures, vars(args))


if __name__ == "__main__":
    main()
