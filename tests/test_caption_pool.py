"""The caption worker pool on real clusters with tiny transformers models built here."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("transformers")

from sarlo_dask.captions import tiny
from sarlo_dask.captions.backend import CaptionModels, get_captioner, load_counts
from sarlo_dask.config import CaptionConfig
from sarlo_dask.geometry.tiles import tile_windows
from sarlo_dask.pipeline import tile_scenes
from sarlo_dask.stages.caption_stage import batches_run
from sarlo_dask.stages.standardize import open_scene_store
from sarlo_dask.store import Store, read_json, scene_store_url

from .helpers import fresh_work, kept_keys, small_scene_config

SCFG = small_scene_config()
ZOOM = 18


@pytest.mark.parametrize("arch", ["llava", "vision-encoder-decoder", "blip"])
def test_pool_captions_every_tile_once_loading_the_model_once_per_worker(
    arch, tiled, client, tmp_path
):
    _, _, tcfg, before = tiled
    work = fresh_work(tiled, f"work-{arch}")
    model = tiny.BUILDERS[arch](tmp_path / arch)
    ccfg = CaptionConfig(model=model, batch_size=4, max_in_flight=2)
    runs_before = client.run(batches_run)

    (res,) = tile_scenes(work, tcfg, client, captions=ccfg)

    keys = kept_keys(work, res.scene_id)
    assert res.status == "done" and res.captioned == len(keys) == before.kept
    assert not res.uncaptioned
    records = [read_json(Store(work).caption(res.scene_id, k)) for k in keys]
    for rec in records:
        assert set(rec["caption"]) == {"SHORT", "MID", "LONG"} and rec["label"]
        assert rec["reason"] is None and rec["model"] == model
    # each worker that ran caption batches loaded the model exactly once, into the
    # CaptionModels plugin the pool set up on every worker (no module-level model cache)
    assert all(client.run(lambda dask_worker: CaptionModels.name in dask_worker.plugins).values())
    loads = client.run(load_counts)
    runs = {w: n - runs_before[w] for w, n in client.run(batches_run).items()}
    key = f"{model}|auto|auto|auto"
    assert sum(runs.values()) == -(-len(keys) // 4)  # every batch ran once
    assert max(runs.values()) > 1  # a worker reused its model
    for w, n in runs.items():
        assert loads[w].get(key, 0) == (1 if n else 0), (w, n, loads[w])
    # batches are fixed runs of windows (all kept here): the first is the first four keys,
    # and the pool's captions are what the model gives for that batch called directly
    from PIL import Image

    assert len(keys) == len(
        tile_windows(
            res.scene_id, *open_scene_store(scene_store_url(work, res.scene_id)).slc.shape, 128, 64
        )
    )
    images = [
        Image.open(Path(work, "tiles", res.scene_id, f"{k}.optic.png")).convert("RGB")
        for k in keys[:4]
    ]
    want = get_captioner(ccfg).generate(images, ccfg.prompts["MID"])
    got = [r["caption_raw"]["MID"] for r in records[:4]]
    assert got == want


def test_a_resumed_build_captions_only_what_is_missing(tiled, client, tmp_path):
    _, _, tcfg, _ = tiled
    work = fresh_work(tiled, "work-resume")
    model = tiny.build_vision_encoder_decoder(tmp_path / "ved")
    ccfg = CaptionConfig(model=model, batch_size=3)
    (res,) = tile_scenes(work, tcfg, client, captions=ccfg)
    keys = kept_keys(work, res.scene_id)
    paths = {k: Path(Store(work).caption(res.scene_id, k)) for k in keys}
    first = {k: p.read_bytes() for k, p in paths.items()}
    stamps = {k: p.stat().st_mtime_ns for k, p in paths.items()}
    lost = keys[1:3] + keys[-1:]
    for k in lost:
        paths[k].unlink()

    (again,) = tile_scenes(work, tcfg, client, captions=ccfg)

    assert again.captioned == len(keys)
    assert {k: p.read_bytes() for k, p in paths.items()} == first  # same bytes back
    rewritten = {k for k, p in paths.items() if p.stat().st_mtime_ns != stamps[k]}
    assert rewritten == set(lost)


def test_captions_from_the_sar_preview_when_there_is_no_optical(tiled, client, tmp_path):
    _, _, tcfg, _ = tiled
    work = fresh_work(tiled, "work-sar")
    model = tiny.build_vision_encoder_decoder(tmp_path / "ved")
    optical = CaptionConfig(model=model, batch_size=8)
    no_optical = tcfg.model_copy(update={"optical": None})
    import shutil

    shutil.rmtree(Path(work, "tiles"))
    (res,) = tile_scenes(work, no_optical, client, captions=optical)
    assert res.captioned == 0 and len(res.uncaptioned) == res.kept
    assert all("no optical image" in u["reason"] for u in res.uncaptioned)

    sar = CaptionConfig(model=model, batch_size=8, image="sar")
    (res,) = tile_scenes(work, no_optical, client, captions=sar)
    assert res.captioned == res.kept and not res.uncaptioned


def test_a_worker_killed_mid_run_still_yields_every_caption_once(tiled, tmp_path, fault_table):
    from distributed import Client, LocalCluster

    _, _, tcfg, _ = tiled
    work = fresh_work(tiled, "work-kill")
    model = tiny.build_llava(tmp_path / "llava", hidden=32, layers=2)
    ccfg = CaptionConfig(model=model, batch_size=1, max_in_flight=2)
    scene_id = tiled[3].scene_id
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        out: list = []
        thread = threading.Thread(
            target=lambda: out.append(tile_scenes(work, tcfg, client, captions=ccfg))
        )
        thread.start()
        folder = Path(work, "captions", scene_id)
        deadline = time.monotonic() + 120
        while not (folder.exists() and any(folder.glob("*.json"))):
            assert time.monotonic() < deadline, "no caption appeared"
            time.sleep(0.05)
        pids = client.run(os.getpid)
        victim = sorted(pids)[0]
        assert thread.is_alive()  # the fault hits a running build
        os.kill(pids[victim], signal.SIGKILL)
        thread.join(timeout=300)
        assert not thread.is_alive()
        alive = set(client.run(os.getpid).values())
    (res,) = out[0]
    keys = kept_keys(work, scene_id)
    written = sorted(p.stem for p in folder.glob("*.json"))
    fault_table(
        "worker SIGKILLed in captions",
        "every caption once",
        f"worker died: {pids[victim] not in alive}; {res.status}, "
        f"{res.captioned}/{len(keys)} captioned",
        len(set(keys) - set(written)),
    )
    assert pids[victim] not in alive  # the victim died and was replaced
    assert res.status == "done", res.errors
    assert res.captioned == len(keys) and not res.uncaptioned
    assert sorted(p.stem for p in folder.glob("*.json")) == keys
    assert not list(folder.glob("*partial*"))


def test_llm_rewrite_pass_then_cleanup(tiled, tmp_path):
    """With a rewrite model, captions are clean(rewrite(raw)); raw captions are kept."""
    from sarlo_dask.captions import clean
    from sarlo_dask.captions.backend import get_rewriter
    from sarlo_dask.stages.caption_stage import caption_batch

    work = fresh_work(tiled, "work-rewrite")
    scene_id = tiled[3].scene_id
    keys = kept_keys(work, scene_id)[:2]
    cfg = CaptionConfig(
        model=tiny.build_blip(tmp_path / "blip"),
        rewrite_model=tiny.build_text_model(tmp_path / "gpt2"),
        rewrite_max_new_tokens=12,
    )
    out = caption_batch(Store(work), scene_id, keys, cfg)
    assert [o["captioned"] for o in out] == [True, True]
    rewriter = get_rewriter(cfg)
    for key in keys:
        rec = read_json(Store(work).caption(scene_id, key))
        for kind in ("SHORT", "MID", "LONG"):
            (again,) = rewriter.rewrite(
                [rec["caption_raw"][kind]], cfg.rewrite_instruction, cfg.rewrite_max_new_tokens
            )
            assert rec["caption"][kind] == clean(again)
