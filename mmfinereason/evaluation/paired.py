"""Two models scored on the same items: the paired difference, its uncertainty over the items, a sign test.

Why: "GSPO +2.2 on 500 items" can be a real change or noise, and the two accuracies alone cannot say which. Both
models answer the same items, so the comparison is paired (McNemar): only the items one model gets right and the
other wrong (``fixed``: wrong before, right after; ``broken``: the reverse) carry the difference. Its standard
error is far smaller than that of two independent accuracies, because most items are answered alike.
lm-evaluation-harness reports a standard error per accuracy, not a paired comparison of two checkpoints, and TRL
none at all. Here the demo prints it for SFT -> GSPO and ``mmfinereason eval --compare-to DIR`` for any two
runs.

What it does *not* cover: the interval is over which items were drawn, for these two trained models. Training
again with another seed draws another model, and on the tiny task that moves GSPO's result by more than this
interval (issue 17: seeds 42 / 1 / 2 of one recipe from one SFT model differ by up to 2.2 points). A significant
difference says these two checkpoints differ, not that the recipe always helps.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from mmfinereason.errors import UserError
from mmfinereason.evaluation.accuracy import Prediction

Z_95 = 1.959963984540054  # two-sided 95% normal quantile
EXACT_UP_TO = 2000  # changed items up to which the sign test sums binomial terms exactly


@dataclass(frozen=True)
class PairedDifference:
    """``after`` minus ``before`` on ``n`` paired items, of which ``fixed`` went wrong -> right and ``broken``
    right -> wrong (the rest were answered alike: both right or both wrong)."""

    n: int
    fixed: int
    broken: int

    @property
    def difference(self) -> float:
        """Accuracy after minus accuracy before, as a fraction."""
        return (self.fixed - self.broken) / self.n if self.n else 0.0

    @property
    def standard_error(self) -> float:
        """Of the mean per-item difference (each item: +1, -1 or 0), with the sample variance."""
        if self.n < 2:
            return 0.0
        variance = (self.fixed + self.broken - self.n * self.difference ** 2) / (self.n - 1)
        return math.sqrt(max(variance, 0.0) / self.n)

    def interval(self, z: float = Z_95) -> tuple[float, float]:
        """Normal-approximation interval for :attr:`difference` (95% by default)."""
        half = z * self.standard_error
        return self.difference - half, self.difference + half

    @property
    def p_value(self) -> float:
        """Exact two-sided sign test (McNemar's exact test): the chance of a split of the changed items at least
        this uneven if either direction were equally likely. 1.0 when no item changed. Past
        :data:`EXACT_UP_TO` changed items, the normal approximation with continuity correction (the exact sum
        would cost seconds there, and the two agree to a few decimals)."""
        m, k = self.fixed + self.broken, min(self.fixed, self.broken)
        if m == 0:
            return 1.0
        if m > EXACT_UP_TO:
            z = (abs(self.fixed - self.broken) - 1) / math.sqrt(m)
            return min(1.0, math.erfc(max(z, 0.0) / math.sqrt(2)))
        tail = sum(math.comb(m, i) for i in range(k + 1))
        return min(1.0, 2 * tail / 2 ** m)

    def to_dict(self) -> dict:
        """Plain data for JSON files: the counts, the change, its 95% interval and the sign test's p."""
        return {"n": self.n, "fixed": self.fixed, "broken": self.broken, "difference": self.difference,
                "interval_95": self.interval(), "p_value": self.p_value}

    def describe(self, before: str = "before", after: str = "after") -> str:
        """One line, e.g. ``GSPO vs SFT on 500 paired items: +3.4 points (fixed 43, broke 26), 95% interval over
        the items +0.2 to +6.6, sign test p = 0.053`` (the session-16 demo)."""
        lo, hi = self.interval()
        return (f"{after} vs {before} on {self.n} paired items: {100 * self.difference:+.1f} points (fixed "
                f"{self.fixed}, broke {self.broken}), 95% interval over the items {100 * lo:+.1f} to {100 * hi:+.1f}, "
                f"sign test p = {format_p(self.p_value)}")


def format_p(p: float) -> str:
    """A p-value for a table: two significant digits, or "< 0.001"."""
    return f"{p:.2g}" if p >= 0.001 else "< 0.001"


def _keyed(predictions: Iterable[Prediction]) -> dict[tuple[str, str, int], Prediction]:
    """Predictions by (benchmark, id, occurrence): a repeated id pairs with its repeat in the same order."""
    seen: Counter = Counter()
    keyed = {}
    for p in predictions:
        seen[(p.benchmark, p.id)] += 1
        keyed[(p.benchmark, p.id, seen[(p.benchmark, p.id)])] = p
    return keyed


def pair_predictions(before: Iterable[Prediction], after: Iterable[Prediction]) -> list[tuple[Prediction, Prediction]]:
    """The items both scored, paired by benchmark and id, in ``after``'s order.

    Items only one side scored are left out (e.g. a smaller ``--limit`` on one run); none in common, or one item
    with two different gold answers (the two runs read different data under the same ids), is an error.
    """
    first, second = _keyed(before), _keyed(after)
    pairs = [(first[key], p) for key, p in second.items() if key in first]
    if not pairs:
        raise UserError(
            f"the two runs share no item (same benchmark name and id): {len(first)} predictions against "
            f"{len(second)}; compare runs on the same benchmark files"
        )
    for a, b in pairs:
        if a.answer != b.answer:
            raise UserError(
                f"item {a.benchmark + '/' if a.benchmark else ''}{a.id} has gold answer {a.answer!r} in one run and "
                f"{b.answer!r} in the other: the runs read different data under the same ids"
            )
    return pairs


def _count(pairs: list[tuple[Prediction, Prediction]]) -> PairedDifference:
    return PairedDifference(
        n=len(pairs),
        fixed=sum(1 for a, b in pairs if b.correct and not a.correct),
        broken=sum(1 for a, b in pairs if a.correct and not b.correct),
    )


def paired_difference(before: Iterable[Prediction], after: Iterable[Prediction]) -> PairedDifference:
    """``after`` minus ``before`` over the items both scored (see :func:`pair_predictions`)."""
    return _count(pair_predictions(before, after))


def paired_by_group(
    before: Iterable[Prediction], after: Iterable[Prediction], key: str = "source"
) -> dict[str, PairedDifference]:
    """:class:`PairedDifference` per value of a :class:`Prediction` field (``source``, ``benchmark``,
    ``category``), plus ``"all"``."""
    pairs = pair_predictions(before, after)
    groups: dict[str, list] = defaultdict(list)
    for a, b in pairs:
        value = getattr(b, key)
        if value is not None and value != "":
            groups[str(value)].append((a, b))
    result = {g: _count(v) for g, v in sorted(groups.items())}
    result["all"] = _count(pairs)
    return result


def paired_table(groups: dict[str, PairedDifference], title: str) -> str:
    """A readable table of :func:`paired_by_group`'s result."""
    lines = [f"{title:<28}{'n':>6}{'fixed':>7}{'broke':>7}{'change':>9}{'95% interval':>18}{'p':>9}"]
    for name, d in groups.items():
        lo, hi = d.interval()
        lines.append(f"  {name:<26}{d.n:>6}{d.fixed:>7}{d.broken:>7}{100 * d.difference:>+9.1f}"
                     f"{f'{100 * lo:+.1f} to {100 * hi:+.1f}':>18}{format_p(d.p_value):>9}")
    return "\n".join(lines)


def read_predictions(run_dir: str | Path, benchmarks: Iterable[str]) -> list[Prediction]:
    """The predictions an earlier ``mmfinereason eval`` wrote to ``run_dir/predictions/<benchmark>.jsonl``, for
    the named benchmarks that it has (a run that stopped part way gives what it finished).

    Read only: an unfinished last line is skipped, not repaired (that run may still be writing).
    """
    from mmfinereason.evaluation.store import JsonlStore

    folder = Path(run_dir) / "predictions"
    names = [n for n in benchmarks if (folder / f"{n}.jsonl").exists()]
    if not names:
        raise UserError(
            f"{run_dir} holds no predictions for these benchmarks (looked for {folder}/<benchmark>.jsonl): give the "
            "--output folder of an earlier `mmfinereason eval` on the same benchmarks"
        )
    records = [r for n in names for r in JsonlStore(folder / f"{n}.jsonl", key="uid").load(repair=False).values()]

    def occurrence(record) -> int:  # "x#2" is the second row with id x (store.unique_ids)
        uid, id_ = str(record["uid"]), str(record.get("id"))
        return int(uid.rsplit("#", 1)[1]) if uid != id_ and uid.rsplit("#", 1)[-1].isdigit() else 1

    return [Prediction.from_record(r) for r in sorted(records, key=occurrence)]
