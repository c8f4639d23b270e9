"""Caption pool benchmark: the pool on one worker vs the same model called directly,
batched vs unbatched calls, and captions/s through OpenAI-compatible servers (backend
openai) at 1, 4 and 16 requests in flight vs the in-process backend on the same model:
the project's own `sarlo serve` (batching requests in flight, one torch thread as the pool's
worker) and `transformers serve`. Writes bench/results/captions.json.

    python bench/bench_captions.py [--tiles 96] [--batch 8] [--arch llava] [--hidden 16]
        [--server-url http://HOST:PORT/v1 --served-model NAME]

The servers: `sarlo serve` and `transformers serve` with the same tiny model on 127.0.0.1
(llava only: the servers speak chat), or one given by --server-url (say vLLM on a GPU node,
serving the model --served-model names; then the in-process figure is of the tiny model here).

Tiles: random 256 px optical patches with tile meta.json files in a scratch work store. The
model: a random-weight architecture built locally (sarlo_dask.captions.tiny), on CPU unless a
GPU is present (then `--hidden 1024 --layers 8` gives a real-size one). "Direct" runs
`caption_batch` in this process on the same fixed batches (same images, prompts, cleanup and
records); "pool" runs them through CaptionPool on a LocalCluster with one worker process,
model loading excluded from both (warmed first).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))
from common import record  # noqa: E402


def make_tiles(work: Path, n: int) -> list[str]:
    import numpy as np
    from PIL import Image

    from sarlo_dask.geometry.tiles import encode_image
    from sarlo_dask.store import write_json

    rng = np.random.default_rng(0)
    folder = work / "tiles" / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    keys = [f"bench_a{i // 100:03d}_r{i % 100:03d}" for i in range(n)]
    for key in keys:
        img = rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)
        (folder / f"{key}.optic.png").write_bytes(encode_image(img))
        write_json(
            str(folder / f"{key}.meta.json"),
            {"key": key, "optical": {"status": "ok"}, "preview": {"format": "png"}},
        )
    Image.open(folder / f"{keys[0]}.optic.png").verify()
    return keys


def direct(work: str, keys: list[str], cfg) -> float:
    from sarlo_dask.stages.caption_stage import caption_batch
    from sarlo_dask.store import Store

    t0 = time.perf_counter()
    for i in range(0, len(keys), cfg.batch_size):
        caption_batch(Store(work), "bench", keys[i : i + cfg.batch_size], cfg)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiles", type=int, default=96)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--arch", default="llava", choices=["llava", "blip", "vision-encoder-decoder"])
    ap.add_argument("--hidden", type=int, default=16)
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--dir", default=".bench")
    ap.add_argument("--server-url", default=None, help="an OpenAI-compatible server's /v1 URL")
    ap.add_argument("--served-model", default=None, help="the model name it serves")
    args = ap.parse_args()

    import torch
    from distributed import Client, LocalCluster

    from sarlo_dask.captions import tiny
    from sarlo_dask.captions.backend import get_captioner
    from sarlo_dask.config import CaptionConfig
    from sarlo_dask.stages.caption_pool import caption_tiles

    root = Path(args.dir) / "captions"
    shutil.rmtree(root, ignore_errors=True)
    work = root / "work"
    keys = make_tiles(work, args.tiles)
    model = tiny.BUILDERS[args.arch](root / "model", hidden=args.hidden, layers=args.layers)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.set_num_threads(1)
    cfg = CaptionConfig(model=model, batch_size=args.batch)
    one = cfg.model_copy(update={"batch_size": 1})
    get_captioner(cfg)  # load once, outside the timings
    direct(str(work), keys[: args.batch], cfg)

    t_unbatched = direct(str(work), keys, one)

    # five alternating runs each, medians: this VM's timings swing by a fifth between runs
    runs: dict[str, list[float]] = {"direct": [], "pool": []}
    with (
        LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        caption_tiles(str(work), cfg, client, {"bench": keys[: args.batch]})  # warm, as direct
        for _ in range(5):
            runs["direct"].append(direct(str(work), keys, cfg))
            shutil.rmtree(work / "captions", ignore_errors=True)
            t0 = time.perf_counter()
            res = caption_tiles(str(work), cfg, client, {"bench": keys})
            runs["pool"].append(time.perf_counter() - t0)
            assert res["bench"].captioned == len(keys), res["bench"]
    t_direct, t_pool = (sorted(v)[2] for v in (runs["direct"], runs["pool"]))
    print(f"direct runs (s): {[round(t, 2) for t in runs['direct']]}")
    print(f"pool runs (s):   {[round(t, 2) for t in runs['pool']]}")
    n = len(keys)
    print(
        f"{n} tiles, {args.arch} (hidden {args.hidden}, {args.layers} layers) on {device}, "
        f"batch {args.batch}, 3 prompts each, one thread"
    )
    print(f"direct, batched:   {n / t_direct:7.1f} tiles/s")
    print(f"direct, unbatched: {n / t_unbatched:7.1f} tiles/s")
    print(f"pool, 1 worker:    {n / t_pool:7.1f} tiles/s")
    print(f"pool / direct:     {t_direct / t_pool:7.2f}x  (target >= 0.9x)")
    print(f"batched/unbatched: {t_unbatched / t_direct:7.2f}x  (target >= 3x)")
    figures = {
        "direct_tiles_s": round(n / t_direct, 1),
        "pool_tiles_s": round(n / t_pool, 1),
        "pool_vs_direct": round(t_direct / t_pool, 2),
        "batched_vs_unbatched": round(t_unbatched / t_direct, 2),
        "pool_captions_s": round(3 * n / t_pool, 1),
    }
    if args.server_url:
        figures |= served(args, root, work, keys, model, 3 * n / t_pool, "given")
    elif args.arch == "llava":
        for server in ("sarlo", "transformers"):
            figures |= served(args, root, work, keys, model, 3 * n / t_pool, server)
    record("captions", figures, vars(args))


def served(
    args, root: Path, work: Path, keys: list[str], model: str, local: float, server: str
) -> dict[str, float]:
    """Captions/s through the server at 1, 4 and 16 requests in flight (one worker, the
    batches it needs queued), against the in-process pool's `local` captions/s."""
    from distributed import Client, LocalCluster

    from sarlo_dask.captions import tiny
    from sarlo_dask.config import CaptionConfig
    from sarlo_dask.stages.caption_pool import caption_tiles

    proc, figures = None, {}
    base, name = args.server_url, args.served_model or model
    if not base:
        opts = ("--threads", "1", "--max-batch", str(args.batch)) if server == "sarlo" else ()
        proc, base = tiny.serve(model, root / f"{server}.log", server=server, opts=opts)
    try:
        with (
            LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=":0") as cluster,
            Client(cluster) as client,
        ):
            for inflight in (1, 4, 16):
                cfg = CaptionConfig(
                    model=name,
                    backend="openai",
                    servers=(base,),
                    batch_size=args.batch,
                    concurrency=inflight,
                    request_timeout=600,
                )
                times = []
                for _ in range(3):
                    shutil.rmtree(work / "captions", ignore_errors=True)
                    t0 = time.perf_counter()
                    res = caption_tiles(str(work), cfg, client, {"bench": keys})
                    times.append(time.perf_counter() - t0)
                    assert res["bench"].captioned == len(keys), res["bench"]
                rate = 3 * len(keys) / sorted(times)[1]
                print(
                    f"{server} serve, {inflight:2d} in flight: {rate:7.1f} captions/s  "
                    f"({rate / local:.2f}x the in-process pool's {local:.1f})"
                )
                figures[f"{server}_captions_s_{inflight}"] = round(rate, 1)
                figures[f"{server}_vs_pool_{inflight}"] = round(rate / local, 2)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
    return figures


if __name__ == "__main__":
    main()
