r"""`is_correct`: is the answer a model committed to equivalent to the gold answer?

The gold's type decides how to compare (MMFineReason golds are short: a number, an expression, an option letter, a
word; golds in the wild may also be whole solutions, whose `\boxed{}` or "final answer" is then the gold):

| gold | compared by |
|---|---|
| letter `B`, or letter + text `(D) Alina` | the letter (`B`, `(B)`, `"B"`, `B, because …`) or the option's text |
| several letters `AC` / `A, C` | the same set of letters (`A and C`, `A/C`, `A、C`, `(A, C)`) |
| `yes` / `no` / `true` / `false` | the polarity of the answer's first yes/no word |
| number (`12`, `0.5`, `3/4`, `30°`, `45%`, `1,000`, `12 cm`) | exact `Fraction`s, rounding, units (numeric.py) |
| several answers `2, 3` / `x=2 or x=3` / `AB=4, CD=5` | a one-to-one match, in any order unless `ordered_lists` |
| matrix (`pmatrix`, `bmatrix`, `array`) | entry by entry (structures.py), else math-verify |
| named value `x = 3`, `|AB| = 1`, `\frac{NO}{BO} = …` | the value, when the answer gives only a value |
| words | normalised text (case, punctuation, articles, `\text{}`) |
| anything else (`2\sqrt{3}`, `(1, 2]`, `\{1,2\}`, `x \geq 5`) | math-verify, in a sandbox process under a hard limit |

**When the fast path is not sure, ask math-verify; never let a text comparison decide a LaTeX structure.** The fast
path (pure Python, microseconds) is definitive only for the types it fully understands: numbers against numbers,
letters, yes/no, words against words; there a wrong answer stays wrong without reaching sympy (`12`/`1.2`,
`B`/`BC`, `30°`/`60°`). A "not equal" anywhere else (expressions, matrices, sets, intervals, equations, an answer
phrase that is a whole sentence, a response with no answer marker at all) is asked of math-verify before it
becomes a 0: for a clean answer, math-verify compares it with the gold; for prose, math-verify reads the end of the
response with its own extraction (its "last LaTeX / last number" rules), as it would on its own, except that prose
which hedges (`12 or 13`, `maybe 12`) or denies the gold's value (`not 12, it is 13`) is never read. math-verify only
ever turns a 0 into a 1 here, so every rule above that rejects stays in force where it is sure. The conventions on
which graders disagree (decimal comma, percent, list order, rounding) are options with stated defaults
(conventions.py).
"""

from __future__ import annotations

import re
from fractions import Fraction
from functools import lru_cache

from .answer import BARE_ANSWER_CHARS, Extraction, boxed_answer, extract
from .budget import Budget, count, verification_stats
from .choices import extract_letter, extract_letters, gold_choice_with_text
from .conventions import Conventions
from .equivalence import Check, is_yes_no, judge
from .normalize import MAX_ANSWER_CHARS, clean, is_wordy, split_answers, within_limits
from .numeric import parse_number
from .structures import is_structure, matrix_cells

DEFAULT_TIMEOUT_S = 2.0
DEFAULT_REL_TOL = 1e-4
READ_CHARS = 1500
"""How much of the end of a free-text response math-verify reads (the answer is at the end; bounded work)."""

__all__ = ["DEFAULT_REL_TOL", "DEFAULT_TIMEOUT_S", "is_correct", "verification_stats"]


def gold_answer(gold: str) -> str:
    r"""The answer inside a gold that is a whole solution (`… so the answer is $\boxed{14{,}916}$.`), else the gold."""
    if "\\boxed" in gold or "\\fbox" in gold:
        found = boxed_answer(gold, join_all=len(gold) <= BARE_ANSWER_CHARS)
        if found:
            return found
    if len(gold) > BARE_ANSWER_CHARS:
        found = extract(gold)
        if found.answer and found.source != "bare":
            return found.answer
    return gold


@lru_cache(maxsize=64)
def _conventions(*args) -> Conventions:
    """One validated, immutable `Conventions` per distinct set of options (built once, not per check)."""
    return Conventions(*args)


def _make_conventions(*args) -> Conventions:
    try:
        return _conventions(*args)
    except TypeError:  # an unhashable option value: let the validation name it
        return Conventions(*args)


def _is_closed_kind(gold: str) -> bool:
    """Golds whose comparison the fast path owns entirely: option letters, yes/no, plain words."""
    if extract_letter(gold, strict=True) or gold_choice_with_text(gold) or extract_letters(gold) or is_yes_no(gold):
        return True
    return is_wordy(gold) and not is_structure(gold) and parse_number(gold) is None and "\\" not in gold


def _sure(pred: str, gold: str, conv: Conventions) -> bool:
    """Is the fast path's "not equal" definitive for this pair (see the module docstring)?"""
    if _is_closed_kind(gold):
        return True
    if conv.ordered_lists and len(split_answers(gold)) > 1:
        return True  # a convention the caller chose: math-verify (which compares lists as sets) may not undo it
    if is_structure(gold) or is_structure(pred) or matrix_cells(gold) or matrix_cells(pred):
        return False
    return parse_number(gold) is not None and parse_number(pred) is not None


