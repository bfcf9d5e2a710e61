"""The majority vote (maj@k) and pass@k of ``mmfinereason.evaluation.voting``: ties, unextracted answers, spelling,
and the figures ``mmfinereason select`` reports from its records."""

from __future__ import annotations

import random

import pytest

from mmfinereason.evaluation.voting import ALL, format_sampled_accuracy, normalise, sampled_accuracy, vote


@pytest.mark.parametrize(
    "extracted, passed, expected",
    [
        (["A", "A", "B"], [True, True, False], 1.0),  # the right answer is given most often
        (["A", "B", "B"], [True, False, False], 0.0),  # a wrong one is
        (["A", "A", "B", "B"], [True, True, False, False], 0.5),  # a tie: a random pick is right half the time
        (["A", "B", "C"], [True, False, False], 1 / 3),
        ([None, None, "B", "A"], [False, False, False, True], 0.5),  # unextracted answers do not vote
        ([None, None, None, "A"], [False, False, False, True], 1.0),  # ... even when they are the most frequent
        ([None, None], [False, False], 0.0),
        (["A.", " a ", "B", "B"], [True, True, False, False], 0.5),  # "A." and " a " are one answer
        (["$5$", "5", "6"], [True, True, False], 1.0),
        # two spellings of one value split its votes (a tie, 0.5, as one value): the vote is a lower bound
        (["1/2", "0.5", "3", "3"], [True, True, False, False], 0.0),
    ],
)
def test_vote(extracted, passed, expected):
    assert vote(extracted, passed) == pytest.approx(expected)


def test_vote_refuses_answers_and_scores_of_different_lengths():
    with pytest.raises(ValueError, match="3 answers for 2 scores"):
        vote(["A", "B", "C"], [True, False])


def test_normalise():
    assert normalise(None) is None and normalise("  ") is None and normalise("$ $") is None
    assert normalise("  The  Circle. ") == "the circle"


def _records(k: int, rng: random.Random, n: int = 200) -> list[dict]:
    out = []
    for i in range(n):
        answers = [rng.choice(["A", "B", "C", None]) for _ in range(k)]
        passed = [a == "A" for a in answers]
        out.append({"id": str(i), "source": "odd" if i % 2 else "even", "k": k, "correct": sum(passed),
                    "pass_rate": sum(passed) / k, "extracted": answers, "passed": passed})
    return out


def test_sampled_accuracy_per_source_and_bounds():
    rng = random.Random(0)
    records = _records(8, rng)
    table = sampled_accuracy(records)
    assert list(table) == ["even", "odd", ALL]
    everything = table[ALL]
    assert everything.questions == 200 and everything.k == 8
    assert everything.mean_pass_rate == pytest.approx(sum(r["pass_rate"] for r in records) / 200)
    assert everything.pass_at_k == sum(r["correct"] > 0 for r in records) / 200
    # maj@k counted by hand: the plurality among extracted answers, ties shared
    def by_hand(r):
        counts = {a: r["extracted"].count(a) for a in "ABC"}
        top = max(counts.values())
        tied = [a for a in "ABC" if counts[a] == top and top > 0]
        return ("A" in tied) / len(tied) if tied else 0.0
    assert everything.majority == pytest.approx(sum(by_hand(r) for r in records) / 200)
    assert table["odd"].questions + table["even"].questions == 200
    for s in table.values():
        assert s.majority <= s.pass_at_k and s.mean_pass_rate <= s.pass_at_k


def test_one_sample_votes_its_own_score():
    records = [r for r in _records(1, random.Random(1)) if r["extracted"][0] is not None]
    table = sampled_accuracy(records)
    assert table[ALL].majority == pytest.approx(table[ALL].mean_pass_rate) == pytest.approx(table[ALL].pass_at_k)


def test_records_without_per_answer_scores_give_no_majority():
    records = _records(4, random.Random(2), n=10)
    del records[3]["passed"]  # a store written before the scores were kept
    table = sampled_accuracy(records)
    assert table[ALL].majority is None and table["even"].majority is not None
    text = format_sampled_accuracy(table)
    assert "maj@4" in text and "rerun with --overwrite" in text
    assert text.splitlines()[-2].startswith("all")
