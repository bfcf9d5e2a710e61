r"""Exact, pure-Python parsing and comparison of numeric answers.

Most MMFineReason golds are numbers (lengths, angles, counts, prices). Handing `12 cm` to sympy costs milliseconds
and a process hop; parsing it here costs microseconds and is *more* faithful: values are `fractions.Fraction`
(no float surprises: `0.1 + 0.2` style errors cannot turn a right answer wrong), the number of written decimals
is kept so a rounded answer can be judged like a human would (gold `3.46`, answer `3.464` is right; gold `0.5`,
answer `0.46` is not), and units a model appends (`cm`, `m^2`, `°`, `degrees`, `$`, `%`) are recognised
instead of being mistaken for variables.

What is not a plain number (`2\sqrt{3}`, `\frac{\pi}{2}`) returns `None` here and goes to the symbolic path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

_DECIMAL = r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?"
_NUM_RE = re.compile(rf"^({_DECIMAL})(?:\s*(?:[eE]|\*\s*10\s*\*\*|(?:\\times|\\cdot|x|\*)\s*10\s*\^)\s*\{{?\s*([+-]?\d{{1,4}})\s*\}}?)?$")
_FRAC_RE = re.compile(r"^([+-])?\s*\\frac\s*\{\s*([+-]?\d{1,30}(?:\.\d{1,30})?)\s*\}\s*\{\s*([+-]?\d{1,30}(?:\.\d{1,30})?)\s*\}$")
_SLASH_RE = re.compile(r"^([+-]?\d{1,30}(?:\.\d{1,30})?)\s*/\s*(\d{1,30}(?:\.\d{1,30})?)$")
_MIXED_RE = re.compile(r"^([+-]?\d{1,30})\s*\\frac\s*\{\s*(\d{1,30})\s*\}\s*\{\s*(\d{1,30})\s*\}$")

# Units a model may append to a number. Single letters only from this set, so `5x` is never read as `5`.
_SINGLE_LETTER_UNITS = set("mgsLlhNJWVAKΩ")
_NOT_UNITS = {
    "and", "or", "to", "of", "plus", "minus", "times", "over", "pi", "sqrt", "sin", "cos", "tan", "cot", "sec",
    "csc", "log", "ln", "exp", "frac", "cdot", "i", "e", "x", "y", "z", "n", "k", "t", "r", "a", "b", "c", "d",
}
_UNIT_RE = re.compile(
    r"^(?:[a-zA-ZΩµμ]{1,20}(?:\s*\^\s*\{?\d\}?)?(?:\s*/\s*[a-zA-Z]{1,10}(?:\s*\^\s*\{?\d\}?)?)?)"
    r"(?:\s+[a-zA-Z]{1,20}(?:\s*\^\s*\{?\d\}?)?){0,2}$"
)
_PREFIX_RE = re.compile(
    r"^(?:approximately|approx\.?|about|around|roughly|nearly|exactly|\\approx|≈|~|=)\s*", re.IGNORECASE
)


@dataclass(frozen=True)
class Number:
    """A parsed numeric answer.

    `decimals` is the count of written decimals of a decimal literal (`3.46` -> 2) and `None` for exact values
    (integers, fractions); `percent` / `degrees` record the unit that changes how values compare.
    """

    value: Fraction
    decimals: int | None
    percent: bool = False
    degrees: bool = False

    @property
    def is_integer(self) -> bool:
        return self.decimals is None and self.value.denominator == 1


_UNIT_SPLIT_RE = re.compile(r"^(.*?[\d}])\s*([a-zA-ZΩµμ][^\\\d]*(?:\^\s*\{?\d\}?[^\\\d]*)?)$")


def strip_unit(s: str) -> tuple[str, bool, bool] | None:
    """Split a trailing unit off: return (value part, percent, degrees), or None if the tail is not a unit.

    `30°` -> (`30`, False, True); `12 cm^2` -> (`12`, False, False); `45%` -> (`45`, True, False);
    `5x` -> None (a variable, not a unit); `7` -> (`7`, False, False).
    """
    s = s.strip()
    if s.startswith("$") and s.count("$") == 1:  # currency
        s = s[1:].strip()
    if s.endswith("%"):
        return s[:-1].strip(), True, False
    if s.lower().endswith("percent"):
        return s[: -len("percent")].strip(), True, False
    if s.endswith("°") or re.search(r"°\s*[CF]$", s):
        return s[: s.rfind("°")].strip(), False, True
    m = re.search(r"\s*(?:degrees?|deg)\.?$", s, re.IGNORECASE)
    if m and m.start() > 0 and (s[m.start() - 1].isdigit() or s[m.start() - 1] in " }"):
        return s[: m.start()].strip(), False, True
    m = _UNIT_SPLIT_RE.match(s)
    if not m:
        return s, False, False
    head, tail = m.group(1).strip(), m.group(2).strip()
    if not _UNIT_RE.match(tail):
        return None
    words = re.findall(r"[a-zA-ZΩµμ]+", tail)
    first = words[0]
    if len(first) == 1 and first not in _SINGLE_LETTER_UNITS:
        return None
    if any(w.lower() in _NOT_UNITS and not (len(w) == 1 and w in _SINGLE_LETTER_UNITS) for w in words):
        return None
    return head, False, False


def _decimal(text: str) -> tuple[Fraction, int | None] | None:
    t = text.replace(",", "")
    if not t or t in "+-." or not any(c.isdigit() for c in t):
        return None
    try:
        value = Fraction(t)
    except (ValueError, ZeroDivisionError):
        return None
    return value, (len(t.split(".", 1)[1]) if "." in t else None)


def _parse_plain(s: str) -> tuple[Fraction, int | None] | None:
    if re.fullmatch(r"[+-]?[\d ,.]+", s) and not re.search(r"\d \d|, ", s):  # `1 000` is a number, `32, 349` a list
        s = s.replace(" ", "")
    elif re.fullmatch(r"[+-]?\d{1,3}(?: \d{3})+(?:\.\d+)?", s):
        s = s.replace(" ", "")
    if m := _NUM_RE.match(s):
        dec = _decimal(m.group(1))
        if dec is None:
            return None
        value, decimals = dec
        if m.group(2) is not None:
            exp = int(m.group(2))
            value *= Fraction(10) ** exp
            decimals = None if decimals is None else max(decimals - exp, 0)
        return value, decimals
    for regex in (_FRAC_RE, _SLASH_RE):
        if m := regex.match(s):
            groups = m.groups()
            sign = -1 if (len(groups) == 3 and groups[0] == "-") else 1
            num, den = _decimal(groups[-2]), _decimal(groups[-1])
            if num is None or den is None or den[0] == 0:
                return None
            return sign * num[0] / den[0], None
    if m := _MIXED_RE.match(s):
        whole, frac = int(m.group(1)), Fraction(int(m.group(2)), int(m.group(3)) or 1)
        return (whole - frac if m.group(1).startswith("-") else whole + frac), None
    return None


def parse_number(text: str) -> Number | None:
    """Parse `12`, `-3.5`, `1,000`, `2.5e-3`, `1.2 \\times 10^{4}`, `3/4`, `\\frac{3}{4}`, `2\\frac{1}{2}`, `45%`,
    `30°`, `12 cm^2`, `$5.20`; return None for anything else (expressions, words, lists)."""
    return _parse_number(text) if len(text) <= 200 else None  # a number is short; long text is not cached


@lru_cache(maxsize=8192)  # pure, `Number` is frozen, and golds repeat across a prompt's rollouts
def _parse_number(text: str) -> Number | None:
    s = _PREFIX_RE.sub("", text.strip())
    if not s or len(s) > 120:
        return None
    if s.startswith(("-$", "+$")):
        s = s[0] + s[2:]
    if s.startswith("$") and s.count("$") == 1:
        s = s[1:].strip()
    plain = _parse_plain(s)
    if plain is not None:
        return Number(plain[0], plain[1])
    split = strip_unit(s)
    if split is None or split[0] == s:
        return None
    head, percent, degrees = split
    plain = _parse_plain(head)
    if plain is None:
        return None
    return Number(plain[0], plain[1], percent, degrees)


def _close(a: Fraction, b: Fraction, rel_tol: float) -> bool:
    if a == b:
        return True
    return abs(a - b) <= Fraction(rel_tol) * max(abs(a), abs(b))


def _equal(p: Number, g: Number, rel_tol: float) -> bool:
    """Exact values (integers, fractions) compare exactly; a decimal on either side allows `rel_tol`."""
    if p.decimals is None and g.decimals is None:
        return p.value == g.value
    return _close(p.value, g.value, rel_tol)


def _rounds_to(exact: Fraction, shown: Number, min_digits: int = 2) -> bool:
    """Is `shown` (a decimal literal with d decimals and >= `min_digits` significant digits) `exact` rounded to d
    decimals?"""
    if shown.decimals is None:
        return False
    digits = str(abs(shown.value.numerator * 10**shown.decimals // shown.value.denominator)).lstrip("0")
    if len(digits) < min_digits:  # `0.5` is too coarse to stand for 0.46; `0.33` may stand for 1/3
        return False
    half_ulp = Fraction(1, 2 * 10**shown.decimals)
    return abs(exact - shown.value) <= half_ulp


def numbers_equal(
    pred: Number, gold: Number, rel_tol: float = 1e-6, percent: str = "either", precision: int | None = None
) -> bool:
    """Numeric equivalence as a careful grader applies it.

    - exact values compare exactly; decimals within `rel_tol` (relative);
    - a value rounded to the shown decimals is accepted in either direction (`3.46` ~ `3.4641`), but only when the
      rounded side shows at least two significant digits, so `0.5` != `0.46` and `12` != `12.4`;
    - a percent on one side only is read as its fraction (`25%` ~ `0.25`), as the bare number (`25%` ~ `25`), or
      either (`percent`: "fraction", "number", "either");
    - with `precision`, two values equal once both are rounded to that many decimals are also equal.
    """
    candidates = [pred.value]
    if pred.percent != gold.percent:
        fraction = pred.value / 100 if pred.percent else pred.value * 100
        candidates = {"either": [pred.value, fraction], "fraction": [fraction], "number": [pred.value]}[percent]
    for value in candidates:
        p = Number(value, pred.decimals, gold.percent, gold.degrees)
        if _equal(p, gold, rel_tol):
            return True
        if precision is not None and round(p.value, precision) == round(gold.value, precision):
            return True
        if p.decimals is not None and gold.decimals is not None and p.decimals != gold.decimals:
            coarse, fine = (p, gold) if p.decimals < gold.decimals else (gold, p)
            if _rounds_to(fine.value, coarse):
                return True
        elif gold.decimals is not None and p.decimals is None and p.value.denominator != 1:
            if _rounds_to(p.value, gold):  # gold 0.33, answer 1/3
                return True
        elif p.decimals is not None and gold.decimals is None and gold.value.denominator != 1:
            if _rounds_to(gold.value, p):  # gold 1/3, answer 0.333
                return True
    return False


def rounds_to_gold(value: float, gold: Number, rel_tol: float = 1e-6, min_digits: int = 3) -> bool:
    """Compare a float computed symbolically (e.g. `2\\sqrt{3}`) with a decimal literal, using the same rules, but
    asking 3 significant digits of the literal by default (`3.46` stands for 2√3; `3.5` does not)."""
    try:
        exact = Fraction(value)
    except (ValueError, OverflowError):
        return False
    if _close(exact, gold.value, max(rel_tol, 1e-9)):
        return True
    return gold.decimals is not None and _rounds_to(exact, gold, min_digits)


_COMMA_DECIMAL_RE = re.compile(r"^([+-]?\d+),(\d+)$")
_POINT_DECIMAL_RE = re.compile(r"^[+-]?\d*\.\d+$")


def comma_decimal(text: str, other: str, decimal_comma: bool | None) -> str | None:
    """`1,22` read with a decimal comma (`1.22`), when the convention says so; None to keep the text as written.

    `decimal_comma=None` (auto) reads it only when the comma cannot be a thousands separator (not exactly three
    digits after it, or a leading `0,`) and `other` is written with a decimal point: `1,22` vs `1.22`, `0,111` vs
    `0.111`. `True` reads every lone comma between digits as a decimal comma; `False` never does.
    """
    m = _COMMA_DECIMAL_RE.match(text.strip())
    if m is None or decimal_comma is False:
        return None
    whole, frac = m.groups()
    if decimal_comma is None:
        thousands = len(frac) == 3 and whole.lstrip("+-") != "0" and len(whole.lstrip("+-")) <= 3
        if thousands or not _POINT_DECIMAL_RE.match(other.strip()):
            return None
    return f"{whole}.{frac}"
