"""sarlo-dask: SAR-optical-text datasets from SICD scenes, built as a Dask job.

The public API is re-exported here; everything else is an implementation module.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sarlo-dask")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+unknown"

from sarlo_dask.config import CaptionConfig, StandardizeConfig, TileConfig
from sarlo_dask.errors import SceneError
from sarlo_dask.geolocation import geolocate_tie_points, tie_point_step
from sarlo_dask.resample import resample_axis
from sarlo_dask.sicd import open_sicd, read_sicd_meta
from sarlo_dask.simulate import SimulationSpec, simulate_scene
from sarlo_dask.standardize import open_scene_store, standardize_scene

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
