"""One batched HF ``generate`` call over normalised examples, with the prompt training uses.

Prompts are rendered by :func:`mmfinereason.data.chat.render_prompt`, the function SFT and GSPO use, so a model is
evaluated on exactly the prompt format it was trained on.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch

from mmfinereason.data.batching.repeated_images import images_processed_once
from mmfinereason.data.chat import render_prompt
from mmfinereason.errors import UserError
from mmfinereason.modeling.introspect import DISTRIBUTED_WRAPPERS, unwrap_model


@torch.no_grad()
def generate_responses(
    model,
    processor,
    examples: list[dict[str, Any]],
    max_new_tokens: int = 256,
    *,
    min_pixels: int = 1024,
    max_pixels: int = 589824,
    system_prompt: str | None = None,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    repetition_penalty: float = 1.0,
    num_return_sequences: int = 1,
    row_seeds: list[int] | None = None,
) -> list[str]:
    """Completions for a batch of normalised examples, left-padded, one ``generate`` call.

    Greedy by default (the paper's temperature 0). With ``do_sample`` it is pure temperature / nucleus
    sampling: ``top_k`` is switched off so that a checkpoint's shipped chat defaults (Qwen: top_k 20) do not
    leak in. With ``num_return_sequences=k`` the result holds ``k`` completions per example, example-major.
    ``row_seeds`` (one per completion, example-major) gives each completion its own random stream
    (:mod:`~mmfinereason.evaluation.row_sampling`): its draws then do not depend on the rest of the batch.
    """
    model = unwrap_model(model, DISTRIBUTED_WRAPPERS)
    seeded = do_sample and row_seeds is not None
    if seeded:
        if len(row_seeds) != len(examples) * num_return_sequences:
            raise ValueError(f"{len(row_seeds)} row seeds for {len(examples)} x {num_return_sequences} completions")
        # greedy generate (which the seeded sampling runs as) takes one sequence per row: repeat the rows instead
        examples, num_return_sequences = [ex for ex in examples for _ in range(num_return_sequences)], 1
    prompts = [render_prompt(processor, ex["question"], len(ex.get("images") or []), system_prompt) for ex in examples]
    images = [list(ex.get("images") or []) for ex in examples]
    kwargs: dict[str, Any] = dict(text=prompts, padding=True, padding_side="left", return_tensors="pt")
    if any(images):
        if not all(images):
            raise ValueError("generate_responses needs every example of a batch to have images, or none to")
        kwargs.update(images=images, size={"shortest_edge": min_pixels, "longest_edge": max_pixels})
    # seeded sampling repeated every row k times: each distinct image is processed once (the same tensors)
    with images_processed_once(processor) if seeded else contextlib.nullcontext():
        batch = processor(**kwargs).to(model.device)
    was_training = model.training
    model.eval()
    tokenizer = processor.tokenizer
    gen: dict[str, Any] = dict(
        max_new_tokens=max_new_tokens,
        do_sample=do_sample,
        repetition_penalty=repetition_penalty,
        num_return_sequences=num_return_sequences,
    )
    if seeded:
        from mmfinereason.evaluation.row_sampling import RowSeededSampling

        # greedy over Gumbel-perturbed logits is the sample; the processor does temperature and top-p itself
        gen.update(do_sample=False, temperature=None, top_p=None, top_k=None,
                   logits_processor=[RowSeededSampling(row_seeds, temperature, top_p)])
    elif do_sample:
        gen.update(temperature=temperature, top_p=top_p, top_k=0)
    else:
        gen.update(temperature=None, top_p=None, top_k=None)
    try:
        out = model.generate(**batch, **gen, pad_token_id=tokenizer.pad_token_id, use_cache=True)
    finally:
        model.train(was_training)
    completions = out[:, batch["input_ids"].shape[1] :]
    return tokenizer.batch_decode(completions, skip_special_tokens=True)


def homogeneous_batches(examples: list[dict[str, Any]], batch_size: int) -> Iterator[list[int]]:
    """Indices of ``examples`` in batches of at most ``batch_size``, each all-with-images or all-text.

    A processor call takes images for every prompt or for none, so text-only rows are batched apart.
    """
    if batch_size < 1:
        raise UserError(f"batch_size (--batch-size, eval.batch_size) must be >= 1, got {batch_size}")
    with_images = [i for i, ex in enumerate(examples) if ex.get("images")]
    text_only = [i for i, ex in enumerate(examples) if not ex.get("images")]
    for group in (with_images, text_only):
        for start in range(0, len(group), batch_size):
            yield group[start : start + batch_size]
