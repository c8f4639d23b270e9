"""Caption cleanup: no colour terms, no speculative wording, tidy whitespace and punctuation.

Rules, applied until nothing changes (so clean(clean(x)) == clean(x)):
- hedges that wrap a verb become the plain verb ("appears to be" -> "is", "may be" -> "is",
  "seem to show" -> "show"); free-standing hedges go ("possibly", "likely", "perhaps", ...);
- colour words go with their modifiers and suffixes ("dark green", "reddish", "white-roofed",
  "colourful"); "in red" / "of various colors" phrases go whole;
- articles are fixed after a removal ("an orange roof" -> "a roof"); spaces, repeated and
  dangling punctuation are tidied; each sentence starts with a capital.
"""

from __future__ import annotations

import re

COLOURS = (
    "red|green|blue|yellow|orange|purple|violet|pink|brown|black|white|gr[ae]y|beige|tan|"
    "turquoise|teal|cyan|magenta|maroon|navy|olive|golden|gold|silver|silvery|crimson|"
    "scarlet|emerald|azure|ochre|ocher|khaki|lavender|lilac|ivory|cream|amber|bronze|"
    "copper|rust|rusty|burgundy|indigo|aqua|charcoal|sepia|coral|salmon|mauve|tawny"
)
_SHADE = r"(?:(?:light|dark|pale|bright|deep|vivid|muted|pastel|dull)[ -])?"
_COLOUR_WORD = (
    rf"{_SHADE}(?:{COLOURS})(?:ish|ness|[ -]?(?:colou?red|tinted|toned|hued))?"
    rf"(?:[ -](?:and|or)[ -]{_SHADE}(?:{COLOURS})(?:ish)?)?"
)
_RULES: list[tuple[re.Pattern[str], str]] = [
    # phrases naming colours as such
    (re.compile(r"\b(?:in|of) (?:various|different|many|several|multiple) colou?rs?\b", re.I), ""),
    (re.compile(rf"\b(?:in|of) (?:a |the )?{_COLOUR_WORD}(?= *[,.;:!?)]| *$)", re.I), ""),
    (re.compile(r"\b(?:multi-?)?colou?r(?:ful|ed|s)?\b", re.I), ""),
    (re.compile(rf"\b{_COLOUR_WORD}(?:-\w+)?\b", re.I), ""),
    # hedges that carry the verb
    (re.compile(r"\bwhat (?:appears|seems) to be\b", re.I), ""),
    (
        re.compile(r"\b(?:it|this) (?:is|seems|appears) (?:likely|possible|probable) that\b", re.I),
        "",
    ),
    (re.compile(r"\b(?:appears|seems) to be\b", re.I), "is"),
    (re.compile(r"\b(?:appear|seem) to be\b", re.I), "are"),
    (re.compile(r"\b(?:appears|seems) to\b", re.I), ""),
    (re.compile(r"\b(?:appear|seem) to\b", re.I), ""),
    (re.compile(r"\b(?:may|might|could) be\b", re.I), "is"),
    (re.compile(r"\b(?:may|might|could) (?=\w)", re.I), ""),
    # free-standing hedges
    (
        re.compile(
            r"\b(?:possibly|probably|likely|perhaps|presumably|potentially|apparently|"
            r"seemingly|maybe|supposedly|arguably)\b,?",
            re.I,
        ),
        "",
    ),
    (re.compile(r"\b(?:may|might|could|appears?|seems?)\b", re.I), ""),
    (re.compile(r"\b(?:suggesting|indicating) (?:that )?(?:a |an |the )?\w+(?: \w+)?", re.I), ""),
]


def _tidy(text: str) -> str:
    text = re.sub(r"\s+", " ", text)
    # a clause left ending on a bare copula ("the water is blue" lost its colour) goes whole
    text = re.sub(
        r"(^|[;,.!?]\s*)[^;,.!?]*?\b(?:is|are|was|were|looks?|appears?|seems?)"
        r"(?:\s+(?:mostly|mainly|predominantly|largely|all|entirely))?\s*(?=[;,.!?]|$)",
        r"\1",
        text,
        flags=re.I,
    )
    text = re.sub(r"\b(a|an)\s+(?=[,.;:!?]|$)", "", text, flags=re.I)  # article left alone
    text = re.sub(r"\b(an?|the)\s+(and|or|with|of|in)\b", r"\2", text, flags=re.I)
    text = re.sub(r"\ban (?=[b-df-hj-np-tv-z]\w)", "a ", text)
    text = re.sub(r"\bAn (?=[b-df-hj-np-tv-z]\w)", "A ", text)
    text = re.sub(r"\ba (?=[aeiou]\w)", "an ", text)
    text = re.sub(r"\bA (?=[aeiou]\w)", "An ", text)
    text = re.sub(r"\b(and|or|with|of),?\s*(?=[,.;:!?]|$)", "", text, flags=re.I)
    text = re.sub(r"\(\s*\)", "", text)
    text = re.sub(r"\s+([,.;:!?])", r"\1", text)
    text = re.sub(r"([,;:])(?:\s*[,;:])+", r"\1", text)
    text = re.sub(r"[,;:]\s*(?=[.!?]|$)", "", text)
    text = re.sub(r"([.!?])(?:\s*[.!?,;:])+", r"\1", text)
    text = re.sub(r"^\s*[,;:.!?]+\s*", "", text)
    text = re.sub(r"([,.;:!?])(?=\w)", r"\1 ", text)
    text = re.sub(r"\b(\w+)( \1\b)+", r"\1", text, flags=re.I)
    text = re.sub(r"\s+", " ", text).strip()
    return re.sub(r"(^|[.!?]\s+)([a-z])", lambda m: m.group(1) + m.group(2).upper(), text)


def _once(text: str) -> str:
    for pattern, repl in _RULES:
        text = pattern.sub(repl, text)
    return _tidy(text)


def clean(text: str) -> str:
    """The caption without colour terms or speculative wording, tidied; idempotent."""
    out = text
    for _ in range(50):
        nxt = _once(out)
        if nxt == out:
            return out
        out = nxt
    return out
