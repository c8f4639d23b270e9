"""The CuPy path: the same functions on GPU blocks equal the CPU within float32 tolerance.

Skipped where CuPy or a CUDA device is missing (CI has none); run on a GPU machine.
"""

from __future__ import annotations

import numpy as np
import pytest

cupy = pytest.importorskip("cupy")
try:
    cupy.cuda.runtime.getDeviceCount()
except Exception:  # no driver or no device
    pytest.skip("no CUDA device", allow_module_level=True)

import dask  # noqa: E402

from sarlo_dask.config import StandardizeConfig  # noqa: E402
from sarlo_dask.geometry.resample import plan_axis, resample_axis, skew_phase  # noqa: E402
from sarlo_dask.geometry.sicd import open_sicd  # noqa: E402
from sarlo_dask.stages.standardize import standardize_scene  # noqa: E402

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("target", [0.8, 0.3])
def test_resample_axis_cupy_equals_numpy(target):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((64, 1000)) + 1j * rng.standard_normal((64, 1000))).astype("c8")
    plan = plan_axis(1000, 0.45, 3, 511, target)
    phase = skew_phase(np.array([[0.1, 2e-4]]), 1, plan.positions_in(), np.arange(64.0), -1)
    cpu = resample_axis(x, plan, axis=1, phase=phase.T)
    gpu = resample_axis(cupy.asarray(x), plan, axis=1, phase=cupy.asarray(phase.T))
    assert isinstance(gpu, cupy.ndarray)
    np.testing.assert_allclose(cupy.asnumpy(gpu), cpu, atol=1e-4 * np.abs(cpu).max())


def test_standardize_graph_runs_on_cupy_blocks(scenes):
    scene = open_sicd(str(scenes["fine_skew"]), 256)
    cfg = StandardizeConfig(min_size=64, chunk_range=256, store_chunk=128)
    with dask.config.set(scheduler="threads"):
        cpu = standardize_scene(scene, cfg).slc.values
        scene_gpu = scene.copy()
        scene_gpu["slc"] = scene.slc.copy(data=scene.slc.data.map_blocks(cupy.asarray))
        gpu = standardize_scene(scene_gpu, cfg).slc.data.compute()
    assert isinstance(gpu, cupy.ndarray)
    np.testing.assert_allclose(cupy.asnumpy(gpu), cpu, atol=1e-4 * np.abs(cpu).max())


def test_warp_cupy_equals_numpy():
    from sarlo_dask.optical.warp import rgba, warp_bilinear

    rng = np.random.default_rng(2)
    img = rgba(rng.integers(0, 256, (700, 900, 3), dtype=np.uint8), np.ones((700, 900), bool))
    a = np.array([[0.3, 3.9, 10.2], [4.1, 0.25, 20.7]])
    cpu, ok_cpu = warp_bilinear(img, a, 160)
    gpu, ok_gpu = warp_bilinear(cupy.asarray(img), a, 160)
    assert np.array_equal(cupy.asnumpy(ok_gpu), ok_cpu)
    assert np.abs(cupy.asnumpy(gpu).astype(int) - cpu.astype(int)).max() <= 1


def test_mesh_warp_cupy_equals_numpy():
    """The mesh's coordinates go through the same code on the GPU (one band per cell row)."""
    from sarlo_dask.optical.mesh import grid_points, mesh_from_points
    from sarlo_dask.optical.warp import apply_affine, rgba, warp_bilinear

    rng = np.random.default_rng(3)
    img = rgba(rng.integers(0, 256, (700, 900, 3), dtype=np.uint8), np.ones((700, 900), bool))
    a = np.array([[0.3, 3.9, 10.2], [4.1, 0.25, 20.7]])
    for n in (3, 9, 33):
        sar = grid_points(160, n)
        mesh = mesh_from_points(sar, apply_affine(a, sar) + rng.normal(0, 2, sar.shape), 160)
        cpu, ok_cpu = warp_bilinear(img, mesh, 160)
        gpu, ok_gpu = warp_bilinear(cupy.asarray(img), mesh, 160)
        assert np.array_equal(cupy.asnumpy(ok_gpu), ok_cpu)
        assert np.abs(cupy.asnumpy(gpu).astype(int) - cpu.astype(int)).max() <= 1


def test_device_cuda_scene_equals_cpu_and_bounds_cupy_caches(scenes):
    """The pipeline's own switch: device 'cuda' moves the read blocks to the GPU and the
    result back to host blocks for the store; the FFT thread's plan cache is bounded."""
    from sarlo_dask.geometry.gpu import FFT_PLAN_BYTES, FFT_PLANS

    scene = open_sicd(str(scenes["fine_skew"]), 256)
    base = dict(min_size=64, chunk_range=256, store_chunk=128)
    with dask.config.set(scheduler="sync"):  # this thread runs the FFTs
        cpu = standardize_scene(scene, StandardizeConfig(device="cpu", **base))
        gpu = standardize_scene(scene, StandardizeConfig(device="cuda", **base))
        assert gpu.attrs["provenance"] == cpu.attrs["provenance"]  # execution: not recorded
        host = gpu.slc.data.compute()
    assert isinstance(host, np.ndarray)
    ref = cpu.slc.values
    np.testing.assert_allclose(host, ref, atol=1e-4 * np.abs(ref).max())
    assert cupy.fft.config.get_plan_cache_size() == FFT_PLANS
    assert cupy.fft.config.get_plan_cache_max_memsize() == FFT_PLAN_BYTES
