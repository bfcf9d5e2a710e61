"""What a recipe's stage is built from: the training data, the collator, the batch sampler, held-out examples.

Shared by both stages (:mod:`.sft`, :mod:`.gspo`) and by the during-training accuracy callback, so that the
settings a recipe gives are read in one place.
"""

from __future__ import annotations

from mmfinereason.data.batching.collator import MultimodalCollator
from mmfinereason.data.io.sources import load_sources
from mmfinereason.recipe.loader import Recipe


def make_processor(recipe: Recipe, processor=None):
    """The processor of either stage, carrying the recipe's pixel bounds as its own (saved) image size.

    The one source of truth for image sizes: the trainer saves this processor into the output folder and every
    checkpoint, so vLLM (started by TRL from the folder), ``eval`` and ``from_pretrained`` resize exactly as
    training did. A processor passed in (notebook) gets the same bounds.
    """
    from mmfinereason.modeling.loading import load_processor, set_pixel_bounds

    d = recipe.data
    if processor is None:
        return load_processor(recipe.model.name_or_path, min_pixels=d.min_pixels, max_pixels=d.max_pixels)
    return set_pixel_bounds(processor, d.min_pixels, d.max_pixels)


def make_model(recipe: Recipe, model=None):
    """The model to train: fp32 master weights for a half-precision recipe (see ``modeling.loading``).

    Seeded with ``train.seed`` first: new LoRA adapters draw their initial weights from the global RNG, which
    the trainer seeds only after the model exists (without this, two runs of one LoRA recipe differ from step 0).
    """
    from transformers import set_seed

    from mmfinereason.modeling.loading import check_precision, load_model

    check_precision(recipe.model, recipe.train)
    if model is not None:
        return model
    set_seed(recipe.train.seed)
    return load_model(attention_for_packing(recipe), training=True)


DENSE_ATTENTION = ("sdpa", "eager")


def attention_for_packing(recipe: Recipe):
    """``recipe.model``, with ``sdpa_varlen`` instead of a dense kernel when examples are packed (SFT's
    ``data.packing``, GSPO's ``train.padding_free``).

    Why: packed rows under plain ``sdpa`` / ``eager`` attend through a dense block-diagonal L×L mask — at the
    paper's 32K rows that is GBs per layer (the 1.3M-parameter tiny model reached 12 GB RSS on one 32,768-token
    row). ``sdpa_varlen`` attends per packed example (sum of len² instead of L², no mask) with the same result
    and needs nothing installed; it falls through to plain sdpa for unpacked batches. A copy: the recipe itself
    is not changed (it is saved into checkpoints as written).
    """
    import dataclasses
    import logging

    from mmfinereason.modeling.attention import VARLEN_SDPA

    cfg = recipe.model
    # SFT packs examples with data.packing; GSPO packs the rollouts it scores with train.padding_free
    switch = "data.packing" if recipe.stage == "sft" else "train.padding_free"
    packed = recipe.data.packing if recipe.stage == "sft" else getattr(recipe.train, "padding_free", False)
    if not packed or cfg.attn_implementation not in DENSE_ATTENTION:
        return cfg
    logging.getLogger(__name__).info(
        "%s: attention %r -> %r (no dense L×L mask for packed rows)", switch, cfg.attn_implementation, VARLEN_SDPA
    )
    return dataclasses.replace(cfg, attn_implementation=VARLEN_SDPA)


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
        max_skip_rate=d.max_skip_rate,
    )


def load_train_data(recipe: Recipe, require_response: bool = True):
    """The training mixture and its skip report (errors out early on a bad source).

    Prepared once per node: the local main process checks the rows (over ``data.num_proc`` processes, written to
    the ``datasets`` cache keyed by its fingerprint) while the node's other ranks wait in accelerate's
    ``local_main_process_first``, then read that cache. SFT rows get the cheap header check (``data.image_check``);
    GSPO prompts keep the full check, their images go to generation as decoded PIL images.
    """
    from accelerate import PartialState

    d = recipe.data
    with PartialState().local_main_process_first():
        return load_sources(
            d.train,
            require_response=require_response,
            streaming=d.streaming,
            max_skip_rate=d.max_skip_rate,
            seed=d.seed,
            num_proc=d.num_proc,
            image_check=d.image_check if require_response else "full",
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
    """The token-budget sampler when ``data.tokens_per_batch`` is set, else None.

    Map-style data: lengths from the shared length index (built once, :mod:`~mmfinereason.data.batching.length_index`).
    Streamed data (``data.streaming: true``): a :class:`~mmfinereason.data.batching.streaming.StreamingTokenBudget`
    that packs a buffer at a time as rows stream by (needs ``train.max_steps``).
    """
    d, t = recipe.data, recipe.train
    if not d.tokens_per_batch:
        return None
    from mmfinereason.data.batching.sampler import check_token_budget, token_budget_sampler

    seed = t.data_seed if t.data_seed is not None else t.seed
    if d.streaming:
        from mmfinereason.data.batching.streaming import StreamingTokenBudget
        from mmfinereason.modeling.introspect import uses_varlen_attention

        check_token_budget(collator, d.tokens_per_batch)  # token_budget_sampler checks the map-style case itself
        return StreamingTokenBudget(
            train_dataset,
            collator,
            d.tokens_per_batch,
            row_length=None if uses_varlen_attention(collator.model) else d.max_length,
            buffer_size=d.packing_buffer_size,
            seed=seed,
        )
    return token_budget_sampler(
        train_dataset,
        collator,
        d.tokens_per_batch,
        buffer_size=d.packing_buffer_size,
        seed=seed,
        drop_last=t.dataloader_drop_last,
        num_proc=d.num_proc,
    )
