"""Band-limited resampling of complex SAR along one axis: pure array math, NumPy or CuPy.

One pass along an axis: deskew (multiply by the phase that centres that axis's spectrum),
FFT, crop or zero-pad the centred spectrum to the new band, shift by a sub-sample offset so
the SCP lands on an integer output pixel, inverse FFT. Two passes (range, then azimuth, a
rechunk between) make the 2-D resampling: the band-limited crop is separable.

Positions are metres from the SCP along the SICD grid direction, as in the SICD standard:
input sample j sits at ``first + j * ss``. The DFT treats a line as periodic with period
``n * ss``; the output keeps that period, so its spacing is ``n_in * ss_in / n_out``, the
effective spacing closest to the target (the dataset's ``spacing_eff_*`` fields).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.polynomial import polynomial

from sarlo_dask.geometry.gpu import array_module, bound_caches


def _fft(xp: Any) -> Any:
    """scipy.fft for NumPy, cupyx.scipy.fft (same signatures, cuFFT) for CuPy."""
    if xp is np:
        import scipy.fft

        return scipy.fft
    import cupyx.scipy.fft

    bound_caches()  # the plan cache is this thread's: bound it where the FFTs run
    return cupyx.scipy.fft


@dataclass(frozen=True)
class AxisPlan:
    """The geometry of one resampling pass: sizes, spacings and first-sample positions (m)."""

    n_in: int
    ss_in: float
    first_in: float
    n_out: int
    ss_out: float
    first_out: float
    scp_out: int
    """output pixel index of the SCP"""

    @property
    def ratio(self) -> float:
        return self.n_out / self.n_in

    @property
    def shift(self) -> float:
        """Output origin minus input origin, metres (|shift| <= ss_out / 2)."""
        return self.first_out - self.first_in

    def positions_in(self) -> np.ndarray:
        return self.first_in + self.ss_in * np.arange(self.n_in)

    def positions_out(self) -> np.ndarray:
        return self.first_out + self.ss_out * np.arange(self.n_out)


def plan_axis(n_in: int, ss_in: float, first_pixel: int, scp_pixel: int, target: float) -> AxisPlan:
    """Plan one axis: n_out = round(n_in * ss_in / target), SCP on an integer output pixel."""
    if n_in < 1 or not ss_in > 0 or not target > 0:
        raise ValueError(f"cannot plan an axis of {n_in} samples at {ss_in} m to {target} m")
    first_in = (first_pixel - scp_pixel) * ss_in
    length = n_in * ss_in
    n_out = max(1, int(round(length / target)))
    ss_out = length / n_out
    scp_out = int(round(-first_in / ss_out))
    return AxisPlan(n_in, ss_in, first_in, n_out, ss_out, -scp_out * ss_out, scp_out)


def skew_phase(
    poly: np.ndarray, axis: int, pos_axis: Any, pos_other: Any, sgn: int, xp: Any = np
) -> Any | None:
    """exp(j sgn 2 pi integral(poly) d axis) on the grid, shaped like the block; None if no skew.

    `poly` is a SICD DeltaKCOAPoly indexed [row power][col power]; `axis` is the array axis of
    the block that holds the resampled direction, 0 = row (range) in SICD terms, and the
    block is laid out (other, axis) or (axis, other) as `block_axis` says in the caller.
    """
    poly = np.atleast_2d(np.asarray(poly, dtype="float64"))
    if not np.any(poly):
        return None
    integral = polynomial.polyint(poly, axis=axis)
    rows, cols = (pos_axis, pos_other) if axis == 0 else (pos_other, pos_axis)
    phase = polynomial.polygrid2d(np.asarray(rows), np.asarray(cols), integral)  # (rows, cols)
    return xp.exp(xp.asarray((1j * sgn * 2 * np.pi) * phase).astype(xp.complex64))


def off_axis_poly(
    poly_axis: np.ndarray, poly_other: np.ndarray, axis: int, sgn_axis: int, sgn_other: int
) -> np.ndarray:
    """The other direction's DeltaKCOAPoly after deskewing along `axis` (0 row, 1 col)."""
    integral = polynomial.polyint(np.atleast_2d(poly_axis), axis=axis)
    shift = polynomial.polyder(integral, axis=1 - axis) * (sgn_axis / sgn_other)
    other = np.atleast_2d(np.asarray(poly_other, dtype="float64"))
    out = np.zeros((max(shift.shape[0], other.shape[0]), max(shift.shape[1], other.shape[1])))
    out[: other.shape[0], : other.shape[1]] += other
    out[: shift.shape[0], : shift.shape[1]] -= shift
    return out


