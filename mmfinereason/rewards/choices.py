"""Multiple-choice answers: the option letter a model committed to, and the options listed in a question.

A model writes a choice as `B`, `(B)`, `B.`, `B)`, `Option B`, `The correct option is (B)`, `B: 45°`, `B. 45°` or
just the option's text (`45°`). Letters are read only from these shapes so `A triangle` or `Area = 4` are never
mistaken for option A; the option text is matched through the options parsed from the question.
"""

from __future__ import annotations

import re

_PREFIX_RE = re.compile(
    r"^(?:the\s+)?(?:final\s+)?(?:correct\s+|right\s+|best\s+)?(?:answer|option|choice)s?"
    r"(?:\s+(?:is|are))?\s*[:：]?\s*",
    re.IGNORECASE,
)
_PAREN_LETTER_RE = re.compile(r"^[(\[]([A-Za-z])[)\]](?:\s.*)?$", re.DOTALL)
_BARE_LETTER_RE = re.compile(r"^([A-Za-z])(?:\s*[.:：)．]\s*.*)?$", re.DOTALL)
_LETTER_LIST_RE = re.compile(r"^[(\[]?[A-Z][)\]]?(?:\s*(?:,|;|/|and|&|\s)\s*[(\[]?[A-Z][)\]]?)+$")

MAX_OPTIONS = 26


def is_choice_gold(gold: str) -> bool:
    """Gold is a single option letter: `B`, `(B)`, `B.`."""
    return extract_letter(gold, strict=True) is not None


def extract_letter(text: str, strict: bool = False) -> str | None:
    """The single option letter in `text`, upper-cased, or None.

    `strict` (used for golds) accepts only upper-case letters, so a gold `a` (a variable) is not read as option A.
    """
    s = text.strip()
    for _ in range(2):
        stripped = _PREFIX_RE.sub("", s) if not strict else s
        if stripped == s:
            break
        s = stripped
    s = s.strip().strip("*").strip()
    for regex in (_PAREN_LETTER_RE, _BARE_LETTER_RE):
        if m := regex.match(s):
            letter = m.group(1)
            if strict and (not letter.isupper() or len(s) > 4):
                return None
            # a bare lowercase word-letter followed by text ("a. the triangle ...") is still a choice; but a lone
            # "I" or "a" inside prose never reaches here because the text would not match the shapes above
            return letter.upper()
    return None


def extract_letters(text: str) -> frozenset[str] | None:
    """Several letters (`A, C`, `A and C`, `(A)(C)`, `AC`) for a multi-select gold, or None."""
    s = _PREFIX_RE.sub("", text.strip()).strip().strip("*").strip()
    compact = s.replace(" ", "")
    if re.fullmatch(r"[A-Z]{2,10}", compact):
        return frozenset(compact)
    if re.fullmatch(r"(?:[(\[][A-Z][)\]]){2,10}", compact):
        return frozenset(re.findall(r"[A-Z]", compact))
    if _LETTER_LIST_RE.match(s) and len(s) <= 60:
        return frozenset(re.findall(r"(?<![A-Za-z])[A-Z](?![A-Za-z])", s))
    return None


_MARKER_RE = re.compile(r"(?:^|(?<=[\s,;:>]))(?:\(([A-Z])\)|([A-Z])[.:：．)])(?=\s|\S)", re.MULTILINE)


def parse_options(question: str | None) -> dict[str, str]:
    """Options listed in a question: `A. 30°\\nB. 45°` or `(A) 30 (B) 45` -> {"A": "30°", "B": "45°"}.

    Letters must run A, B, C, … in order (at least two), so a stray `Point A.` in the text does not make an option.
    The last such run in the question wins: options come after the stem.
    """
    if not question:
        return {}
    text = question[-8000:]
    markers = [(m.group(1) or m.group(2), m.start(), m.end()) for m in _MARKER_RE.finditer(text)]
    if len(markers) < 2:
        return {}
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
    return {k: v for k, v in options.items() if v}
