"""Two recipes compared over several training runs of each: is the candidate better beyond the runs' own spread?

Why: :class:`~mmfinereason.evaluation.paired.PairedDifference` says whether two *checkpoints* differ on the items
drawn. A recipe question ("does learning rate 1.5e-4 beat 1e-4?") has the training run as its unit: train again
with another seed or from another SFT model and the difference moves, by more than the items' own uncertainty (on
the tiny task the GSPO seeds alone spread a gain with a standard deviation of about 1.1 points, issue 17).
Pooling every run's items into one sign test treats 3,000 item-runs as 3,000 independent draws and reads that
spread as signal; the interval below is over the runs instead (Student's t on the matched pairs' differences),
with the sign test over runs beside it. Both are printed, so a reader sees when a pooled "p = 0.06" rests on
three pairs that disagree.

Runs are compared in matched pairs (same SFT model, same seed, one recipe change), so each pair's difference is
paired over its items too. Nothing here is specific to GSPO; ``bench/compare_recipes.py`` reads study cells into it.

Pairs that share a start (the same SFT model, another GSPO seed) are not independent draws either: on the tiny
task a change's effect was steady within an SFT model and flipped across models (issue 17: learning rate 1.5e-4
was higher in 5 of 6 pairs over two SFT models, then lower in 4 of 5 over the next two). So each pair may name its
``group`` (the model it started from), and the comparison is then also made one level up: each group's pairs are
averaged first, and the interval is Student's t over those group means (groups - 1 degrees of freedom), the
two-stage analysis of a nested design. With few groups it is wide, which is the honest answer to "does this hold
for the next SFT model?".
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Iterable

from mmfinereason.errors import UserError
from mmfinereason.evaluation.accuracy import Prediction
from mmfinereason.evaluation.paired import PairedDifference, format_p, paired_difference

# Two-sided 95% quantiles of Student's t by degrees of freedom (the usual table); past 30, the normal's 1.96 is
# within 0.05 of them. Written out because scipy is not a dependency.
T_95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
        20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048,
        29: 2.045, 30: 2.042}


def t_quantile_95(degrees_of_freedom: int) -> float:
    """Two-sided 95% quantile of Student's t (the table up to 30 degrees of freedom, 1.96 past it)."""
    if degrees_of_freedom < 1:
        raise ValueError("Student's t needs at least one degree of freedom (two runs)")
    return T_95.get(degrees_of_freedom, 1.96)


@dataclass(frozen=True)
class RunPair:
    """One matched pair of runs: ``change`` is the candidate run minus the reference run on their shared items."""

    label: str
    change: PairedDifference
    group: str | None = None  # the start the pair's two runs share (an SFT model); None: a group of its own


