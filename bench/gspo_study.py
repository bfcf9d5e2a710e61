"""One cell of the GSPO study (issue 17): a GSPO run from a fixed SFT model, then held-out accuracy with
per-source answer histograms, the training log and the wall time, written to ``OUT/summary.json``.

    PYTHONPATH=. nice -n 10 python bench/gspo_study.py --sft outputs/demo-sft --out outputs/study/base-s42 \
        train.seed=42 train.steps_per_generation=4 ...
    python bench/gspo_study.py --sft outputs/demo-sft --out outputs/study/sft --eval-only   # the SFT baseline
    python bench/gspo_study.py --sft outputs/demo-sft --out outputs/study/s2 --baseline outputs/study/sft train.seed=2
                                                 # the gain split into seeing and reasoning
    python bench/gspo_study.py --sft outputs/demo-sft --out outputs/study/s1 train.seed=1 eval.every_n_steps=20
                                                 # also the held-out accuracy every 20 updates (~6 s each)

Extra arguments are recipe overrides on ``recipes/tiny/gspo.yaml`` (or ``--recipe``). Evaluation is the demo's:
the recipe's 500 held-out items, greedy, same pixels; predictions go to ``OUT/predictions.jsonl``. On the toy task the
summary also says, per source, how often the model's listing of the shapes is right (perception) and how often
its answer follows from its own listing (reasoning): ``perception_and_reasoning``
(:mod:`mmfinereason.toy.diagnosis`).
"""

from __future__ import annotations

import argparse
import json
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


def main() -> None:
    from mmfinereason import load_recipe
    from mmfinereason.pipelines.inputs import load_eval_examples
    from mmfinereason.pipelines.stage import measure_accuracy
    from mmfinereason.evaluation.accuracy import Prediction
    from mmfinereason.evaluation.paired import paired_difference
    from mmfinereason.toy.diagnosis import attribute_gain, ceiling_of, diagnose

    parser = argparse.ArgumentParser()
    parser.add_argument("--recipe", default="recipes/tiny/gspo.yaml")
    parser.add_argument("--sft", required=True, help="the SFT model every cell starts from")
    parser.add_argument("--out", required=True)
    parser.add_argument("--eval-only", action="store_true", help="evaluate --sft itself (the baseline)")
    parser.add_argument("--baseline", help="an --eval-only cell's folder: split the gain over it into seeing and "
                                           "reasoning (mmfinereason.toy.diagnosis.attribute_gain)")
    parser.add_argument("overrides", nargs="*")
    a = parser.parse_args()
    baseline = None
    if a.baseline:  # read before training: a wrong path should not cost a finished run
        with open(Path(a.baseline) / "predictions.jsonl") as f:
            baseline = [Prediction.from_record(json.loads(line)) for line in f]
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
    by_source = diagnose(report.predictions)  # toy items: errors of seeing vs of reasoning
    if by_source:
        summary["perception_and_reasoning"] = by_source
        summary["accuracy_if_answers_followed_listings"] = ceiling_of(by_source)
    if baseline is not None:
        summary["gain_over_baseline"] = attribute_gain(baseline, report.predictions)
        # item by item: is the gain more than noise?
        summary["paired_over_baseline"] = paired_difference(baseline, report.predictions).to_dict()
    with open(out / "predictions.jsonl", "w") as f:
        for p in report.predictions:
            f.write(json.dumps(p.to_record()) + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    line = " ".join(f"{s[4:]}={100 * v['accuracy']:.1f}" for s, v in summary["per_source"].items())
    ceiling = summary.get("accuracy_if_answers_followed_listings")
    line += f" reasoning_ceiling={100 * ceiling:.1f}" if ceiling is not None else ""
    gain = summary.get("gain_over_baseline", {}).get("all")
    line += f" seeing={100 * gain['seeing']:+.1f} reasoning={100 * gain['reasoning']:+.1f}" if gain else ""
    paired = summary.get("paired_over_baseline")
    line += f" fixed={paired['fixed']} broke={paired['broken']} p={paired['p_value']:.2g}" if paired else ""
    along = summary.get("accuracy_along_the_run")
    line += " along=" + ",".join(f"{step}:{100 * acc:.1f}" for step, acc in along.items()) if along else ""
    print(f"RESULT {out.name}: acc={100 * report.accuracy:.1f} {line} train={train_seconds:.0f}s")


if __name__ == "__main__":
    main()
