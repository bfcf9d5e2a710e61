"""Seeing or reasoning (mmfinereason.toy.diagnosis): every figure checked on hand-made answers to real toy items."""

from __future__ import annotations

import re

import pytest

from mmfinereason.evaluation.accuracy import AccuracyReport, Prediction
from mmfinereason.pipelines.demo import DemoResult
from mmfinereason.toy import make_example
from mmfinereason.toy.diagnosis import attribute_gain, diagnose, reasoning_ceiling

SEED = 1  # the held-out split's seed


def _items(source: str, count: int, difficulty: int | None = None) -> list[tuple[str, dict]]:
    found = []
    for index in range(1000):
        row = make_example(index, seed=SEED)
        if row["source"] == source and difficulty in (None, row["difficulty"]):
            found.append((f"toy-{SEED}-{index}", row))
            if len(found) == count:
                return found
    raise AssertionError(f"no {count} {source} items")


def _answer(toy_id: str, row: dict, response: str | None = None, extracted: str | None = None) -> Prediction:
    """The row's own trace and answer, unless told otherwise."""
    extracted = row["answer"] if extracted is None else extracted
    response = row["qwen3vl_235b_thinking_response"] if response is None else response
    return Prediction(toy_id, row["source"], response, extracted, row["answer"], extracted == row["answer"])


def test_gold_traces_are_right_and_followed_on_every_source():
    preds = [_answer(i, r) for s in ("toy_color", "toy_compare", "toy_count", "toy_shape") for i, r in _items(s, 6)]
    by_source = diagnose(preds)
    assert sorted(by_source) == ["toy_color", "toy_compare", "toy_count", "toy_shape"]
    for figures in by_source.values():
        assert figures == {"n": 6, "listing_right": 1.0, "listing_length_right": 1.0,
                           "answer_follows_from_listing": 1.0, "accuracy_if_answer_followed_listing": 1.0}
    assert reasoning_ceiling(preds) == 1.0


def test_a_right_listing_with_the_wrong_option_letter_is_a_reasoning_error():
    # hard colour items shuffle the options: answering the letter of the colour's usual place ignores the question
    usual = {"red": "A", "green": "B", "blue": "C", "yellow": "D"}
    preds = []
    for toy_id, row in _items("toy_color", 16, difficulty=2):
        colour = re.search(r"The colour (\w+) is option", row["qwen3vl_235b_thinking_response"]).group(1)
        if usual[colour] != row["answer"]:
            preds.append(_answer(toy_id, row, extracted=usual[colour]))
    assert len(preds) >= 5
    figures = diagnose(preds)["toy_color"]
    assert figures["listing_right"] == 1.0 and figures["answer_follows_from_listing"] == 0.0
    assert figures["accuracy_if_answer_followed_listing"] == 1.0  # reasoning alone would have got them all
    assert AccuracyReport(preds).accuracy == 0.0 and reasoning_ceiling(preds) == 1.0


def test_a_wrong_listing_followed_faithfully_is_a_seeing_error():
    # count: the model misses one shape of the asked kind and counts its own list right
    preds = []
    for toy_id, row in _items("toy_count", 4):
        kind = re.search(r"How many (\w+)s are", row["question"]).group(1)
        trace = row["qwen3vl_235b_thinking_response"]
        listing = re.search(r"from left to right: ([^.]*)\.", trace).group(1).split(", ")
        missed = next(i for i, shape in enumerate(listing) if shape.endswith(" " + kind))
        fewer = ", ".join(listing[:missed] + listing[missed + 1:])
        count = int(row["answer"]) - 1
        response = f"<think>\nI list the shapes from left to right: {fewer}. Counting only the {kind}s, I get {count}.\n</think>"
        preds.append(_answer(toy_id, row, response=response, extracted=str(count)))
    figures = diagnose(preds)["toy_count"]
    assert figures["listing_right"] == 0.0 and figures["listing_length_right"] == 0.0
    assert figures["answer_follows_from_listing"] == 1.0
    assert figures["accuracy_if_answer_followed_listing"] == 0.0


def test_compare_follows_the_listed_colours_not_the_lead_written_beside_them():
    preds = []
    for toy_id, row in _items("toy_compare", 6):
        wrong = "no" if row["answer"] == "yes" else "yes"
        preds.append(_answer(toy_id, row, extracted=wrong))  # the right list, the opposite answer
    figures = diagnose(preds)["toy_compare"]
    assert figures["listing_right"] == 1.0 and figures["answer_follows_from_listing"] == 0.0
    assert figures["accuracy_if_answer_followed_listing"] == 1.0


