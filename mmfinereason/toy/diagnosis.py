"""Seeing or reasoning: on the bundled task, is a wrong answer a wrong listing or an answer that ignores it?

Every think trace of the task lists the shapes before it answers (:mod:`mmfinereason.toy.task`), so a model's
errors split in two:

* **seeing** — its listing of the shapes is wrong (with the vision tower frozen GSPO can still fix some: the language
  model learns to read the tower's image tokens better; on the session-16 demo most of GSPO's gain was of this kind);
* **reasoning** — its answer does not follow from its own listing (the option letter of the colour it named, the
  number of the asked kind in its list, the sign of the lead of the colours it listed, the kind it named).

The **reasoning ceiling** is the accuracy had every answer followed from the model's own listing. Its distance
from a model's accuracy is the room that RL on the text side has. Why it is in the package and printed by the
demo (issue 17): that room differs from one SFT model to the next (another seed, thread count or CPU gives
another float rounding), and GSPO's gain follows it (with the tiny recipe's weight anchor the mean gains of five SFT
models rank as their rooms do). From the demo's SFT model (67.8%, ceiling 75.0%) GSPO adds +4 to +7; from an SFT
model of another seed (69.4%, ceiling 72.8%) +1 to +2. A user who sees +2 should know whether there were 7 points to
take or 3.

Toy items only: each prediction's item is drawn again from its id (``toy-SEED-INDEX``, the task's default mix);
predictions with other ids are left out.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from typing import Iterable

from mmfinereason.toy.task import make_example

_TOY_ID = re.compile(r"^toy-(\d+)-(\d+)$")
_LISTING = re.compile(r"from left to right: ([^.]*)\.")
_NAMED = re.compile(r" is the (\w+) (\w+)\.")


def _listing(text: str) -> list[str] | None:
    found = _LISTING.search(text)
    return found.group(1).split(", ") if found else None


def _answer_from_listing(source: str, question: str, listed: list[str], think: str) -> str | None:
    """The answer that follows from a listing (``None`` where the trace names no shape to answer about)."""
    if source == "toy_count":
        kind = re.search(r"How many (\w+)s are", question).group(1)
        return str(sum(x.endswith(" " + kind) for x in listed))
    if source == "toy_compare":
        a, b = re.search(r"more (\w+) shapes than (\w+) shapes", question).groups()
        return "yes" if listed.count(a) > listed.count(b) else "no"
    named = _NAMED.search(think)  # colour and shape: about the shape the model named as the (largest) one
    if named is None:
        return None
    if source == "toy_shape":
        return named.group(2)
    letters = {text: letter for letter, text in re.findall(r"\n([ABCD])\. (\w+)", question)}
    return letters.get(named.group(1), "")  # the options are shuffled on hard items: a lookup in the question


def diagnose(predictions: Iterable) -> dict[str, dict[str, float]]:
    """Per source (toy items only): ``n``, ``listing_right`` (the model listed exactly the right shapes),
    ``listing_length_right``, ``answer_follows_from_listing`` (over the items whose trace it could be read from)
    and ``accuracy_if_answer_followed_listing`` (an item without a readable listing counts as wrong).

    ``predictions``: :class:`~mmfinereason.evaluation.accuracy.Prediction` objects (``id``, ``source``,
    ``response``, ``extracted``).
    """
    by: dict[str, Counter] = defaultdict(Counter)
    for p in predictions:
        toy_id = _TOY_ID.match(str(p.id))
        if toy_id is None:
            continue
        row = make_example(int(toy_id.group(2)), seed=int(toy_id.group(1)))
        think = str(p.response).split("</think>")[0]
        gold, mine = _listing(row["qwen3vl_235b_thinking_response"]), _listing(think)
        counts = by[row["source"]]
        counts["n"] += 1
        if gold is None or mine is None:
            continue
        if row["source"] == "toy_compare":  # "red +1, blue 0": the colours are what was seen
            gold, mine = [e.split(" ")[0] for e in gold], [e.split(" ")[0] for e in mine]
        counts["listing_right"] += mine == gold
        counts["listing_length_right"] += len(mine) == len(gold)
        follows = _answer_from_listing(row["source"], row["question"], mine, think)
        if follows is not None:
            counts["reasoning_checked"] += 1
            counts["answer_follows_from_listing"] += str(p.extracted) == follows
            counts["listing_implies_gold"] += follows == str(row["answer"])
    return {
        source: {
            "n": c["n"],
            "listing_right": c["listing_right"] / c["n"],
            "listing_length_right": c["listing_length_right"] / c["n"],
            **({"answer_follows_from_listing": c["answer_follows_from_listing"] / c["reasoning_checked"]}
               if c["reasoning_checked"] else {}),
            "accuracy_if_answer_followed_listing": c["listing_implies_gold"] / c["n"],
        }
        for source, c in sorted(by.items())
    }


def reasoning_ceiling(predictions: Iterable) -> float | None:
    """The accuracy had every answer followed from the model's own listing, over the toy items (``None`` if none)."""
    return ceiling_of(diagnose(predictions))


