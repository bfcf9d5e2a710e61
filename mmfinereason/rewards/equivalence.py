r"""The fast path: is one cleaned answer equivalent to one cleaned gold? Pure Python first, math-verify when needed.

The gold's type decides how to compare (see the table in `verify.py`). Every function here answers *equal* or
*not equal by the rules of its type*; `verify.py` decides whether a "not equal" is sure (numbers, letters, yes/no,
words) or must be asked of math-verify (expressions, structures, free text).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .budget import Budget
from .choices import extract_letter, extract_letters, gold_choice_with_text, parse_options
from .conventions import Conventions
from .normalize import clean, compact, is_wordy, normalize_text, number_word, split_answers, split_approx, \
    split_top_level, strip_lhs
from .numeric import Number, comma_decimal, numbers_equal, parse_number, rounds_to_gold, strip_unit
from .structures import canonical_relation, matrix_cells, named_value

MAX_LIST_ITEMS = 12


@dataclass
class Check:
    """What one comparison needs: its deadline (sandbox calls) and the grading conventions."""

    budget: Budget
    conv: Conventions

    def symbolic(self, op: str, *args):
        return self.budget.symbolic(op, *args)

    def numbers_equal(self, pred: Number, gold: Number) -> bool:
        return numbers_equal(pred, gold, self.conv.rel_tol, self.conv.percent, self.conv.precision)


# --------------------------------------------------------------------------------------------- single answers
def _value_candidates(pred: str, gold_has_eq: bool) -> list[str]:
    """`x = 2\\sqrt{3} \\approx 3.46` -> [`2\\sqrt{3}`, `3.46`]: every value the answer states."""
    out = []
    for part in split_approx(pred):
        part = part if gold_has_eq else strip_lhs(part)
        word = number_word(part)
        out.append(word or part)
    return out


def _numeric_equal(pred: str, gold: Number, check: Check) -> bool:
    rel_tol = check.conv.rel_tol
    for cand in _value_candidates(pred, gold_has_eq=False):
        num = parse_number(cand)
        if num is not None:
            if check.numbers_equal(num, gold):
                return True
            continue
        if is_wordy(cand) or not re.search(r"\d|\\pi|\\sqrt|\\frac", cand):
            continue  # words or bare variables: never equal to a number, no need for sympy
        head = strip_unit(cand)
        value = check.symbolic("value", head[0] if head else cand)
        if value is None:  # not a closed form (`\\sin^2 x + \\cos^2 x`): let math-verify simplify it
            result = check.symbolic("compare", head[0] if head else cand, _number_latex(gold))
            if result and result["equal"]:
                return True
            continue
        if rounds_to_gold(value, gold, rel_tol, min_digits=3):
            return True
        if gold.degrees and "\\pi" in cand:
            if rounds_to_gold(value * 180 / math.pi, gold, rel_tol, min_digits=3):
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


def _matrix_equal(pred: str, gold: str, check: Check) -> bool | None:
    """Entry by entry when both are matrices of one shape (any environment); None when either is not a matrix."""
    gm, pm = matrix_cells(gold), matrix_cells(pred)
    if gm is None or pm is None:
        return None
    if len(gm) != len(pm) or len(gm[0]) != len(pm[0]):
        return False
    return all(_single_equal(p, g, check) for prow, grow in zip(pm, gm) for p, g in zip(prow, grow))


def _expression_equal(pred: str, gold: str, check: Check) -> bool:
    matrix = _matrix_equal(pred, gold, check)
    if matrix:
        return True
    gold_has_eq = "=" in gold
    if gold_has_eq and "=" not in pred:
        named = named_value(gold)
        if named is not None:  # gold `|AB| = 1`, `\frac{NO}{BO} = …`, answer `1`: the value is the answer
            return _single_equal(pred, named[1], check)
    elif gold_has_eq:
        named_g, named_p = named_value(gold), named_value(pred)
        if named_g and named_p and compact(named_g[0]) == compact(named_p[0]):  # `x = 7 = 11` vs `x = 11`
            if _single_equal(named_p[1], named_g[1], check):
                return True
    if canonical_relation(pred) == canonical_relation(gold):  # `x >= 5` is `x \geq 5`
        return True
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
            if all(_single_equal(p, g, check) for p, g in zip(pb[1], gb[1])):
                return True
        result = check.symbolic("compare", core, gold_core)
        if not result:
            continue
        if result["equal"]:
            return True
        if _rounded_side_equal(core, gold_core, result, check):
            return True
    return False


def _rounded_side_equal(core: str, gold_core: str, result: dict, check: Check) -> bool:
    """A decimal on one side that rounds the closed form on the other (`6.28` for `2\\pi`)."""
    rel_tol = check.conv.rel_tol
    pred_num, gold_num = parse_number(core), parse_number(gold_core)
    if result["gold_value"] is not None and pred_num is not None:
        if rounds_to_gold(result["gold_value"], pred_num, rel_tol, min_digits=3):
            return True
        degrees = result["gold_value"] * 180 / math.pi
        if pred_num.degrees and rounds_to_gold(degrees, pred_num, rel_tol, min_digits=3):
            return True
    if result["pred_value"] is not None and gold_num is not None:
        if rounds_to_gold(result["pred_value"], gold_num, rel_tol, min_digits=3):
            return True
    return False


_YES = {"yes", "true", "correct", "right", "y", "t"}
_NO = {"no", "false", "incorrect", "wrong", "n", "f"}


def polarity(text: str) -> bool | None:
    words = normalize_text(text).split()
    if not words:
        return None
    if words[0] in _YES | _NO:
        found = {w in _YES for w in words if w in _YES | _NO}
        return None if len(found) > 1 and words[0] not in {"yes", "no"} else words[0] in _YES
    found = {w in _YES for w in words[:6] if w in _YES | _NO}
    return found.pop() if len(found) == 1 else None


def is_yes_no(gold: str) -> bool:
    return normalize_text(gold) in {"yes", "no", "true", "false"}


def _single_equal(pred: str, gold: str, check: Check) -> bool:
    """One answer against one gold value (no lists, no option letters)."""
    if compact(pred) == compact(gold):
        return True
    if is_yes_no(gold):
        return polarity(pred) == (normalize_text(gold) in _YES)
    pred = comma_decimal(pred, gold, check.conv.decimal_comma) or pred
    gold = comma_decimal(gold, pred, check.conv.decimal_comma) or gold
    word = number_word(gold)
    gold_num = parse_number(word or gold)
    if gold_num is not None:
        return _numeric_equal(pred, gold_num, check)
    if is_wordy(gold) and not matrix_cells(gold):
        return _text_equal(pred, gold)
    return _expression_equal(pred, gold, check)


# --------------------------------------------------------------------------------------------- choices, lists
def _choice_equal(pred: str, gold_letter: str, options: dict[str, str], check: Check) -> bool:
    letters = extract_letters(pred)
    if letters is not None and len(letters) > 1:
        return False  # several letters for a single-letter gold: a hedge, never right
    letter = extract_letter(pred)
    if letter is not None:
        return letter == gold_letter
    text = options.get(gold_letter)
    if text is None:
        return False
    # the option's text itself, and it must not equally match a different option
    if not _single_equal(pred, clean(text), check):
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


def _list_equal(preds: list[str], golds: list[str], check: Check) -> bool:
    if len(preds) != len(golds) or len(golds) > MAX_LIST_ITEMS:
        return False
    if check.conv.ordered_lists:
        return all(_single_equal(p, g, check) for p, g in zip(preds, golds))
    unmatched = list(range(len(preds)))
    for g in golds:
        hit = next((i for i in unmatched if _single_equal(preds[i], g, check)), None)
        if hit is None:
            return False
        unmatched.remove(hit)
    return True


def _unwrap_set(s: str) -> str:
    for left, right in (("\\{", "\\}"), ("{", "}")):
        if s.startswith(left) and s.endswith(right):
            return s[len(left): -len(right)].strip()
    return s


def _value_of(item: str) -> str:
    named = named_value(item)
    return named[1] if named else item


def judge(pred: str, gold: str, question: str | None, check: Check) -> bool:
    """The fast-path verdict for a cleaned answer and gold (see the table in `verify.py`)."""
    options = parse_options(question)
    gold_letter = extract_letter(gold, strict=True)
    with_text = gold_choice_with_text(gold) if gold_letter is None else None
    if with_text is not None:  # gold `(D) Alina`: the letter, or the option's text
        gold_letter = with_text[0]
        options = {**options, gold_letter: options.get(gold_letter, with_text[1])}
    if gold_letter is not None:
        return _choice_equal(pred, gold_letter, options, check)
    pred_letter = extract_letter(pred)
    if pred_letter is not None and pred_letter in options and len(pred) <= 4 + len(options[pred_letter]):
        if _single_equal(clean(options[pred_letter]), gold, check):  # gold is the option text, answer the letter
            return True
    gold_letters = extract_letters(gold)
    if gold_letters is not None and re.fullmatch(r"[A-Z ,;/&()\[\]and]+", gold):
        return _letters_equal(pred, gold, gold_letters)
    pred = comma_decimal(pred, gold, check.conv.decimal_comma) or pred  # `1,22` vs `1.22` (see conventions.py)
    gold = comma_decimal(gold, pred, check.conv.decimal_comma) or gold
    golds = split_answers(gold)
    if len(golds) > 1 and (not re.match(r"^[(\[\\{]", gold) or "),(" in compact(gold)):
        preds = split_answers(_unwrap_set(pred))
        if not any("=" in p for p in preds):  # `AB=4, CD=5` answered `4, 5`
            golds = [_value_of(g) for g in golds]
        if "=" not in gold:
            preds = [strip_lhs(p) for p in preds]
        return _list_equal(preds, golds, check)
    return _single_equal(pred, gold, check)
