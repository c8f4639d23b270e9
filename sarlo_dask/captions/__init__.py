"""Captions: cleanup and scene labels (the VLM worker pool arrives with issue 4)."""

from sarlo_dask.captions.clean import clean
from sarlo_dask.captions.label import OTHER, label, load_vocabulary, scores
from sarlo_dask.captions.stats import dataset_stats, format_table, length_stats

__all__ = [
    "OTHER",
    "clean",
    "dataset_stats",
    "format_table",
    "label",
    "length_stats",
    "load_vocabulary",
    "scores",
]
