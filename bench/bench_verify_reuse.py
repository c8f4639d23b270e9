"""Checkpoint verification (sarlo_dask.driver.integrity) as a share of the re-runs it runs in: an
unchanged re-run of a build (every stage skips; what is verified is what the stages read:
the stores' metadata, the tiles' meta.json, the markers) and a re-release of the same {work}
into an empty {out} (every sample's files read and verified as they are packed). Each re-run
is timed with verification on and off (integrity.CHECKS, an internal switch, set on the
client and every worker), alternated, in the same run; the medians are compared.

    python bench/bench_verify_reuse.py [--scenes 6] [--rounds 11] [--stride 64] [--dir .bench]

Inputs: simulated 0.4 m scenes of 1200 x 1200, tiles of 128 px at stride 64 (49 per scene),
no optical source and no captions. On a shared machine wall times move with the load of
others: the fastest of each (what the code itself costs, as timeit reports) and the CPU time
of the client and its workers are printed too. The unchanged re-run (the target) is timed
3 x rounds times.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def set_checks(on: bool) -> None:
    from sarlo_dask.driver import integrity

    integrity.CHECKS[0] = on


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and its children (the workers) so far:
    much less moved by other programs' load than wall time."""
    import psutil

    me = psutil.Process()
    total = 0.0
    for p in [me, *me.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system
    return total


def timed(client: object, run: Callable[[], object], rounds: int) -> dict[str, dict[bool, float]]:
    """Median wall and CPU seconds of `run` with verification on and off, alternated
    `rounds` times, and the fastest wall time of each."""
    wall: dict[bool, list[float]] = {True: [], False: []}
    cpu: dict[bool, list[float]] = {True: [], False: []}
    for i in range(rounds):
        for on in (True, False) if i % 2 == 0 else (False, True):
            set_checks(on)
            client.run(set_checks, on)  # type: ignore[attr-defined]
            t0, c0 = time.perf_counter(), cpu_seconds()
            run()
            wall[on].append(time.perf_counter() - t0)
            cpu[on].append(cpu_seconds() - c0)
    set_checks(True)
    client.run(set_checks, True)  # type: ignore[attr-defined]
    return {
        "wall (median)": {on: statistics.median(v) for on, v in wall.items()},
        "wall (fastest)": {on: min(v) for on, v in wall.items()},
        "CPU (median)": {on: statistics.median(v) for on, v in cpu.items()},
    }


def report(name: str, measured: dict[str, dict[bool, float]]) -> None:
    for what, t in measured.items():
        cost = t[True] - t[False]
        print(
            f"{name:32s} {what:14s} with {t[True]:6.2f} s, without {t[False]:6.2f} s: "
            f"verification {cost * 1e3:7.1f} ms = {cost / t[True]:6.1%}  (target <= 10%)"
        )


def main() -> None:
    from common import pass_scenes
    from distributed import Client, LocalCluster

    from sarlo_dask.build_config import BuildConfig
    from sarlo_dask.config import CaptionConfig, ReleaseConfig, StandardizeConfig, TileConfig
    from sarlo_dask.pipeline import build_dataset, release_scenes

    ap = argparse.ArgumentParser()
    ap.add_argument("--scenes", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--stride", type=int, default=64, help="tile stride (tiles of 128 px)")
    ap.add_argument("--dir", default=".bench")
    args = ap.parse_args()
    root = Path(args.dir).resolve()
    root.mkdir(exist_ok=True)
    urls = pass_scenes(root, "verify", args.scenes, 300, 9)
    work, out = root / "verify_work", root / "verify_out"
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    rcfg = ReleaseConfig(samples_per_shard=16)
    cfgs = BuildConfig.of(
        StandardizeConfig(min_size=128),
        TileConfig(size=128, stride=args.stride),
        CaptionConfig(),
        rcfg,
    )
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        t0 = time.perf_counter()
        first = build_dataset(urls, str(work), str(out), cfgs, client)
        print(
            f"{args.scenes} scenes -> {first.release.manifest['samples']} samples; "
            f"first build {time.perf_counter() - t0:.1f} s (digests recorded at commit)"
        )
        ids = sorted(p.name for p in (work / "tiles").iterdir() if p.is_dir())

        def unchanged() -> None:
            res = build_dataset(urls, str(work), str(out), cfgs, client)
            assert res.exit_code() == 0 and res.release.written == 0, res.failures()

        def rerelease() -> None:
            again = root / "verify_out_again"
            shutil.rmtree(again, ignore_errors=True)
            rel = release_scenes(str(work), str(again), rcfg, client, ids)
            assert not rel.errors and rel.written, rel.errors

        unchanged()  # warm: imports and caches on the workers
        report("unchanged re-run (build_dataset)", timed(client, unchanged, 3 * args.rounds))
        report("re-release into an empty {out}", timed(client, rerelease, args.rounds))


if __name__ == "__main__":
    main()
