"""Captions: cleanup and scene labels (the VLM worker pool arrives with issue 4)."""

from sarlo_dask.captions.clean import clean
from sarlo_dask.captions.label import OTHER, label, load_vocabulary, scores

__all__ = ["OTHER", "clean", "label", "load_vocabulary", "scores"]