def test_unreadable_traces_count_as_wrong_and_other_items_are_left_out():
    (color_id, color_row), (shape_id, shape_row) = _items("toy_color", 1)[0], _items("toy_shape", 1)[0]
    preds = [
        _answer(color_id, color_row, response="The answer is A."),  # no listing to read
        _answer(shape_id, shape_row),
        Prediction("mathvista-7", "MathVista", "<think>from left to right: a red circle.</think>", "B", "B", True),
    ]
    by_source = diagnose(preds)
    assert sorted(by_source) == ["toy_color", "toy_shape"]
    assert by_source["toy_color"]["n"] == 1 and by_source["toy_color"]["accuracy_if_answer_followed_listing"] == 0.0
    assert "answer_follows_from_listing" not in by_source["toy_color"]
    assert reasoning_ceiling(preds) == pytest.approx(0.5)
    assert reasoning_ceiling(preds[2:]) is None and diagnose(preds[2:]) == {}


def _demo_result(after_sft: list[Prediction], after_gspo: list[Prediction]) -> DemoResult:
    return DemoResult(AccuracyReport([]), AccuracyReport(after_sft), AccuracyReport(after_gspo), "sft", "gspo", {})


def test_demo_says_how_much_of_the_reasoning_room_gspo_took():
    items = _items("toy_compare", 10)
    flipped = lambda row: "no" if row["answer"] == "yes" else "yes"  # noqa: E731
    # SFT: right lists everywhere, 4 answers that ignore them; GSPO fixes 3 of the 4
    sft = [_answer(i, r, extracted=flipped(r) if k < 4 else None) for k, (i, r) in enumerate(items)]
    gspo = [_answer(i, r, extracted=flipped(r) if k < 1 else None) for k, (i, r) in enumerate(items)]
    result = _demo_result(sft, gspo)
    assert result.reasoning_ceilings() == {"after SFT": 1.0, "after GSPO": 1.0}
    text = result.headroom()
    assert "SFT 100.0%, GSPO 100.0%" in text
    assert "GSPO added +30.0: +0.0 from its listings (seeing), +30.0 from answers that follow them" in text
    assert "reasoning alone could have added +40.0 points" in text
    assert "from reasoning (room taken)          +30.0        +30.0" in text


def test_gain_splits_exactly_into_seeing_and_reasoning():
    """A listing fixed (seeing) and an answer brought in line with its listing (reasoning), on two sources."""
    compare, count = _items("toy_compare", 4), _items("toy_count", 4)
    flipped = lambda row: "no" if row["answer"] == "yes" else "yes"  # noqa: E731
    (cid, crow), (kid, krow) = compare[0], count[0]
    kind = re.search(r"How many (\w+)s are", krow["question"]).group(1)
    trace = krow["qwen3vl_235b_thinking_response"]
    listed = re.search(r"from left to right: ([^.]*)\.", trace).group(1)
    # the count listing with one more shape of the asked kind: wrong listing, and an answer that follows it
    misseen = trace.replace(listed, f"{listed}, red {kind}", 1)
    wrong_count = str(int(krow["answer"]) + 1)
    sft = [_answer(cid, crow, extracted=flipped(crow)), _answer(kid, krow, misseen, wrong_count),
           *(_answer(i, r) for i, r in compare[1:] + count[1:])]
    gspo = [_answer(cid, crow), _answer(kid, krow), *sft[2:]]
    parts = attribute_gain(sft, gspo)
    assert parts["toy_compare"] == pytest.approx({"gain": 0.25, "seeing": 0.0, "reasoning": 0.25, "room_left": 0.0})
    assert parts["toy_count"] == pytest.approx({"gain": 0.25, "seeing": 0.25, "reasoning": 0.0, "room_left": 0.0})
    assert parts["all"] == pytest.approx({"gain": 0.25, "seeing": 0.125, "reasoning": 0.125, "room_left": 0.0})
    text = _demo_result(sft, gspo).headroom()
    assert "GSPO added +25.0: +12.5 from its listings (seeing), +12.5 from answers that follow them" in text
    # a source on one side only (count) is left out, not counted as a loss
    only_compare = {"gain": 0.25, "seeing": 0.0, "reasoning": 0.25, "room_left": 0.0}
    assert attribute_gain(sft, [_answer(cid, crow)]) == {"toy_compare": pytest.approx(only_compare),
                                                         "all": pytest.approx(only_compare)}


def test_demo_says_when_there_was_no_reasoning_room_and_nothing_off_the_toy_task():
    items = _items("toy_shape", 4)
    faithful = [_answer(i, r) for i, r in items]
    assert "already at its reasoning ceiling" in _demo_result(faithful, faithful).headroom()
    other = [Prediction("x-1", "MathVista", "B", "B", "B", True)]
    assert _demo_result(other, other).headroom() is None
