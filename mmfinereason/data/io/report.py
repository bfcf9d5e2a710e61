"""Skip accounting: how many rows a load read, kept, filtered out, repaired or skipped, and why.

Why: a loader that silently drops rows hides broken data; one that crashes on the first bad row kills a run
hours in. The loader does neither — it skips or repairs and counts here — and `check()` turns a skip rate
above the recipe's threshold into one readable error naming the commonest cause and a row id to look at.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from mmfinereason.errors import UserError

logger = logging.getLogger(__name__)

# Rows dropped by a filter the user asked for; they are not "bad" and do not count towards the skip rate.
FILTER_REASONS = frozenset({"source_not_selected", "pass_rate_out_of_range", "not_consistent"})
_EXAMPLES_PER_CAUSE = 3


class DataQualityError(UserError):
    """Too many rows of a source had to be skipped; the message names the commonest cause and a row id.

    A :class:`~mmfinereason.errors.UserError`: the data (or the recipe's ``max_skip_rate``) is the user's to fix."""


@dataclass
class DataReport:
    """Counts for one loaded source (live while a streaming dataset is being iterated).

    `skipped` and `fixed` map a cause (e.g. `truncated_image`, `empty_answer`, `prepended_image_marker`) to a
    row count, `filtered` does the same for rows removed by the recipe's filters, `examples` keeps the first
    few row ids per cause so that a bad row can be found in the source.
    """

    name: str = "data"
    seen: int = 0
    kept: int = 0
    filtered: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    fixed: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def record(self, row_id: str, drop_reason: str = "", fixes: Iterable[str] = ()) -> bool:
        """Count one row; `drop_reason` is "" for a kept row. Returns whether the row is kept."""
        self.seen += 1
        for fix in fixes:
            self.fixed[fix] += 1
            self._remember(fix, row_id)
        if not drop_reason:
            self.kept += 1
            return True
        if drop_reason in FILTER_REASONS:
            self.filtered[drop_reason] += 1
        else:
            self.skipped[drop_reason] += 1
            self._remember(drop_reason, row_id)
        return False

    def _remember(self, cause: str, row_id: str) -> None:
        ids = self.examples.setdefault(cause, [])
        if len(ids) < _EXAMPLES_PER_CAUSE:
            ids.append(row_id)

    @property
    def num_skipped(self) -> int:
        return sum(self.skipped.values())

    @property
    def skip_rate(self) -> float:
        """Skipped rows over the rows that passed the filters (filtered rows are neither good nor bad)."""
        considered = self.seen - sum(self.filtered.values())
        return self.num_skipped / considered if considered else 0.0

    def summary(self) -> str:
        """One line for the log, e.g. `data 'x': 1000 rows read, 990 kept, 4 filtered, 6 skipped (0.60%) ...`."""
        text = (
            f"data {self.name!r}: {self.seen} rows read, {self.kept} kept, {sum(self.filtered.values())} filtered, "
            f"{self.num_skipped} skipped ({self.skip_rate:.2%})"
        )
        if self.skipped:
            text += " [" + ", ".join(f"{cause}={n}" for cause, n in self.skipped.most_common()) + "]"
        if self.fixed:
            text += "; fixed: " + ", ".join(f"{cause}={n}" for cause, n in self.fixed.most_common())
        return text

    def check(self, max_skip_rate: float) -> None:
        """Raise `DataQualityError` if more than `max_skip_rate` of the considered rows were skipped."""
        if self.skip_rate <= max_skip_rate:
            return
        cause, count = self.skipped.most_common(1)[0]
        example = self.examples.get(cause, ["?"])[0]
        raise DataQualityError(
            f"{self.num_skipped} of {self.seen - sum(self.filtered.values())} rows of {self.name!r} were skipped "
            f"({self.skip_rate:.2%} > max_skip_rate {max_skip_rate:.2%}). Commonest cause: {cause} "
            f"({count} rows, e.g. id {example!r}). All causes: {dict(self.skipped.most_common())}. "
            "Fix the data or the `columns:` mapping, or raise `max_skip_rate` in the recipe."
        )

    @classmethod
    def combine(cls, reports: Iterable[DataReport], name: str = "mixture") -> DataReport:
        """A snapshot summing several reports (e.g. the sources of a mixture)."""
        total = cls(name=name)
        for report in reports:
            total.seen += report.seen
            total.kept += report.kept
            total.filtered.update(report.filtered)
            total.skipped.update(report.skipped)
            total.fixed.update(report.fixed)
            for cause, ids in report.examples.items():
                for row_id in ids:
                    total._remember(cause, row_id)
        return total
