"""Streaming benchmark: a build with captions through one driver against the same stages run
one after the other (standardize, then tiles, then captions, then the release, each waiting
for the one before), on the same cluster in the same run; and when the first caption of the
streaming build commits, as a share of its wall time.

    python bench/bench_streaming.py [--scenes 6] [--workers 2] [--repeat 2]
                                    [--captions task|server]

`--captions task` (the default) captions in the workers' own tasks: on a CPU-only cluster
every stage then keeps every worker busy, and the stages have no idle time for streaming to
fill. `--captions server` captions through `sarlo serve` (the same kind of tiny model, one
torch thread, on 127.0.0.1), the shape of a build whose captioner has resources of its own
(a GPU pool, a vLLM node): there the stages one after the other leave the captioner idle
while scenes resample and the workers idle while it captions, which streaming overlaps.

End to end, as a user runs it: `sarlo build` against `sarlo standardize`, then `sarlo tiles`
(captions with the tiles, as that command makes them), then `sarlo build` (which finds both
done and releases), each command starting its own local cluster.

Inputs: `--scenes` simulated 2048 x 2048 scenes at 0.4 m (a pass each, 1024 x 1024 at 0.8 m,
16 tiles of 256 px), their optical ground as an XYZ folder, a tiny caption model built here.
Each way runs `--repeat` times, alternating, into fresh folders after a whole warm-up build
(every worker's imports and model load outside the timings); the best run of each is
compared.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))

from common import record  # noqa: E402


def scenes(root: Path, n: int) -> list[str]:
    """`n` simulated 2048 x 2048 scenes at 0.4 m, a pass each (made once, reused)."""
    from sarlo_dask.sim.scene import SimulationSpec, simulate_scene

    urls = []
    for i in range(n):
        path = root / f"stream_{i:02d}.nitf"
        if not path.exists():
            start = f"2025-05-{1 + i:02d}T10:00:00"
            spec = SimulationSpec(2048, 2048, 0.4, 0.4, seed=300 + i, collect_start=start)
            simulate_scene(path, spec)
        urls.append(str(path))
    return urls


def configs(root: Path, urls: list[str], server: str | None) -> tuple[Any, ...]:
    from sarlo_dask.captions import tiny
    from sarlo_dask.config import CaptionConfig, ReleaseConfig, StandardizeConfig, TileConfig
    from sarlo_dask.sim.optical import simulate_optical_tiles

    optical = root / "optical"
    for u in urls:
        truth = json.loads(Path(u + ".truth.json").read_text())
        simulate_optical_tiles(optical, truth, zoom=18, margin_deg=0.004)
    model = root / "model"
    if not (model / "config.json").exists():
        tiny.build_vision_encoder_decoder(model)
    captions = CaptionConfig(model=str(model), batch_size=4)
    if server is not None:
        served = str(root / "chat-model")
        captions = CaptionConfig(
            model=served, backend="openai", servers=(server,), batch_size=4, concurrency=16
        )
    return (
        StandardizeConfig(min_size=64),
        TileConfig(size=256, stride=256, optical=str(optical), zoom=18),
        captions,
        ReleaseConfig(samples_per_shard=8),
    )


def caption_server(root: Path) -> tuple[Any, str]:
    """`sarlo serve` of a tiny chat model on 127.0.0.1, one torch thread, batches of up to
    16 requests (the build keeps 16 in flight): (process, URL)."""
    from sarlo_dask.captions import tiny

    model = root / "chat-model"
    if not (model / "config.json").exists():
        tiny.build_llava(model)
    opts = ("--threads", "1", "--max-batch", "16")  # as bench_captions.py: 16 in flight
    return tiny.serve(str(model), root / "serve.log", server="sarlo", opts=opts)


def streaming(urls: list[str], root: Path, cfgs: tuple[Any, ...], client: Any) -> dict[str, float]:
    from sarlo_dask.build_config import BuildConfig
    from sarlo_dask.pipeline import build_dataset

    work, out = fresh(root, "stream")
    t0 = time.time()
    result = build_dataset(urls, str(work), str(out), BuildConfig.of(*cfgs), client)
    wall = time.time() - t0
    assert result.exit_code() == 0, result

    def first(folder: str, pattern: str) -> float:
        return min(p.stat().st_mtime for p in (work / folder).rglob(pattern)) - t0

    return {
        "wall": wall,
        "first_store": first("scenes", "*.done.json"),
        "first_tile": first("tiles", "*.meta.json"),
        "first_caption": first("captions", "*.json"),
    }


def one_after_another(
    urls: list[str], root: Path, cfgs: tuple[Any, ...], client: Any
) -> dict[str, float]:
    from sarlo_dask.pipeline import release_scenes, standardize_scenes, tile_scenes
    from sarlo_dask.stages.caption_pool import caption_tiles

    scfg, tcfg, ccfg, rcfg = cfgs
    work, out = fresh(root, "stages")
    times = {}
    t = time.time()
    scenes = standardize_scenes(urls, str(work), scfg, client)
    times["standardize"], t = time.time() - t, time.time()
    ids = sorted(r.scene_id for r in scenes if r.status == "done")
    tiles = tile_scenes(str(work), tcfg, client, ids)
    times["tiles"], t = time.time() - t, time.time()
    keys = {
        s.scene_id: sorted(
            p.name[: -len(".meta.json")] for p in (work / "tiles" / s.scene_id).glob("*.meta.json")
        )
        for s in tiles
    }
    caption_tiles(str(work), ccfg, client, keys)
    times["captions"], t = time.time() - t, time.time()
    rel = release_scenes(str(work), str(out), rcfg, client, ids, captions=ccfg.digest())
    times["release"] = time.time() - t
    assert not rel.errors, rel.errors
    times["wall"] = sum(times.values())
    return times


def config_yaml(root: Path, cfgs: tuple[Any, ...]) -> Path:
    import yaml

    scfg, tcfg, ccfg, rcfg = cfgs
    settings = {
        "standardize": {"min_size": scfg.min_size},
        "tiles": {"size": tcfg.size, "stride": tcfg.stride, "optical": tcfg.optical, "zoom": 18},
        "captions": ccfg.model_dump(
            include={"model", "batch_size", "backend", "servers", "concurrency"}, mode="json"
        ),
        "release": {"samples_per_shard": rcfg.samples_per_shard},
    }
    path = root / "build.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def cli_seconds(urls: list[str], root: Path, config: Path, workers: int) -> dict[str, float]:
    """End to end: one `sarlo build`, and the stage commands one after another."""
    import subprocess

    sarlo = str(Path(sys.executable).parent / "sarlo")
    common = ["--config", str(config), "--workers", str(workers)]
    times = {}
    for name, commands in (
        ("build", [["build", *urls, "--work", "{w}", "--out", "{o}"]]),
        (
            "commands",
            [
                ["standardize", *urls, "--work", "{w}"],
                ["tiles", "--work", "{w}"],
                ["build", *urls, "--work", "{w}", "--out", "{o}"],
            ],
        ),
    ):
        work, out = fresh(root, f"cli-{name}")
        t0 = time.perf_counter()
        for command in commands:
            argv = [a.format(w=work, o=out) for a in command]
            res = subprocess.run([sarlo, *argv, *common], capture_output=True, text=True)
            assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
        times[name] = time.perf_counter() - t0
    return times


def noop(i: int) -> int:
    return i


def driver_seconds(client: Any, n: int) -> float:
    """Wall time of `n` no-op units through the driver (submission, completion, outcome)."""
    from sarlo_dask.driver.loop import Driver, Key, Unit

    t0 = time.perf_counter()
    drive = Driver(client)
    for i in range(n):
        drive.add(Unit(Key("noop", str(i), (str(t0),)), noop, (i,)))
    assert sum(1 for _ in drive) == n
    return time.perf_counter() - t0


def fresh(root: Path, name: str) -> tuple[Path, Path]:
    work, out = root / f"{name}-work", root / f"{name}-out"
    for p in (work, out):
        shutil.rmtree(p, ignore_errors=True)
    return work, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenes", type=int, default=6)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--dir", default=".bench")
    ap.add_argument("--captions", choices=("task", "server"), default="task")
    args = ap.parse_args()
    server = None
    if args.captions == "server":
        proc, server = caption_server(Path(args.dir) / "streaming")
    try:
        run(args, server)
    finally:
        if server is not None:
            proc.terminate()
            proc.wait()


def run(args: argparse.Namespace, server: str | None) -> None:
    from distributed import Client, LocalCluster

    root = Path(args.dir) / "streaming"
    root.mkdir(parents=True, exist_ok=True)
    urls = scenes(root, args.scenes)
    cfgs = configs(root, urls, server)
    with (
        LocalCluster(n_workers=args.workers, threads_per_worker=1, dashboard_address=":0") as cl,
        Client(cl) as client,
    ):
        streaming(urls, root, cfgs, client)  # warm-up: every worker's imports, model load
        runs: dict[str, list[dict[str, float]]] = {"stream": [], "stages": []}
        for _ in range(args.repeat):
            runs["stages"].append(one_after_another(urls, root, cfgs, client))
            runs["stream"].append(streaming(urls, root, cfgs, client))
        units = min(driver_seconds(client, 200) for _ in range(5))  # the best of 5: it is short
    config = config_yaml(root, cfgs)
    cli = [cli_seconds(urls, root, config, args.workers) for _ in range(args.repeat)]
    cli_build = min(c["build"] for c in cli)
    cli_commands = min(c["commands"] for c in cli)
    tiles = sum(1 for _ in (root / "stream-work" / "tiles").rglob("*.meta.json"))
    best_stream = min(runs["stream"], key=lambda r: r["wall"])
    best_stages = min(runs["stages"], key=lambda r: r["wall"])
    ratio = best_stream["wall"] / best_stages["wall"]
    share = best_stream["first_caption"] / best_stream["wall"]
    print(f"{args.scenes} scenes, {args.workers} workers, best of {args.repeat}")
    print(
        "stages one after another: " + ", ".join(f"{k} {v:.2f} s" for k, v in best_stages.items())
    )
    print(
        f"streaming build: {best_stream['wall']:.2f} s, "
        f"first store commit at {best_stream['first_store']:.2f} s, first tile at "
        f"{best_stream['first_tile']:.2f} s, first caption at {best_stream['first_caption']:.2f} s"
    )
    print(f"streaming / one after another: {ratio:.2f}x (target <= 0.85x)")
    print(f"first caption at {100 * share:.0f} % of the build (target < 30 %)")
    overhead = 100 * (units / 200) / (best_stream["wall"] / tiles)
    print(
        f"driver: 200 no-op units in {units:.2f} s; per unit {overhead:.1f} % of the build's "
        f"time per tile ({tiles} tiles) (target <= 5 %)"
    )
    print(
        f"end to end: sarlo build {cli_build:.1f} s; standardize, tiles, build one after "
        f"another {cli_commands:.1f} s ({cli_build / cli_commands:.2f}x)"
    )
    figures = {
        "cli_build_s": round(cli_build, 1),
        "cli_commands_s": round(cli_commands, 1),
        "cli_ratio": round(cli_build / cli_commands, 2),
        "stream_s": round(best_stream["wall"], 2),
        "stages_s": round(best_stages["wall"], 2),
        "ratio": round(ratio, 2),
        "first_caption_share_pct": round(100 * share),
        "driver_200_noop_s": round(units, 2),
        "driver_overhead_pct": round(overhead, 1),
    }
    record("streaming" if server is None else "streaming_server", figures, vars(args))


if __name__ == "__main__":
    main()