@dataclass(frozen=True)
class ReplicatedComparison:
    """Candidate recipe minus reference recipe over matched pairs of runs."""

    pairs: tuple[RunPair, ...]

    @property
    def differences(self) -> list[float]:
        """Each pair's accuracy difference (candidate minus reference), as a fraction."""
        return [p.change.difference for p in self.pairs]

    @property
    def mean(self) -> float:
        """The mean of the pairs' differences (each pair weighs the same)."""
        return statistics.fmean(self.differences)

    @property
    def standard_error(self) -> float | None:
        """Of :attr:`mean`, over the pairs (their sample standard deviation / sqrt(pairs)); None for one pair."""
        d = self.differences
        return statistics.stdev(d) / math.sqrt(len(d)) if len(d) > 1 else None

    def interval(self) -> tuple[float, float] | None:
        """95% interval of :attr:`mean` over runs (Student's t, pairs - 1 degrees of freedom); None for one pair,
        whose spread over runs is unknown."""
        se = self.standard_error
        if se is None:
            return None
        half = t_quantile_95(len(self.pairs) - 1) * se
        return self.mean - half, self.mean + half

    @property
    def wins(self) -> int:
        return sum(d > 0 for d in self.differences)

    @property
    def losses(self) -> int:
        return sum(d < 0 for d in self.differences)

    @property
    def sign_test_p(self) -> float:
        """Exact two-sided sign test over the pairs (ties left out): with 3 pairs it cannot go below 0.25."""
        return PairedDifference(len(self.pairs), self.wins, self.losses).p_value

    @property
    def pooled(self) -> PairedDifference:
        """Every pair's items summed as if they were independent draws: the item-level view, narrower than it
        should be for a recipe question (see the module docstring)."""
        return PairedDifference(
            n=sum(p.change.n for p in self.pairs),
            fixed=sum(p.change.fixed for p in self.pairs),
            broken=sum(p.change.broken for p in self.pairs),
        )

    def group_means(self) -> dict[str, float]:
        """Each group's mean difference, in the order the groups first appear (a pair without a group is its own)."""
        members: dict[str, list[float]] = {}
        for pair in self.pairs:
            members.setdefault(pair.label if pair.group is None else pair.group, []).append(pair.change.difference)
        return {group: statistics.fmean(d) for group, d in members.items()}

    @property
    def nested(self) -> bool:
        """Whether some group holds more than one pair (then the pairs are not independent runs)."""
        return len(self.group_means()) < len(self.pairs)

    def group_interval(self) -> tuple[float, float] | None:
        """95% interval of the mean over groups (Student's t on the group means, groups - 1 degrees of freedom);
        None for a single group, whose spread across starts is unknown."""
        means = list(self.group_means().values())
        if len(means) < 2:
            return None
        half = t_quantile_95(len(means) - 1) * statistics.stdev(means) / math.sqrt(len(means))
        centre = statistics.fmean(means)
        return centre - half, centre + half

    def to_dict(self) -> dict:
        means = self.group_means()
        return {
            "pairs": {p.label: p.change.to_dict() | {"group": p.group} for p in self.pairs},
            "mean": self.mean, "standard_error_over_runs": self.standard_error, "interval_95_over_runs": self.interval(),
            "wins": self.wins, "losses": self.losses, "sign_test_p_over_runs": self.sign_test_p,
            "group_means": means, "mean_over_groups": statistics.fmean(means.values()),
            "interval_95_over_groups": self.group_interval(),
            "pooled_over_items": self.pooled.to_dict(),
        }

    def describe(self, reference: str = "reference", candidate: str = "candidate", groups: str = "groups") -> str:
        """Over runs (what a recipe decision should rest on), over ``groups`` when pairs share one, then pooled
        over items."""
        k, interval = len(self.pairs), self.interval()
        spread = (f"95% interval over runs {100 * interval[0]:+.1f} to {100 * interval[1]:+.1f}" if interval
                  else "spread over runs unknown (one pair)")
        text = (f"{candidate} vs {reference} over {k} matched pair{'s' * (k != 1)} of runs: {100 * self.mean:+.1f} "
                f"points on average, higher in {self.wins}, lower in {self.losses}; {spread}; sign test over runs "
                f"p = {format_p(self.sign_test_p)}\n")
        if self.nested:
            means = self.group_means()
            between = self.group_interval()
            each = ", ".join(f"{100 * m:+.1f}" for m in means.values())
            spread = (f"95% interval over {groups} {100 * between[0]:+.1f} to {100 * between[1]:+.1f}" if between
                      else f"spread over {groups} unknown (one)")
            text += (f"  over {len(means)} {groups} (each one's pairs averaged first; pairs sharing one are not "
                     f"independent runs): {each}; mean {100 * statistics.fmean(means.values()):+.1f}, {spread}\n")
        return text + (f"  pooled over items (treats runs as one sample, too narrow): "
                       f"{self.pooled.describe(reference, candidate)}")


# (label, reference run's predictions, candidate run's predictions[, group])
Runs = Iterable[Prediction]
MatchedRuns = tuple[str, Runs, Runs] | tuple[str, Runs, Runs, str]


def compare_replicated(pairs: Iterable[MatchedRuns]) -> ReplicatedComparison:
    """``(label, reference predictions, candidate predictions[, group])`` per matched pair of runs -> the
    comparison; ``group`` names the start both runs share (an SFT model): see
    :meth:`ReplicatedComparison.group_interval`.

    Each pair is paired over its shared items (:func:`~mmfinereason.evaluation.paired.pair_predictions`, whose
    errors it raises); no pairs at all is an error.
    """
    result = tuple(
        RunPair(label, paired_difference(reference, candidate), *group) for label, reference, candidate, *group in pairs
    )
    if not result:
        raise UserError("no matched pair of runs to compare: give runs of both recipes from the same SFT model and seed")
    return ReplicatedComparison(result)
