r"""Grading conventions on which hand-labelled graders in the wild disagree, as explicit options of `is_correct`.

Each is a keyword of `is_correct` (and of `accuracy_reward`) with a stated default; the default is the reading a
careful human grader of MMFineReason-style (English, mostly geometry and arithmetic) answers would apply.

- `decimal_comma` (default `None`, auto): `1,22` is read as 1.22 only where the comma cannot be a thousands group
  (not exactly three digits after it, or `0,…`) and the other side is written with a decimal point (`1,22` vs
  `1.22`, `0,111` vs `0.111`); `True`: a lone comma between digits is always a decimal comma (European golds);
  `False`: never (a comma separates thousands or list items). The auto reading accepts `0.1` for a gold `0,1`
  that may have meant the pair (0, 1); pass `False` for MATH-style golds with bare tuples.
- `percent` (default `"either"`): `45%` equals both `45` and `0.45`; `"fraction"`: only `0.45`; `"number"`: only
  `45`.
- `ordered_lists` (default `False`): a bare list `2, 3` matches `3, 2`; `True`: the order counts (and math-verify,
  which compares lists as sets, is not asked). Tuples and intervals in brackets always keep their order.
- `precision` (default `None`): decimals compare by the rounding the written answer shows (`3.46` stands for 2√3,
  `0.5` does not stand for 0.46) and within `rel_tol`; an integer `p` also accepts two values that are equal once
  both are rounded to `p` decimals (math-verify's `float_rounding`).
- `rel_tol` (default `1e-4`): relative tolerance between decimals (integers and fractions always compare exactly).
"""

from __future__ import annotations

from dataclasses import dataclass

PERCENT_MODES = ("either", "fraction", "number")


@dataclass(frozen=True)
class Conventions:
    """The options above, validated once per call (a typo is a `ValueError` that names the option)."""

    rel_tol: float = 1e-4
    decimal_comma: bool | None = None
    percent: str = "either"
    ordered_lists: bool = False
    precision: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.rel_tol < 1:
            raise ValueError(f"rel_tol must be in [0, 1), got {self.rel_tol!r}")
        if self.decimal_comma not in (None, True, False):
            raise ValueError(f"decimal_comma must be None (auto), True or False, got {self.decimal_comma!r}")
        if self.percent not in PERCENT_MODES:
            raise ValueError(f"percent must be one of {PERCENT_MODES}, got {self.percent!r}")
        if self.precision is not None and (not isinstance(self.precision, int) or not 0 <= self.precision <= 15):
            raise ValueError(f"precision must be None or an int in [0, 15], got {self.precision!r}")
