"""Captions: the transformers backend, cleanup, scene labels and statistics.

The Dask worker pool that feeds the backend is
`sarlo_dask.stages.caption_pool.CaptionPool`; one batch of work is
`sarlo_dask.stages.caption_stage.caption_batch`.
"""

from sarlo_dask.captions.backend import Captioner, get_captioner, load_counts
from sarlo_dask.captions.clean import clean
from sarlo_dask.captions.label import OTHER, label, load_vocabulary, scores
from sarlo_dask.captions.stats import dataset_stats, format_table, length_stats

__all__ = [
    "OTHER",
    "Captioner",
    "get_captioner",
    "load_counts",
    "clean",
    "dataset_stats",
    "format_table",
    "label",
    "length_stats",
    "load_vocabulary",
    "scores",
]