def ceiling_of(by_source: dict[str, dict[str, float]]) -> float | None:
    """:func:`reasoning_ceiling` from a :func:`diagnose` result already at hand (items are not drawn again)."""
    n = sum(v["n"] for v in by_source.values())
    if not n:
        return None
    return sum(v["accuracy_if_answer_followed_listing"] * v["n"] for v in by_source.values()) / n


def _toy_accuracy(predictions: list) -> dict[str, float]:
    """Accuracy per source over the toy items (the ones :func:`diagnose` reads)."""
    by: dict[str, list[bool]] = defaultdict(list)
    for p in predictions:
        if _TOY_ID.match(str(p.id)):
            by[p.source].append(bool(p.correct))
    return {source: sum(v) / len(v) for source, v in by.items()}


def attribute_gain(before: Iterable, after: Iterable) -> dict[str, dict[str, float]]:
    """Where a change of accuracy between two models came from, per source and over all toy items (``all``).

    ``gain`` = ``seeing`` + ``reasoning``, exactly: ``seeing`` is how far the reasoning ceiling moved (better or
    worse listings), ``reasoning`` how much of the reasoning room was taken (answers that follow their listing
    more or less often); ``room_left`` is the room the second model still has. Why: one overall "GSPO took x of
    the y points of room" hides a run whose gain came from listings while the room stayed (session 16: the demo's
    +3.4 was +3.0 of seeing and +0.4 of reasoning, colour's 13.6 points of room half taken, count's listings
    better). Sources missing from either side are left out.
    """
    before, after = list(before), list(after)
    figures = []
    for preds in (before, after):
        by_source, accuracy = diagnose(preds), _toy_accuracy(preds)
        figures.append({s: (v["n"], accuracy[s], v["accuracy_if_answer_followed_listing"])
                        for s, v in by_source.items()})
    sources = sorted(set(figures[0]) & set(figures[1]))
    out: dict[str, dict[str, float]] = {}
    totals = defaultdict(float)
    for source in sources:
        (n, acc_b, ceil_b), (_, acc_a, ceil_a) = figures[0][source], figures[1][source]
        parts = {"gain": acc_a - acc_b, "seeing": ceil_a - ceil_b,
                 "reasoning": (ceil_b - acc_b) - (ceil_a - acc_a), "room_left": ceil_a - acc_a}
        out[source] = parts
        for key, value in parts.items():
            totals[key] += value * n
        totals["n"] += n
    if totals["n"]:
        out["all"] = {key: totals[key] / totals["n"] for key in ("gain", "seeing", "reasoning", "room_left")}
    return out


def gain_table(parts: dict[str, dict[str, float]]) -> str | None:
    """An :func:`attribute_gain` result as the demo prints it (points; ``None`` off the toy task). It takes the
    result, not the predictions: each :func:`diagnose` pass draws every item's image again."""
    if not parts:
        return None
    columns = [*(s for s in parts if s != "all"), "all"]
    rows = (("gain", "gain"), ("from seeing (listings)", "seeing"), ("from reasoning (room taken)", "reasoning"),
            ("reasoning room left", "room_left"))
    lines = [f"{'where the points came from':<29}" + "".join(f"{c:>13}" for c in columns)]
    for label, key in rows:
        lines.append(f"{label:<29}" + "".join(f"{100 * parts[c][key]:>+13.1f}" for c in columns))
    return "\n".join(lines)
