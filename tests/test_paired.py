"""Paired comparison of two runs on the same items (mmfinereason.evaluation.paired)."""

from __future__ import annotations

import json
import math
import random

import pytest

from mmfinereason.errors import UserError
from mmfinereason.evaluation.accuracy import Prediction
from mmfinereason.evaluation.paired import (
    EXACT_UP_TO,
    PairedDifference,
    pair_predictions,
    paired_by_group,
    paired_difference,
    paired_table,
    read_predictions,
)


def pred(id_, correct, source="s", answer="A", benchmark=""):
    return Prediction(id=id_, source=source, response="", extracted=None, answer=answer, correct=correct, benchmark=benchmark)


def runs(outcomes):
    """Two runs from (before, after) correctness pairs."""
    before = [pred(str(i), b) for i, (b, _) in enumerate(outcomes)]
    after = [pred(str(i), a) for i, (_, a) in enumerate(outcomes)]
    return before, after


def test_counts_difference_error_and_exact_sign_test_by_hand():
    # 10 items: 3 fixed, 1 broken, 4 right in both, 2 wrong in both
    before, after = runs([(False, True)] * 3 + [(True, False)] + [(True, True)] * 4 + [(False, False)] * 2)
    d = paired_difference(before, after)
    assert (d.n, d.fixed, d.broken) == (10, 3, 1)
    assert d.difference == pytest.approx(0.2)  # 70% after, 50% before
    # per-item differences: three +1, one -1, six 0 -> sample variance (4 - 10 * 0.04) / 9 = 0.4, se = sqrt(0.04)
    assert d.standard_error == pytest.approx(0.2)
    assert d.interval() == pytest.approx((0.2 - 1.96 * 0.2, 0.2 + 1.96 * 0.2), abs=1e-3)
    # exact two-sided sign test on 3 of 4 changed items: 2 * (C(4,0) + C(4,1)) / 2^4
    assert d.p_value == pytest.approx(0.625)
    assert "+20.0 points (fixed 3, broke 1)" in d.describe()


def test_p_value_edges_and_calibration():
    assert PairedDifference(500, 0, 0).p_value == 1.0 and PairedDifference(500, 0, 0).standard_error == 0.0
    assert PairedDifference(100, 7, 7).p_value == 1.0
    assert PairedDifference(100, 10, 0).p_value == pytest.approx(2 / 2**10)
    # past EXACT_UP_TO changed items the normal approximation stands in for the exact sum (its definition here)
    for fixed, broken in ((1050, 951), (2600, 2400), (2510, 2490)):
        m, k = fixed + broken, min(fixed, broken)
        assert m > EXACT_UP_TO
        exact = 2 * sum(math.comb(m, i) for i in range(k + 1)) / 2**m
        assert PairedDifference(100_000, fixed, broken).p_value == pytest.approx(exact, rel=2e-3)
    # Under no real change (each changed item equally likely fixed or broken) p < 0.05 about 5% of the time or
    # less (the exact test is conservative), and the 95% interval covers 0 about 95% of the time.
    rng = random.Random(0)
    rejections = misses = 0
    for _ in range(2000):
        changed = 60
        fixed = sum(rng.random() < 0.5 for _ in range(changed))
        d = PairedDifference(500, fixed, changed - fixed)
        rejections += d.p_value < 0.05
        lo, hi = d.interval()
        misses += not lo <= 0 <= hi
    assert 0.02 < rejections / 2000 <= 0.06
    assert 0.03 < misses / 2000 < 0.08


def test_pairing_by_id_partial_overlap_repeats_and_mismatches():
    before = [pred("a", True), pred("b", False), pred("c", True)]
    after = [pred("c", False), pred("b", True), pred("z", True)]  # another order; "a" and "z" unpaired
    pairs = pair_predictions(before, after)
    assert [(x.id, y.id) for x, y in pairs] == [("c", "c"), ("b", "b")]
    assert paired_difference(before, after) == PairedDifference(2, 1, 1)
    # a repeated id pairs with its repeat in order
    rep_before = [pred("r", True), pred("r", False)]
    rep_after = [pred("r", True), pred("r", True)]
    assert paired_difference(rep_before, rep_after) == PairedDifference(2, 1, 0)
    # the same id in two benchmarks is two items
    with pytest.raises(UserError, match="share no item"):
        pair_predictions([pred("x", False, benchmark="m")], [pred("x", True, benchmark="n")])
    with pytest.raises(UserError, match="gold answer 'A' in one run and 'B'"):
        pair_predictions([pred("x", True)], [pred("x", True, answer="B")])


def test_per_group_sums_to_all_and_table():
    before = [pred(f"{s}{i}", i % 2 == 0, source=s) for s in ("p", "q") for i in range(6)]
    after = [pred(f"{s}{i}", s == "p" or i % 2 == 0, source=s) for s in ("p", "q") for i in range(6)]
    groups = paired_by_group(before, after)
    assert list(groups) == ["p", "q", "all"]
    assert groups["p"] == PairedDifference(6, 3, 0) and groups["q"] == PairedDifference(6, 0, 0)
    assert groups["all"] == PairedDifference(12, 3, 0)
    table = paired_table(groups, "after vs before")
    assert table.splitlines()[0].startswith("after vs before") and len(table.splitlines()) == 4
    assert math.isclose(groups["all"].difference, 0.25)


def test_read_predictions_is_read_only_and_orders_repeats(tmp_path):
    folder = tmp_path / "predictions"
    folder.mkdir()
    rows = [
        {"uid": "r#2", **pred("r", False).to_record()},  # written first by a resumed run
        {"uid": "r", **pred("r", True).to_record()},
        {"uid": "k", **pred("k", True).to_record()},
    ]
    text = "".join(json.dumps(r) + "\n" for r in rows) + '{"uid": "cut'  # an unfinished last line
    (folder / "bench.jsonl").write_text(text)
    got = read_predictions(tmp_path, ["bench", "other"])
    assert [(p.id, p.correct) for p in got if p.id == "r"] == [("r", True), ("r", False)]
    assert len(got) == 3
    assert (folder / "bench.jsonl").read_text() == text  # not repaired: that run may still be writing
    with pytest.raises(UserError, match="holds no predictions"):
        read_predictions(tmp_path, ["other"])
