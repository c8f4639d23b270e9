"""sarlo-dask: SAR-optical-text datasets from SICD scenes, built as a Dask job.

The public API is re-exported here; everything else is an implementation module.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sarlo-dask")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+unknown"

import dask

# Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_ set, which also fixes glibc's mmap
# threshold at 128 KiB: every array temporary of the tile and FFT code is then a fresh
# mapping, page-faulted in and zeroed (tile tasks ran 2x slower than in one process). Large
# temporaries come from the heap again with this default; a user's setting still wins.
dask.config.update_defaults(
    {"distributed": {"nanny": {"pre-spawn-environ": {"MALLOC_MMAP_THRESHOLD_": 64 << 20}}}}
)

from sarlo_dask.config import CaptionConfig, StandardizeConfig, TileConfig  # noqa: E402
from sarlo_dask.errors import SceneError  # noqa: E402
from sarlo_dask.geolocation import geolocate_tie_points, tie_point_step  # noqa: E402
from sarlo_dask.resample import resample_axis  # noqa: E402
from sarlo_dask.sicd import open_sicd, read_sicd_meta  # noqa: E402
from sarlo_dask.simulate import SimulationSpec, simulate_scene  # noqa: E402
from sarlo_dask.standardize import open_scene_store, standardize_scene  # noqa: E402

__all__ = [
    "CaptionConfig",
    "SceneError",
    "SimulationSpec",
    "StandardizeConfig",
    "TileConfig",
    "__version__",
    "geolocate_tie_points",
    "open_scene_store",
    "open_sicd",
    "read_sicd_meta",
    "resample_axis",
    "simulate_scene",
    "standardize_scene",
    "tie_point_step",
]
