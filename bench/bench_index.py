"""index.parquet: its writing as a share of the release stage, and a filtered read of 1% of
the samples as a share of the bytes of a full read (bytes counted by the file system).

    python bench/bench_index.py [--scenes 8] [--dir .bench]

Inputs: simulated 0.4 m scenes of 1200 x 1200, tiles of 128 px (16 per scene), no optical
source and no captions: the release stage's own work (shards, markers, index, manifest).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

sys.path.insert(0, str(Path(__file__).parent))

READ = [0]


class CountingFS(LocalFileSystem):
    """The local file system, counting the bytes its files' reads return (count://): every
    read, whole-file or ranged (cat_file reads through _open), goes through here."""

    protocol = ("count",)

    def _open(self, path: str, mode: str = "rb", **kw: Any) -> Any:
        f = super()._open(path, mode=mode, **kw)
        read = f.read

        def counted(*args: Any) -> bytes:
            data = read(*args)
            READ[0] += len(data)
            return data

        f.read = counted
        return f


def main() -> None:
    from common import pass_scenes
    from distributed import Client, LocalCluster

    from sarlo_dask import dataset
    from sarlo_dask.build_config import BuildConfig
    from sarlo_dask.config import CaptionConfig, ReleaseConfig, StandardizeConfig, TileConfig
    from sarlo_dask.io.index import index_parquet, index_rows
    from sarlo_dask.pipeline import build_dataset, release_scenes
    from sarlo_dask.release import publish, scenes
    from sarlo_dask.store import Store

    ap = argparse.ArgumentParser()
    ap.add_argument("--scenes", type=int, default=8)
    ap.add_argument("--dir", default=".bench")
    args = ap.parse_args()
    root = Path(args.dir).resolve()
    root.mkdir(exist_ok=True)
    urls = pass_scenes(root, "index", args.scenes, 200, 8)
    work, out = root / "index_work", root / "index_out"
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    rcfg = ReleaseConfig(samples_per_shard=16)
    cfgs = BuildConfig.of(
        StandardizeConfig(min_size=128),
        TileConfig(size=128, stride=128),
        CaptionConfig(),
        rcfg,
    )
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        build_dataset(urls, str(work), str(out), cfgs, client)
        ids = sorted(p.name for p in (work / "tiles").iterdir() if p.is_dir())
        again = root / "index_out_again"
        shutil.rmtree(again, ignore_errors=True)
        t0 = time.perf_counter()
        rel = release_scenes(str(work), str(again), rcfg, client, ids)
        t_release = time.perf_counter() - t0
    samples = rel.manifest["samples"]
    index = {sid: scenes.scene_index(Store(str(work)), sid) for sid in ids}
    plan = publish.release_plan(index, rcfg)
    done = [json.loads(p.read_text()) for p in sorted(again.rglob("shard-*.done.json"))]
    markers = {m["shard"]: m for m in done}
    members = {k: (s, o) for s, m in markers.items() for k, o in m["members"].items()}
    t0 = time.perf_counter()
    data = index_parquet(index_rows(plan.rows, plan.assignment, members))
    t_index = time.perf_counter() - t0

    fsspec.register_implementation("count", CountingFS, clobber=True)
    url = f"count://{again}"
    table = dataset.index(str(again))
    keys = sorted(table.column("key").to_pylist())
    chosen = keys[:: max(1, len(keys) // max(1, math.ceil(0.01 * len(keys))))][
        : math.ceil(0.01 * len(keys))
    ]
    import pyarrow.compute as pc

    where = pc.field("key").isin(chosen)
    full = picked = 0
    for split in dataset.hf_data_files(str(again)):
        READ[0] = 0
        sum(1 for _ in dataset.open(url, split, decode=False))
        full += READ[0]
        READ[0] = 0
        picked_here = sum(1 for _ in dataset.open(url, split, decode=False, where=where))
        picked += READ[0] if picked_here else 0
    print(
        f"{args.scenes} scenes -> {samples} samples in {len(rel.manifest['shards'])} shards; "
        f"index.parquet {len(data)} bytes"
    )
    print(
        f"index writing: {t_index * 1e3:.1f} ms of a {t_release:.2f} s release stage: "
        f"{t_index / t_release:.1%}  (target <= 5%)"
    )
    print(
        f"filtered read of {len(chosen)} of {len(keys)} samples ({len(chosen) / len(keys):.1%}): "
        f"{picked} of {full} bytes of a full read: {picked / full:.2%}  (target <= 5%)"
    )


if __name__ == "__main__":
    main()
