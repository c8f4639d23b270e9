"""Damaged checkpoints in {work}: each damage is injected into a real build's files, checked
to be there, and a re-run finds it where the unit is reused, says one DAMAGED line, rebuilds
the unit from its input and releases the bytes of a clean build (the reference build)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from sarlo_dask.pipeline import build_dataset

from ..helpers import build_configs, tree

SCENE = "fine"


def _work_copy(release_setup, tmp_path) -> Path:
    work = tmp_path / "work"
    shutil.copytree(release_setup[0] / "work", work)
    return work


def _rerun(release_setup, client, work: Path, out: Path):
    _, urls, config = release_setup
    lines: list[str] = []
    result = build_dataset(
        urls, str(work), str(out), build_configs(config), client, say=lines.append
    )
    return result, lines


def _damaged_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("DAMAGED ")]


def _drop_tiles(work: Path, scene: str) -> None:
    """{work} as a build killed after its scene stage left it: no tiles nor captions."""
    shutil.rmtree(work / "tiles" / scene)
    (work / "tiles" / f"{scene}.done.json").unlink()
    shutil.rmtree(work / "captions" / scene)


def _middle_chunk(work: Path, scene: str) -> Path:
    chunks = sorted((work / "scenes" / f"{scene}.zarr" / "slc" / "c").rglob("*"))
    chunks = [c for c in chunks if c.is_file()]
    return chunks[len(chunks) // 2]


def _store_attrs(work: Path, scene: str) -> dict:
    import xarray as xr

    return dict(xr.open_zarr(work / "scenes" / f"{scene}.zarr", zarr_format=3).attrs)


def _slc(work: Path, scene: str) -> np.ndarray:
    import xarray as xr

    return xr.open_zarr(work / "scenes" / f"{scene}.zarr", zarr_format=3).slc.values


def _delete_chunk(work: Path, ref: Path) -> str:
    chunk = _middle_chunk(work, SCENE)
    chunk.unlink()
    assert not np.array_equal(_slc(work, SCENE), _slc(ref, SCENE))  # it reads as zeros now
    return f"scenes/{SCENE}.zarr/slc/c/{chunk.parent.name}/{chunk.name}: missing"


def _flip_chunk(work: Path, ref: Path) -> str:
    chunk = _middle_chunk(work, SCENE)
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    assert chunk.read_bytes() != (ref / chunk.relative_to(work)).read_bytes()
    return f"scenes/{SCENE}.zarr/slc/c/{chunk.parent.name}/{chunk.name}: sha256 differs"


def _truncate_chunk(work: Path, ref: Path) -> str:
    chunk = _middle_chunk(work, SCENE)
    size = chunk.stat().st_size
    os.truncate(chunk, size // 2)
    assert chunk.stat().st_size == size // 2
    with pytest.raises(Exception):  # noqa: B017 (zstd's own error: a truncated frame)
        _slc(work, SCENE)
    return f"scenes/{SCENE}.zarr/slc/c/{chunk.parent.name}/{chunk.name}: sha256 differs"


def _edit_pass_id(work: Path, ref: Path) -> str:
    header = work / "scenes" / f"{SCENE}.zarr" / "zarr.json"
    old = _store_attrs(work, SCENE)["pass_id"]
    header.write_text(header.read_text().replace(old, "pass-that-never-was"))
    assert _store_attrs(work, SCENE)["pass_id"] == "pass-that-never-was"
    return f"scenes/{SCENE}.zarr/zarr.json: sha256 differs"


def _break_header(work: Path, ref: Path) -> str:
    header = work / "scenes" / f"{SCENE}.zarr" / "zarr.json"
    header.write_bytes(header.read_bytes()[:100])
    with pytest.raises(Exception):  # noqa: B017 (the store does not open at all)
        _store_attrs(work, SCENE)
    return f"scenes/{SCENE}.zarr/zarr.json: sha256 differs"


STORE_DAMAGE = {  # kind -> (injection, whether the scene's tiles are gone too)
    "a_deleted_chunk": (_delete_chunk, True),
    "b_flipped_chunk": (_flip_chunk, True),
    "c_edited_pass_id": (_edit_pass_id, False),
    "f_truncated_chunk": (_truncate_chunk, True),
    "g_broken_header": (_break_header, False),
}


@pytest.mark.parametrize("kind", sorted(STORE_DAMAGE))
def test_a_damaged_store_is_rebuilt_from_its_sicd(
    kind, release_setup, release_built, client, tmp_path, fault_table
):
    ref_out, _ = release_built
    ref_work = release_setup[0] / "work"
    work = _work_copy(release_setup, tmp_path)
    inject, tiles_gone = STORE_DAMAGE[kind]
    if tiles_gone:  # the tiles are cut from the store again: its chunks are read
        _drop_tiles(work, SCENE)
    expected = inject(work, ref_work)
    result, lines = _rerun(release_setup, client, work, tmp_path / "out")
    damaged = _damaged_lines(lines)
    got = tree(tmp_path / "out")
    fault_table(
        f"store damage {kind}",
        "DAMAGED line, store rebuilt, same bytes",
        f"{damaged}; exit {result.exit_code()}, identical: {got == tree(ref_out)}",
        0,
    )
    assert len(damaged) == 1, lines
    path, why = expected.split(": ")
    assert damaged[0].startswith(f"DAMAGED {path}: {why}"), damaged
    assert damaged[0].endswith(f"; rebuilding scene {SCENE}")
    assert result.exit_code() == 0, result.failures()
    assert got == tree(ref_out)
    # the store itself is whole again: the bytes a clean build wrote
    store = Path("scenes", f"{SCENE}.zarr")
    assert tree(work / store) == tree(ref_work / store)
    marker = json.loads((work / "scenes" / f"{SCENE}.done.json").read_text())
    assert (
        marker["digests"]
        == json.loads((ref_work / "scenes" / f"{SCENE}.done.json").read_text())["digests"]
    )


def _tile_key(work: Path) -> str:
    marker = json.loads((work / "tiles" / f"{SCENE}.done.json").read_text())
    return sorted(marker["tiles"])[len(marker["tiles"]) // 2]


def test_d_a_flipped_byte_in_a_work_tile_is_found_when_packed_and_the_tile_remade(
    release_setup, release_built, client, tmp_path
):
    ref_out, _ = release_built
    work = _work_copy(release_setup, tmp_path)
    key = _tile_key(work)
    npy = work / "tiles" / SCENE / f"{key}.sar.npy"
    before = np.load(npy)
    data = bytearray(npy.read_bytes())
    data[-3] ^= 0x40
    npy.write_bytes(bytes(data))
    assert not np.array_equal(np.load(npy), before)  # a pixel really changed
    result, lines = _rerun(release_setup, client, work, tmp_path / "out")
    damaged = _damaged_lines(lines)
    assert damaged == [
        f"DAMAGED tiles/{SCENE}/{key}.sar.npy: sha256 differs from its meta.json's; "
        f"rebuilding tile {SCENE}/{key}"
    ], lines
    assert result.exit_code() == 0, result.failures()
    assert tree(tmp_path / "out") == tree(ref_out)
    assert np.array_equal(np.load(npy), before)


def test_e_a_deleted_tile_meta_json_is_found_and_the_tile_remade(
    release_setup, release_built, client, tmp_path
):
    ref_out, _ = release_built
    work = _work_copy(release_setup, tmp_path)
    key = _tile_key(work)
    meta = work / "tiles" / SCENE / f"{key}.meta.json"
    meta.unlink()
    assert not meta.exists()
    result, lines = _rerun(release_setup, client, work, tmp_path / "out")
    damaged = _damaged_lines(lines)
    assert damaged == [
        f"DAMAGED tiles/{SCENE}/{key}.meta.json: missing; rebuilding tile {SCENE}/{key}"
    ], lines
    assert result.exit_code() == 0, result.failures()
    assert not result.failures()
    assert tree(tmp_path / "out") == tree(ref_out)


def test_a_damaged_store_whose_tiles_are_gone_is_rebuilt_before_they_are_cut(
    release_setup, release_built, client, tmp_path
):
    """A complete build whose scene lost its tiles (and captions), its store damaged too:
    the store is rebuilt from the SICD first, the tiles cut again from it; the release,
    whose shards are all committed, is left exactly as it was."""
    ref_out, _ = release_built
    ref_work = release_setup[0] / "work"
    work = _work_copy(release_setup, tmp_path)
    out = tmp_path / "out"
    shutil.copytree(ref_out, out)
    _drop_tiles(work, SCENE)
    expected = _flip_chunk(work, ref_work)
    result, lines = _rerun(release_setup, client, work, out)
    damaged = _damaged_lines(lines)
    assert len(damaged) == 1 and damaged[0].startswith(f"DAMAGED {expected}"), lines
    assert result.exit_code() == 0, result.failures()
    assert tree(out) == tree(ref_out)
    assert tree(work / "tiles" / SCENE) == tree(ref_work / "tiles" / SCENE)
    assert tree(work / "captions" / SCENE) == tree(ref_work / "captions" / SCENE)


def test_a_damaged_caption_record_is_captioned_again(
    release_setup, release_built, client, tmp_path
):
    ref_out, _ = release_built
    work = _work_copy(release_setup, tmp_path)
    key = _tile_key(work)
    record = work / "captions" / SCENE / f"{key}.json"
    rec = json.loads(record.read_text())
    assert rec["caption"] is not None
    rec["caption"]["MID"] = "An edited caption."
    record.write_text(json.dumps(rec))
    result, lines = _rerun(release_setup, client, work, tmp_path / "out")
    damaged = _damaged_lines(lines)
    assert damaged == [
        f"DAMAGED captions/{SCENE}/{key}.json: sha256 differs from the one it records; "
        f"rebuilding caption {SCENE}/{key}"
    ], lines
    assert result.exit_code() == 0, result.failures()
    assert tree(tmp_path / "out") == tree(ref_out)


def test_damage_whose_input_is_unreadable_fails_the_scene_with_its_reason(
    scenes, release_setup, client, tmp_path
):
    """The store is damaged and the SICD it would be rebuilt from is damaged too (same size
    and time: nothing tells a changed input): the scene fails with the SICD's reason."""
    _, _, config = release_setup
    url = tmp_path / "in" / "coarse.nitf"
    url.parent.mkdir()
    shutil.copy2(scenes["coarse"], url)
    shutil.copy2(f"{scenes['coarse']}.truth.json", f"{url}.truth.json")
    work, out = tmp_path / "work", tmp_path / "out"
    cfgs = build_configs(config)
    first = build_dataset([str(url)], str(work), str(out), cfgs, client)
    assert first.scenes[0].status == "done"
    _drop_tiles(work, "coarse")
    chunk = _middle_chunk(work, "coarse")
    chunk.write_bytes(chunk.read_bytes()[::-1])
    stat = url.stat()
    with open(url, "r+b") as f:  # the NITF header's magic: not a NITF any more
        f.write(b"XXXX")
    os.utime(url, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert url.read_bytes()[:4] == b"XXXX"
    lines: list[str] = []
    again = build_dataset([str(url)], str(work), str(out), cfgs, client, say=lines.append)
    damaged = _damaged_lines(lines)
    assert len(damaged) == 1 and damaged[0].endswith("; rebuilding scene coarse"), lines
    (scene,) = again.scenes
    assert scene.status == "failed" and scene.reason, scene
    assert again.exit_code() != 0
    rows = [json.loads(r) for r in (work / "failures.jsonl").read_text().splitlines()]
    assert any(r["id"] == "coarse" and r["kind"] == "scene" for r in rows), rows


def test_a_damaged_cached_xyz_tile_is_fetched_again(tmp_path, caplog):
    """The XYZ cache: a tile whose bytes no longer match the digest recorded beside it is
    said once and fetched again (the server sees the request), never warped from."""
    from sarlo_dask.optical.sources import HTTPTiles

    from ..tileserver import TileServer

    srv = TileServer([])
    try:
        cache = tmp_path / "work" / "xyz-cache"
        source = HTTPTiles(srv.url, zoom=18, cache_dir=str(cache), retries=0)
        tiles = [(18, 100, 200), (18, 100, 201)]
        first = source.fetch(tiles)
        assert srv.requests == 2
        cached = next(p for p in cache.rglob("200") if p.is_file())
        damaged = bytearray(cached.read_bytes())
        damaged[len(damaged) // 2] ^= 0xFF
        cached.write_bytes(bytes(damaged))
        assert cached.read_bytes() != first[tiles[0]]
        with caplog.at_level("WARNING", logger="sarlo_dask"):
            again = source.fetch(tiles)
        assert srv.requests == 3  # the damaged one only, fetched again
        assert again == first
        assert cached.read_bytes() == first[tiles[0]]
        rel = cached.relative_to(cache.parent)
        assert [r.getMessage() for r in caplog.records] == [
            f"DAMAGED {rel}: sha256 differs from the one recorded at commit; "
            "rebuilding cached XYZ tile 18/100/200"
        ]
    finally:
        srv.close()


def test_a_damaged_image_is_not_captioned_but_its_tile_remade_first(
    release_setup, release_built, client, tmp_path
):
    """A tile whose caption record is gone (a build killed in its caption stage) and whose
    image for the caption model is damaged: the model never sees the damaged image."""
    from sarlo_dask.config import CaptionConfig

    ref_out, _ = release_built
    work = _work_copy(release_setup, tmp_path)
    key = _tile_key(work)
    (work / "captions" / SCENE / f"{key}.json").unlink()
    meta = json.loads((work / "tiles" / SCENE / f"{key}.meta.json").read_text())
    image = CaptionConfig().image
    member = "optic.png" if image == "optical" else f"sar.{meta['preview']['format']}"
    path = work / "tiles" / SCENE / f"{key}.{member}"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert path.read_bytes() != (release_setup[0] / "work" / path.relative_to(work)).read_bytes()
    result, lines = _rerun(release_setup, client, work, tmp_path / "out")
    assert _damaged_lines(lines) == [
        f"DAMAGED tiles/{SCENE}/{key}.{member}: sha256 differs from its meta.json's; "
        f"rebuilding tile {SCENE}/{key}"
    ], lines
    assert result.exit_code() == 0, result.failures()
    assert tree(tmp_path / "out") == tree(ref_out)


def test_e_without_captions_a_complete_scene_with_a_meta_json_gone_is_cut_again(
    tiled, client, tmp_path
):
    """Without a caption model a complete scene's tile plan is skipped on its marker: the
    marker's kept tiles are checked against one listing first."""
    from sarlo_dask.pipeline import tile_scenes

    _, work, cfg, _ = tiled
    copy = tmp_path / "work"
    shutil.copytree(work, copy)
    marker = json.loads((copy / "tiles" / f"{SCENE}.done.json").read_text())
    key = sorted(marker["tiles"])[0]
    meta = copy / "tiles" / SCENE / f"{key}.meta.json"
    meta.unlink()
    assert not meta.exists()
    (res,) = tile_scenes(str(copy), cfg, client, scene_ids=[SCENE])
    assert [d.line() for d in res.damaged] == [
        f"DAMAGED tiles/{SCENE}/{key}.meta.json: missing; rebuilding tile {SCENE}/{key}"
    ]
    assert res.status == "done" and res.kept == len(marker["tiles"])
    assert tree(copy / "tiles") == tree(Path(work) / "tiles")
