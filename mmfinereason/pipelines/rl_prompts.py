"""GSPO inputs: RL prompts in TRL's conversational VLM format, over-long prompts skipped and counted.

TRL's GRPOTrainer takes rows with a conversational ``prompt`` (user content parts, ``{"type": "image"}`` where an
image goes) and an ``images`` column; every other column (``answer``, ``question``, ``source`` …) reaches the
reward functions as a keyword. The prompt is built by :func:`mmfinereason.data.chat.prompt_messages`, the same
function SFT and evaluation use, so a rollout sees byte for byte the prompt the model was fine-tuned on.

TRL 1.16 has no prompt-length limit (it dropped ``max_prompt_length``) and a prompt holding an image cannot be
cut without breaking the image's tokens, so over-long prompts are skipped here, counted and logged, before
training starts.
"""

from __future__ import annotations

import logging
from typing import Any

from mmfinereason.data.batching.lengths import prompt_length
from mmfinereason.data.chat import prompt_messages
from mmfinereason.data.schema import IMAGE_MARKER
from mmfinereason.errors import UserError

logger = logging.getLogger(__name__)


def add_prompts(dataset, system_prompt: str | None = None):
    """Add TRL's conversational ``prompt`` column (image parts without payload; TRL fills in ``images``)."""

    def to_prompt(question: str) -> dict[str, Any]:
        # the loader guarantees one <image> marker per image: count markers instead of decoding images
        return {"prompt": prompt_messages(question, question.count(IMAGE_MARKER), system_prompt)}

    return dataset.map(to_prompt, input_columns=["question"])


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
        raise UserError(
            f"every RL prompt is longer than train.max_prompt_length={max_prompt_length} tokens (image tokens "
            "included); raise train.max_prompt_length or lower data.max_pixels"
        )
    return dataset, skipped
