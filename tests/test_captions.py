"""Caption cleanup and labels: a table of hand-written captions and properties (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sarlo_dask.captions import OTHER, clean, label, load_vocabulary, scores

LABEL_TABLE = [
    ("Runway and taxiways of an airport with parked aircraft.", "airport"),
    ("A harbour with container ships docked along the quay.", "port"),
    ("An oil field with storage tanks and pipelines.", "industrial"),
    ("Center pivot irrigation fields and farmland.", "agriculture"),
    ("Dense residential blocks and apartment buildings in the city.", "urban"),
    ("A winding river through the forest.", "vegetation"),
    ("A large open-pit mine with terraced excavation.", "mining"),
    ("Sand dunes in an arid desert.", "desert"),
    ("A glacier and snow-covered peaks.", "snow/ice"),
    ("A highway interchange with a bridge.", "road"),
    ("A beach along the coastline.", "coastal"),
    ("A rail yard with parallel tracks next to the station.", "rail"),
    ("A volcanic crater with lava flows.", "volcano"),
    ("A lake and a reservoir behind a dam.", "water"),
    ("A steep mountain ridge above a valley.", "mountain"),
    ("An empty image.", OTHER),
    ("A car park next to a power station.", "industrial"),
]


@pytest.mark.parametrize(("text", "expected"), LABEL_TABLE)
def test_label_table(text, expected):
    assert label(text) == expected


def test_vocabulary_is_an_editable_data_file(tmp_path):
    vocab = tmp_path / "v.yaml"
    vocab.write_text(
        "categories:\n  orchard:\n    positive: [apple tree]\n    negative: []\n"
        "  other_trees:\n    positive: [tree]\n    negative: [apple tree]\n"
    )
    v = load_vocabulary(vocab)
    assert label("Rows of apple trees.", v) == "orchard"
    assert scores("Rows of apple trees.", v) == {"orchard": 1, "other_trees": 0}
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just a list\n")
    with pytest.raises(ValueError, match="categories"):
        load_vocabulary(bad)


@given(st.text(max_size=200))
def test_clean_and_label_take_any_text(text):
    assert isinstance(label(clean(text)), str)


def test_stats_equal_hand_computed_values():
    from sarlo_dask.captions import dataset_stats, format_table

    samples = [
        {
            "split": "train",
            "label": "urban",
            "caption": {
                "SHORT": "Dense urban blocks.",
                "MID": "Dense urban blocks near a river.",
                "LONG": "Dense urban blocks near a river, crossed by two bridges.",
            },
        },
        {
            "split": "train",
            "label": "water",
            "caption": {
                "SHORT": "Dense urban blocks.",
                "MID": "A river with a bridge.",
                "LONG": "A wide river with a bridge and a small port.",
            },
        },
        {
            "split": "test",
            "label": "urban",
            "caption": {
                "SHORT": "A town.",
                "MID": "A small town by a lake.",
                "LONG": "A small town by a lake, with fields to the north.",
            },
        },
    ]
    s = dataset_stats(samples)
    short = s["captions"]["SHORT"]
    # word counts 3, 3, 2: mean 8/3, P10 = 2 + 0.2 * (3 - 2) = 2.2, P90 = 3
    assert short["n"] == 3 and short["mean_words"] == pytest.approx(8 / 3)
    assert short["p10_words"] == pytest.approx(2.2) and short["p90_words"] == 3
    assert short["vocabulary"] == 5  # dense urban blocks a town
    assert short["duplicate_rate"] == pytest.approx(1 / 3)
    mid = s["captions"]["MID"]  # 6, 5, 6 words
    assert mid["mean_words"] == pytest.approx(17 / 3) and mid["duplicate_rate"] == 0
    assert mid["vocabulary"] == 12
    assert s["labels"]["train"] == {
        "urban": {"count": 1, "fraction": 0.5},
        "water": {"count": 1, "fraction": 0.5},
    }
    assert s["labels"]["all"]["urban"] == {"count": 2, "fraction": 2 / 3}
    table = format_table(s)
    assert table.splitlines()[1].split()[:2] == ["SHORT", "3"]


def test_stats_cli_reads_committed_shards_and_writes_table_json_and_plot(tmp_path):
    """Two splits of hand-written samples in WebDataset shards, one shard not committed."""
    import io
    import json
    import subprocess
    import sys

    import webdataset as wds
    from PIL import Image

    def shard(path, samples, commit=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f, wds.TarWriter(f, mtime=0) as tw:
            for key, meta in samples:
                tw.write({"__key__": key, "meta.json": json.dumps(meta).encode()})
        if commit:
            path.with_name(path.name.replace(".tar", ".done.json")).write_text("{}")

    def meta(split, label, short, mid, long_):
        return {
            "split": split,
            "label": label,
            "caption": {"SHORT": short, "MID": mid, "LONG": long_},
        }

    root = tmp_path / "release"
    shard(
        root / "train" / "chunk_000" / "shard-00000.tar",
        [
            (
                "s_a000_r000",
                meta("train", "urban", "Dense blocks.", "Dense urban blocks.", "x y z"),
            ),
            ("s_a000_r001", meta("train", "water", "Dense blocks.", "A lake.", "a b")),
        ],
    )
    shard(
        root / "test" / "chunk_000" / "shard-00000.tar",
        [("t_a000_r000", meta("test", "urban", "A town.", "A town by a lake.", "c"))],
    )
    shard(  # written but not committed: not part of the release
        root / "test" / "chunk_000" / "shard-00001.tar",
        [("t_a000_r001", meta("test", "port", "Ships.", "Ships.", "d"))],
        commit=False,
    )
    out = tmp_path / "stats"
    run = subprocess.run(
        [sys.executable, "-m", "sarlo_dask.cli", "stats", str(root), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    s = json.loads((out / "stats.json").read_text())
    assert s["captions"]["SHORT"]["n"] == 3
    assert s["captions"]["SHORT"]["duplicate_rate"] == pytest.approx(1 / 3)
    assert s["captions"]["MID"]["mean_words"] == pytest.approx((3 + 2 + 5) / 3)
    assert s["captions"]["MID"]["vocabulary"] == 7  # dense urban blocks a lake town by
    assert s["labels"]["train"] == {
        "urban": {"count": 1, "fraction": 0.5},
        "water": {"count": 1, "fraction": 0.5},
    }
    assert s["labels"]["test"] == {"urban": {"count": 1, "fraction": 1.0}}
    assert "port" not in s["labels"]["all"]
    assert "SHORT" in run.stdout and "urban" in run.stdout
    assert Image.open(io.BytesIO((out / "labels.png").read_bytes())).format == "PNG"


def test_stats_of_samples_without_captions():
    from sarlo_dask.captions import dataset_stats

    s = dataset_stats([{"split": "train", "label": None, "caption": None}])
    assert s["captions"]["MID"]["n"] == 0
    assert s["labels"]["train"] == {"none": {"count": 1, "fraction": 1.0}}
