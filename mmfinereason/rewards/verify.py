r"""`is_correct`: is the answer a model committed to equivalent to the gold answer?

The gold's type decides how to compare (MMFineReason golds are short: a number, an expression, an option letter, a
word):

| gold | compared by |
|---|---|
| option letter `B` | the letter in `B`, `(B)`, `B.`, `Option B`, `B: text`; or the option's text, from the question |
| several letters `AC` / `A, C` | the same set of letters |
| `yes` / `no` / `true` / `false` | the polarity of the answer's first yes/no word |
| number (`12`, `0.5`, `3/4`, `30°`, `45%`, `1,000`, `2e-3`, `12 cm`) | exact `Fraction`s, rounding, units (numeric.py) |
| several answers `2, 3` / `x=2 or x=3` | a one-to-one match in any order |
| words | normalised text (case, punctuation, articles, `\text{}`) |
| anything else (`2\sqrt{3}`, `(1, 2]`, `\{1,2\}`, `x^2+1`) | math-verify, in a sandbox process under a hard limit |

Only the last row (and a numeric gold against an expression answer such as `2\sqrt{3}` for `3.46`) leaves this
process; everything else is pure Python and takes microseconds. Every decision the fast path makes is definitive
for the types it understands, so a wrong answer stays wrong (`12` vs `1.2`, `B` vs `BC`, `30°` vs `60°`).
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import Counter, OrderedDict
from fractions import Fraction

from .answer import committed_answer
from .choices import extract_letter, extract_letters, parse_options
from .normalize import (
    MAX_ANSWER_CHARS,
    clean, compact, is_wordy, normalize_text, number_word, split_answers, split_approx, split_top_level, strip_lhs,
    within_limits,
)
from .numeric import Number, numbers_equal, parse_number, rounds_to_gold, strip_unit
from .sandbox import TIMEOUT, SandboxError, get_pool

DEFAULT_TIMEOUT_S = 2.0
DEFAULT_REL_TOL = 1e-4
MAX_LIST_ITEMS = 12

_STATS: Counter = Counter()
_STATS_LOCK = threading.Lock()
_CACHE: OrderedDict = OrderedDict()
_CACHE_SIZE = 8192


def _count(key: str) -> None:
    with _STATS_LOCK:
        _STATS[key] += 1


def verification_stats(reset: bool = False) -> dict[str, int]:
    """Counters since start (or the last reset), for trainers to log: `checks`, `symbolic` (sandbox calls),
    `timeouts` (checks cut at the hard limit, scored 0), `errors` (parser errors, scored 0), `refused` (answers over
    the size/nesting limits, scored 0), `no_answer` (nothing to compare)."""
    with _STATS_LOCK:
        out = {k: _STATS.get(k, 0) for k in ("checks", "symbolic", "timeouts", "errors", "refused", "no_answer")}
        if reset:
            _STATS.clear()
    return out


class _Budget:
    """The hard deadline of one `is_correct` call, shared by all the sandbox calls it makes."""

    def __init__(self, timeout: float, rel_tol: float) -> None:
        self.deadline = time.monotonic() + timeout
        self.rel_tol = rel_tol
        self.timed_out = False

    def symbolic(self, op: str, *args):
        """Run a sandbox op within what is left of the deadline; None on timeout or error (both counted)."""
        key = (op, *args)
        with _STATS_LOCK:
            if key in _CACHE:
                _CACHE.move_to_end(key)
                cached = _CACHE[key]
                if cached is TIMEOUT:
                    _STATS["timeouts"] += 1
                    self.timed_out = True
                    return None
                return cached
        left = self.deadline - time.monotonic()
        if left <= 0 or self.timed_out:
            _count("timeouts")
            self.timed_out = True
            return None
        _count("symbolic")
        try:
            result = get_pool().call(op, *args, timeout=left)
        except SandboxError:
            _count("errors")
            result = None
        if result is TIMEOUT:
            _count("timeouts")
            self.timed_out = True
        with _STATS_LOCK:
            _CACHE[key] = result
            if len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)
        return None if result is TIMEOUT else result


# --------------------------------------------------------------------------------------------- single answers
def _value_candidates(pred: str, gold_has_eq: bool) -> list[str]:
    """`x = 2\\sqrt{3} \\approx 3.46` -> [`2\\sqrt{3}`, `3.46`]: every value the answer states."""
    out = []
    for part in split_approx(pred):
        part = part if gold_has_eq else strip_lhs(part)
        word = number_word(part)
        out.append(word or part)
    return out


def _numeric_equal(pred: str, gold: Number, budget: _Budget) -> bool:
    for cand in _value_candidates(pred, gold_has_eq=False):
        num = parse_number(cand)
        if num is not None:
            if numbers_equal(num, gold, budget.rel_tol):
                return True
            continue
        if is_wordy(cand) or not re.search(r"\d|\\pi|\\sqrt|\\frac", cand):
            continue  # words or bare variables: never equal to a number, no need for sympy
        head = strip_unit(cand)
        value = budget.symbolic("value", head[0] if head else cand)
        if value is None:  # not a closed form (`\\sin^2 x + \\cos^2 x`): let math-verify simplify it
            result = budget.symbolic("compare", head[0] if head else cand, _number_latex(gold))
            if result and result["equal"]:
                return True
            continue
        if rounds_to_gold(value, gold, budget.rel_tol, min_digits=3):
            return True
        if gold.degrees and "\\pi" in cand:
            if rounds_to_gold(value * 180 / math.pi, gold, budget.rel_tol, min_digits=3):
                return True
    return False


def _number_latex(num: Number) -> str:
    value = num.value
    return str(value.numerator) if value.denominator == 1 else f"\\frac{{{value.numerator}}}{{{value.denominator}}}"


def _text_equal(pred: str, gold: str) -> bool:
    g = normalize_text(gold)
    return any(normalize_text(c) == g for c in {pred, strip_lhs(pred)}) and bool(g)


def _split_bracketed(s: str) -> tuple[str, list[str], str] | None:
    """`(1, 2]` -> (`(`, [`1`, `2`], `]`): tuples, coordinates and intervals."""
    if len(s) >= 2 and s[0] in "([" and s[-1] in ")]":
        inner = split_top_level(s[1:-1], (",",))
        if len(inner) >= 2:
            return s[0], inner, s[-1]
    return None


def _expression_equal(pred: str, gold: str, budget: _Budget) -> bool:
    gold_has_eq = "=" in gold
    if gold_has_eq and "=" not in pred and re.match(r"^[A-Za-z][A-Za-z_0-9{}]{0,3}\s*=", gold):
        gold = strip_lhs(gold)  # gold `x = 3`, answer `3`
        gold_has_eq = False
    gold_unit = strip_unit(gold)
    gold_core = gold_unit[0] if gold_unit else gold
    for cand in _value_candidates(pred, gold_has_eq):
        cand_unit = strip_unit(cand)
        core = cand_unit[0] if cand_unit else cand
        if compact(core) == compact(gold_core):
            return True
        # tuples and intervals with the same brackets: element by element, in order
        pb, gb = _split_bracketed(core), _split_bracketed(gold_core)
        if pb and gb and pb[0] == gb[0] and pb[2] == gb[2] and len(pb[1]) == len(gb[1]):
            if all(_single_equal(p, g, budget) for p, g in zip(pb[1], gb[1])):
                return True
        result = budget.symbolic("compare", core, gold_core)
        if not result:
            continue
        if result["equal"]:
            return True
        pred_num, gold_num = parse_number(core), parse_number(gold_core)
        if result["gold_value"] is not None and pred_num is not None:
            if rounds_to_gold(result["gold_value"], pred_num, budget.rel_tol, min_digits=3):
                return True
            degrees = result["gold_value"] * 180 / math.pi
            if pred_num.degrees and rounds_to_gold(degrees, pred_num, budget.rel_tol, min_digits=3):
                return True
        if result["pred_value"] is not None and gold_num is not None:
            if rounds_to_gold(result["pred_value"], gold_num, budget.rel_tol, min_digits=3):
                return True
    return False


_YES = {"yes", "true", "correct", "right", "y", "t"}
_NO = {"no", "false", "incorrect", "wrong", "n", "f"}


def _polarity(text: str) -> bool | None:
    words = normalize_text(text).split()
    if not words:
        return None
    if words[0] in _YES | _NO:
        found = {w in _YES for w in words if w in _YES | _NO}
        return None if len(found) > 1 and words[0] not in {"yes", "no"} else words[0] in _YES
    found = {w in _YES for w in words[:6] if w in _YES | _NO}
    return found.pop() if len(found) == 1 else None


def _single_equal(pred: str, gold: str, budget: _Budget) -> bool:
    """One answer against one gold value (no lists, no option letters)."""
    if compact(pred) == compact(gold):
        return True
    g_low = normalize_text(gold)
    if g_low in {"yes", "no", "true", "false"}:
        return _polarity(pred) == (g_low in _YES)
    word = number_word(gold)
    gold_num = parse_number(word or gold)
    if gold_num is not None:
        return _numeric_equal(pred, gold_num, budget)
    if is_wordy(gold):
        return _text_equal(pred, gold)
    return _expression_equal(pred, gold, budget)


# --------------------------------------------------------------------------------------------- choices, lists
def _choice_equal(pred: str, gold_letter: str, options: dict[str, str], budget: _Budget) -> bool:
    letter = extract_letter(pred)
    if letter is not None:
        return letter == gold_letter
    if extract_letters(pred) is not None:
        return False  # several letters for a single-letter gold: a hedge, never right
    text = options.get(gold_letter)
    if text is None:
        return False
    # the option's text itself, and it must not equally match a different option
    if not _single_equal(pred, clean(text), budget):
        return False
    others = [k for k, v in options.items() if k != gold_letter and compact(clean(v)) == compact(clean(text))]
    return not others


def _letters_equal(pred: str, gold: str, gold_letters: frozenset[str]) -> bool:
    letters = extract_letters(pred)
    if letters is None:
        single = extract_letter(pred)
        letters = frozenset([single]) if single else None
    compact_gold, compact_pred = compact(gold), compact(pred)
    if compact_pred == compact_gold or compact_pred == compact_gold[::-1]:  # segment AB = BA
        return True
    if letters is None:
        return False
    if len(compact_gold) >= 3 and re.fullmatch(r"[A-Z]+", compact_gold) and re.fullmatch(r"[A-Z]+", compact_pred):
        return False  # `ABC` vs `BAC` unseparated: an angle or a path, order matters
    return letters == gold_letters


def _list_equal(preds: list[str], golds: list[str], budget: _Budget) -> bool:
    if len(preds) != len(golds) or len(golds) > MAX_LIST_ITEMS:
        return False
    unmatched = list(range(len(preds)))
    for g in golds:
        hit = next((i for i in unmatched if _single_equal(preds[i], g, budget)), None)
        if hit is None:
            return False
        unmatched.remove(hit)
    return True


def _unwrap_set(s: str) -> str:
    for left, right in (("\\{", "\\}"), ("{", "}")):
        if s.startswith(left) and s.endswith(right):
            return s[len(left): -len(right)].strip()
    return s


def _judge(pred: str, gold: str, question: str | None, budget: _Budget) -> bool:
    options = parse_options(question)
    gold_letter = extract_letter(gold, strict=True)
    if gold_letter is not None:
        return _choice_equal(pred, gold_letter, options, budget)
    pred_letter = extract_letter(pred)
    if pred_letter is not None and pred_letter in options and len(pred) <= 4 + len(options[pred_letter]):
        if _single_equal(clean(options[pred_letter]), gold, budget):  # gold is the option text, answer the letter
            return True
    gold_letters = extract_letters(gold)
    if gold_letters is not None and re.fullmatch(r"[A-Z ,;/&()\[\]and]+", gold):
        return _letters_equal(pred, gold, gold_letters)
    golds = split_answers(gold)
    if len(golds) > 1 and not re.match(r"^[(\[\\{]", gold):
        preds = split_answers(_unwrap_set(pred))
        if "=" not in gold:
            preds = [strip_lhs(p) for p in preds]
        return _list_equal(preds, golds, budget)
    return _single_equal(pred, gold, budget)


def is_correct(
    response: str,
    gold: str,
    *,
    question: str | None = None,
    rel_tol: float = DEFAULT_REL_TOL,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> bool:
    """Is the answer committed to in `response` (or `response` itself, if it is a short bare answer) equal to `gold`?

    Args:
        response: a model response (`<think>…</think> … <answer>X</answer>`, `\\boxed{X}`, `Answer: X`) or a bare
            answer (`"12"`).
        gold: the ground-truth answer (MMFineReason's `answer` column).
        question: the prompt; when it lists options (`A. 30°`, `(B) 45°`), an answer given as the option's text
            matches the gold letter, and an answer letter matches a gold given as option text.
        rel_tol: relative tolerance for decimal values (integers and fractions always compare exactly).
        timeout: hard limit in seconds for the whole check, in any thread or process; past it the check is False
            and counted in `verification_stats()["timeouts"]`.
    """
    _count("checks")
    if isinstance(gold, (int, float, Fraction)) and not isinstance(gold, bool):
        gold = str(gold)
    if not isinstance(gold, str):
        raise TypeError(f"gold must be a str, got {type(gold).__name__}")
    pred = committed_answer(response) if isinstance(response, str) else None
    if pred is None:
        _count("no_answer")
        return False
    if len(pred) > 4 * MAX_ANSWER_CHARS or len(gold) > 4 * MAX_ANSWER_CHARS:  # before any regex touches it
        _count("refused")
        return False
    pred, gold = clean(pred), clean(gold)
    if not pred or not gold:
        _count("no_answer")
        return False
    if not within_limits(pred) or not within_limits(gold):
        _count("refused")
        return False
    return _judge(pred, gold, question, _Budget(timeout, rel_tol))
