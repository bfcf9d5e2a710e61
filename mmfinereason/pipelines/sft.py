"""Stage 1 from a recipe: model -> data -> collator -> :class:`~mmfinereason.trainers.sft.SFTTrainer`.

``mmfinereason sft RECIPE`` is ``run_sft(load_recipe(RECIPE))``; a notebook calls the same functions, or
``build_sft`` alone to get the trainer and drive it by hand.
"""

from __future__ import annotations

import logging

from mmfinereason.errors import UserError
from mmfinereason.pipelines.inputs import (
    add_accuracy_callback,
    load_train_data,
    make_batch_sampler,
    make_collator,
    make_model,
    make_processor,
)
from mmfinereason.pipelines.stage import RunResult, run_stage
from mmfinereason.recipe.loader import Recipe

logger = logging.getLogger(__name__)


def build_sft(recipe: Recipe, model=None, processor=None):
    """An :class:`~mmfinereason.trainers.sft.SFTTrainer` wired from the recipe (model, data, collator)."""
    from mmfinereason.trainers.sft import SFTTrainer

    if recipe.stage != "sft":
        raise UserError(
            f"build_sft needs a recipe with stage: sft, got stage: {recipe.stage}; build it with build_{recipe.stage}"
        )
    processor = make_processor(recipe, processor)  # the recipe's pixel bounds, saved with every checkpoint
    model = make_model(recipe, model)
    train_dataset, report = load_train_data(recipe)
    logger.info(report.summary())
    collator = make_collator(recipe, processor, model)
    if not recipe.data.streaming:  # a rank whose first batch is all bad rows trains a replacement, never crashes
        collator.replacements = train_dataset
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


def run_sft(recipe: Recipe) -> RunResult:
    """Train stage 1 as the recipe says; print held-out accuracy before and after; save model + recipe."""
    return run_stage(recipe, build_sft(recipe), "training")
