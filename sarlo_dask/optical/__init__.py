"""Optical views of SAR tiles: sources, mosaics, the affine warp, reconstruction."""

from sarlo_dask.optical.pair import PairConfig, pair_tile
from sarlo_dask.optical.reconstruct import ReconstructError, reconstruct_optical
from sarlo_dask.optical.source import OpticalSource, XYZSource
from sarlo_dask.optical.sources import (
    FolderTiles,
    GeoTIFFSource,
    HTTPTiles,
    register,
    source_from_spec,
)

__all__ = [
    "FolderTiles",
    "GeoTIFFSource",
    "HTTPTiles",
    "OpticalSource",
    "PairConfig",
    "ReconstructError",
    "pair_tile",
    "reconstruct_optical",
    "register",
    "source_from_spec",
    "XYZSource",
]
