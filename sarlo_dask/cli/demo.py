"""The demo's inputs: simulated spotlight scenes of one synthetic landscape, a satellite pass
each, and the same landscape seen from above as XYZ tiles (`sarlo demo`).

Each scene is simulated in its own process (two at once on two cores: the scenes are
independent), and an input left by an earlier run of the same demo version is kept."""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from multiprocessing import get_context
from pathlib import Path

KINDS = [(0.4, ((0.0,),)), (0.4, ((0.1, 2e-4),)), (1.2, ((0.0,),))]
"""(spacing m, column DeltaKCOA polynomial) by scene, in turn: 1600 px at 0.8 m each, so
2 x 2 tiles of 1024 px at stride 512"""
ZOOM = 18
SETTINGS = (
    "release:\n"
    "  # whole passes go to one split: with the default 0.8 / 0.1 / 0.1, three equal\n"
    "  # passes would all go to train; near-thirds give each split one\n"
    "  splits: {train: 0.34, validation: 0.33, test: 0.33}\n"
    "  # the simulated optical ground is the demo's own: ship each sample's optical view\n"
    "  include_optical: true\n"
    "  optical_licence: CC0-1.0\n"
    "  optical_attribution: simulated ground of sarlo-dask's demo\n"
)
"""the demo's build settings (OUT/demo.yaml: `sarlo build --config` reads the same file)"""


@dataclass(frozen=True)
class DemoScene:
    path: Path
    size: int
    """pixels a side"""
    spacing: float
    replaced: bool
    """an input of another demo version was there and is replaced"""

    def line(self) -> str:
        return (
            f"simulated {self.path} ({self.size} x {self.size} at {self.spacing} m) "
            "and its optical tiles"
        )


def demo_scene(i: int, inputs: Path, optical: Path) -> DemoScene:
    """Scene `i` and its optical ground (the footprint and 40 m around, its targets red),
    unless an earlier run of this demo version left them whole."""
    from sarlo_dask.geometry.sicd import read_sicd_meta
    from sarlo_dask.sim.optical import simulate_optical_tiles
    from sarlo_dask.sim.scene import SimulationSpec, simulate_scene, spec_record

    spacing, skew = KINDS[i % len(KINDS)]
    n = int(round(1600 * 0.8 / spacing))
    path = inputs / f"sim_scene_{i:03d}.nitf"
    spec = SimulationSpec(
        rows=n,
        cols=n,
        row_spacing=spacing,
        col_spacing=spacing,
        col_deltakcoa=skew,
        seed=i,
        ground="landscape",  # SAR and optical views of one landscape
        collect_start=(datetime(2025, 6, 1, 10) + timedelta(days=i)).isoformat(),
        lat=48.71 + 0.05 * i,
    )
    truth_path = Path(f"{path}.truth.json")  # written last: the scene is whole
    same = json.loads(json.dumps(spec_record(spec)))  # as the truth file holds it
    old = json.loads(truth_path.read_text())["spec"] if truth_path.exists() else None
    fresh = old != same
    if fresh:  # none yet, or another demo version's
        simulate_scene(path, spec)
    truth = json.loads(truth_path.read_text())
    corners = read_sicd_meta(str(path)).GeoData.ImageCorners.get_array(dtype="float64")
    simulate_optical_tiles(optical, truth, ZOOM, 4e-4, latlon=corners, overwrite=fresh)
    return DemoScene(path, n, spacing, fresh and old is not None)


def demo_scenes(n: int, inputs: Path, optical: Path) -> list[DemoScene]:
    """Scenes 0 .. n-1, in order, simulated in up to as many processes as there are cores."""
    workers = max(1, min(n, os.cpu_count() or 1))
    if workers == 1:
        return [demo_scene(i, inputs, optical) for i in range(n)]
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        return list(pool.map(demo_scene, range(n), [inputs] * n, [optical] * n))
