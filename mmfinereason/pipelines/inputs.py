"""What a recipe's stage is built from: the training data, the collator, the batch sampler, held-out examples.

Shared by both stages (:mod:`.sft`, :mod:`.gspo`) and by the during-training accuracy callback, so that the
settings a recipe gives are read in one place.
"""

from __future__ import annotations

from mmfinereason.data.batching.collator import MultimodalCollator
from mmfinereason.data.io.sources import load_sources
from mmfinereason.recipe.loader import Recipe


def make_collator(recipe: Recipe, processor, model) -> MultimodalCollator:
    d = recipe.data
    return MultimodalCollator(
        processor,
        d.max_length,
        packing=d.packing,
        model=model,
        min_pixels=d.min_pixels,
        max_pixels=d.max_pixels,
        overlong=d.overlong_examples,
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


def add_accuracy_callback(recipe: Recipe, trainer, examples: list[dict] | None = None):
    """Held-out accuracy during training when the recipe asks for it (``eval.every_n_steps``), for either stage.

    Measured on ``data.eval``, at most ``eval.during_training_limit`` rows, with the recipe's evaluation settings.
    """
    e = recipe.eval
    if not e.every_n_steps:
        return trainer
    from mmfinereason.trainers.eval_callback import AccuracyCallback

    examples = load_eval_examples(recipe) if examples is None else examples
    if e.during_training_limit is not None:
        examples = examples[: e.during_training_limit]
    trainer.add_callback(AccuracyCallback(trainer, examples, e.every_n_steps, **accuracy_settings(recipe)))
    return trainer


def make_batch_sampler(recipe: Recipe, collator: MultimodalCollator, train_dataset):
    """The token-budget sampler when ``data.tokens_per_batch`` is set (lengths are read up front), else None."""
    d, t = recipe.data, recipe.train
    if not d.tokens_per_batch:
        return None
    from mmfinereason.data.batching.sampler import token_budget_sampler

    return token_budget_sampler(
        train_dataset,
        collator,
        d.tokens_per_batch,
        buffer_size=d.packing_buffer_size,
        seed=t.data_seed if t.data_seed is not None else t.seed,
        drop_last=t.dataloader_drop_last,
    )
