"""One cell of the GSPO study (issue 17): a GSPO run from a fixed SFT model, then held-out accuracy with
per-source answer histograms, the training log and the wall time, written to ``OUT/summary.json``.

    PYTHONPATH=. nice -n 10 python bench/gspo_study.py --sft outputs/demo-sft --out outputs/study/base-s42 \
        train.seed=42 train.steps_per_generation=4 ...
    python bench/gspo_study.py --sft outputs/demo-sft --out outputs/study/sft --eval-only   # the SFT baseline
    python bench/gspo_study.py --sft outputs/demo-sft --out outputs/study/s1 train.seed=1 eval.every_n_steps=20
                                                 # also the held-out accuracy every 20 updates (~6 s each)

Extra arguments are recipe overrides on ``recipes/tiny/gspo.yaml`` (or ``--recipe``). Evaluation is the demo's:
the recipe's 500 held-out items, greedy, same pixels; predictions go to ``OUT/predictions.jsonl``. On the toy task the
summary also says, per source, how often the model's listing of the shapes is right (perception) and how often
its answer follows from its own listing (reasoning): ``perception_and_reasoning``.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections import Counter, defaultdict
from pathlib import Path


def histograms(report) -> dict:
    """Per source: accuracy, gold-answer and predicted-answer histograms, and accuracy per gold answer."""
    by = defaultdict(list)
    for p in report.predictions:
        by[p.source].append(p)
    out = {}
    for source, preds in sorted(by.items()):
        per_gold = defaultdict(list)
        for p in preds:
            per_gold[p.answer].append(p.correct)
        out[source] = {
            "accuracy": sum(p.correct for p in preds) / len(preds),
            "n": len(preds),
            "gold": dict(Counter(p.answer for p in preds).most_common()),
            "predicted": dict(Counter(str(p.extracted) for p in preds).most_common()),
            "accuracy_per_gold": {g: round(sum(v) / len(v), 3) for g, v in sorted(per_gold.items())},
        }
    return out


_LISTING = re.compile(r"from left to right: ([^.]*)\.")


def perception_and_reasoning(report, split_seed: int) -> dict:
    """Per source: how often the model's listing of the shapes is right (perception) and how often its answer
    follows from its own listing (reasoning), on the toy task's held-out items (task v8: every trace lists).
    Follows: count, the number of the asked kind in the list; compare, the sign of the lead of the listed colours;
    shape, the kind of the shape it named as the largest; colour, the option letter of that shape's colour.

    ``accuracy_if_answer_followed_listing`` is the ceiling of reasoning alone: the accuracy had every answer followed
    from the model's own listing (an item without a parsable listing counts as wrong).

    Why: GSPO with a frozen vision tower can fix reasoning, not perception. A cell whose errors are wrong
    listings has nothing for GSPO to learn there, only noise to walk on (issue 17).
    """
    from mmfinereason.toy import make_example

    by = defaultdict(Counter)
    for p in report.predictions:
        index = int(str(p.id).rsplit("-", 1)[-1])
        row = make_example(index, seed=split_seed)
        gold = _LISTING.search(row["qwen3vl_235b_thinking_response"])
        mine = _LISTING.search(p.response.split("</think>")[0])
        counts = by[p.source]
        counts["n"] += 1
        if not (gold and mine):
            continue
        listed, gold_listed = mine.group(1).split(", "), gold.group(1).split(", ")
        if p.source == "toy_compare":  # task v9: "red +1, blue 0": the colours are what was seen
            listed, gold_listed = [e.split(" ")[0] for e in listed], [e.split(" ")[0] for e in gold_listed]
        counts["listing_right"] += listed == gold_listed
        counts["listing_length_right"] += len(listed) == len(gold_listed)
        follows = None
        if p.source == "toy_count":
            kind = re.search(r"How many (\w+)s are", row["question"]).group(1)
            follows = str(sum(x.endswith(" " + kind) for x in listed))
        elif p.source == "toy_compare":
            a, b = re.search(r"more (\w+) shapes than (\w+) shapes", row["question"]).groups()
            follows = "yes" if listed.count(a) > listed.count(b) else "no"
        elif p.source in ("toy_color", "toy_shape"):  # the answer for the shape the model named as the largest
            named = re.search(r" is the (\w+) (\w+)\.", p.response.split("</think>")[0])
            if named and p.source == "toy_shape":
                follows = named.group(2)
            elif named:  # the option letter whose text is the named shape's colour (shuffled on hard items)
                letters = {text: letter for letter, text in re.findall(r"\n([ABCD])\. (\w+)", row["question"])}
                follows = letters.get(named.group(1), "")
        if follows is not None:
            counts["reasoning_checked"] += 1
            counts["answer_follows_from_listing"] += str(p.extracted) == follows
            counts["listing_implies_gold"] += follows == str(row["answer"])
    return {
        source: {
            "listing_right": c["listing_right"] / c["n"],
            "listing_length_right": c["listing_length_right"] / c["n"],
            **({"answer_follows_from_listing": c["answer_follows_from_listing"] / c["reasoning_checked"]}
               if c["reasoning_checked"] else {}),
            "accuracy_if_answer_followed_listing": c["listing_implies_gold"] / c["n"],
        }
        for source, c in sorted(by.items())
    }


def main() -> None:
    from mmfinereason import load_recipe
    from mmfinereason.pipelines.inputs import load_eval_examples
    from mmfinereason.pipelines.stage import measure_accuracy

    parser = argparse.ArgumentParser()
    parser.add_argument("--recipe", default="recipes/tiny/gspo.yaml")
    parser.add_argument("--sft", required=True, help="the SFT model every cell starts from")
    parser.add_argument("--out", required=True)
    parser.add_argument("--eval-only", action="store_true", help="evaluate --sft itself (the baseline)")
    parser.add_argument("overrides", nargs="*")
    a = parser.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    recipe = load_recipe(a.recipe, [
        *a.overrides, f"model.name_or_path={a.sft}", f"train.output_dir={out / 'model'}",
        "eval.before_training=false", "eval.after_training=false", "train.disable_tqdm=true",
    ])
    summary: dict = {"overrides": a.overrides, "sft": a.sft}
    if a.eval_only:
        from mmfinereason.modeling.loading import load_model, load_processor

        model, processor = load_model(recipe.model), load_processor(a.sft)
        train_seconds = 0.0
    else:
        from mmfinereason.pipelines.gspo import build_gspo

        trainer = build_gspo(recipe)
        start = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - start
        model, processor = trainer.model, trainer.processing_class
        logs = trainer.state.log_history
        summary["log_history"] = logs
        steps = trainer.state.global_step
        summary["optimizer_steps"] = steps
        t = trainer.args
        summary["updates_per_rollout_batch"] = t.steps_per_generation * t.num_iterations / t.gradient_accumulation_steps
        summary["generation_rounds"] = -(-steps // summary["updates_per_rollout_batch"])
        summary["seconds_per_step"] = train_seconds / max(steps, 1)
        # eval.every_n_steps=N: the held-out accuracy along the run (does it still climb, or has it settled?)
        summary["accuracy_along_the_run"] = {h["step"]: h["eval_accuracy"] for h in logs if "eval_accuracy" in h}
    start = time.perf_counter()
    report = measure_accuracy(recipe, model, processor, load_eval_examples(recipe), "accuracy")
    summary.update(
        train_seconds=train_seconds,
        eval_seconds=time.perf_counter() - start,
        accuracy=report.accuracy,
        per_source=histograms(report),
    )
    toy_splits = {spec.split for spec in recipe.data.eval if spec.path == "toy"}
    if len(toy_splits) == 1:
        from mmfinereason.toy.splits import SPLIT_SEEDS

        by_source = perception_and_reasoning(report, SPLIT_SEEDS[toy_splits.pop() or "train"])
        summary["perception_and_reasoning"] = by_source
        n = {source: v["n"] for source, v in summary["per_source"].items()}
        summary["accuracy_if_answers_followed_listings"] = sum(
            v["accuracy_if_answer_followed_listing"] * n[source] for source, v in by_source.items()
        ) / sum(n.values())
    with open(out / "predictions.jsonl", "w") as f:
        for p in report.predictions:
            f.write(json.dumps(p.to_record()) + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    line = " ".join(f"{s[4:]}={100 * v['accuracy']:.1f}" for s, v in summary["per_source"].items())
    ceiling = summary.get("accuracy_if_answers_followed_listings")
    line += f" reasoning_ceiling={100 * ceiling:.1f}" if ceiling is not None else ""
    along = summary.get("accuracy_along_the_run")
    line += " along=" + ",".join(f"{step}:{100 * acc:.1f}" for step, acc in along.items()) if along else ""
    print(f"RESULT {out.name}: acc={100 * report.accuracy:.1f} {line} train={train_seconds:.0f}s")


if __name__ == "__main__":
    main()
