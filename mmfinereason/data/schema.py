"""What every stage of the data flow agrees on: the example encoding, the label mask value, the image marker.

* ``IMAGE_MARKER`` — MMFineReason questions mark where each image goes with ``<image>``; the loader guarantees one
  marker per image, the chat rendering turns each into the template's vision tokens.
* ``IGNORE_INDEX`` — the label of every token that is not trained (prompt, images, padding, packed-example starts).
* :class:`EncodedExample` — one example after the processor; the collator pads (``pad_examples``) or packs
  (:mod:`mmfinereason.data.batching.packing`) a list of them into a batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

IMAGE_MARKER = "<image>"
IGNORE_INDEX = -100


@dataclass
class EncodedExample:
    """One example after the processor: flat tensors, no batch dimension."""

    input_ids: torch.Tensor  # (L,)
    labels: torch.Tensor  # (L,)
    mm_token_type_ids: torch.Tensor  # (L,)
    pixel_values: torch.Tensor | None  # (num_patches, patch_dim)
    image_grid_thw: torch.Tensor | None  # (num_images, 3)
    id: str = ""

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


def image_tensors(encoded: list[EncodedExample]) -> dict[str, torch.Tensor]:
    with_images = [e for e in encoded if e.pixel_values is not None]
    if not with_images:
        return {}
    return {
        "pixel_values": torch.cat([e.pixel_values for e in with_images]),
        "image_grid_thw": torch.cat([e.image_grid_thw for e in with_images]),
    }


def round_up(n: int, multiple: int | None) -> int:
    return n if not multiple else -(-n // multiple) * multiple


def pad_examples(encoded: list[EncodedExample], pad_token_id: int, pad_to_multiple_of: int | None = None) -> dict:
    """Right-pad examples to the longest one: ``input_ids, attention_mask, labels, mm_token_type_ids`` + images."""
    length = round_up(max(len(e) for e in encoded), pad_to_multiple_of)
    n = len(encoded)
    input_ids = torch.full((n, length), pad_token_id, dtype=torch.long)
    labels = torch.full((n, length), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((n, length), dtype=torch.long)
    mm_token_type_ids = torch.zeros((n, length), dtype=torch.long)
    for i, e in enumerate(encoded):
        k = len(e)
        input_ids[i, :k] = e.input_ids
        labels[i, :k] = e.labels
        attention_mask[i, :k] = 1
        mm_token_type_ids[i, :k] = e.mm_token_type_ids
    batch = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "labels": labels,
        "mm_token_type_ids": mm_token_type_ids,
    }
    batch.update(image_tensors(encoded))
    return batch
