"""Multiple-choice answers: the option letter a model committed to, and the options listed in a question.

A model writes a choice as `B`, `(B)`, `B.`, `B)`, `Option B`, `The correct option is (B)`, `B: 45°`, `B. 45°` or
just the option's text (`45°`). Letters are read only from these shapes so `A triangle` or `Area = 4` are never
mistaken for option A; the option text is matched through the options parsed from the question.
"""

from __future__ import annotations

import re
from functools import lru_cache

_PREFIX_RE = re.compile(
    r"^(?:the\s+)?(?:final\s+)?(?:correct\s+|right\s+|best\s+)?(?:answer|option|choice)s?"
    r"(?:\s+(?:is|are))?\s*[:：]?\s*",
    re.IGNORECASE,
)
# Words that vouch for a letter without changing it: `the answer is for sure D`, `definitely (B)`.
_HEDGE_FREE_RE = re.compile(
    r"^(?:for\s+sure|definitely|certainly|clearly|surely|obviously|undoubtedly|indeed|option|choice)\s*[,:]?\s*",
    re.IGNORECASE,
)
_PAREN_LETTER_RE = re.compile(r"^[(\[]([A-Za-z])[)\]](?:\s*(.*))?$", re.DOTALL)
_BARE_LETTER_RE = re.compile(r"^([A-Za-z])(?:\s*[.:：)．]\s*.*)?$", re.DOTALL)
_LEAD_LETTER_RE = re.compile(r"^([A-Za-z])(?=[\s,;\-–—]|[^\x00-\x7f])(.*)$", re.DOTALL)
# After a letter, these start a justification (`B because it fits`, `B is the correct choice`, `B, not C`), so
# the letter stands. Any other word makes it prose (`A triangle`), so no letter is read.
_JUSTIFY_RE = re.compile(
    r"^\s*(?:[,;]|[-–—]\s)|^\s*(?:because|since|as|is|was|would|should|seems|fits|it|which|this|that|here|per|due|"
    r"for|from|given|according|with|being|not|and|or|but|then|correct|right|wrong|option|choice|answer|first|"
    r"second|third|fourth|fifth)\b",
    re.IGNORECASE,
)
_LETTER_LIST_RE = re.compile(
    r"^[(\[]?[A-Z][)\]]?(?:\s*(?:,|;|/|\band\b|\bor\b|&|\s)\s*[(\[]?[A-Z][)\]]?)+$", re.IGNORECASE
)
_GOLD_WITH_TEXT_RE = re.compile(r"^(?:\(([A-Z])\)|([A-Z])[.:)])\s+(\S.{0,200})$", re.DOTALL)

MAX_OPTIONS = 26


def gold_choice_with_text(gold: str) -> tuple[str, str] | None:
    """A gold written as letter plus option text, `(D) Alina` or `D. Alina`: (`D`, `Alina`); else None."""
    m = _GOLD_WITH_TEXT_RE.match(gold.strip())
    return (m.group(1) or m.group(2), m.group(3).strip()) if m else None


def _strip_prefixes(s: str) -> str:
    for _ in range(3):
        stripped = _HEDGE_FREE_RE.sub("", _PREFIX_RE.sub("", s)).strip().strip("*").strip()
        if stripped == s:
            break
        s = stripped
    return s


def extract_letter(text: str, strict: bool = False) -> str | None:
    """The single option letter in `text`, upper-cased, or None.

    `strict` (used for golds) accepts only a lone upper-case letter (`B`, `(B)`, `B.`), so a gold `a` (a variable)
    is not read as option A. Otherwise the letter may carry a justification (`B, because …`, `B is correct`,
    `B，因为…`) but not prose that makes it a word (`A triangle`).
    """
    s = text.strip() if strict else _strip_prefixes(text.strip())
    s = s.strip().strip("*").strip()
    if strict:
        m = _PAREN_LETTER_RE.match(s) or _BARE_LETTER_RE.match(s)
        if m and m.group(1).isupper() and len(s) <= 4:
            return m.group(1)
        return None
    if m := _PAREN_LETTER_RE.match(s):
        return m.group(1).upper()
    if m := _BARE_LETTER_RE.match(s):
        return m.group(1).upper()
    if m := _LEAD_LETTER_RE.match(s):
        letter, rest = m.groups()
        if not rest[:1].isascii() or _JUSTIFY_RE.match(rest):
            if letter in "aI" and rest[:1] == " " and not _JUSTIFY_RE.match(rest):
                return None
            return letter.upper()
    return None


def extract_letters(text: str) -> frozenset[str] | None:
    """Several letters (`A, C`, `A and C`, `B or C`, `A/B`, `(A)(C)`, `AC`, `(A, C)`) for a multi-select gold, or
    None."""
    s = _strip_prefixes(text.strip())
    if len(s) > 2 and s[0] in "([" and s[-1] in ")]" and re.search(r"[,/;]|\band\b|\bor\b", s):
        s = s[1:-1].strip()
    if m := re.match(r"^([\x00-\x7f]*?)\s*[^\x00-\x7f]", s):  # `A, C 是正确的`: the labels end where prose begins
        s = m.group(1).strip() or s
    compact = s.replace(" ", "")
    if re.fullmatch(r"[A-Z]{2,10}", compact) and not re.search(r"\b(?:and|or|AND|OR)\b", s):
        return frozenset(compact)
    if re.fullmatch(r"(?:[(\[][A-Z][)\]]){2,10}", compact):
        return frozenset(re.findall(r"[A-Z]", compact))
    if _LETTER_LIST_RE.match(s) and len(s) <= 60:
        letters = re.findall(r"(?<![A-Za-z])[A-Za-z](?![A-Za-z])", s)
        if all(c.isupper() for c in letters):
            return frozenset(letters)
    return None


_MARKER_RE = re.compile(r"(?:^|(?<=[\s,;:>]))(?:\(([A-Z])\)|([A-Z])[.:：．)])(?=\s|\S)", re.MULTILINE)


def parse_options(question: str | None) -> dict[str, str]:
    """Options listed in a question: `A. 30°\\nB. 45°` or `(A) 30 (B) 45` -> {"A": "30°", "B": "45°"}.

    Letters must run A, B, C, … in order (at least two), so a stray `Point A.` in the text does not make an option.
    The last such run in the question wins: options come after the stem. (Cached: 16 rollouts share a question.)
    """
    return dict(_parse_options(question)) if question else {}


@lru_cache(maxsize=2048)
def _parse_options(question: str) -> tuple[tuple[str, str], ...]:
    text = question[-8000:]
    markers = [(m.group(1) or m.group(2), m.start(), m.end()) for m in _MARKER_RE.finditer(text)]
    if len(markers) < 2:
        return ()
    best: list[tuple[str, int, int]] = []
    for i, (letter, _, _) in enumerate(markers):
        if letter != "A":
            continue
        chain = [markers[i]]
        for marker in markers[i + 1:]:
            if marker[0] == chr(ord(chain[-1][0]) + 1):
                chain.append(marker)
                if len(chain) >= MAX_OPTIONS:
                    break
        if len(chain) >= 2 and len(chain) >= len(best):
            best = chain
    options = {}
    for k, (letter, _, end) in enumerate(best):
        stop = best[k + 1][1] if k + 1 < len(best) else len(text)
        body = text[end:stop]
        if k + 1 == len(best):  # the last option ends at its line
            body = body.split("\n", 1)[0]
        options[letter] = body.strip().rstrip(",;").strip()
    return tuple((k, v) for k, v in options.items() if v)  # immutable: the cache hands it to every caller
