"""Caption cleanup: no colour terms, no speculative claims, still tidy sentences.

The claim of a hedge is what the hedge qualifies: for a modal or seem-verb ("may be", "appears
to", "suggests") its verb and complement; for a hedge adverb or adjective ("possibly", "likely",
"a potential") the phrase it heads; for "what looks like" the whole noun phrase; for a bare
", possibly," the segment after it. A claim goes with its hedge and is never asserted ("may be"
never becomes "is"). Rules, by sentence and segment (text between , ; : and dashes):

- a hedged modifier goes whole: a relative clause ("that may be X", ", which could be X"), an
  appositive (", possibly X"), a phrase ("possibly near a river", "and likely a canal", "as well
  as possibly a barn", "a potential quarry"), a coordinated verb phrase ("and may be a park"), a
  participle (", suggesting X") or a parenthetical; inside a subject it ends where the main verb
  starts ("A road that may be a track crosses it." -> "A road crosses it.");
- a subject that loses a hedged conjunct must still agree with its verb (never re-inflected), else
  and always after "or" (the other choice is unsure too) the clause goes ("A river and possibly a
  canal cross it." -> "", but "Fields and maybe orchards line it." -> "Fields line it.");
- a hedged main clause ("This could be an airport", "It is likely that ...", "The road probably
  leads ...", "Possibly a canal and a river cross it", or a modifier whose removal leaves nothing
  or a dangling verb) goes with the segments hanging on it, up to the next independent clause
  ("; ..." or ", and <subject> <verb> ..."), and with a verbless lead-in ("In the centre, ", the
  rest of a subject); a sentence left empty goes, and so "" when all are hedged;
- a list that lost its last item gets its "and" back ("Fields, orchards, and maybe a barn." ->
  "Fields and orchards."); a lone first item loses its comma ("Fields, and a tower");
- colour words go with shades and suffixes ("dark green", "reddish", "red-roofed", "colourful",
  "in various colours"); a clause left on a bare copula ("the water is") goes;
- spaces, punctuation, articles and dangling words are tidied; every sentence starts with a
  capital and ends with "."; sentences still holding a hedge word go. Rules repeat until nothing
  changes, so clean(clean(x)) == clean(x).
"""

from __future__ import annotations

import re

COLOURS = (
    "red|green|blue|yellow|orange|purple|violet|pink|brown|black|white|gr[ae]y|beige|tan|"
    "turquoise|teal|cyan|magenta|maroon|navy|olive|golden|gold|silver|silvery|crimson|"
    "scarlet|emerald|azure|ochre|ocher|khaki|lavender|lilac|ivory|cream|amber|bronze|"
    "copper|rust|rusty|burgundy|indigo|aqua|charcoal|sepia|coral|salmon|mauve|tawny"
)
_STEMS = "|".join(f"{c}|{c[:-1]}(?=ish|e?y)" if c.endswith("e") else c for c in COLOURS.split("|"))
_SHADE = r"(?:(?:light|dark|pale|bright|deep|vivid|muted|pastel|dull)[ -])?"
_ONE = rf"{_SHADE}(?:{_STEMS})(?:[dn]?ish|ness|e?y|s)?"  # red, reddish, bluish, greyness, reds
_COLOUR = rf"{_ONE}(?:(?:, |[ -](?:and|or)[ -]){_ONE})*(?:[ -]?(?:colou?red|tinted|toned|hued))?"
_COLOUR_RULES = [
    re.compile(p, re.I)
    for p in (
        r"\b(?:in|of) (?:various|different|many|several|multiple) colou?rs?\b",
        rf"\b(?:(?:in|with) )?(?:various |different |many )?(?:shade|hue|tone|tint)s? of "
        rf"{_COLOUR}\b(?:,? (?:and |or )?{_COLOUR}\b)*",
        rf"\b(?:in|of) (?:a |the )?{_COLOUR}(?= *[,.;:!?)]| *$)",
        r"\b(?:(?:brightly|vividly) )?(?:multi-?)?colou?r(?:ful|ed|s)?\b",
        rf"\b{_COLOUR}(?:-\w+)?\b",
    )
]


