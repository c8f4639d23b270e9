"""Checkpoint verification (sarlo_dask.integrity) as a share of the re-runs it runs in: an
unchanged re-run of a build (every stage skips; what is verified is what the stages read:
the stores' metadata, the tiles' meta.json, the markers) and a re-release of the same {work}
into an empty {out} (every sample's files read and verified as they are packed). Each re-run
is timed with verification on and off (integrity.CHECKS, an internal switch, set on the
client and every worker), alternated, in the same run; the medians are compared.

    python bench/bench_verify_reuse.py [--scenes 6] [--rounds 5] [--dir .bench]

Inputs: simulated 0.4 m scenes of 1200 x 1200, tiles of 128 px (16 per scene), no optical
source and no captions.
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
    from sarlo_dask import integrity

    integrity.CHECKS[0] = on


def timed(client: object, run: Callable[[], object], rounds: int) -> dict[bool, float]:
    """Median seconds of `run` with verification on and off, alternated `rounds` times."""
    seen: dict[bool, list[float]] = {True: [], False: []}
    for i in range(rounds):
        for on in (True, False) if i % 2 == 0 else (False, True):
            set_checks(on)
            client.run(set_checks, on)  # type: ignore[attr-defined]
            t0 = time.perf_counter()
            run()
            seen[on].append(time.perf_counter() - t0)
    set_checks(True)
    client.run(set_checks, True)  # type: ignore[attr-defined]
    print(" ", {k: [round(x, 2) for x in v] for k, v in seen.items()})
    return {on: statistics.median(v) for on, v in seen.items()}


def report(name: str, t: dict[bool, float]) -> None:
    cost = t[True] - t[False]
    print(
        f"{name:34s} with {t[True]:6.2f} s, without {t[False]:6.2f} s: verification "
        f"{cost * 1e3:7.1f} ms = {cost / t[True]:6.1%} of the re-run  (target <= 10%)"
    )


def main() -> None:
    from distributed import Client, LocalCluster

    from sarlo_dask.config import CaptionConfig, ReleaseConfig, StandardizeConfig, TileConfig
    from sarlo_dask.pipeline import build_dataset, release_scenes
    from sarlo_dask.simulate import SimulationSpec, simulate_scene

    ap = argparse.ArgumentParser()
    ap.add_argument("--scenes", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--dir", default=".bench")
    args = ap.parse_args()
    root = Path(args.dir).resolve()
    root.mkdir(exist_ok=True)
    urls = []
    for i in range(args.scenes):
        path = root / f"verify_{i:02d}.nitf"
        if not path.exists():
            start = f"2025-09-{1 + i:02d}T10:00:00"  # a pass per scene
            spec = SimulationSpec(1200, 1200, 0.4, 0.4, seed=300 + i, collect_start=start)
            simulate_scene(path, spec)
        urls.append(str(path))
    work, out = root / "verify_work", root / "verify_out"
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    rcfg = ReleaseConfig(samples_per_shard=16)
    cfgs = (
        StandardizeConfig(min_size=128),
        TileConfig(size=128, stride=128),
        CaptionConfig(),
        rcfg,
    )
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        t0 = time.perf_counter()
        first = build_dataset(urls, str(work), str(out), *cfgs, client)
        print(
            f"{args.scenes} scenes -> {first.release.manifest['samples']} samples; "
            f"first build {time.perf_counter() - t0:.1f} s (digests recorded at commit)"
        )
        ids = sorted(p.name for p in (work / "tiles").iterdir() if p.is_dir())

        def unchanged() -> None:
            res = build_dataset(urls, str(work), str(out), *cfgs, client)
            assert res.exit_code() == 0 and res.release.written == 0, res.failures()

        def rerelease() -> None:
            again = root / "verify_out_again"
            shutil.rmtree(again, ignore_errors=True)
            rel = release_scenes(str(work), str(again), rcfg, client, ids)
            assert not rel.errors and rel.written, rel.errors

        unchanged()  # warm: imports and caches on the workers
        report("unchanged re-run (build_dataset)", timed(client, unchanged, args.rounds))
        report("re-release into an empty {out}", timed(client, rerelease, args.rounds))


if __name__ == "__main__":
    main()
