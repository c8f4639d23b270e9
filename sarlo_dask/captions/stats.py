"""The paper's caption statistics: length, spread, vocabulary, duplicates; label shares.

Definitions (stated, since the paper does not spell them out):
- words: runs of letters, digits, apostrophes and hyphens, lowercased;
- P10 / P90: numpy's linear-interpolation percentiles of the per-caption word counts;
- vocabulary: distinct words over all captions of that length;
- exact-duplicate rate: (captions - distinct captions) / captions, on the exact text.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

WORD = re.compile(r"[a-z0-9][a-z0-9'-]*")
KINDS = ("SHORT", "MID", "LONG")


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def length_stats(texts: Iterable[str]) -> dict[str, float | int]:
    """n, mean / P10 / P90 word counts, vocabulary size and exact-duplicate rate."""
    items = list(texts)
    if not items:
        return {
            "n": 0,
            "mean_words": 0.0,
            "p10_words": 0.0,
            "p90_words": 0.0,
            "vocabulary": 0,
            "duplicate_rate": 0.0,
        }
    tokens = [words(t) for t in items]
    counts = np.array([len(t) for t in tokens], dtype="float64")
    p10, p90 = np.percentile(counts, [10, 90])
    return {
        "n": len(items),
        "mean_words": float(counts.mean()),
        "p10_words": float(p10),
        "p90_words": float(p90),
        "vocabulary": len({w for t in tokens for w in t}),
        "duplicate_rate": (len(items) - len(set(items))) / len(items),
    }


def caption_signals(
    caption: Mapping[str, str] | None, raw: Mapping[str, str] | None
) -> dict[str, dict[str, int]] | None:
    """meta.json's `caption_signals`: per caption kind, its words, the model's words before
    cleanup, and the hedge words the model wrote (their claims are not in the caption);
    None without a caption."""
    from sarlo_dask.captions.clean import hedges

    if not caption:
        return None
    out = {}
    for kind, text in caption.items():
        said = (raw or {}).get(kind)
        out[kind] = {"words": len(words(text))}
        if said is not None:  # records of older builds keep no raw text
            out[kind] |= {"raw_words": len(words(said)), "hedges": hedges(said)}
    return out


def label_distribution(labels: Iterable[str]) -> dict[str, dict[str, float | int]]:
    """Count and share of each label, labels sorted by name."""
    c = Counter(labels)
    total = sum(c.values())
    return {k: {"count": c[k], "fraction": c[k] / total} for k in sorted(c)}


def dataset_stats(samples: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """From samples with `caption` {SHORT, MID, LONG}, `label` and `split`: the paper's table
    for each caption length and the label distribution per split (and over all)."""
    rows = list(samples)
    captions = {
        k: [r["caption"][k] for r in rows if (r.get("caption") or {}).get(k)] for k in KINDS
    }
    by_split: dict[str, list[str]] = {}
    for r in rows:
        by_split.setdefault(r.get("split", "all"), []).append(r.get("label") or "none")
    labels = {s: label_distribution(v) for s, v in sorted(by_split.items())}
    labels["all"] = label_distribution(r.get("label") or "none" for r in rows)
    return {"captions": {k: length_stats(v) for k, v in captions.items()}, "labels": labels}


def format_table(stats: Mapping[str, Any]) -> str:
    """The caption table as text, one row per caption length."""
    lines = [
        f"{'caption':8s} {'n':>7s} {'avg words':>10s} {'P10':>6s} {'P90':>6s} "
        f"{'vocab':>7s} {'dup rate':>9s}"
    ]
    for kind, s in stats["captions"].items():
        lines.append(
            f"{kind:8s} {s['n']:7d} {s['mean_words']:10.1f} {s['p10_words']:6.1f} "
            f"{s['p90_words']:6.1f} {s['vocabulary']:7d} {s['duplicate_rate']:9.4f}"
        )
    return "\n".join(lines)


def format_labels(stats: Mapping[str, Any]) -> str:
    """The label distribution per split as text: one row per label, a column per split."""
    splits = list(stats["labels"])
    names = sorted({n for s in splits for n in stats["labels"][s]})
    lines = [f"{'label':14s}" + "".join(f"{s:>16s}" for s in splits)]
    for n in names:
        cells = []
        for s in splits:
            d = stats["labels"][s].get(n)
            cells.append(f"{d['count']:7d} ({d['fraction']:5.1%})" if d else f"{'-':>16s}")
        lines.append(f"{n:14s}" + "".join(f"{c:>16s}" for c in cells))
    return "\n".join(lines)


NO_LABELS = (
    "No labels: a sample's label is the class of its MID caption,\n"
    "and this release has no captions.\n\n"
    "Build with a caption model (--caption-model FOLDER)\n"
    "or server (--caption-server URL) to get them."
)


def plot_labels(stats: Mapping[str, Any], path: str) -> None:
    """A bar chart of the label shares per split, as PNG (no timestamp: same stats, same bytes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    splits = list(stats["labels"])
    names = sorted({n for s in splits for n in stats["labels"][s]})
    if set(names) <= {"none"}:  # no caption, no label: say so rather than draw one bar
        fig, ax = plt.subplots(figsize=(6.0, 4), dpi=100)
        ax.axis("off")
        ax.text(0.5, 0.5, NO_LABELS, ha="center", va="center", wrap=True)
        fig.savefig(path, format="png", metadata={"Software": None})
        plt.close(fig)
        return
    x = np.arange(len(names))
    width = 0.8 / max(1, len(splits))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(names) + 2), 4), dpi=100)
    for i, s in enumerate(splits):
        shares = [stats["labels"][s].get(n, {}).get("fraction", 0.0) for n in names]
        ax.bar(x + (i - (len(splits) - 1) / 2) * width, shares, width, label=s)
    ax.set_xticks(x, names, rotation=45, ha="right")
    ax.set_ylabel("share of samples (MID caption label)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)
