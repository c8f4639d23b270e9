"""The GPU side: moving blocks to and from a CUDA device, and bounding what CuPy keeps there.

The math modules take NumPy or CuPy arrays alike (`array_module`); this module is
where blocks cross over, and where CuPy's caches get their limits: cuFFT plans (CuPy keeps a
cache per thread and device, 16 plans of any size by default) and its memory pool (which
otherwise keeps every block it ever freed). Nothing here runs without CuPy.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import numpy as np


def array_module(x: Any) -> Any:
    """numpy or cupy, from the array itself (one code path for CPU and GPU blocks)."""
    mod = type(x).__module__.split(".")[0]
    if mod == "cupy":
        import cupy

        return cupy
    return np


FFT_PLANS = 8
"""cuFFT plans kept per thread and device: a scene's passes use a few sizes"""
FFT_PLAN_BYTES = 1 << 30
"""bytes of cuFFT work areas those plans may hold"""
POOL_FRACTION = 0.5
"""of the device's memory, the limit of CuPy's own pool (where no RMM pool bounds it)"""

_bounded = threading.local()


def _cupy() -> Any:
    """The cupy module, where it imports and sees a CUDA device; else a RuntimeError."""
    try:
        import cupy

        cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        raise RuntimeError(
            "device 'cuda' needs CuPy and a CUDA device on every worker "
            f"(pip install 'sarlo-dask[gpu]'): {type(exc).__name__}: {exc}"
        ) from None
    return cupy


@functools.cache
def gpu_count() -> int:
    """CUDA devices this process can use (0 without CuPy, a driver or a device)."""
    try:
        return int(_cupy().cuda.runtime.getDeviceCount())
    except RuntimeError:
        return 0


def _rmm_pool() -> bool:
    """dask-cuda made an RMM pool in this worker (--rmm-pool-size)."""
    try:
        import rmm

        return bool(rmm.is_initialized())
    except Exception:
        return False


def bound_caches() -> None:
    """Limit this thread's cuFFT plan cache, and CuPy's memory: allocated from dask-cuda's
    RMM pool where the worker has one, else from CuPy's pool with a limit (once per thread)."""
    if getattr(_bounded, "done", False):
        return
    cupy = _cupy()
    cupy.fft.config.set_plan_cache_size(FFT_PLANS)
    cupy.fft.config.set_plan_cache_max_memsize(FFT_PLAN_BYTES)
    if _rmm_pool():
        from rmm.allocators.cupy import rmm_cupy_allocator

        cupy.cuda.set_allocator(rmm_cupy_allocator)
    else:
        cupy.get_default_memory_pool().set_limit(fraction=POOL_FRACTION)
    _bounded.done = True


def to_device(block: Any) -> Any:
    """A NumPy block on this worker's GPU (a CuPy array)."""
    cupy = _cupy()
    bound_caches()
    return cupy.asarray(block)


def to_host(block: Any) -> Any:
    """A CuPy block back in host memory (NumPy blocks pass through)."""
    return block if array_module(block) is np else block.get()


def device_meta(dtype: Any) -> Any:
    """An empty 2-D CuPy array of `dtype`: Dask's `meta` for a graph of GPU blocks."""
    return _cupy().empty((0, 0), dtype=dtype)
