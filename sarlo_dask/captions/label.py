"""Scene category of a caption from a keyword vocabulary (positive and negative terms).

The vocabulary is a YAML data file users can edit (labels.yaml beside this module); a
negative phrase cancels the points its words would give ("oil field" is not agriculture).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

DEFAULT_VOCABULARY = Path(__file__).with_name("labels.yaml")
OTHER = "other"


@dataclass(frozen=True)
class Category:
    name: str
    positive: tuple[re.Pattern[str], ...]
    negative: tuple[re.Pattern[str], ...]


def _term(term: str) -> re.Pattern[str]:
    words = [re.escape(w) for w in re.split(r"[ -]", term.lower()) if w]
    body = r"[ -]".join(words)
    return re.compile(rf"\b{body}(?:e?s)?\b")


@functools.lru_cache(maxsize=8)
def load_vocabulary(path: str | Path = DEFAULT_VOCABULARY) -> tuple[Category, ...]:
    data = yaml.safe_load(Path(path).read_text())
    cats = data.get("categories") if isinstance(data, dict) else None
    if not isinstance(cats, dict) or not cats:
        raise ValueError(f"{path}: expected a `categories:` mapping of name -> positive/negative")
    out = []
    for name, spec in cats.items():
        spec = spec or {}
        out.append(
            Category(
                str(name),
                tuple(_term(t) for t in spec.get("positive") or []),
                tuple(_term(t) for t in spec.get("negative") or []),
            )
        )
    return tuple(out)


def scores(text: str, vocabulary: tuple[Category, ...] | None = None) -> dict[str, int]:
    """Keyword points per category: positive hits outside negative phrases."""
    vocab = vocabulary if vocabulary is not None else load_vocabulary()
    lower = text.lower()
    result = {}
    for cat in vocab:
        masked = lower
        for neg in cat.negative:
            masked = neg.sub(lambda m: "#" * len(m.group(0)), masked)
        result[cat.name] = sum(len(p.findall(masked)) for p in cat.positive)
    return result


def label(text: str, vocabulary: tuple[Category, ...] | None = None) -> str:
    """The category with the most points; earlier categories win ties; `other` if none."""
    s = scores(text, vocabulary)
    best = max(s.values(), default=0)
    if best == 0:
        return OTHER
    return next(name for name, v in s.items() if v == best)
