"""Pure-Python normalisation of short answer strings (the cheap half of the verifier).

Every check starts here, in the caller's process, with no sympy: strip the LaTeX wrappers a model puts around an
answer (`$…$`, `\\text{…}`, `\\mathrm{…}`, `\\left`/`\\right`, spacing commands, Markdown bold), unify unicode look-
alikes (−, ×, ², °) and split lists at top level. Everything here is linear in the input and regex patterns have
no nested quantifiers, so a hostile string cannot make it slow; the caller caps the length before calling.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

MAX_ANSWER_CHARS = 1000
"""Answers longer than this are not compared (a real final answer is short; a megabyte of digits is an attack)."""

MAX_BRACE_DEPTH = 24
"""Deeper `{`/`(`/`[` nesting is refused before any parser sees it (sympy recursion blows the stack and memory)."""

CACHED_CHARS = 256
"""Answers up to this long are cached (golds repeat across rollouts); longer ones are not kept in memory."""

_UNICODE = {
    "\u2212": "-", "\u2013": "-", "\u2014": "-", "\u2012": "-", "\ufe63": "-", "\uff0d": "-",
    "\u00d7": r"\times ", "\u22c5": r"\cdot ", "\u00b7": r"\cdot ", "\u2217": "*",
    "\u00b2": "^2", "\u00b3": "^3", "\u00b9": "^1",
    "\u00ba": "\u00b0", "\u2218": "\u00b0", "\u02da": "\u00b0",
    "\u03c0": r"\pi ", "\u221a": r"\sqrt", "\u2248": r"\approx ", "\u2260": r"\neq ",
    "\u2264": r"\le ", "\u2265": r"\ge ", "\u221e": r"\infty ", "\u00a0": " ", "\u2009": " ", "\u202f": " ",
    "\u2044": "/", "\uff0c": ",", "\uff1a": ":", "\uff08": "(", "\uff09": ")", "\u3002": ".", "\uff0e": ".",
    "\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"', "\u3001": ",", "\u00ab": '"', "\u00bb": '"',
}
_UNICODE_RE = re.compile("|".join(map(re.escape, _UNICODE)))

# Commands whose argument is kept and whose name is dropped: `\text{cm}` -> `cm`.
_UNWRAP_RE = re.compile(
    r"\\(?:text|textbf|textit|textrm|textnormal|textup|textsf|texttt|mathrm|mathbf|mathit|mathsf|mathtt|mathnormal|"
    r"operatorname|mbox|hbox|boxed|fbox|displaystyle|emph|underline|overline)\s*\{([^{}]*)\}"
)
_DROP_RE = re.compile(
    r"\\(?:left|right|big|Big|bigg|Bigg|displaystyle|textstyle|limits)(?![a-zA-Z])|(?<!\\)\\[,;:!> ]|\\quad|\\qquad|~"
)
_DEGREE_RE = re.compile(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|\\degree|\u00b0")
_SPACES_RE = re.compile(r"\s+")


# `9^{9^{9}}`, `2^{123456}`, `(10^{10})!`: numbers sympy would try to write out in full (minutes, gigabytes).
_HUGE_POWER_RE = re.compile(
    r"\d\s*\^\s*\{?\s*\(?\s*\d+\s*\}?\s*\^"  # a numeric tower 9^{9^9}
    r"|\d\s*\^\s*\{?\s*\+?\d{5}"  # 2^{99999}
    r"|\^\s*\{?\s*\d{2,}\s*\}?\s*\)?\s*!|\d{4,}\s*\}?\s*\)?\s*!"  # (10^{10})!, 1000!
)


def within_limits(text: str, max_chars: int = MAX_ANSWER_CHARS) -> bool:
    """Cheap guard before any parsing: bounded length, bracket nesting (linear scan, no recursion) and no numeric
    power towers or huge factorials (`9^{9^{9}}`, `2^{99999}`, `(10^{10})!`)."""
    if len(text) > max_chars:
        return False
    if "^" in text or "!" in text:
        if _HUGE_POWER_RE.search(text):
            return False
    depth = 0
    for ch in text:
        if ch in "{([":
            depth += 1
            if depth > MAX_BRACE_DEPTH:
                return False
        elif ch in "})]":
            depth = max(depth - 1, 0)
    return True


def clean(text: str) -> str:
    """Strip presentation from a short answer, keep the maths: `$\\text{B}$.` -> `B`, `5\\,\\text{cm}^2` -> `5 cm^2`."""
    return _clean_cached(text) if len(text) <= CACHED_CHARS else _clean(text)


@lru_cache(maxsize=8192)  # pure, and golds repeat across a prompt's rollouts
def _clean_cached(text: str) -> str:
    return _clean(text)


def _clean(text: str) -> str:
    s = text
    if not s.isascii():  # our map first (NFKC would turn `cm²` into `cm2`), then NFKC for full-width forms etc.
        s = unicodedata.normalize("NFKC", _UNICODE_RE.sub(lambda m: _UNICODE[m.group(0)], s))
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("\\cfrac", "\\frac")
    s = s.replace("\\%", "%").replace("\\$", "$").replace("{,}", ",")
    s = _THOUSANDS_BANG_RE.sub(",", s)  # `12,\!000` (MATH's thousands separator) -> `12,000`
    s = _SHORTHAND_RE.sub(lambda m: f"{m.group(1)}{{{m.group(2)}}}", s)  # `\sqrt2`, `\sqrt[3]2` -> braces
    s = _FRAC_SHORTHAND_RE.sub(r"\\frac{\1}{\2}", s)  # `\frac13` -> `\frac{1}{3}`
    s = _DEGREE_RE.sub("\u00b0", s)
    s = _DROP_RE.sub(" ", s)
    for _ in range(4):  # nested wrappers: \boxed{\text{B}}
        new = _UNWRAP_RE.sub(r" \1 ", s)
        if new == s:
            break
        s = new
    s = s.replace("**", "").replace("__", "")
    s = _SPACES_RE.sub(" ", s).strip()
    # Math delimiters around the whole answer, repeated: $$x$$, \(x\), \[x\].
    for _ in range(3):
        before = s
        if s.startswith("$$") and s.endswith("$$") and len(s) > 4:
            s = s[2:-2].strip()
        elif s.startswith("$") and s.endswith("$") and len(s) > 2 and s.count("$") == 2:
            s = s[1:-1].strip()
        elif (s.startswith("\\(") and s.endswith("\\)")) or (s.startswith("\\[") and s.endswith("\\]")):
            s = s[2:-2].strip()
        s = s.rstrip(" .;,。").strip()
        s = _TRAILING_BACKSLASH_RE.sub("", s).strip()  # `5\\` (a line break the model left) or a stray `\`
        if len(s) > 2 and s[0] == s[-1] and s[0] in "\"'" and s.count(s[0]) == 2:  # `"C"` -> `C`
            s = s[1:-1].strip()
        if s.count("$") == 1 and (s.startswith("$") and not re.match(r"^\$\s*\d", s) or s.endswith("$")):
            s = s.strip("$").strip()  # a lone delimiter left over: `0.3333$`, `$x`
        if s == before:
            break
    if s.count("$") == 2 and not re.search(r"\$\s*[\d.]", s[s.index("$") + 1:]):
        s = s.replace("$", " ").strip()  # `$125$ miles` -> `125 miles`, but `$5 and $6` keeps its currency
        s = _SPACES_RE.sub(" ", s)
    return s


_THOUSANDS_BANG_RE = re.compile(r"(?<=\d),\\!\s*(?=\d{3})")
_SHORTHAND_RE = re.compile(r"(\\sqrt(?:\[[^\]{}]{1,10}\])?)\s*([0-9a-zA-Z])")
_FRAC_SHORTHAND_RE = re.compile(r"\\frac\s*(\d)\s*(\d)")
_TRAILING_BACKSLASH_RE = re.compile(r"\s*\\+$")

_ARTICLES_RE = re.compile(r"\b(?:a|an|the)\b")
_PUNCT_RE = re.compile(r"[^\w\s°%+\-*/^=<>.]")


def normalize_text(text: str) -> str:
    """Normalise free text for string equality: case, punctuation, articles, whitespace (SQuAD-style)."""
    return _normalize_cached(text) if len(text) <= CACHED_CHARS else _normalize_text(text)


@lru_cache(maxsize=8192)
def _normalize_cached(text: str) -> str:
    return _normalize_text(text)


def _normalize_text(text: str) -> str:
    s = clean(text).lower()
    s = s.replace("{", " ").replace("}", " ").replace("\\", " ")
    s = re.sub(r"(?<=[a-z])-(?=[a-z])", " ", s)  # north-east == north east
    s = _PUNCT_RE.sub(" ", s)
    s = s.replace(".", " ") if not re.search(r"\d\.\d", s) else s
    s = _ARTICLES_RE.sub(" ", s)
    return _SPACES_RE.sub(" ", s).strip()


_LHS_RE = re.compile(r"^[^=<>≈]{1,40}?(?<![<>!\\])=(?!=)\s*")


def strip_lhs(text: str) -> str:
    """`x = 3` -> `3`, `AB = 2 + 1 = 3` -> `3`: the value a model reports after naming the quantity.

    Only used when the gold itself is not an equation, so `x=3` vs gold `x=-3` still compares the values 3 and -3.
    """
    s = text
    for _ in range(8):
        m = _LHS_RE.match(s)
        if not m or not s[m.end():].strip():
            break
        s = s[m.end():]
    return s.strip()


def split_approx(text: str) -> list[str]:
    r"""`2\sqrt{3} \approx 3.46` -> both sides: a model that gives the exact and rounded value is right for either gold."""
    parts = [p.strip() for p in re.split(r"\\approx|≈|\\sim(?![a-z])", text) if p.strip()]
    return parts or [text]


def split_top_level(text: str, seps: tuple[str, ...] = (",", ";")) -> list[str]:
    """Split at separators that are not inside (), [], {} — `1, (2, 3)` -> [`1`, `(2, 3)`]."""
    if _GROUPED_RE.match(text.strip()):  # `1,000` and `$12,500.50` are one number, not a list
        return [text.strip()]
    parts, depth, start = [], 0, 0
    i = 0
    while i < len(text):
        ch = text[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0 and ch in seps:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


_GROUPED_RE = re.compile(r"^[+-]?\$?\d{1,3}(?:,\d{3})+(?:\.\d+)?\s*[^\d,]*$")


_WORD_SPLIT_RE = re.compile(r"\s+(?:and|or)\s+|\\text\{\s*(?:and|or)\s*\}|\\(?:quad|qquad)")


def split_answers(text: str) -> list[str]:
    """Several answers in one string: `2, 3`, `x=2 or x=-1`, `2; 3`, `A and C` (not inside brackets)."""
    parts = []
    for p in split_top_level(text):
        parts.extend(q.strip() for q in _WORD_SPLIT_RE.split(p) if q.strip())
    return parts


_NUMBER_WORDS = {
    w: str(i)
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen twenty".split()
    )
}
_NUMBER_WORDS.update({"thirty": "30", "forty": "40", "fifty": "50", "hundred": "100", "none": "0"})


def number_word(text: str) -> str | None:
    """`Three` -> `3` (counting questions are often answered in words)."""
    return _NUMBER_WORDS.get(text.strip().strip(".").lower())


_LATEX_CMD_RE = re.compile(r"\\[a-zA-Z]+")
_ENV_RE = re.compile(r"\\(?:begin|end)\s*\{[a-zA-Z*]+\}(?:\{[^{}]*\})?")
_MATH_WORDS = {
    "sin", "cos", "tan", "cot", "sec", "csc", "log", "ln", "exp", "lim", "max", "min", "sqrt", "frac", "pi",
    "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh", "infty", "inf", "det", "gcd", "lcm", "mod", "deg",
}


def is_wordy(text: str) -> bool:
    """Does the answer contain a real word (`isosceles`, `red`), as opposed to maths (`2\\sqrt{3}`, `x^2+1`)?"""
    bare = _LATEX_CMD_RE.sub(" ", _ENV_RE.sub(" ", text))  # `\begin{vmatrix}` names no word
    return any(w.lower() not in _MATH_WORDS for w in re.findall(r"[A-Za-z]{2,}", bare))


def compact(text: str) -> str:
    """Whitespace-free form for literal comparison of expressions: `\\frac{1}{2} ` == `\\frac {1}{2}`."""
    return re.sub(r"\s+", "", text)
