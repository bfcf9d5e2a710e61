"""Tests for mmfinereason.rewards: the case table, extraction, TRL reward functions and the hard time limit."""

from __future__ import annotations

import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mmfinereason.rewards import (
    accuracy_reward, extract_answer, format_reward, is_correct, make_length_penalty, verification_stats,
)
from mmfinereason.rewards.sandbox import TIMEOUT, SandboxPool, get_pool

sys.path.insert(0, str(Path(__file__).parent))
from reward_cases import ADVERSARIAL, CASES  # noqa: E402


def _case_id(case: tuple) -> str:
    return f"{case[0][-24:]!r}~{case[1]!r}"


def test_case_table_is_large_and_balanced():
    assert len(CASES) >= 200
    assert sum(1 for c in CASES if not c[2]) >= 70  # near misses are half the point


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_is_correct_table(case):
    response, gold, expected = case[:3]
    question = case[3] if len(case) > 3 else None
    # verdicts, not speed: a loaded machine must not turn a slow sympy call into a False (the cap has its own tests)
    assert is_correct(response, gold, question=question, timeout=30) is expected


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_adversarial_inputs_are_false_and_bounded(name):
    before = verification_stats()
    for gold in ("12", "x^2+1"):
        assert is_correct(ADVERSARIAL[name], gold, timeout=1.0) is False
    after = verification_stats()
    assert after["checks"] == before["checks"] + 2


@pytest.mark.parametrize(
    "response, expected",
    [
        ("<think>maybe 3</think>So the final answer is <answer>4</answer>.", "4"),
        ("<think>\\boxed{3}</think>Thus \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt{3}}{2}"),
        ("\\boxed{a{b{c}}d}", "a{b{c}}d"),
        ("Some text. Final answer: 7", "7"),
        ("So the answer is B.", "B"),
        ("<think>unterminated \\boxed{3}", None),
        ("<think>a</think><think>b", None),
        ("no answer anywhere here", None),
        ("12", None),  # a bare answer is for is_correct, not extract_answer
        ("<think>only thinking, answer is 5</think>", "5"),  # nothing after </think>: the thinking is searched
        ("reasoning</think><answer> x = 2 </answer>", "x = 2"),
        ("<think>I'd say <answer>3</answer></think>The answer is <answer>4</answer>", "4"),
    ],
)
def test_extract_answer(response, expected):
    assert extract_answer(response) == expected


def test_is_correct_accepts_bare_answers_and_numeric_gold():
    assert is_correct("12", "12")
    assert is_correct("12", 12)
    assert not is_correct("12", "1.2")
    assert not is_correct("x" * 300, "x" * 300)  # a long tag-less response is not an answer


def test_rel_tol_is_configurable():
    assert not is_correct("3.1412", "3.1416", rel_tol=1e-6)
    assert is_correct("3.1412", "3.1416", rel_tol=1e-3)
    assert not is_correct("101", "100", rel_tol=0.1)  # integers are exact whatever the tolerance


# ------------------------------------------------------------------------------------------- TRL reward functions
def test_accuracy_reward_accepts_strings_messages_and_parts():
    completions = [
        "<think>x</think>So <answer>12</answer>.",
        [{"role": "assistant", "content": "<think>x</think>So <answer>13</answer>."}],
        [{"role": "assistant", "content": [{"type": "text", "text": "<think>x</think>"},
                                           {"type": "text", "text": "<answer>12</answer>"}]}],
        "<think>x</think>So <answer>12</answer>.",
    ]
    rewards = accuracy_reward(completions, answer=["12", "12", "12", None], source=["a"] * 4)
    assert rewards == [1.0, 0.0, 1.0, None]


def test_accuracy_reward_pays_committed_answers_only():
    """is_correct reads a free-text answer (as an eval grader does); the GSPO reward does not (a truncated rollout)."""
    cut = "Let me count the triangles again carefully, one row at a time. " * 5 + "so far I have 12"
    assert is_correct(cut, "12")
    assert accuracy_reward([cut], answer=["12"]) == [0.0]
    assert accuracy_reward([cut + ". So the answer is 12."], answer=["12"]) == [1.0]


