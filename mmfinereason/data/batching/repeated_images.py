"""Each distinct image of a batch through the image processor once, however often the batch repeats it.

Two batches repeat every prompt's image by design. A GSPO rollout batch holds each prompt ``num_generations``
times (TRL's sampler repeats the row index), and TRL runs the processor over it twice a step: to tokenize the
prompts for generation and for the loss forward's ``pixel_values``; in the qwen3vl recipes that is 512 images per
rank a round, 32 of them distinct, each resized, rescaled and cut into patches 2 x 16 times on the training
process's CPU while the GPUs wait. And pass-rate selection's seeded sampling repeats each question ``k`` times
(:func:`mmfinereason.evaluation.generation.generate_responses`). Measured: ``bench/repeated_images.py``.

Neither TRL nor transformers dedupe here (vLLM does in its own processor cache, but these calls do not go through
vLLM), so :func:`images_processed_once` swaps the processor's ``image_processor`` for
:class:`DistinctImageProcessor` for the length of a ``with`` block: the distinct images go through the real one in
one call, and its output is copied back into the original order — ``pixel_values`` row blocks and
``image_grid_thw`` rows — bit for bit what the plain call returns (``tests/test_repeated_images.py``, on the real
Qwen3-VL preprocessor values). Only Qwen-style output (``pixel_values`` flattened over patches, one
``image_grid_thw`` row per image) is copied; any other processor, input that is not PIL images, or a batch
without a repeated image goes to the real processor unchanged.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Iterator

import numpy as np
import torch

logger = logging.getLogger(__name__)

GATHERABLE_KEYS = frozenset({"pixel_values", "image_grid_thw"})


def image_key(image) -> tuple | None:
    """A key equal for two images exactly when the processor sees the same pixels: mode, size, raw bytes, and for a
    palette image its palette and transparency (its bytes are palette indices; the processor converts to RGB
    through both). ``None`` when ``image`` is not a PIL image. Raw bytes rather than a digest: a dict compares
    equal-hash keys in full, so two different images can never share a key."""
    from PIL import Image

    if not isinstance(image, Image.Image):
        return None
    palette = (bytes(image.getpalette() or []), repr(image.info.get("transparency"))) if image.palette else None
    return image.mode, image.size, image.tobytes(), palette


def distinct_images(images: list) -> tuple[list, list[int]] | None:
    """``(distinct, inverse)`` with ``images[i]`` equal to ``distinct[inverse[i]]``, first occurrences in order;
    ``None`` when an image has no key (not PIL) or no image repeats — nothing to gain."""
    index: dict[tuple, int] = {}
    by_object: dict[int, int] = {}  # the same object again (a repeated row) needs no byte comparison
    distinct, inverse = [], []
    for image in images:
        if id(image) not in by_object:
            key = image_key(image)
            if key is None:
                return None
            if key not in index:
                index[key] = len(distinct)
                distinct.append(image)
            by_object[id(image)] = index[key]
        inverse.append(by_object[id(image)])
    return (distinct, inverse) if len(distinct) < len(images) else None


def gather_images(processed, inverse: list[int]):
    """``processed`` (the output for the distinct images) re-expanded to one entry per original image, or ``None``
    when its layout is not the one this knows (then the caller runs the plain call)."""
    if set(processed.keys()) != GATHERABLE_KEYS:
        return None
    grid, pixels = processed["image_grid_thw"], processed["pixel_values"]
    rows = [int(r) for r in np.asarray(grid).prod(-1)]
    if len(rows) != max(inverse) + 1 or sum(rows) != len(pixels):
        return None
    starts = np.concatenate([[0], np.cumsum(rows)[:-1]]).tolist()
    blocks = [pixels[starts[u] : starts[u] + rows[u]] for u in inverse]  # block copies: faster than a row index
    if isinstance(pixels, torch.Tensor):
        data = {"pixel_values": torch.cat(blocks), "image_grid_thw": grid[torch.tensor(inverse)]}
    else:
        data = {"pixel_values": np.concatenate(blocks), "image_grid_thw": np.asarray(grid)[inverse]}
    return type(processed)(data=data) if hasattr(processed, "data") else data


class DistinctImageProcessor:
    """Wraps an image processor: calls it on the distinct images only, returns what it would return on all of them.
    Every other attribute (``merge_size``, ``patch_size``, ...) is the wrapped processor's."""

    not_gatherable: set[type] = set()  # image processor classes whose output was not Qwen-style: not tried again

    def __init__(self, image_processor) -> None:
        self.wrapped = image_processor
        self.images_seen = 0
        self.images_processed = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["wrapped"], name)

    def __call__(self, images=None, *args, **kwargs):
        from transformers.image_utils import make_flat_list_of_images

        try:
            flat = make_flat_list_of_images(images) if images is not None else []
        except (ValueError, TypeError):  # a layout the processor may still take (or reject with its own message)
            flat = []
        known_plain = type(self.wrapped) in self.not_gatherable
        found = distinct_images(flat) if flat and not known_plain else None
        self.images_seen += len(flat)
        if found is not None:
            distinct, inverse = found
            gathered = gather_images(self.wrapped(distinct, *args, **kwargs), inverse)
            if gathered is not None:
                self.images_processed += len(distinct)
                return gathered
            self.not_gatherable.add(type(self.wrapped))
            logger.warning("%s's output is not Qwen-style (pixel_values over patches + image_grid_thw): each image "
                           "of a batch goes through it, repeated or not", type(self.wrapped).__name__)
        self.images_processed += len(flat)
        return self.wrapped(images, *args, **kwargs)


@contextlib.contextmanager
def images_processed_once(processor) -> Iterator[DistinctImageProcessor | None]:
    """For the ``with`` block, ``processor.image_processor`` skips repeated images (yields the wrapper, with its
    counts; ``None`` for a processor without images, e.g. a text tokenizer). Restored on exit, so a checkpoint
    saved later writes the real image processor."""
    real = getattr(processor, "image_processor", None)
    if real is None or isinstance(real, DistinctImageProcessor):
        yield real
        return
    wrapper = DistinctImageProcessor(real)
    processor.image_processor = wrapper
    try:
        yield wrapper
    finally:
        processor.image_processor = real
