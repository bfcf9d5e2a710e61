"""The run of either stage, the one pipeline behind both the CLI and the notebook API.

Reading order mirrors a torchtune recipe: (accuracy before) -> train (resumable) -> save -> (accuracy after).
A LoRA run's saved adapter is then merged into a full model folder (:mod:`mmfinereason.modeling.adapters`).
The stage-specific wiring (model, data, trainer) is in :mod:`.sft` and :mod:`.gspo`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mmfinereason.recipe.loader import Recipe
from mmfinereason.evaluation.accuracy import AccuracyReport, evaluate_accuracy
from mmfinereason.modeling.adapters import ADAPTER_SUBDIR, export_merged, is_peft_model
from mmfinereason.modeling.loading import load_pretrained
from mmfinereason.monitoring.history import append_log_entry
from mmfinereason.pipelines.inputs import accuracy_settings, load_eval_examples

logger = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What a finished run reports: where the model is, accuracy before / after, training metrics."""

    output_dir: str
    accuracy_before: AccuracyReport | None = None
    accuracy_after: AccuracyReport | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    log_history: list[dict[str, Any]] = field(default_factory=list)
    curves: list[str] = field(default_factory=list)  # OUTPUT_DIR/curves.png and .svg (main process)


def measure_accuracy(recipe: Recipe, model, processor, examples: list[dict], desc: str) -> AccuracyReport | None:
    if not examples:
        return None
    return evaluate_accuracy(model, processor, examples, desc=desc, **accuracy_settings(recipe))


def _print_accuracy(label: str, report: AccuracyReport | None, is_main: bool) -> None:
    if report is not None and is_main:
        print(f"\nheld-out accuracy {label}: {100 * report.accuracy:.1f}% ({len(report.predictions)} items)")
        print(report.table())


def run_stage(recipe: Recipe, trainer, label: str = "training") -> RunResult:
    """The shared run of either stage: accuracy before -> train (resumable) -> save -> accuracy after."""
    from mmfinereason.runtime.resume import train_resumable  # newest complete checkpoint, markers, exit on preemption

    is_main = trainer.accelerator.is_main_process
    out = Path(recipe.train.output_dir)
    eval_examples = load_eval_examples(recipe)
    result = RunResult(output_dir=str(out))
    if recipe.eval.before_training:
        result.accuracy_before = measure_accuracy(recipe, trainer.model, trainer.processing_class, eval_examples, "accuracy before")
        _print_accuracy(f"before {label}", result.accuracy_before, is_main)
        if is_main and result.accuracy_before is not None:  # the curves' held-out accuracy starts here, at step 0
            append_log_entry(out, {**result.accuracy_before.metrics(), "step": 0})
    train_output = train_resumable(trainer, recipe.train.resume_from_checkpoint)
    result.metrics = dict(train_output.metrics)
    result.log_history = list(trainer.state.log_history)
    lora = is_peft_model(trainer.model)  # the adapter goes to its own folder, merged into OUTPUT_DIR at the end
    trainer.save_model(str(out / ADAPTER_SUBDIR if lora else out))
    if is_main:
        trainer.processing_class.save_pretrained(str(out))
        recipe.save(out / "recipe.yaml")
    if recipe.eval.after_training:
        result.accuracy_after = measure_accuracy(recipe, trainer.model, trainer.processing_class, eval_examples, "accuracy after")
        _print_accuracy(f"after {label}", result.accuracy_after, is_main)
        if result.accuracy_after is not None:
            trainer.log(result.accuracy_after.metrics())
    if is_main:
        if lora:  # last: the other ranks have no collective left to wait in
            adapter = export_merged(out, lambda: load_pretrained(replace(recipe.model, attn_implementation="sdpa")))
            print(f"\nLoRA: the adapter merged into the model at {out}; the adapter alone in {adapter}")
        print(f"\nsaved model, processor and recipe to {out}")
        result.curves = _write_curves(out)
    return result


def _write_curves(out: Path) -> list[str]:
    """OUTPUT_DIR/curves.png + .svg from the run's log history; a finished run never fails for a picture."""
    from mmfinereason.monitoring.curves import write_run_curves

    try:
        paths = [str(p) for p in write_run_curves(out)]
    except (ImportError, ValueError, OSError) as e:
        logger.warning("no training curves for %s: %s", out, e)
        return []
    print(f"training curves: {paths[0]} (and .svg); compare runs with `mmfinereason plot RUN_DIR…`")
    return paths
