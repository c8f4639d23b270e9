"""A scene larger than a worker's memory: refused with the reason before any worker reads it,
while the other scenes of the build go through on the same small workers."""

from __future__ import annotations

import os

import numpy as np

from sarlo_dask.config import StandardizeConfig
from sarlo_dask.pipeline import standardize_scenes
from sarlo_dask.sim.scene import SimulationSpec
from sarlo_dask.sim.sicd import build_sicd


def _large_scene(path, n: int) -> int:
    """An n x n RE32F_IM32F SICD of noise written by sarpy in bands; its pixel bytes."""
    from sarpy.io.complex.sicd import SICDWriter

    sicd = build_sicd(SimulationSpec(rows=n, cols=n, row_spacing=0.3, col_spacing=0.3))
    rng = np.random.default_rng(0)
    with SICDWriter(str(path), sicd, check_existence=False) as writer:
        for r0 in range(0, n, 1024):
            shape = (min(1024, n - r0), n)
            band = rng.standard_normal(shape, np.float32) + 1j * rng.standard_normal(
                shape, np.float32
            )
            writer.write_chip(band.astype(np.complex64), start_indices=(r0, 0))
    return n * n * 8


def test_a_scene_larger_than_worker_memory_streams_through_and_a_block_too_large_is_refused(
    scenes, tmp_path, fault_table
):
    """Workers of 700 MB standardize a 411 MB scene: blocks of range lines are read one by
    one (never the whole file), and no worker is killed for memory. A block that cannot fit
    (chunk_range as large as the scene) is refused with the reason before any read."""
    from distributed import Client, LocalCluster

    big = tmp_path / "large.nitf"
    size = _large_scene(big, 7168)
    cfg = StandardizeConfig(min_size=64, chunk_azimuth=256, chunk_range=256, store_chunk=512)
    huge = cfg.model_copy(update={"chunk_range": 7168})
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, memory_limit="700MB", dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        before = client.run(os.getpid)
        (refused,) = standardize_scenes([str(big)], str(tmp_path / "w1"), huge, client)
        large, small = standardize_scenes(
            [str(big), str(scenes["coarse"])], str(tmp_path / "work"), cfg, client
        )
        after = client.run(os.getpid)
    fault_table(
        f"scene of {size / 1e6:.0f} MB, workers of 700 MB",
        "streams through; a block too large is refused",
        f"{large.status}; chunk_range 7168: {refused.status}: {refused.reason}",
        0,
    )
    assert size > 700e6 / 2
    assert large.status == "done", large.reason
    assert small.status == "done"
    assert refused.status == "failed" and "does not fit workers" in refused.reason
    assert "700.0 MB of memory per thread" in refused.reason and "chunk_range" in refused.reason
    assert not (tmp_path / "w1" / "scenes" / "large.zarr" / "slc").exists()  # nothing read
    assert before == after  # no worker was killed for memory


def test_memory_check_counts_the_resampled_output_and_refuses_before_submitting(
    tmp_path, fault_table
):
    """A 1.9 m scene upsampled to 0.8 m: its input blocks pass the earlier check (4 copies
    of the input block in half the memory), its resampled output does not fit. It is refused
    with the numbers, needed and available, and nothing of it reaches the cluster."""
    import dask
    from distributed import Client, LocalCluster

    from sarlo_dask.geometry.sicd import read_sicd_meta
    from sarlo_dask.sim.scene import simulate_scene
    from sarlo_dask.stages.standardize import task_peaks

    path = tmp_path / "coarse19.nitf"
    simulate_scene(path, SimulationSpec(rows=640, cols=640, row_spacing=1.9, col_spacing=1.9))
    cfg = StandardizeConfig(  # selected by its 1.9 m spacing (its resolution is 2.8 m)
        min_size=64, chunk_azimuth=512, chunk_range=512, store_chunk=128, select_by="spacing"
    )
    old_need = max(512 * 640, 512 * 640) * 8 * 4  # the earlier rule, on the input's size
    need = max(p[0] for p in task_peaks(read_sicd_meta(str(path)), cfg).values())
    limit = 40_000_000
    assert old_need <= limit / 2 < need  # the earlier check let it through
    # the memory limit is only read by the check: the worker's own memory manager is off
    off = {f"distributed.worker.memory.{k}": False for k in ("target", "spill", "pause")}
    with (
        dask.config.set({**off, "distributed.worker.memory.terminate": False}),
        LocalCluster(
            n_workers=1, threads_per_worker=1, memory_limit=limit, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        (res,) = standardize_scenes([str(path)], str(tmp_path / "work"), cfg, client)
        prefixes = client.run_on_scheduler(
            lambda dask_scheduler: list(dask_scheduler.task_prefixes)
        )
    fault_table(
        "scene upsampled 1.9 -> 0.8 m, its input passes the old check",
        "refused with the numbers, nothing submitted",
        f"{res.status}: {res.reason[:90]}...",
        0,
    )
    assert res.status == "failed", res
    assert f"{need / 1e6:.1f} MB" in res.reason and f"{limit / 2e6:.1f} MB" in res.reason
    assert "640 -> 1520 samples" in res.reason and "40.0 MB of memory per thread" in res.reason
    assert not (tmp_path / "work" / "scenes" / "coarse19.zarr").exists()
    assert prefixes and all(p.startswith("plan") for p in prefixes), prefixes  # no read, no write
