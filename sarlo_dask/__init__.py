"""sarlo-dask: SAR-optical-text datasets from SICD scenes, built as a Dask job.

The public API is re-exported here; everything else is an implementation module.
"""

import dask

from sarlo_dask._version import __version__

# Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_ set, which also fixes glibc's mmap
# threshold at 128 KiB: every array temporary of the tile and FFT code is then a fresh
# mapping, page-faulted in and zeroed (tile tasks ran 2x slower than in one process). Large
# temporaries come from the heap again with this default; a user's setting still wins.
dask.config.update_defaults(
    {"distributed": {"nanny": {"pre-spawn-environ": {"MALLOC_MMAP_THRESHOLD_": 64 << 20}}}}
)

_EXPORTS = {
    "CaptionConfig": "sarlo_dask.config",
    "StandardizeConfig": "sarlo_dask.config",
    "TileConfig": "sarlo_dask.config",
    "SceneError": "sarlo_dask.errors",
    "geolocate_tie_points": "sarlo_dask.geometry.geolocation",
    "tie_point_step": "sarlo_dask.geometry.geolocation",
    "resample_axis": "sarlo_dask.geometry.resample",
    "open_sicd": "sarlo_dask.geometry.sicd",
    "read_sicd_meta": "sarlo_dask.geometry.sicd",
    "SimulationSpec": "sarlo_dask.sim.scene",
    "simulate_scene": "sarlo_dask.sim.scene",
    "open_scene_store": "sarlo_dask.stages.standardize",
    "standardize_scene": "sarlo_dask.stages.standardize",
    # the declared seams: what a package of your own subclasses (stable across layouts)
    "SceneReader": "sarlo_dask.io.readers",
    "OpticalSource": "sarlo_dask.optical.source",
    "XYZSource": "sarlo_dask.optical.source",
    "HeightSource": "sarlo_dask.geometry.heights",
    "DemGrid": "sarlo_dask.geometry.dem",
    "CaptionBackend": "sarlo_dask.captions.interface",
    "Generated": "sarlo_dask.captions.interface",
    "SampleWriter": "sarlo_dask.io.writers",
    "ReleaseView": "sarlo_dask.io.writers",
    "sicd_from_xml": "sarlo_dask.geometry.sicd",
    "ReleaseConfig": "sarlo_dask.config",
    "StorageConfig": "sarlo_dask.storage_config",
    "BuildConfig": "sarlo_dask.build_config",
    "build_dataset": "sarlo_dask.pipeline",
}
"""the public API, imported when first used (PEP 562): a command that needs none of it, such
as `sarlo verify`, starts without importing xarray, dask.array and sarpy"""


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'sarlo_dask' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


__all__ = [
    "BuildConfig",
    "CaptionBackend",
    "CaptionConfig",
    "DemGrid",
    "Generated",
    "HeightSource",
    "OpticalSource",
    "ReleaseConfig",
    "ReleaseView",
    "SampleWriter",
    "SceneError",
    "SceneReader",
    "SimulationSpec",
    "StandardizeConfig",
    "StorageConfig",
    "TileConfig",
    "XYZSource",
    "__version__",
    "build_dataset",
    "geolocate_tie_points",
    "open_scene_store",
    "open_sicd",
    "read_sicd_meta",
    "resample_axis",
    "sicd_from_xml",
    "simulate_scene",
    "standardize_scene",
    "tie_point_step",
]
