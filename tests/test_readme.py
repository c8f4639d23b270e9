"""The README's Python examples run as written against the demo's release (so the README
cannot drift from the code), and the loaders they show read every sample exactly."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_the_readme_has_python_examples():
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("n", range(len(BLOCKS)))
def test_each_readme_example_runs(n, demo):
    """Run in the folder that holds `demo-out` (what `sarlo demo demo-out` made)."""
    out, run = demo
    assert run.returncode == 0, run.stderr
    res = subprocess.run(
        [sys.executable, "-c", BLOCKS[n]],
        cwd=out.parent,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert res.returncode == 0, f"README example {n}:\n{BLOCKS[n]}\n{res.stderr[-3000:]}"


def test_a_dataloader_with_two_workers_reads_every_sample_exactly(demo):
    import torch

    from sarlo_dask import dataset

    release = str(demo[0] / "release")
    for split in dataset.hf_data_files(release):
        plain = {s["__key__"]: s["sar.npy"] for s in dataset.open(release, split)}
        batches = dataset.open(release, split, batch_size=2)
        loader = torch.utils.data.DataLoader(batches, batch_size=None, num_workers=2)
        got = {}
        for batch in loader:
            sar = np.asarray(batch["sar.npy"])
            assert sar.dtype == np.complex64 and len(batch["meta.json"]) == len(sar)
            got.update(zip(batch["__key__"], sar, strict=True))
        assert sorted(got) == sorted(plain), split
        assert all(np.array_equal(got[k], plain[k]) for k in plain)