def _ws(words: str) -> frozenset[str]:
    return frozenset(words.split())


_AUX = _ws("may might could will would can does do did should must to")
_COPULA = _ws("is are was were be been being 's")
_SOFT = _ws("also most more very quite highly well then now still")
_REL = _ws("that which who whose where")
_CONJ = _ws("and or but while whereas yet so although though because")
_DET = _ws("a an the some any one two three several many its their")
_PLURAL = _ws("two three four five six several many numerous multiple various these those both")
_COORD = _CONJ | {"as well as", "along with", "together with"}
_SUBJ = _CONJ | _DET | _ws("there it this these those they most other")
_TRANS = _COPULA | _ws("of has have show shows depicts features contains includes reveals there")
_PREP = _ws("with of near beside including like to from by at in on behind next around along")
_PREP |= _ws("into over under for")
_FOLLOW = _DET | _ws("this these it them much most part both nearby straight through across")
_FOLLOW |= _ws("along into to from between near next in on over under around behind beside past")
_FOLLOW |= _ws("up down out")
_VERB = re.compile(
    r"(?:is|are|was|were|has|have|(?:cross|run|lie|wind|cut|cover|surround|border|flow|sit|lead"
    r"|stretch|extend|connect|pass|meander|separate|follow|contain|include|show|line|dot|fill"
    r"|reach|curve|snake|traverse|bisect|divide|frame|encircle|feature|form|span|hug|skirt"
    r"|face|overlook|stand|cluster|depict|capture|reveal|display|remain|sprawl|rise|dominate"
    r"|intersect|flank|occup(?:y|ie)|carr(?:y|ie))(?:s|es)?)"
)
_SEEM = re.compile(
    r"may|might|could|(?:appear|seem)(?:s|ed)?|resembl(?:es?|ed)|suggest(?:s|ed)?|indicate[sd]?"
)
_PART = re.compile(r"suggesting|indicating|implying|hinting|signall?ing")
_ADV = re.compile(
    r"possibl[ey]|probabl[ey]|(?:un)?likely|perhaps|potential(?:ly)?|maybe|presumabl[ey]|"
    r"apparent(?:ly)?|seemingly|supposedly|conceivabl[ey]|arguably|plausibl[ey]|"
    r"(?:appear|seem|resembl)ing"
)
_ADV_BEFORE = {"like": _ws("looking"), "to": _ws("thought believed presumed")}
_ADV_BEFORE |= {"of": _ws("indicative suggestive reminiscent"), "with": _ws("consistent")}


def _low(word: str) -> str:
    return word.lower().strip("\"'()[].!?")


def _kind(w: list[str], i: int) -> str | None:
    """The hedge type of w[i]: seem (verb), part, adv, what; None if it is no hedge."""
    lw, nxt = _low(w[i]), _low(w[i + 1]) if i + 1 < len(w) else ""
    if _SEEM.fullmatch(lw) or re.fullmatch(r"look(?:s|ed)?", lw) and nxt in _ws("like to as"):
        return "seem"
    if _PART.fullmatch(lw):
        return "part"
    if _ADV.fullmatch(lw) or lw in _ADV_BEFORE.get(nxt, ()):
        return "adv"
    return "what" if lw == "what" and nxt and _kind(w, i + 1) == "seem" else None


def _first_hedge(w: list[str]) -> int | None:
    return next((i for i in range(len(w)) if _kind(w, i)), None)


def _is_verb(w: list[str], k: int) -> bool:
    """w[k] is a finite main verb (a caption verb followed by an object or adverbial)."""
    lw, after = _low(w[k]), _low(w[k + 1]) if k + 1 < len(w) else ""
    if lw in _ws("is are was were has have"):
        return True
    compass = re.fullmatch(r"(?:north|south|east|west)\w*", after)
    return bool(_VERB.fullmatch(lw) and (after in _FOLLOW or compass))