def test_accuracy_reward_reads_options_from_prompts():
    prompts = [[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Angle?\nA. 30°\nB. 45°"}]}]]
    completions = [[{"role": "assistant", "content": "<think>x</think>The answer is <answer>45°</answer>."}]]
    assert accuracy_reward(completions, answer=["B"], prompts=prompts) == [1.0]
    assert accuracy_reward(completions, answer=["A"], prompts=prompts) == [0.0]


def test_format_reward():
    completions = [
        "<think>reason</think>\nSo the final answer is <answer>12</answer>.",
        "reason</think><answer>12</answer>",  # Qwen3 templates open <think> in the prompt
        [{"role": "assistant", "content": "<think>reason</think><answer>12</answer>"}],
        "<think>reason</think><answer> </answer>",  # empty answer
        "<think>reason</think>12",  # no answer tag
        "<think>a</think><think>b</think><answer>1</answer>",  # two think blocks
        "<think>reason<answer>1</answer></think>",  # answer inside the thinking
        "<think>reason</think><answer>1</answer><answer>2</answer>",
        "<think>unterminated <answer>1</answer>",
        "text<think>reason</think><answer>1</answer>",  # the think block must come first
    ]
    assert format_reward(completions) == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]


def test_length_penalty():
    penalty = make_length_penalty(max_completion_length=100, buffer=20)
    assert penalty(["", "", "", ""], completion_ids=[[0] * 50, [0] * 80, [0] * 90, [0] * 150]) == [0.0, 0.0, -0.5, -1.0]
    with pytest.raises(ValueError, match="buffer"):
        make_length_penalty(max_completion_length=10, buffer=20)
    import pickle

    assert pickle.loads(pickle.dumps(penalty)).buffer == 20  # TRL may ship reward functions to a child process


# ------------------------------------------------------------------------------------------------ hard time limit
def test_sandbox_kills_a_runaway_check_and_recovers():
    pool = SandboxPool(max_workers=1)
    try:
        assert pool.call("ping") == "pong"
        old = pool.pids()
        assert pool.call("sleep", 60, timeout=0.3) is TIMEOUT
        new = pool.pids()
        assert new and new != old  # the stuck worker was replaced
        assert not _is_live_worker(old[0])
        assert pool.call("ping", timeout=30) == "pong"
    finally:
        pool.shutdown()
    assert pool.pids() == []


def test_timeout_scores_zero_and_is_counted(monkeypatch):
    from mmfinereason.rewards import budget

    real = get_pool()

    class Stuck:
        def call(self, op, *args, timeout):
            return real.call("sleep", 60, timeout=timeout)

    monkeypatch.setattr(budget, "get_pool", lambda: Stuck())
    before = verification_stats()["timeouts"]
    assert is_correct("<answer>\\sqrt{7}+\\sqrt{11}</answer>", "\\sqrt{7}+\\sqrt{13}", timeout=0.3) is False
    assert verification_stats()["timeouts"] == before + 1


def test_timeout_is_not_cached_as_a_verdict(monkeypatch):
    """Issue 16: a check cut by the deadline (a loaded node) must not score that (answer, gold) pair 0 for good."""
    from mmfinereason.rewards import budget

    real = get_pool()
    response, gold = "<answer>\\sqrt{7}+\\sqrt{28}</answer>", "3\\sqrt{7}"

    class Stuck:
        def call(self, op, *args, timeout):
            return real.call("sleep", 60, timeout=timeout)

    budget.clear_cache()
    monkeypatch.setattr(budget, "get_pool", lambda: Stuck())
    assert is_correct(response, gold, timeout=0.3) is False  # timed out: scored 0 this time
    monkeypatch.setattr(budget, "get_pool", lambda: real)
    # the same pair once the machine has time again (a generous limit: the killed worker's successor may still be
    # starting on a loaded machine, and this test is about the cache, not speed)
    assert is_correct(response, gold, timeout=60) is True


def test_conventions_are_options_with_stated_defaults():
    # decimal comma: auto reads `1,22` against a decimal point; True always; False never
    assert is_correct("1,22", "1.22") and not is_correct("1,22", "1.22", decimal_comma=False)
    assert is_correct("1,5", "1.5", decimal_comma=True) and not is_correct("1,500", "1.5")
    # percent: either reading by default, or only one
    assert is_correct("45", "45%") and is_correct("0.45", "45%")
    assert is_correct("0.45", "45%", percent="fraction") and not is_correct("45", "45%", percent="fraction")
    assert is_correct("45", "45%", percent="number") and not is_correct("0.45", "45%", percent="number")
    # lists: any order by default; tuples keep their order whatever the option
    assert is_correct("3, 2", "2, 3") and not is_correct("3, 2", "2, 3", ordered_lists=True)
    assert not is_correct("(3, 2)", "(2, 3)")
    # precision: math-verify's float_rounding as an option; by default the shown rounding decides
    assert not is_correct("0.3", "0.3333") and is_correct("0.3", "0.3333", precision=1)
    for bad in ({"percent": "both"}, {"decimal_comma": "yes"}, {"precision": -1}, {"rel_tol": 2.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            is_correct("1", "1", **bad)


@pytest.mark.parametrize(
    "response, expected",
    [
        ("x\nFinal Answer: The final answer is $\\frac{3}{4}$. I hope it is correct.", "$\\frac{3}{4}$"),
        ("The solutions are \\boxed{(1, 2)}, \\boxed{(2, 1)}.", "(1, 2), (2, 1)"),
        ("First \\boxed{3}, then corrected: \\boxed{4}", "4"),
        ("$\\boxed{255}$ so far. Final Answer: The final answer is $10,455$.", "$10,455$"),
        ("I first said ANSWER: A but ANSWER: C is correct.", "C is correct"),
        ("ANSWER: B\nANSWER: [LETTER]", "B"),
        ("答案：（B）36 千克", "（B）36 千克"),
        ("La réponse est 12.", "12"),
        ("The answer is 7. <|im_start|>user\nThe answer is 8.", "7"),
    ],
)
def test_extract_answer_forms(response, expected):
    assert extract_answer(response) == expected


def test_works_from_threads():
    cases = [(r"\sqrt{12}", r"2\sqrt{3}", True), (r"\sqrt{13}", r"2\sqrt{3}", False), ("B", "B", True)] * 4
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda c: is_correct(c[0], c[1], timeout=30), cases))  # about threads, not speed
    assert results == [c[2] for c in cases]
    assert threading.current_thread() is threading.main_thread()  # the checks above ran in worker threads


_CHILD = """
import json, sys
from mmfinereason.rewards import is_correct
from mmfinereason.rewards.sandbox import get_pool
bomb = "<answer>" + "\\\\frac{" * 20 + "1" + "}{2}" * 20 + "</answer>"
ok = is_correct(r"\\sqrt{12}", r"2\\sqrt{3}") and not is_correct(bomb, "x", timeout=0.5)
print(json.dumps({"ok": ok, "pids": get_pool().pids()}))
"""


def test_no_worker_left_after_interpreter_exit():
    import json

    out = subprocess.run(
        [sys.executable, "-c", _CHILD], capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[1]
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["ok"] and report["pids"]
    for pid in report["pids"]:
        assert not _is_live_worker(pid), f"verification worker {pid} outlived its parent"


def _is_live_worker(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z" and b"symbolic.py" in cmdline
