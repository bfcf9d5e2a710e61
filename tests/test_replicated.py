"""Two recipes compared over matched pairs of runs (mmfinereason.evaluation.replicated)."""

from __future__ import annotations

import json
import math
import random
import statistics

import pytest

from mmfinereason.errors import UserError
from mmfinereason.evaluation.accuracy import Prediction
from mmfinereason.evaluation.paired import PairedDifference
from mmfinereason.evaluation.replicated import ReplicatedComparison, RunPair, compare_replicated, t_quantile_95


def run_of(correct: list[bool]) -> list[Prediction]:
    return [Prediction(id=str(i), source="s", response="", extracted=None, answer="A", correct=c)
            for i, c in enumerate(correct)]


def pair_with(n: int, fixed: int, broken: int, right_in_both: int = 0) -> tuple[list[Prediction], list[Prediction]]:
    """Two runs on n items: ``fixed`` wrong -> right, ``broken`` right -> wrong, ``right_in_both``, rest wrong."""
    before = [False] * fixed + [True] * broken + [True] * right_in_both
    after = [True] * fixed + [False] * broken + [True] * right_in_both
    rest = n - len(before)
    return run_of(before + [False] * rest), run_of(after + [False] * rest)


def test_mean_interval_and_sign_test_over_runs_by_hand():
    # three pairs of 100 items: +1, +2 and +3 points
    pairs = [(f"p{i}", *pair_with(100, fixed=k + 1, broken=1, right_in_both=50)) for i, k in enumerate((1, 2, 3))]
    c = compare_replicated(pairs)
    assert c.differences == pytest.approx([0.01, 0.02, 0.03])
    assert c.mean == pytest.approx(0.02)
    # sample sd of (1, 2, 3) points is 1 -> se 1 / sqrt(3); t with 2 degrees of freedom is 4.303
    assert c.standard_error == pytest.approx(0.01 / math.sqrt(3))
    lo, hi = c.interval()
    assert (lo, hi) == pytest.approx((0.02 - 4.303 * 0.01 / math.sqrt(3), 0.02 + 4.303 * 0.01 / math.sqrt(3)))
    assert (c.wins, c.losses) == (3, 0)
    assert c.sign_test_p == pytest.approx(0.25)  # 3 of 3 pairs higher: 2 / 2^3
    # pooled over items: the counts add up (2 + 3 + 4 fixed, 3 broken on 300 items)
    assert (c.pooled.n, c.pooled.fixed, c.pooled.broken) == (300, 9, 3)
    text = c.describe("shipped", "lr 1.5e-4")
    assert "over 3 matched pairs of runs: +2.0 points on average, higher in 3, lower in 0" in text
    assert "sign test over runs p = 0.25" in text and "on 300 paired items" in text
    assert json.loads(json.dumps(c.to_dict()))["wins"] == 3


def test_pooled_items_can_look_significant_where_the_runs_disagree():
    """The reason the module exists: two large gains and one large loss pool to many more fixed than broken
    items (a small item-level p), while over the three runs the interval spans zero widely."""
    pairs = [("a", *pair_with(500, 40, 10)), ("b", *pair_with(500, 40, 10)), ("c", *pair_with(500, 10, 25))]
    c = compare_replicated(pairs)
    assert c.pooled.p_value < 0.001
    lo, hi = c.interval()
    assert lo < 0 < hi
    assert (c.wins, c.losses) == (2, 1) and c.sign_test_p == 1.0


def test_interval_over_runs_covers_the_true_difference_about_95_percent():
    """Simulated recipes whose runs' true differences scatter (sd 2 points) around +1 point: the t interval over 3
    runs covers +1 close to 95% of the time; the pooled item interval, which ignores the scatter, far less."""
    rng = random.Random(0)
    covered = pooled_covered = 0
    trials = 200
    for _ in range(trials):
        pairs = []
        for k in range(3):
            true = 0.01 + rng.gauss(0, 0.02)
            # 300 items, each changes with probability 0.1, direction tilted to give `true` on average
            changes = [rng.random() < 0.1 for _ in range(300)]
            up = 0.5 + true / 0.2
            before, after = [], []
            for ch in changes:
                if not ch:
                    before.append(True), after.append(True)
                elif rng.random() < up:
                    before.append(False), after.append(True)
                else:
                    before.append(True), after.append(False)
            pairs.append((str(k), run_of(before), run_of(after)))
        c = compare_replicated(pairs)
        lo, hi = c.interval()
        covered += lo <= 0.01 <= hi
        plo, phi = c.pooled.interval()
        pooled_covered += plo <= 0.01 <= phi
    assert 0.90 <= covered / trials <= 0.99
    assert pooled_covered / trials < covered / trials - 0.1


