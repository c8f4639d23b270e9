"""Measurement helpers for the tests: sub-pixel peaks, ideal references, correlation."""

from __future__ import annotations

import shutil
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np


def peak(
    image: np.ndarray, a: float, r: float, half: int = 12, zoom: int = 64
) -> tuple[float, float]:
    """Sub-pixel (azimuth, range) of the brightest point near (a, r): local DFT zoom."""
    a0, r0 = int(round(a)) - half, int(round(r)) - half
    win = image[a0 : a0 + 2 * half, r0 : r0 + 2 * half]
    i, j = np.unravel_index(np.abs(win).argmax(), win.shape)
    spec = np.fft.fft2(win)
    n = win.shape[0]
    f = np.fft.fftfreq(n)
    fine = np.arange(-1.5, 1.5, 1.0 / zoom)

    def dft(centre: float) -> np.ndarray:
        return np.exp(2j * np.pi * np.outer(centre + fine, f)) / n

    vals = dft(i) @ spec @ dft(j).T
    ii, jj = np.unravel_index(np.abs(vals).argmax(), vals.shape)
    return a0 + i + fine[ii], r0 + j + fine[jj]


def band_limited_matrix(
    n_in: int, ss_in: float, first_in: float, pos_out: np.ndarray, half_band: float
) -> np.ndarray:
    """(n_out, n_in) map from DFT bins to the interpolant at pos_out, |f| < half_band."""
    f = np.fft.fftfreq(n_in, d=ss_in)
    t = (pos_out - first_in)[:, None]
    m = np.exp(2j * np.pi * f[None, :] * t) * (np.abs(f) < half_band - 1e-12)
    if n_in % 2 == 0 and half_band > 0.5 / ss_in:
        m[:, n_in // 2] = np.cos(2 * np.pi * (0.5 / ss_in) * t[:, 0])
    return m / n_in


def deskew(data_rc: np.ndarray, sicd: Any) -> np.ndarray:
    """sarpy's deskew of (rows, cols) data by the SICD's own DeltaKCOAPolys (col, then row)."""
    from sarpy.processing.sicd.normalize_sicd import apply_skew_poly

    img, grid = sicd.ImageData, sicd.Grid
    rows = (np.arange(img.NumRows) + img.FirstRow - img.SCPPixel.Row) * grid.Row.SS
    cols = (np.arange(img.NumCols) + img.FirstCol - img.SCPPixel.Col) * grid.Col.SS
    out = apply_skew_poly(
        data_rc, grid.Col.DeltaKCOAPoly.get_array(), rows, cols, grid.Col.Sgn, 1, forward=False
    )
    return apply_skew_poly(
        out, grid.Row.DeltaKCOAPoly.get_array(), rows, cols, grid.Row.Sgn, 0, forward=False
    )


def ideal_reference(src_rc: np.ndarray, sicd_in: Any, sicd_out: Any) -> np.ndarray:
    """The band-limited interpolant of the deskewed input at the output grid, (rows, cols)."""
    x = np.fft.fft2(deskew(src_rc.astype(complex), sicd_in))
    mats = []
    for axis in ("Row", "Col"):
        d_in, d_out = getattr(sicd_in.Grid, axis), getattr(sicd_out.Grid, axis)
        n_in = getattr(sicd_in.ImageData, f"Num{axis}s")
        first = getattr(sicd_in.ImageData, f"First{axis}")
        scp_in = getattr(sicd_in.ImageData.SCPPixel, axis)
        n_out = getattr(sicd_out.ImageData, f"Num{axis}s")
        scp_out = getattr(sicd_out.ImageData.SCPPixel, axis)
        pos_out = (np.arange(n_out) - scp_out) * d_out.SS
        half = 0.5 / d_out.SS if d_out.SS > d_in.SS else 0.5 / d_in.SS + 1e-9
        mats.append(band_limited_matrix(n_in, d_in.SS, (first - scp_in) * d_in.SS, pos_out, half))
    return mats[0] @ x @ mats[1].T


def latlon_distance_m(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Metres between (N, 2+) lat/lon pairs a and b, locally flat (for cm-scale checks)."""
    north = (a[:, 0] - b[:, 0]) * 111_320.0
    east = (a[:, 1] - b[:, 1]) * 111_320.0 * np.cos(np.radians(b[:, 0]))
    return np.hypot(north, east)


def same_store(a, b) -> None:
    """Two scene stores hold the same pixels, tie points and SICD."""
    for name in ("slc", "lat", "lon", "hae"):
        np.testing.assert_array_equal(a[name].values, b[name].values)
    for key in ("sicd_xml", "source_sicd_xml", "scene_id", "pass_id", "tie_point_step"):
        assert a.attrs[key] == b.attrs[key]


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(abs(np.vdot(a, b)) / np.sqrt(np.vdot(a, a).real * np.vdot(b, b).real))


def interior(a: np.ndarray, frac: float = 0.1) -> np.ndarray:
    m0, m1 = int(a.shape[0] * frac), int(a.shape[1] * frac)
    return a[m0 : a.shape[0] - m0, m1 : a.shape[1] - m1]


def small_scene_config():
    """Scene-stage settings for the small simulated test scenes (stores of 128 px chunks)."""
    from sarlo_dask.config import StandardizeConfig

    return StandardizeConfig(min_size=64, chunk_azimuth=256, chunk_range=256, store_chunk=128)


def build_configs(config, storage_options=None):
    """The BuildConfig of a build YAML, with storage options for S3 stores."""
    from sarlo_dask.build_config import BuildConfig

    build = BuildConfig.load(config)
    if not storage_options:
        return build
    scfg, tcfg, ccfg, rcfg = build.stages()
    update = {"storage_options": storage_options}
    scfg, tcfg = scfg.model_copy(update=update), tcfg.model_copy(update=update)
    return BuildConfig.of(scfg, tcfg, ccfg, rcfg.model_copy(update=update))


def tree(root):
    """Every file under root: relative path -> bytes."""
    from pathlib import Path

    root = Path(root)
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def build_meanwhile(client, urls, work, out, config, steps, timeout=300, storage_options=None):
    """Run build_dataset in a thread; for each (when, action) of `steps`, wait until `when`
    (a glob under `work`, or a callable) is true, then call action(). Returns the Build."""
    import threading
    import time
    from pathlib import Path

    from sarlo_dask.pipeline import build_dataset

    box: list = []
    thread = threading.Thread(
        target=lambda: box.append(
            build_dataset(urls, str(work), str(out), build_configs(config, storage_options), client)
        )
    )
    thread.start()
    deadline = time.monotonic() + timeout
    for when, action in steps:
        ready = when if callable(when) else lambda p=when: any(Path(work).glob(p))
        while not ready():
            assert time.monotonic() < deadline and thread.is_alive()
            time.sleep(0.02)
        assert thread.is_alive(), "the build ended before its fault"
        action()
    thread.join(timeout=600)
    assert box, "the build did not finish"
    return box[0]


def kill_worker(client) -> int:
    """SIGKILL one worker process of `client`'s cluster (the first by address); its pid."""
    import os
    import signal

    pids = client.run(os.getpid)
    pid = pids[sorted(pids)[0]]
    os.kill(pid, signal.SIGKILL)
    return pid


def worker_pids(client) -> set[int]:
    """The pids of the cluster's worker processes now."""
    import os

    return set(client.run(os.getpid).values())


def samples(files: dict) -> dict:
    """Sample key -> {member: bytes} from the .tar shards of a tree() (local or S3)."""
    import io
    import tarfile

    found: dict = {}
    for name, data in files.items():
        if not name.endswith(".tar"):
            continue
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for m in tar.getmembers():
                key, member = m.name.split(".", 1)
                found.setdefault(key, {})[member] = tar.extractfile(m).read()
    return found


def lost_samples(files: dict, reference: dict) -> int:
    """How many of the reference's samples are missing or differ (a tree() of each)."""
    got, ref = samples(files), samples(reference)
    return sum(got.get(key) != members for key, members in ref.items())


def kept_keys(work: str, scene_id: str) -> list[str]:
    folder = Path(work, "tiles", scene_id)
    return sorted(p.name[: -len(".meta.json")] for p in folder.glob("*.meta.json"))


def fresh_work(tiled, name: str) -> str:
    """A copy of the tiled work store, so each test captions from scratch."""
    root, work, _, _ = tiled
    target = root / name
    shutil.copytree(work, target)
    return str(target)


class LoopbackHTTPServer(ThreadingHTTPServer):
    """The tests' HTTP servers: a listen backlog of 128, not socketserver's 5, so that a
    burst of connections from every worker is queued instead of dropped (a dropped SYN is
    retried after a second: a client with a 1 s timeout saw ConnectTimeout, not the fault
    the test injected)."""

    request_queue_size = 128
    daemon_threads = True


def free_port() -> int:
    """A loopback port nobody listens on (now)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def terrain_spec(**settings: Any) -> Any:
    """A 512 x 512 scene at 1 m over 80 m of simulated terrain, with `settings` changed: the
    terrain tests' scenes."""
    from sarlo_dask.sim.scene import SimulationSpec

    base = {"rows": 512, "cols": 512, "row_spacing": 1.0, "col_spacing": 1.0}
    return SimulationSpec(**(base | {"relief_m": 80.0, "terrain_seed": 2} | settings))


STEEP = {"seed": 1, "n_targets": 25, "relief_m": 400.0, "terrain_seed": 0, "allow_layover": True}
"""settings of a terrain scene with layover"""
