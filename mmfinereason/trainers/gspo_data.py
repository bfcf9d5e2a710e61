"""GSPO inputs: RL prompts in TRL's conversational VLM format, and the reward functions a recipe names.

TRL's GRPOTrainer takes rows with a conversational ``prompt`` (user content parts, ``{"type": "image"}`` where an
image goes) and an ``images`` column; every other column (``answer``, ``question``, ``source`` …) reaches the
reward functions as a keyword. The prompt is built by :func:`mmfinereason.data.chat.prompt_messages`, the same
function SFT and evaluation use, so a rollout sees byte for byte the prompt the model was fine-tuned on.

TRL 1.16 has no prompt-length limit (it dropped ``max_prompt_length``) and a prompt holding an image cannot be
cut without breaking the image's tokens, so over-long prompts are skipped here, counted and logged, before
training starts.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any, Callable

from ..data.chat import IMAGE_MARKER, prompt_messages, render_prompt

logger = logging.getLogger(__name__)

BUILTIN_REWARDS = {
    "accuracy": "mmfinereason.rewards:accuracy_reward",
    "format": "mmfinereason.rewards:format_reward",
}


def resolve_reward(name: str) -> Callable[..., list[float | None]]:
    """A reward function from ``accuracy`` / ``format`` or a dotted import path (``pkg.mod:fn`` or ``pkg.mod.fn``)."""
    target = BUILTIN_REWARDS.get(name, name)
    if ":" in target:
        module_name, _, attr = target.partition(":")
    elif "." in target:
        module_name, _, attr = target.rpartition(".")
    else:
        raise ValueError(
            f"train.reward_funcs: unknown reward {name!r}; use one of {sorted(BUILTIN_REWARDS)} or a dotted import "
            "path such as my_package.rewards:my_reward"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"train.reward_funcs: cannot import module {module_name!r} for reward {name!r}: {e}") from e
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ValueError(f"train.reward_funcs: {module_name!r} has no callable {attr!r} (reward {name!r})")
    return fn


def add_prompts(dataset, system_prompt: str | None = None):
    """Add TRL's conversational ``prompt`` column (image parts without payload; TRL fills in ``images``)."""

    def to_prompt(question: str) -> dict[str, Any]:
        # the loader guarantees one <image> marker per image: count markers instead of decoding images
        return {"prompt": prompt_messages(question, question.count(IMAGE_MARKER), system_prompt)}

    return dataset.map(to_prompt, input_columns=["question"])


def prompt_length(processor, row: dict[str, Any], system_prompt: str | None, min_pixels: int, max_pixels: int) -> int:
    """Tokens of the rendered prompt including the image tokens, computed from image sizes (no pixel work)."""
    images = list(row.get("images") or [])
    text = render_prompt(processor, row["question"], len(images), system_prompt)
    n = len(processor.tokenizer(text, add_special_tokens=False)["input_ids"])
    if images:
        ip = processor.image_processor
        merge = getattr(ip, "merge_size", 2) ** 2
        kwargs = {"min_pixels": min_pixels, "max_pixels": max_pixels}
        n += sum(ip.get_number_of_image_patches(im.height, im.width, kwargs) // merge - 1 for im in images)
    return n


def drop_long_prompts(dataset, processor, max_prompt_length: int | None, *, system_prompt, min_pixels, max_pixels):
    """Skip rows whose prompt exceeds ``max_prompt_length`` tokens; returns (dataset, number skipped or None)."""
    if max_prompt_length is None:
        return dataset, 0

    def fits(row: dict[str, Any]) -> bool:
        return prompt_length(processor, row, system_prompt, min_pixels, max_pixels) <= max_prompt_length

    if not hasattr(dataset, "__len__"):  # streaming: filter lazily, count unknown
        return dataset.filter(fits), None
    before = len(dataset)
    dataset = dataset.filter(fits)
    skipped = before - len(dataset)
    if skipped:
        logger.warning("skipped %d of %d RL prompts longer than train.max_prompt_length=%d tokens", skipped, before, max_prompt_length)
    if len(dataset) == 0:
        raise ValueError(f"every RL prompt is longer than train.max_prompt_length={max_prompt_length} tokens")
    return dataset, skipped
