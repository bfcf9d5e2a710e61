"""Recipe -> running trainer: the one pipeline behind both the CLI and the notebook API.

``mmfinereason sft RECIPE`` is ``run_sft(load_recipe(RECIPE))``; a notebook calls the same functions, or
``build_sft`` alone to get the trainer and drive it by hand. Reading order mirrors a torchtune recipe:
model -> data -> trainer -> (accuracy before) -> train -> save -> (accuracy after).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import Recipe
from .data.collator import MultimodalCollator
from .data.sources import load_sources
from .evaluation import AccuracyReport, evaluate_accuracy
from .models import load_model, load_processor

logger = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What a finished run reports: where the model is, accuracy before / after, training metrics."""

    output_dir: str
    accuracy_before: AccuracyReport | None = None
    accuracy_after: AccuracyReport | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    log_history: list[dict[str, Any]] = field(default_factory=list)


def make_collator(recipe: Recipe, processor, model) -> MultimodalCollator:
    d = recipe.data
    return MultimodalCollator(
        processor,
        d.max_length,
        packing=d.packing,
        model=model,
        min_pixels=d.min_pixels,
        max_pixels=d.max_pixels,
        overlong=d.overlong,
        system_prompt=d.system_prompt,
    )


def load_train_data(recipe: Recipe, require_response: bool = True):
    """The training mixture and its skip report (errors out early on a bad source)."""
    d = recipe.data
    return load_sources(
        d.train, require_response=require_response, streaming=d.streaming, max_skip_rate=d.max_skip_rate, seed=d.seed
    )


def load_eval_examples(recipe: Recipe) -> list[dict]:
    """Held-out examples for accuracy (no teacher response needed), at most ``eval.limit`` of them."""
    if not recipe.data.eval:
        return []
    dataset, _ = load_sources(recipe.data.eval, require_response=False, max_skip_rate=recipe.data.max_skip_rate)
    limit = recipe.eval.limit
    rows = []
    for row in dataset:
        if limit is not None and len(rows) >= limit:
            break
        rows.append(row)
    return rows


def accuracy_settings(recipe: Recipe) -> dict:
    """The recipe's evaluation settings as keyword arguments of ``evaluate_accuracy`` (before, during, after)."""
    e, d = recipe.eval, recipe.data
    return dict(
        batch_size=e.batch_size,
        max_new_tokens=e.max_new_tokens,
        min_pixels=d.min_pixels,
        max_pixels=d.max_pixels,
        system_prompt=d.system_prompt,
        repetition_penalty=e.repetition_penalty,
    )


def measure_accuracy(recipe: Recipe, model, processor, examples: list[dict], desc: str) -> AccuracyReport | None:
    if not examples:
        return None
    return evaluate_accuracy(model, processor, examples, desc=desc, **accuracy_settings(recipe))


def build_sft(recipe: Recipe, model=None, processor=None):
    """An :class:`~mmfinereason.trainers.sft.SFTTrainer` wired from the recipe (model, data, collator)."""
    from .trainers.sft import SFTTrainer

    if recipe.stage != "sft":
        raise ValueError(f"build_sft needs a recipe with stage: sft, got stage: {recipe.stage}")
    processor = processor or load_processor(recipe.model.name_or_path)
    model = model or load_model(recipe.model)
    train_dataset, report = load_train_data(recipe)
    logger.info(report.summary())
    collator = make_collator(recipe, processor, model)
    trainer = SFTTrainer(
        model=model,
        args=recipe.train,
        train_dataset=train_dataset,
        processing_class=processor,
        data_collator=collator,
        data_report=report,
        recipe=recipe,
        train_batch_sampler=make_batch_sampler(recipe, collator, train_dataset),
    )
    return add_accuracy_callback(recipe, trainer)


def add_accuracy_callback(recipe: Recipe, trainer):
    """Held-out accuracy during training when the recipe asks for it (``eval.every_n_steps``), for either stage."""
    if recipe.eval.every_n_steps:
        from .trainers.eval_callback import AccuracyCallback

        trainer.add_callback(AccuracyCallback.from_recipe(recipe, trainer))
    return trainer


def make_batch_sampler(recipe: Recipe, collator: MultimodalCollator, train_dataset):
    """The token-budget sampler when ``data.tokens_per_batch`` is set (lengths are read up front), else None."""
    d, t = recipe.data, recipe.train
    if not d.tokens_per_batch:
        return None
    from .data.sampler import token_budget_sampler

    return token_budget_sampler(
        train_dataset,
        collator,
        d.tokens_per_batch,
        buffer_size=d.packing_buffer_size,
        seed=t.data_seed if t.data_seed is not None else t.seed,
        drop_last=t.dataloader_drop_last,
    )


def _print_accuracy(label: str, report: AccuracyReport | None, is_main: bool) -> None:
    if report is not None and is_main:
        print(f"\nheld-out accuracy {label}: {100 * report.accuracy:.1f}% ({len(report.predictions)} items)")
        print(report.table())


def run_stage(recipe: Recipe, trainer, label: str = "training") -> RunResult:
    """The shared run of either stage: accuracy before -> train (resumable) -> save -> accuracy after."""
    from .resume import train_resumable  # newest complete checkpoint, markers, exit on preemption

    is_main = trainer.accelerator.is_main_process
    out = Path(recipe.train.output_dir)
    eval_examples = load_eval_examples(recipe)
    result = RunResult(output_dir=str(out))
    if recipe.eval.before_training:
        result.accuracy_before = measure_accuracy(recipe, trainer.model, trainer.processing_class, eval_examples, "accuracy before")
        _print_accuracy(f"before {label}", result.accuracy_before, is_main)
    train_output = train_resumable(trainer, recipe.train.resume_from_checkpoint)
    result.metrics = dict(train_output.metrics)
    result.log_history = list(trainer.state.log_history)
    trainer.save_model(str(out))
    if is_main:
        trainer.processing_class.save_pretrained(str(out))
        recipe.save(out / "recipe.yaml")
    if recipe.eval.after_training:
        result.accuracy_after = measure_accuracy(recipe, trainer.model, trainer.processing_class, eval_examples, "accuracy after")
        _print_accuracy(f"after {label}", result.accuracy_after, is_main)
        if result.accuracy_after is not None:
            trainer.log(result.accuracy_after.metrics())
    if is_main:
        print(f"\nsaved model, processor and recipe to {out}")
    return result


def run_sft(recipe: Recipe) -> RunResult:
    """Train stage 1 as the recipe says; print held-out accuracy before and after; save model + recipe."""
    return run_stage(recipe, build_sft(recipe), "training")