def _has_verb(w: list[str], a: int = 0, b: int | None = None) -> bool:
    return any(_is_verb(w, k) for k in range(a, len(w) if b is None else b))


def _coord(w: list[str], e: int) -> int:
    """Where a coordinator ending at w[e] starts ("and", "as well as"); e + 1 when none does."""
    ks = (k for k in (e - 2, e - 1, e) if 0 <= k <= e < len(w))
    return next((k for k in ks if " ".join(map(_low, w[k : e + 1])) in _COORD), e + 1)


def _agrees(x: list[str], conj: str, verb: str) -> bool:
    """Subject x still agrees with the verb once "<conj> possibly Y" is gone ("or": never)."""
    # x is plural only when surely so: "two/several/these ..." or "(the) [adj] fields" (1-3
    # words, no name, the last ending in -s but not -ss, -us, -is); "is" or "-s" is singular
    x = x[1:] if x and _low(x[0]) in _CONJ else x  # ", and fields and maybe X surround it"
    low, v = [_low(t) for t in x], _low(verb)
    bare, name = low[low[:1] == ["the"] :], any(t[:1].isupper() for t in x[1:])
    plural = bool(low) and (low[0] in _PLURAL or low[0].isdigit())
    if 0 < len(bare) <= 3 and not set(bare) & (_PREP | _DET | _CONJ | _COPULA) and not name:
        plural |= bool(re.search(r"\w[^isu']s$", bare[-1]))
    singular = v in _ws("is was has") or bool(re.fullmatch(r"\w+[^s]s", v))
    return bool(x) and _low(conj) != "or" and plural != singular


def _end(w: list[str], a: int, i: int) -> int:
    """Where a modifier starting at a (hedge at i) ends: the main verb after it, or the end."""
    s = max((k for k in range(a) if _low(w[k]) in _ws("and or but while")), default=0)
    if all(_low(x) in _CONJ for x in w[:a]) or _has_verb(w, s, a):  # a clause: ends at the end
        return len(w)
    ks = (k for k in range(i + 1, len(w)) if _low(w[k - 1]) not in _AUX | _REL and _is_verb(w, k))
    return next(ks, len(w))


def _span(w: list[str], i: int, kind: str) -> tuple[int, int] | None:
    """The words [a, b) of a hedged modifier at w[i]; None when the clause itself is hedged."""
    n, j = len(w), i - 1
    while j >= 0 and _low(w[j]) in _SOFT:
        j -= 1
    cop = j >= 0 and _low(w[j]) in _COPULA
    j -= cop
    while j >= 0 and _low(w[j]) in _SOFT | {"there"}:
        j -= 1
    if j >= 0 and _low(w[j]) in _REL:
        j -= 2 * (j > 1 and _low(w[j - 1]) == "of")  # "one of which"
        return j, _end(w, j, i)
    if cop or j >= 0 and _low(w[j]) in _AUX:
        return None
    if (c := _coord(w, j)) <= j and kind != "what":
        return c, n if kind != "adv" or i + 1 < n and _is_verb(w, i + 1) else _end(w, c, i)
    if kind == "part":
        return i, n
    if j < 0:
        return 0, n
    if kind == "seem" or kind == "adv" and i + 1 < n and _is_verb(w, i + 1):
        return None
    a = j if _low(w[j]) in _DET and kind == "adv" else i
    if _coord(w, a - 1) == a:  # "along with" is a coordinator, "with" alone a preposition
        a -= (a < i or kind == "what") and a > 0 and _low(w[a - 1]) in _PREP
    a = _coord(w, a - 1)
    return a, _end(w, a, i)


def _independent(sep: str, w: list[str]) -> bool:
    return bool(w) and (sep == ";" or _low(w[0]) in _SUBJ and _has_verb(w, 1, len(w)))


