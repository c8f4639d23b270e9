"""Per-sample quality: the equivalent number of looks (ENL) by the moment estimator, judged
on simulated speckle whose number of looks is known."""

from __future__ import annotations

import numpy as np
import pytest

from sarlo_dask.geometry.quality import enl, tile_quality


def speckle(looks: int, shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Intensity of `looks` independent single-look complex Gaussian speckles, averaged."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((looks, *shape)) + 1j * rng.standard_normal((looks, *shape))
    return np.mean(np.abs(z) ** 2, axis=0) * 3.7  # any mean backscatter


@pytest.mark.parametrize("looks", [1, 2, 4, 8])
def test_enl_of_speckle_with_known_looks_is_within_5_percent(looks):
    got = enl(speckle(looks, (1024, 1024), seed=looks))
    assert got["windows"] == (1024 // 32) ** 2
    assert abs(got["enl"] - looks) <= 0.05 * looks, got


def test_enl_ignores_invalid_data_and_a_minority_of_textured_windows():
    """Windows outside the valid data or holding zeros give no estimate; bright targets and
    texture in fewer than half the windows do not decide the median."""
    intensity = speckle(4, (512, 512), seed=9)
    valid = np.ones(intensity.shape, dtype=bool)
    valid[:, 400:] = False  # outside ValidData: its pixels are anything
    intensity[:, 400:] = 1e6
    intensity[:64, :64] = 0.0  # no data
    rng = np.random.default_rng(3)
    texture = rng.lognormal(0, 1.5, size=(8, 12))  # a third of the windows: textured
    for i in range(8):
        for j in range(4):
            intensity[32 * i : 32 * i + 32, 32 * j : 32 * j + 32] *= texture[i, j]
    got = enl(intensity, valid)
    assert got["windows"] == 16 * 12 - 4  # 12 window columns lie inside, 4 windows hold zeros
    assert abs(got["enl"] - 4) <= 0.2, got
    assert enl(intensity)["enl"] < got["enl"]  # the 1e6 columns counted without the mask


def test_a_tile_without_a_whole_valid_window_says_why():
    amp = np.zeros((64, 64))
    q = tile_quality(amp, None)
    assert q["enl"] is None and q["enl_windows"] == 0
    assert "no window wholly in valid, non-zero data" in q["enl_reason"]
    assert tile_quality(np.ones((16, 16)), None)["enl_reason"].startswith("tile smaller")
