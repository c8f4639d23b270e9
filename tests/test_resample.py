"""resample.py against brute force: the band-limited periodic interpolant evaluated directly."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.polynomial import polynomial

from sarlo_dask.geometry.resample import off_axis_poly, plan_axis, resample_axis, skew_phase


def brute_force(
    x: np.ndarray, ss_in: float, first_in: float, pos_out: np.ndarray, half_band: float
) -> np.ndarray:
    """sum over DFT bins with |f| < half_band (input Nyquist split in two) at arbitrary points."""
    n = x.size
    spec = np.fft.fft(x)
    f = np.fft.fftfreq(n, d=ss_in)
    t = (pos_out - first_in)[:, None]
    weight = (np.abs(f) < half_band - 1e-12).astype(float)
    terms = np.exp(2j * np.pi * f[None, :] * t) * weight
    if n % 2 == 0 and half_band > 0.5 / ss_in:
        ny = n // 2  # fftfreq lists the Nyquist bin once, at -n/2
        terms[:, ny] = np.cos(2 * np.pi * (0.5 / ss_in) * t[:, 0])
    return (terms @ spec) / n


@settings(max_examples=40, deadline=None)
@given(
    n_in=st.integers(8, 96),
    ss_in=st.floats(0.2, 2.0),
    target=st.floats(0.3, 1.5),
    first_pixel=st.integers(0, 40),
    scp=st.integers(-20, 120),
    seed=st.integers(0, 2**16),
)
def test_resample_axis_equals_brute_force(n_in, ss_in, target, first_pixel, scp, seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(n_in) + 1j * rng.standard_normal(n_in)).astype(np.complex64)
    plan = plan_axis(n_in, ss_in, first_pixel, scp, target)
    got = resample_axis(x[None, :], plan, axis=1)[0]
    half = 0.5 / plan.ss_out if plan.n_out < n_in else 0.5 / ss_in + 1e-9
    if plan.n_out == n_in:
        half = 0.5 / ss_in
    want = brute_force(x.astype(complex), ss_in, plan.first_in, plan.positions_out(), half)
    np.testing.assert_allclose(got, want, atol=2e-5 * np.abs(x).max() * np.sqrt(n_in))


@given(
    n_in=st.integers(1, 10_000),
    ss_in=st.floats(0.1, 5.0),
    first=st.integers(-50, 50),
    scp=st.integers(-5000, 5000),
    target=st.floats(0.2, 3.0),
)
def test_plan_puts_scp_on_an_integer_pixel(n_in, ss_in, first, scp, target):
    plan = plan_axis(n_in, ss_in, first, scp, target)
    assert plan.n_out * plan.ss_out == np.float64(n_in * ss_in) or np.isclose(
        plan.n_out * plan.ss_out, n_in * ss_in
    )
    assert np.isclose(plan.first_out + plan.scp_out * plan.ss_out, 0.0, atol=1e-9 * ss_in * n_in)
    assert abs(plan.shift) <= plan.ss_out / 2 + 1e-9


def test_resample_runs_along_axis_0_and_1_alike():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((40, 64)) + 1j * rng.standard_normal((40, 64))).astype(np.complex64)
    plan = plan_axis(64, 0.3, 0, 31, 0.8)
    a = resample_axis(x, plan, axis=1)
    b = resample_axis(x.T.copy(), plan, axis=0).T
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert a.dtype == np.complex64 and a.shape == (40, plan.n_out)


def test_skew_phase_deskews_a_chirp():
    """A line whose local frequency follows a DeltaKCOA poly is centred by the deskew phase."""
    poly = np.array([[0.2, 1e-3]])  # cycles/m, constant + linear along the column axis
    x = np.arange(-256, 256) * 0.3
    sgn = -1
    skewed = np.exp(-1j * sgn * 2 * np.pi * polynomial.polyval(x, polynomial.polyint(poly[0])))
    phase = skew_phase(poly, 1, x, np.array([0.0]), sgn)
    np.testing.assert_allclose((skewed[None, :] * phase)[0], 1.0, atol=1e-4)
    assert skew_phase(np.zeros((1, 1)), 1, x, x, sgn) is None


def test_off_axis_poly_is_the_cross_derivative():
    p_col = np.array([[0.1, 2e-4], [3e-4, 0.0]])  # 0.1 + 2e-4 y + 3e-4 x
    p_row = off_axis_poly(p_col, np.zeros((1, 1)), 1, -1, -1)
    # deskew phase integral along y: 0.1 y + 1e-4 y^2 + 3e-4 x y; d/dx = 3e-4 y
    x, y = 12.0, -40.0
    assert np.isclose(polynomial.polyval2d(x, y, p_row), -3e-4 * y)


@pytest.mark.parametrize(
    ("n_in", "n_out", "skewed"),
    [(4096, 2048, False), (2048, 4096, False), (4096, 2048, True), (2048, 5120, True)],
)
def test_working_set_bounds_a_resampling_tasks_peak(n_in, n_out, skewed):
    """resample.working_set, what the memory check counts, against the peak numpy
    allocations (tracemalloc) of the task the workers run, its input block included:
    a bound (with the task's fixed overhead), and a tight one (within 30 %)."""
    import gc
    import tracemalloc

    from sarlo_dask.geometry.resample import plan_axis, working_set
    from sarlo_dask.stages.standardize import TASK_OVERHEAD, _resample_lines

    lines = 64
    plan = plan_axis(n_in, 0.8 * n_out / n_in, 0, n_in // 2, 0.8)
    assert (plan.n_in, plan.n_out) == (n_in, n_out)
    poly = np.array([[0.0, 0.02], [1e-4, 0.0]]) if skewed else np.zeros((1, 1))
    rng = np.random.default_rng(0)
    block = (rng.standard_normal((lines, n_in)) + 1j).astype(np.complex64)
    positions = np.arange(lines) * 0.8
    _resample_lines(block, positions, plan, poly, 1, 1)  # imports and caches: not the task's
    gc.collect()
    tracemalloc.start()
    try:
        block = block.copy()  # traced: the task holds its input
        out = _resample_lines(block, positions, plan, poly, 1, 1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.shape == (lines, n_out)
    estimate = working_set(lines, n_in, n_out, skewed)
    # the arrays are counted to the byte; a few Python objects (KBs) are TASK_OVERHEAD's,
    # and tracemalloc also counts what the suite's other threads (its cluster's comms, the
    # loopback servers) allocate meanwhile: up to ~280 KB seen, hence 1 MiB of slack (an
    # eighth of the overhead the memory check adds to every task)
    assert peak <= estimate + 2**20 and 2**20 <= TASK_OVERHEAD / 8, (peak, estimate)
    assert estimate <= 1.3 * peak, (peak, estimate)
