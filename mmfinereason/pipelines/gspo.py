"""Stage 2 from a recipe: model (the SFT output) -> RL prompts -> :class:`~mmfinereason.trainers.gspo.GSPOTrainer`.

``mmfinereason gspo RECIPE`` is ``run_gspo(load_recipe(RECIPE))``; ``build_gspo`` alone gives the trainer.
"""

from __future__ import annotations

import logging

from mmfinereason.errors import UserError
from mmfinereason.pipelines.inputs import add_accuracy_callback, load_train_data, make_model, make_processor
from mmfinereason.pipelines.rl_prompts import add_prompts, drop_long_prompts
from mmfinereason.pipelines.stage import RunResult, run_stage
from mmfinereason.recipe.loader import Recipe

logger = logging.getLogger(__name__)


def build_gspo(recipe: Recipe, model=None, processor=None):
    """A :class:`~mmfinereason.trainers.gspo.GSPOTrainer` wired from the recipe: model, RL prompts, rewards."""
    from mmfinereason.trainers.gspo import GSPOTrainer

    if recipe.stage != "gspo":
        raise UserError(
            f"build_gspo needs a recipe with stage: gspo, got stage: {recipe.stage}; build it with build_{recipe.stage}"
        )
    d, args = recipe.data, recipe.train
    _refuse_adapter_for_vllm(recipe, model)
    # TRL runs the processor without size arguments and starts vLLM from the model folder: the recipe's pixel
    # bounds must be the processor's own, and saved with it (make_processor), for both to resize alike.
    processor = make_processor(recipe, processor)
    model = make_model(recipe, model)
    dataset, report = load_train_data(recipe, require_response=False)
    logger.info(report.summary())
    dataset, _ = drop_long_prompts(
        dataset, processor, args.max_prompt_length,
        system_prompt=d.system_prompt, min_pixels=d.min_pixels, max_pixels=d.max_pixels,
    )
    trainer = GSPOTrainer(
        model,
        args=args,
        train_dataset=add_prompts(dataset, d.system_prompt),
        processing_class=processor,
        recipe=recipe,
        data_report=report,
    )
    return add_accuracy_callback(recipe, trainer)


def _refuse_adapter_for_vllm(recipe: Recipe, model) -> None:
    """TRL starts vLLM from the model's folder, and vLLM cannot load a LoRA adapter folder as a model: say so
    before the data is prepared, not when the engine starts."""
    from mmfinereason.modeling.adapters import adapter_to_merge
    from mmfinereason.modeling.loading import resolve_name

    if model is not None or not recipe.train.use_vllm:
        return
    if adapter_to_merge(resolve_name(recipe.model.name_or_path)) is not None:
        raise UserError(
            f"model.name_or_path {recipe.model.name_or_path} holds a LoRA adapter and no merged model (a LoRA "
            "checkpoint, or a LoRA run stopped while merging) and "
            "train.use_vllm starts vLLM from it, which needs a full model: point model.name_or_path at the LoRA "
            "run's output folder (the adapter merged in), or set train.use_vllm=false"
        )


def run_gspo(recipe: Recipe) -> RunResult:
    """Train stage 2 as the recipe says; print held-out accuracy before and after; save model + recipe."""
    return run_stage(recipe, build_gspo(recipe), "GSPO")