def _relist(out: list[tuple[str, list[str]]], tail: list[str] | None) -> None:
    """A list that lost its last item gets its "and"; a lone first item loses its comma."""
    k = next((k for k, (sep, x) in enumerate(out) if x is tail and sep == ","), 0)
    item, ands = out[k][1] if out else [], _ws("and or")  # "Fields, orchards, and maybe a barn"
    if k and _low(item[0]) not in _PREP | _REL and not re.search(r"(?:ed|ing)$", item[0]):
        if not _has_verb(item) and not set(map(_low, item)) & ands:
            out[k] = ("and", item)
    if len(out) > 1 and out[1][0] == "," and _low(out[1][1][0]) in ands:  # "Fields, and a tower"
        if not _has_verb(out[0][1] + out[1][1]) and not set(map(_low, out[0][1])) & ands:
            out[1] = ("", out[1][1])


def _drop_hedges(sentence: str) -> str:
    """The sentence without its hedged modifiers and hedged clauses."""
    parts = re.split(r"(,(?=\s|$)|;|:(?=\s)|\s[—–-]+\s)", sentence)
    segs = [("", parts[0].split())]
    segs += [(parts[k].strip(), parts[k + 1].split()) for k in range(1, len(parts), 2)]
    out: list[tuple[str, list[str]]] = []
    dropping, glue, bare, dropped_sep, gone, tail = False, False, False, "", "", None
    for sep, w in segs:
        tail = None if w and _low(w[0]) in _ws("and or") else tail  # the list goes on
        if dropping and (bare or not _independent(sep, w)):
            bare = False  # a bare ", possibly," hedges the segment after it
            continue
        if dropping and out and dropped_sep == ";":
            sep, w = ";", w[_low(w[0]) in _CONJ :]
        starts_predicate = w and (_VERB.fullmatch(_low(w[0])) or _low(w[0]) in _PREP | _COPULA)
        if glue and sep == "," and (starts_predicate or w and _low(w[0]) in _ws("and or")):
            sep = ""  # "A path, possibly a road, crosses it" -> "A path crosses it"
        subj = [x for _, ws in out for x in ws]
        orphan = gone and not sep and _is_verb(w, 0) and not _has_verb(subj)  # "A, and maybe B,"
        out, w = ([], []) if orphan and not _agrees(subj, gone, w[0]) else (out, w)
        dropping, glue, dropped_sep, gone = bool(orphan and not w), False, sep, ""
        if w and all(_low(x) in _SOFT | _CONJ or _kind(w, k) == "adv" for k, x in enumerate(w)):
            w, dropping, bare = [], True, True
        while (i := _first_hedge(w)) is not None:
            span, lim = _span(w, i, _kind(w, i) or ""), i
            a, b = span or (0, 0)
            if span and b == len(w) and a > 0 and _low(w[a - 1]) in _TRANS:
                span = None  # "The image shows [what looks like a quarry]": nothing is left
            conj = span is not None and any(_coord(w, a + k) == a for k in range(3))
            v = max((k for k in range(a) if _is_verb(w, k)), default=-1)  # "X runs and <subject>"
            v = next((k for k in range(v, a) if _low(w[k]) in _CONJ), v) if v >= 0 else v
            if conj and b < len(w) and not _agrees(w[v + 1 : a], w[a], w[b]):
                span, lim = None, a  # "A river and possibly a canal cross it": the clause goes
            if span is not None:
                rest = w[:a] + w[b:]
                if out or any(_low(x) not in _CONJ for x in rest):
                    if conj and b == len(w):  # the list lost its last item
                        tail = rest or (out[-1][1] if out else None)
                    w, glue, gone = rest, not rest, _low(w[0]) if conj and not rest else ""
                    continue
            cut = [k for k in range(1, lim) if _low(w[k]) in _CONJ and _has_verb(w, 0, k)]
            lead = lim < i or out and _low(out[0][1][0]) in _PREP  # subject or "In the centre,"
            if lead and not cut and sep in ("", ",") and not _has_verb(subj):
                out.clear()  # "In the centre, this may be X"; "A river, a road and maybe X cross"
            w, dropping = (w[: cut[-1]] if cut else []), True
        if w:
            out.append((sep, w[1:] if not out and _low(w[0]) in _CONJ else w))
    _relist(out, tail)
    return "".join(
        ("" if k == 0 else f"{sep} " if sep in ",;:" else f" {sep} ") + " ".join(w)
        for k, (sep, w) in enumerate(out)
    )


