"""Latency of `mmfinereason.rewards.is_correct` on a realistic mix and on adversarial inputs; prints one JSON line.

    python bench/rewards.py [--n 2000] [--timeout 2.0] [--seed 0]

Realistic mix: MMFineReason-shaped responses (`<think>` of about 2,900 tokens, then a short solution ending
`the final answer is <answer>X</answer>.`) over every answer type, right and wrong answers, with the rough type
frequencies of the data (numbers first, then options, expressions, yes/no, words, lists). Expression answers vary
so the caches do not flatter the figures. Adversarial: each case of tests/reward_cases.ADVERSARIAL against a
numeric and an expression gold; each must come back False within the time limit. Finally the sandbox is shut down
and the benchmark checks that no child process is left.

Goal (issue): realistic p50 <= 5 ms, p99 <= 100 ms; every adversarial check back within the cap.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

_WORDS = (
    "the angle triangle side length so we compute area then circle radius point line segment parallel by "
    "theorem therefore since equals half of sum square root check again wait let me verify carefully figure shows"
).split()


def _filler(rng: random.Random, tokens: int) -> str:
    words = []
    while len(words) < tokens:
        words.extend(rng.choice(_WORDS) for _ in range(12))
        words.append(f"= {rng.randint(2, 99)}.\n" if rng.random() < 0.3 else "$x^2 + 1$,")
    return " ".join(words[:tokens])


_LAST_WRONG = [False]


def _answer_pair(rng: random.Random) -> tuple[str, str, str | None]:
    """(gold, model answer, question) for one realistic item; about a third of the answers are wrong.

    `_LAST_WRONG[0]` records whether the generated answer is wrong, so the benchmark also reports agreement."""
    kind = rng.choices(["int", "dec", "unit", "frac", "choice", "expr", "yesno", "text", "list"],
                       weights=[22, 10, 12, 8, 22, 12, 6, 4, 4])[0]
    wrong = rng.random() < 0.35
    _LAST_WRONG[0] = wrong
    if kind == "int":
        g = rng.randint(0, 500)
        return str(g), str(g + rng.randint(1, 9) if wrong else g), None
    if kind == "dec":
        g = round(rng.uniform(0, 100), 2)
        return f"{g}", f"{g * 10 if wrong else g:.2f}", None
    if kind == "unit":
        g = rng.randint(1, 180)
        unit = rng.choice(["cm", "cm^2", "°", "^\\circ", " m", "\\text{ cm}", "%"])
        return f"{g}{unit}" if unit == "°" else str(g), f"{g + 1 if wrong else g}{unit}", None
    if kind == "frac":
        a, b = rng.randint(1, 9), rng.randint(10, 19)
        return f"\\frac{{{a}}}{{{b}}}", f"{a + 1 if wrong else a}/{b}", None
    if kind == "choice":
        letters = "ABCD"
        g = rng.choice(letters)
        q = "Which value is correct?\n" + "\n".join(f"{c}. {rng.randint(1, 99)}" for c in letters)
        p = rng.choice([letters[(letters.index(g) + 1) % 4]] if wrong else [g, f"({g})", f"Option {g}", f"{g}."])
        return g, p, q
    if kind == "expr":
        a, b = rng.randint(2, 9), rng.choice([2, 3, 5, 6, 7])
        g = rng.choice([f"{a}\\sqrt{{{b}}}", f"\\frac{{{a}\\pi}}{{{b}}}", f"{a}+\\sqrt{{{b}}}"])
        forms = {f"{a}\\sqrt{{{b}}}": f"\\sqrt{{{a * a * b}}}", f"\\frac{{{a}\\pi}}{{{b}}}": f"{a}\\pi/{b}",
                 f"{a}+\\sqrt{{{b}}}": f"\\sqrt{{{b}}}+{a}"}
        return g, (f"{a + 1}\\sqrt{{{b}}}" if wrong else forms[g]), None
    if kind == "yesno":
        g = rng.choice(["Yes", "No"])
        return g, ({"Yes": "No", "No": "Yes"}[g] if wrong else g.lower()), None
    if kind == "text":
        g = rng.choice(["isosceles triangle", "red", "parallel", "Thursday"])
        return g, ("circle" if wrong else f"The {g.title()}."), None
    a, b = rng.randint(1, 9), rng.randint(10, 19)
    return f"{a}, {b}", (f"x = {b} or x = {a + 1}" if wrong else f"x = {b} or x = {a}"), None


def realistic(n: int, seed: int) -> list[tuple[str, str, str | None, bool]]:
    rng = random.Random(seed)
    items = []
    for _ in range(n):
        gold, pred, question = _answer_pair(rng)
        response = (
            f"<think>\n{_filler(rng, 2700)}\n</think>\n\n{_filler(rng, 180)}\n\n"
            f"Therefore, the final answer is <answer>{pred}</answer>."
        )
        items.append((response, gold, question, not _LAST_WRONG[0]))
    return items


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                out.append(int(entry.name))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from reward_cases import ADVERSARIAL

    from mmfinereason.rewards import is_correct, shutdown_sandbox, verification_stats

    items = realistic(args.n, args.seed)
    t0 = time.perf_counter()
    is_correct("\\sqrt{12}", "2\\sqrt{3}")  # start the sandbox (once per process, not part of any check's limit)
    startup_s = time.perf_counter() - t0
    verification_stats(reset=True)

    latencies, agree = [], 0
    for response, gold, question, expected in items:
        t = time.perf_counter()
        agree += is_correct(response, gold, question=question, timeout=args.timeout) == expected
        latencies.append((time.perf_counter() - t) * 1000)
    latencies.sort()
    mix_stats = verification_stats(reset=True)

    adversarial, within = {}, True
    for name, response in ADVERSARIAL.items():
        worst = 0.0
        for gold in ("12", "x^2+1"):
            t = time.perf_counter()
            result = is_correct(response, gold, timeout=args.timeout)
            elapsed = time.perf_counter() - t
            worst = max(worst, elapsed)
            within &= (result is False) and elapsed <= args.timeout + 0.25
        adversarial[name] = round(worst * 1000, 1)
    adv_stats = verification_stats()

    shutdown_sandbox()
    time.sleep(0.2)
    left = _children(os.getpid())

    print(json.dumps({
        "bench": "rewards",
        "n": len(items),
        "avg_response_chars": round(statistics.mean(len(item[0]) for item in items)),
        "sandbox_startup_s": round(startup_s, 3),
        "mix_p50_ms": round(latencies[len(latencies) // 2], 3),
        "mix_p90_ms": round(latencies[int(len(latencies) * 0.9)], 3),
        "mix_p99_ms": round(latencies[int(len(latencies) * 0.99)], 3),
        "mix_max_ms": round(latencies[-1], 3),
        "mix_agreement_with_labels": round(agree / len(items), 4),
        "mix_stats": mix_stats,
        "timeout_s": args.timeout,
        "adversarial_worst_ms": adversarial,
        "adversarial_all_false_within_cap": within,
        "adversarial_stats": adv_stats,
        "children_left_after_shutdown": left,
        "goal_met": latencies[len(latencies) // 2] <= 5 and latencies[int(len(latencies) * 0.99)] <= 100
        and within and not left,
    }))


if __name__ == "__main__":
    main()
