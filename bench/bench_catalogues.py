"""The release's catalogues (STAC, Croissant, the dataset card) as a share of the release
stage: in process (rendering the three writers' files against the stage without them) and
end to end (the release stage with `writers: [stac, croissant, card]` against without, the
same shards already committed elsewhere: both write every shard).

    python bench/bench_catalogues.py [--scenes 6] [--px 2048] [--tile 1024] [--dir .bench]

Inputs: simulated 0.8 m scenes of PX x PX, a pass each, cut into TILE px samples (the
recipe's 1024 px: 4 per scene by default), no optical source and no captions: the release
stage's own work (shards, markers, index, manifest) on samples of the size it ships.
End to end: `sarlo build` as a user re-runs it over the finished work into a fresh {out},
with the writers (the default) and with `writers: []` (the resume verifies and reuses every
scene and tile; the release is written whole). Records bench/results/catalogues.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

WRITERS = ["stac", "croissant", "card"]


def main() -> None:
    import pyarrow.parquet as pq
    from common import record
    from distributed import Client, LocalCluster

    from sarlo_dask.build_config import BuildConfig
    from sarlo_dask.config import CaptionConfig, ReleaseConfig, StandardizeConfig, TileConfig
    from sarlo_dask.dataset import shard_marker
    from sarlo_dask.io.writers import ReleaseView, render
    from sarlo_dask.pipeline import build_dataset, release_scenes

    ap = argparse.ArgumentParser()
    ap.add_argument("--scenes", type=int, default=6)
    ap.add_argument("--px", type=int, default=2048)
    ap.add_argument("--tile", type=int, default=1024)
    ap.add_argument("--dir", default=".bench")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    root = Path(args.dir).resolve()
    root.mkdir(exist_ok=True)
    urls = scenes(root, args.scenes, args.px)
    work, out = root / "cat_work", root / "cat_out"
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    plain = ReleaseConfig(samples_per_shard=8, writers=[])
    listed = plain.model_copy(update={"writers": WRITERS})
    cfgs = BuildConfig.of(
        StandardizeConfig(min_size=args.tile),
        TileConfig(size=args.tile, stride=args.tile),
        CaptionConfig(),
        plain,
    )
    times: dict[str, list[float]] = {"plain": [], "listed": []}
    gens: dict[str, str] = {}
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        build_dataset(urls, str(work), str(out), cfgs, client)
        ids = sorted(p.name for p in (work / "tiles").iterdir() if p.is_dir())
        for _ in range(args.repeat):  # alternated, each into a fresh folder
            for name, rcfg in (("plain", plain), ("listed", listed)):
                again = root / f"cat_again_{name}"
                shutil.rmtree(again, ignore_errors=True)
                t0 = time.perf_counter()
                rel = release_scenes(str(work), str(again), rcfg, client, ids)
                times[name].append(time.perf_counter() - t0)
                assert rel.manifest.get("complete"), rel
                gens[name] = rel.manifest["generation"]
    cli = cli_seconds(urls, root, work, args.repeat, args.tile)
    gen = root / "cat_again_plain" / gens["plain"]
    rows = pq.read_table(gen / "index.parquet").to_pylist()
    for r in rows:  # as the stage hands them to the writers (meta.json's text)
        r["collect_start"] = r["collect_start"].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    markers = {
        p.relative_to(gen).as_posix(): json.loads(Path(shard_marker(str(p))).read_text())
        for p in gen.rglob("*.tar")
    }
    manifest = json.loads((root / "cat_again_plain" / "manifest.json").read_text())
    view = ReleaseView(rows, markers, manifest)
    render_s = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        files = render(WRITERS, view)
        render_s.append(time.perf_counter() - t0)
    plain_s, listed_s = statistics.median(times["plain"]), statistics.median(times["listed"])
    render_med = statistics.median(render_s)
    size = sum(len(d) for _, d in files.values())
    print(f"{len(rows)} samples in {len(markers)} shards; {len(files)} catalogue files, {size} B")
    print(
        f"rendering stac+croissant+card: {render_med * 1e3:.0f} ms of a {plain_s:.2f} s "
        f"release stage: {render_med / plain_s:.1%}  (target <= 5%)"
    )
    print(
        f"release stage with them {listed_s:.2f} s vs without {plain_s:.2f} s: "
        f"{listed_s / plain_s:.2f}x"
    )
    cli_ratio = cli["listed"] / cli["plain"]
    print(
        f"end to end, `sarlo build` over finished work: with them {cli['listed']:.2f} s vs "
        f"without {cli['plain']:.2f} s: {cli_ratio:.2f}x"
    )
    record(
        "catalogues",
        {
            "samples": len(rows),
            "render_ms": round(render_med * 1e3),
            "release_s": round(plain_s, 2),
            "release_with_s": round(listed_s, 2),
            "render_share": round(render_med / plain_s, 3),
            "with_vs_without": round(listed_s / plain_s, 2),
            "cli_s": round(cli["plain"], 2),
            "cli_with_s": round(cli["listed"], 2),
            "cli_with_vs_without": round(cli_ratio, 2),
        },
        {
            "scenes": args.scenes,
            "px": args.px,
            "tile": args.tile,
            "repeat": args.repeat,
            "writers": WRITERS,
        },
    )


def scenes(root: Path, n: int, px: int) -> list[str]:
    """`n` simulated scenes of px x px at 0.8 m, a pass each, made once and reused."""
    from sarlo_dask.sim.scene import SimulationSpec, simulate_scene

    urls = []
    for i in range(n):
        path = root / f"catalogues_{px}_{i:02d}.nitf"
        if not path.exists():
            start = f"2025-09-{1 + i:02d}T10:00:00"
            simulate_scene(
                path, SimulationSpec(px, px, 0.8, 0.8, seed=300 + i, collect_start=start)
            )
        urls.append(str(path))
    return urls


def cli_seconds(
    urls: list[str], root: Path, work: Path, repeat: int, tile: int
) -> dict[str, float]:
    """Median seconds of `sarlo build` over the finished `work` into a fresh {out}, the YAML
    configuration without the writers and with them, alternated."""
    import subprocess

    import yaml

    sarlo = str(Path(sys.executable).parent / "sarlo")
    base = {
        "standardize": {"min_size": tile},
        "tiles": {"size": tile, "stride": tile},
        "release": {"samples_per_shard": 8},
    }
    times: dict[str, list[float]] = {"plain": [], "listed": []}
    for _ in range(repeat):
        for name in times:
            release = {**base["release"], "writers": WRITERS if name == "listed" else []}
            config = root / f"cat_{name}.yaml"
            config.write_text(yaml.safe_dump({**base, "release": release}))
            out = root / f"cat_cli_{name}"
            shutil.rmtree(out, ignore_errors=True)
            argv = [sarlo, "build", *urls, "--work", str(work), "--out", str(out)]
            t0 = time.perf_counter()
            res = subprocess.run(
                [*argv, "--config", str(config), "--workers", "2"], capture_output=True, text=True
            )
            times[name].append(time.perf_counter() - t0)
            assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    return {name: statistics.median(t) for name, t in times.items()}


if __name__ == "__main__":
    main()