def working_set(lines: int, n_in: int, n_out: int, skewed: bool) -> int:
    """The peak bytes of `resample_axis` on a block of `lines` lines of n_in -> n_out samples,
    its input block included (complex64, 8 bytes a sample), as its steps hold them:
    skewed, `skew_phase` makes the phase in float64 then complex128 (40 bytes a sample),
    then the block, its phase, the deskewed copy and its spectrum (32) with the output
    spectrum (8 an output sample), then the inverse FFT's result (8 more); without skew the
    block is transformed as it is (the block, its spectrum and the output, then the result).
    """
    if skewed:
        per_line = max(48 * n_in, 32 * n_in + 8 * n_out, 24 * n_in + 16 * n_out)
    else:
        per_line = max(16 * n_in + 8 * n_out, 8 * n_in + 16 * n_out)
    return lines * per_line


def resample_axis(
    block: Any, plan: AxisPlan, axis: int, phase: Any | None = None, workers: int | None = None
) -> Any:
    """Band-limited resampling of `block` along array axis `axis` as `plan` says.

    `phase`, when given, deskews the block first (broadcastable to it). The result is the
    band-limited (|k| < 1/(2 ss_out), or the input band when that is narrower) periodic
    interpolant of the deskewed input, evaluated at the output positions.
    """
    xp = array_module(block)
    fft = _fft(xp)
    kw = {"workers": workers} if (xp is np and workers) else {}
    data = block.astype(xp.complex64, copy=False)
    if phase is not None:
        data = data * phase
    n_in, n_out = plan.n_in, plan.n_out
    if data.shape[axis] != n_in:
        raise ValueError(f"block has {data.shape[axis]} samples along axis {axis}, plan {n_in}")
    # norm="forward": the forward FFT divides by n_in and the inverse sums, which leaves
    # the interpolant's values (no separate rescaling pass)
    spec = fft.fft(data, axis=axis, norm="forward", **kw)
    out_shape = list(data.shape)
    out_shape[axis] = n_out
    out = xp.empty(out_shape, dtype=xp.complex64)
    m = min(n_in, n_out)
    pos, neg = (m - 1) // 2 + 1, (m - 1) // 2  # bins 0..pos-1 and -neg..-1: |k| < m / 2

    def along(sl: slice) -> tuple[slice, ...]:
        index = [slice(None)] * data.ndim
        index[axis] = sl
        return tuple(index)

    out[along(slice(0, pos))] = spec[along(slice(0, pos))]
    out[along(slice(pos, n_out - neg))] = 0
    if neg:
        out[along(slice(n_out - neg, n_out))] = spec[along(slice(n_in - neg, n_in))]
    if n_out > n_in and n_in % 2 == 0:
        # the input's Nyquist bin stands for +n/2 and -n/2 alike: give half to each
        nyq = spec[along(slice(n_in // 2, n_in // 2 + 1))] * 0.5
        out[along(slice(n_in // 2, n_in // 2 + 1))] = nyq
        out[along(slice(n_out - n_in // 2, n_out - n_in // 2 + 1))] = nyq
    del spec
    if plan.shift:
        freq = np.fft.fftfreq(n_out, d=plan.ss_out)
        ramp = np.exp(2j * np.pi * freq * plan.shift).astype(np.complex64)
        shape = [1] * data.ndim
        shape[axis] = n_out
        out *= xp.asarray(ramp).reshape(shape)
    result = fft.ifft(out, axis=axis, norm="forward", overwrite_x=True, **kw)
    return result.astype(xp.complex64, copy=False)