def test_pairs_sharing_a_start_are_averaged_first_by_hand():
    # SFT model g1: +1 and +3 points; g2: +4; g3: 0 -> group means 2, 4, 0 (the pairs' own mean is 2.0 as well)
    pairs = [("a", *pair_with(100, 2, 1), "g1"), ("b", *pair_with(100, 4, 1), "g1"),
             ("c", *pair_with(100, 5, 1), "g2"), ("d", *pair_with(100, 1, 1), "g3")]
    c = compare_replicated(pairs)
    assert c.nested and [p.group for p in c.pairs] == ["g1", "g1", "g2", "g3"]
    assert c.group_means() == pytest.approx({"g1": 0.02, "g2": 0.04, "g3": 0.0})
    half = 4.303 * 0.02 / math.sqrt(3)  # sd of (2, 4, 0) points is 2; t with 2 degrees of freedom
    assert c.group_interval() == pytest.approx((0.02 - half, 0.02 + half))
    text = c.describe("shipped", "lr 1.5e-4", groups="SFT models")
    assert "over 3 SFT models (each one's pairs averaged first" in text and "+2.0, +4.0, +0.0; mean +2.0" in text
    record = json.loads(json.dumps(c.to_dict()))
    assert record["mean_over_groups"] == pytest.approx(0.02) and record["pairs"]["a"]["group"] == "g1"
    # unbalanced groups: the mean over groups weighs each start once, the mean over pairs each run once
    c = compare_replicated(pairs[:3])
    assert c.mean == pytest.approx(0.08 / 3) and statistics.fmean(c.group_means().values()) == pytest.approx(0.03)
    # one start only: its spread across starts is unknown, and the text says so
    c = compare_replicated([(*pair[:3], "g1") for pair in pairs])
    assert c.group_interval() is None and "spread over groups unknown (one)" in c.describe()
    # no groups (or every pair its own): the comparison reads as before, no second level
    c = compare_replicated([pair[:3] for pair in pairs])
    assert not c.nested and "averaged first" not in c.describe()
    assert c.group_interval() == pytest.approx(c.interval())


def test_interval_over_starts_covers_where_the_interval_over_runs_does_not():
    """Simulated recipe changes whose effect depends on the SFT model (sd 3 points across models around +1) far
    more than on the GSPO seed: over 4 models x 3 seeds the t interval over the 12 runs treats them as 12
    independent draws and misses +1 often; the interval over the 4 models' means covers it about 95% of the time."""
    rng = random.Random(0)
    n, trials = 1000, 400
    covered = {"runs": 0, "groups": 0}
    for _ in range(trials):
        pairs = []
        for model in range(4):
            effect = 0.01 + rng.gauss(0, 0.03)
            for seed in range(3):
                true = effect + rng.gauss(0, 0.003)
                changed = sum(rng.random() < 0.1 for _ in range(n))  # about 100 items change
                fixed = sum(rng.random() < 0.5 + true * n / (2 * changed) for _ in range(changed))
                pairs.append(RunPair(f"{model}/{seed}", PairedDifference(n, fixed, changed - fixed), str(model)))
        c = ReplicatedComparison(tuple(pairs))
        for level, (lo, hi) in (("runs", c.interval()), ("groups", c.group_interval())):
            covered[level] += lo <= 0.01 <= hi
    assert 0.90 <= covered["groups"] / trials <= 0.99
    assert covered["runs"] / trials < covered["groups"] / trials - 0.15


def test_edges():
    c = compare_replicated([("only", *pair_with(100, 3, 1))])
    assert c.standard_error is None and c.interval() is None
    assert "spread over runs unknown (one pair)" in c.describe()
    with pytest.raises(UserError, match="no matched pair"):
        compare_replicated([])
    before, after = pair_with(10, 1, 1)
    after[0] = Prediction(id="0", source="s", response="", extracted=None, answer="B", correct=True)
    with pytest.raises(UserError, match="different data"):  # pair_predictions' checks apply to every pair
        compare_replicated([("x", before, after)])
    assert t_quantile_95(1) == 12.706 and t_quantile_95(1000) == 1.96
    with pytest.raises(ValueError):
        t_quantile_95(0)
