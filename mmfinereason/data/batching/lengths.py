"""Token lengths of examples and prompts as the collator / TRL will build them, without running the processor.

Used by the token-budget sampler (:mod:`.sampler`) and by the GSPO prompt-length filter. The prompt is rendered
and tokenised with one ``<|image_pad|>`` per image, and each image adds the processor's own token count for its
size after the same min/max-pixel resize; image sizes come from the file headers, not decoded pixels. The result
equals ``len(collator.encode(x))`` (tests/test_packing.py checks it), so budgets hold exactly.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from mmfinereason.data.batching.token_counts import counter_for
from mmfinereason.data.chat import render_prompt, response_after_prompt


def _image_size(image: Any) -> tuple[int, int]:
    """(height, width) of a PIL image or an undecoded ``{"bytes", "path"}`` value, reading only the header."""
    if hasattr(image, "size") and not isinstance(image, dict):
        width, height = image.size
        return height, width
    from PIL import Image

    if isinstance(image, dict) and image.get("bytes") is not None:
        with Image.open(io.BytesIO(image["bytes"])) as img:
            width, height = img.size
    elif isinstance(image, dict) and image.get("path"):
        with Image.open(image["path"]) as img:
            width, height = img.size
    else:
        raise TypeError(f"cannot read the size of an image given as {type(image).__name__}")
    return height, width


def image_tokens(image_processor, height: int, width: int, min_pixels: int, max_pixels: int) -> int:
    """Placeholder tokens of one image of this size after the processor's resize into [min_pixels, max_pixels].

    The processor's own arithmetic (``get_number_of_image_patches``, then ``merge_size²`` patches per token), so
    the count equals what the processor produces — no pixel work, no copy of Qwen's resize rule.
    """
    patches = image_processor.get_number_of_image_patches(height, width, {"min_pixels": min_pixels, "max_pixels": max_pixels})
    return patches // image_processor.merge_size**2


def image_token_count(collator, height: int, width: int) -> int:
    """Placeholder tokens of one image of this size, as the collator's processor will produce them."""
    return image_tokens(collator.processor.image_processor, height, width, collator.min_pixels, collator.max_pixels)


def prompt_length(processor, row: dict[str, Any], system_prompt: str | None, min_pixels: int, max_pixels: int) -> int:
    """Tokens of the rendered prompt including the image tokens, computed from image sizes (no pixel work)."""
    sizes = [_image_size(image) for image in row.get("images") or []]
    text = render_prompt(processor, row["question"], len(sizes), system_prompt)
    n = len(processor.tokenizer(text, add_special_tokens=False)["input_ids"])
    # the rendered prompt holds one <|image_pad|> per image; the processor expands each to its grid
    return n + sum(image_tokens(processor.image_processor, h, w, min_pixels, max_pixels) - 1 for h, w in sizes)


def batch_lengths(
    collator, questions: Sequence[str], responses: Sequence[str | None], image_sizes: Sequence[Sequence[tuple[int, int]]]
) -> list[int | None]:
    """Token length of each example after ``collator.encode`` (None where the collator would drop it)."""
    tokenizer = collator.tokenizer
    prompts = [
        render_prompt(collator.processor, q, len(sizes), collator.system_prompt) for q, sizes in zip(questions, image_sizes)
    ]
    count = counter_for(tokenizer)  # exact counts, without building token lists (token_counts.py)
    prompt_lens = count(prompts)
    # as collator.encode: a Thinking template's opened <think> is not repeated in the target
    completion_lens = count([response_after_prompt(p, r or "") + collator.end_of_turn for p, r in zip(prompts, responses)])
    out: list[int | None] = []
    for prompt_len, completion_len, sizes in zip(prompt_lens, completion_lens, image_sizes):
        # The rendered prompt holds one <|image_pad|> per image; the processor expands each to its grid.
        prompt_len += sum(image_token_count(collator, h, w) - 1 for h, w in sizes)
        room = collator.max_length - prompt_len
        if completion_len <= room:
            out.append(prompt_len + completion_len)
        elif collator.overlong == "drop" or room < 1:
            out.append(None)
        else:
            out.append(collator.max_length)
    return out


def example_lengths(dataset, collator, batch_size: int = 512) -> list[int | None]:
    """Length of every example of a map-style dataset (a ``datasets.Dataset`` or a list of example dicts).

    Images of a ``datasets.Dataset`` are read undecoded (only their headers are parsed); tokenisation is
    batched, and the fast tokenizer spreads each batch over all cores.
    """
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a core dependency
        datasets = None
    if datasets is not None and isinstance(dataset, datasets.IterableDataset):
        raise TypeError(
            "example_lengths needs a map-style dataset (its lengths are read up front); streamed rows get token "
            "budgets from mmfinereason.data.batching.streaming.StreamingTokenBudget (what data.streaming: true "
            "with data.tokens_per_batch uses)"
        )
    if datasets is not None and isinstance(dataset, datasets.Dataset):
        columns = dataset.select_columns(["question", "response", "images"])
        feature = columns.features["images"]
        inner = getattr(feature, "feature", None)
        if isinstance(inner, datasets.Image):
            columns = columns.cast_column("images", datasets.List(datasets.Image(decode=False)))
        rows = columns.iter(batch_size=batch_size)
    else:
        rows = (
            {k: [x.get(k) for x in dataset[s : s + batch_size]] for k in ("question", "response", "images")}
            for s in range(0, len(dataset), batch_size)
        )
    lengths: list[int | None] = []
    for batch in rows:
        sizes = [[_image_size(img) for img in (imgs or [])] for imgs in batch["images"]]
        lengths += batch_lengths(collator, batch["question"], batch["response"], sizes)
    return lengths