_HEDGE_RE = re.compile(
    r"\b(?:or|either|maybe|perhaps|possibly|probably|might|unsure|unclear|guess|not\s+sure"
    r"|(?:cannot|can't|could\s+not|couldn't)\s+(?:decide|tell|determine|be\s+sure))\b",
    re.IGNORECASE,
)
_DENIED_RE = re.compile(r"\bnot\s+(?:equal\s+to\s+|be\s+|\$\s*)?(-?\d+(?:,\d{3})*(?:\.\d+)?)", re.IGNORECASE)
HEDGE_CHARS = 300
"""How much of the end of a prose answer is searched for a hedge before math-verify may read it."""


def _hedged(found: Extraction, pred: str | None) -> bool:
    """`12 or 13`, `not 12, it is 13`, `maybe 12`: prose that offers alternatives is never read for an answer
    (math-verify would take one of them, and a reward must not pay for hedging)."""
    tail = pred if found.source == "phrase" and pred else found.text[-HEDGE_CHARS:]
    return bool(_HEDGE_RE.search(tail))


def _denied(found: Extraction, gold: str) -> bool:
    """`The answer is not 12, it is 13`: a value the response explicitly denies is never its answer."""
    gold_num = parse_number(gold)
    if gold_num is None:
        return False
    for m in _DENIED_RE.finditer(found.text[-READ_CHARS:]):
        denied = parse_number(m.group(1))
        if denied is not None and denied.value == gold_num.value:
            return True
    return False


def _ask_math_verify(found: Extraction, pred: str | None, gold: str, check: Check, free_text: bool) -> bool:
    prose = pred is None or (found.source in ("phrase", "bare") and is_wordy(pred) and parse_number(pred) is None)
    if not prose:
        result = check.symbolic("compare", pred, gold)
    elif _hedged(found, pred) or _denied(found, gold):
        return False
    elif not free_text and found.source != "phrase":
        return False  # no answer marker at all, and the caller wants committed answers only
    else:
        text = found.text[-READ_CHARS:]
        if not within_limits(text, max_chars=READ_CHARS):
            count("refused")
            return False
        result = check.symbolic("read", text, gold)
    return bool(result and result["equal"])


def is_correct(
    response: str,
    gold: str,
    *,
    question: str | None = None,
    rel_tol: float = DEFAULT_REL_TOL,
    timeout: float = DEFAULT_TIMEOUT_S,
    decimal_comma: bool | None = None,
    percent: str = "either",
    ordered_lists: bool = False,
    precision: int | None = None,
    free_text: bool = True,
) -> bool:
    """Is the answer committed to in `response` (or `response` itself, if it is a short bare answer) equal to `gold`?

    Args:
        response: a model response (`<think>…</think> … <answer>X</answer>`, `\\boxed{X}`, `Answer: X`, an
            answer phrase in another language, free text) or a bare answer (`"12"`).
        gold: the ground-truth answer (MMFineReason's `answer` column), or a whole solution ending in `\\boxed{X}`.
        question: the prompt; when it lists options (`A. 30°`, `(B) 45°`), an answer given as the option's text
            matches the gold letter, and an answer letter matches a gold given as option text.
        rel_tol: relative tolerance for decimal values (integers and fractions always compare exactly).
        timeout: hard limit in seconds for the whole check, in any thread or process; past it the check is False
            and counted in `verification_stats()["timeouts"]` (and never cached as a verdict).
        decimal_comma, percent, ordered_lists, precision: grading conventions on which graders disagree; their
            defaults and meaning are in `mmfinereason/rewards/conventions.py`.
        free_text: whether a response with no answer marker at all (no tag, box or answer phrase) may still be
            read by math-verify's own extraction (its last LaTeX or number), as an evaluation grader would. True
            here; `accuracy_reward` passes False, because a GSPO rollout cut at the length limit has no committed
            answer and must not be paid for the last number of its unfinished reasoning.
    """
    conv = _make_conventions(rel_tol, decimal_comma, percent, ordered_lists, precision)
    count("checks")
    if isinstance(gold, (int, float, Fraction)) and not isinstance(gold, bool):
        gold = str(gold)
    if not isinstance(gold, str):
        raise TypeError(f"gold must be a str, got {type(gold).__name__}")
    found = extract(response) if isinstance(response, str) else Extraction(None, "unfinished")
    if found.source == "unfinished":
        count("no_answer")
        return False
    if len(gold) > 64 * MAX_ANSWER_CHARS or (found.answer and len(found.answer) > 4 * MAX_ANSWER_CHARS):
        count("refused")  # before any regex touches it
        return False
    gold = clean(gold_answer(gold))
    pred = clean(found.answer) if found.answer is not None else None
    if not gold or (pred is not None and not pred):
        count("no_answer")
        return False
    if not within_limits(gold) or (pred is not None and not within_limits(pred)):
        count("refused")
        return False
    check = Check(Budget(timeout), conv)
    if pred is not None:
        if judge(pred, gold, question, check):
            return True
        if _sure(pred, gold, conv) or check.budget.timed_out:
            return False
    elif _is_closed_kind(gold) or not found.text.strip():
        count("no_answer")
        return False
    return _ask_math_verify(found, pred, gold, check, free_text)