_DANGLE = r"a|an|the|and|or|but|with|of|in|on|at|by|from|to|near|next|into|that|which|its|their|as"
_TIDY: list[tuple[str, str]] = [
    (r"\s+", " "),
    # a clause left ending on a bare copula ("the water is blue" lost its colour) goes whole
    (
        r"(?i)(^|[;,.!?]\s*|\b(?:and|but|while|whereas)\s+)"
        r"(?:(?!\b(?:and|but|while|whereas)\b)[^;,.!?])*?\b(?:is|are|was|were)"
        r"(?:\s+(?:mostly|mainly|predominantly|largely|all|entirely))?\s*(?=[;,.!?]|$)",
        r"\1",
    ),
    (rf"(?i)\b(?:{_DANGLE})\s*(?=[,;:.!?)]|$)", ""),
    (r"\([\s,;:—–-]*", "("),
    (r"[\s,;:—–-]*\)", ")"),
    (r"\(\)", ""),
    (r"(?i)\b(an?|the)\s+(and|or|with|of|in)\b", r"\2"),
    (r"\b(a|A)n (?=[b-df-hj-np-tv-z]\w)", r"\1 "),
    (r"\b(a|A) (?=[aeiou]\w)", r"\1n "),
    (r"\s+([,.;:!?)])", r"\1"),
    (r"([,;:])(?:\s*[,;:])+", r"\1"),
    (r"[,;:]\s*(?=[.!?)]|$)", ""),
    (r"([.!?])(?:\s*[.!?,;:])+", r"\1"),
    (r"([,;!?])(?=[A-Za-z])", r"\1 "),
    (r"(?i)\b(\w+)( \1\b)+", r"\1"),
    (r"\s+", " "),
]


def hedges(text: str) -> int:
    """How many hedge words (modals, seem-verbs, hedge adverbs: what `clean` removes claims
    for) a text holds."""
    w = text.split()
    return sum(1 for i in range(len(w)) if _kind(w, i))


def _sentences(text: str) -> list[str]:
    return [s.strip(" .!?,;:") for s in re.split(r"(?<=[.!?])\s+", text)]


def _once(text: str) -> str:
    text = re.sub(r"\s+", " ", text)
    hedged = r"\s*\(([^()]*)\)"
    text = re.sub(hedged, lambda m: m[0] if _first_hedge(m[1].split()) is None else "", text)
    text = ". ".join(_drop_hedges(s) for s in _sentences(text))
    for colour in _COLOUR_RULES:
        text = colour.sub("", text)
    for pattern, repl in _TIDY:
        text = re.sub(pattern, repl, text)
    # parentheses: balanced pairs stay, strays go
    text = re.sub(r"\(([^()]*)\)", "\0\\1\1", text.strip()).translate({40: None, 41: None})
    kept = []
    for s in _sentences(text.replace("\0", "(").replace("\1", ")")):
        s = re.sub(r"^(?:(?:and|or|but|yet|so)\b|[^\w(])+", "", s, flags=re.I).strip()
        if re.search(r"[A-Za-z0-9]", s) and _first_hedge(s.split()) is None:
            kept.append(re.sub(r"^[^A-Za-z0-9]*[a-z]", lambda m: m[0].upper(), s) + ".")
    return " ".join(kept)


def clean(text: str) -> str:
    """The caption without colour terms or speculative claims, tidied; idempotent."""
    out = text
    for _ in range(50):
        nxt = _once(out)
        if nxt == out:
            return out
        out = nxt
    return out
