"""The GSPO loss forward without padding: each rollout's real tokens, packed into one row.

Why by hand: TRL's GRPOTrainer scores a rollout batch as a padded rectangle — prompts left-padded to the longest
prompt, completions right-padded to the longest completion — and offers no padding-free path for GRPO (its
``padding_free`` is an SFT option). Every padded token still goes through the decoder, forward and backward. On
the tiny recipe (128 rollouts a micro-batch) 28% of the loss forward's tokens are padding, and a GSPO step is
1.12-1.15x faster without them (``bench/gspo_padding_free.py``). The saving grows with the spread of lengths inside
a micro-batch: at the paper's length mix (scaled down 16x, 8 rollouts a micro-batch) half the tokens are padding and
the scoring is 1.95x faster (verl's ``use_remove_padding`` exists for the same reason). A micro-batch of one rollout (the qwen3vl recipes)
has none to remove.

What it does, for every call of TRL's ``_get_per_token_logps_and_entropies`` (the loss, the old-policy log-probs
of several updates per rollout batch, the reference model's):

* each row keeps its tokens where ``attention_mask`` is 1 (the prompt without its left padding, the completion up
  to its EOS), with its own images, and the rows of a chunk of ``batch_size`` are laid end to end in one row
  (:func:`mmfinereason.data.batching.packing.pack_examples`, the SFT packing: each example's own text positions
  and 3-D mRoPE positions, computed on it alone as in an unpadded forward);
* attention is varlen (flash-attn, or ``sdpa_varlen`` in plain PyTorch), so no example attends to another;
* TRL's fused log-prob head scores the packed row, and each completion token's log-prob (and entropy) is put back
  at its place in TRL's ``(rows, logits_to_keep)`` layout, 0 where the mask is 0, as TRL's own path leaves it.

So the loss, the clip and every metric see the same tensors as TRL's padded path, up to float summation order
(``tests/test_padding_free.py`` compares log-probs, entropies, gradients and four training steps). Where the
packed layout is not known to be exact — a model without ``get_rope_index`` (not Qwen-VL), attention that is not
varlen, a MoE auxiliary loss, image inputs other than Qwen-VL's ``pixel_values`` / ``image_grid_thw`` — the call
goes to TRL's path; the trainer names the reason once, at start (:func:`padding_free_blocker`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from mmfinereason.data.batching.packing import pack_examples
from mmfinereason.data.schema import IGNORE_INDEX, EncodedExample
from mmfinereason.modeling.introspect import attention_implementation, rope_index_fn, uses_varlen_attention

logger = logging.getLogger(__name__)

# Inputs of TRL's scorer that the packed layout does not carry: other VLM families' image tensors.
UNPACKED_INPUTS = ("pixel_attention_mask", "spatial_shapes", "num_tiles", "image_sizes", "token_type_ids", "image_position_ids")


def padding_free_blocker(args, model) -> str | None:
    """Why ``model``'s rollouts must be scored padded, or None when they can be packed."""
    if not getattr(args, "padding_free", True):
        return "train.padding_free is false"
    try:
        rope_index_fn(model)
    except TypeError:
        return f"{type(model).__name__} has no get_rope_index (padding-free supports Qwen-VL models)"
    if not uses_varlen_attention(model):
        return (
            f"attention {attention_implementation(model)!r} is not varlen: set model.attn_implementation "
            "to flash_attention_2 or sdpa_varlen"
        )
    return None


@dataclass
class PackedRollouts:
    """A chunk of rollout rows packed into one row, and where each completion token came from."""

    batch: dict  # input_ids, labels, mm_token_type_ids, position_ids, use_cache[, pixel_values, image_grid_thw]
    rows: torch.Tensor  # (n,) the padded row of each scored token
    columns: torch.Tensor  # (n,) its column in TRL's (rows, logits_to_keep) layout
    packed_positions: torch.Tensor  # (n,) its position in the packed row
    padded_tokens: int  # tokens of the padded rectangle these rows came from


def row_images(pixel_values: torch.Tensor, image_grid_thw: torch.Tensor, num_images: list[int]) -> list:
    """Each row's ``(pixel_values, image_grid_thw)``, or None for a row without images: TRL concatenates both
    row after row, ``num_images[r]`` images to row ``r``."""
    patch_offsets = [0, *image_grid_thw.prod(-1).cumsum(0).tolist()]
    image_offsets = [0, *torch.tensor(num_images).cumsum(0).tolist()]
    out = []
    for first, last in zip(image_offsets, image_offsets[1:]):
        pixels = pixel_values[patch_offsets[first] : patch_offsets[last]]
        out.append((pixels, image_grid_thw[first:last].cpu()) if last > first else None)
    return out


def pack_rollouts(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    logits_to_keep: int,
    mm_token_type_ids: torch.Tensor | None = None,
    images: list | None = None,
    pad_token_id: int = 0,
) -> PackedRollouts:
    """Pack TRL's padded rollout rows (prompt left-padded, completion right-padded) into one row of real tokens.

    ``images``: each row's ``(pixel_values, image_grid_thw)`` or None (:func:`row_images`). The scored tokens are
    the last ``logits_to_keep`` columns where ``attention_mask`` is 1: TRL's labels. The bookkeeping (ids, masks,
    grids, positions) is done on the CPU, as the SFT collator does; only the pixel values stay where they are.
    """
    input_ids, attention_mask = input_ids.cpu(), attention_mask.cpu()
    num_rows, width = input_ids.shape
    mask = attention_mask.bool()
    mm_token_type_ids = torch.zeros_like(input_ids) if mm_token_type_ids is None else mm_token_type_ids.cpu()
    images = images if images is not None else [None] * num_rows
    first_scored = width - logits_to_keep
    in_completion = torch.arange(width) >= first_scored
    examples, rows, columns, positions = [], [], [], []
    start = 0
    for r in range(num_rows):
        keep = mask[r]
        ids = input_ids[r][keep]
        labels = input_ids[r].masked_fill(~keep, IGNORE_INDEX)
        labels[:first_scored] = IGNORE_INDEX
        pixels, grid = images[r] or (None, None)
        examples.append(EncodedExample(ids, labels[keep], mm_token_type_ids[r][keep], pixels, grid))
        scored = (keep & in_completion).nonzero().flatten()
        # a kept token's place in the packed row: the row's start plus how many kept tokens precede it
        place = start + keep.long().cumsum(0)[scored] - 1
        rows.append(torch.full_like(scored, r))
        columns.append(scored - first_scored)
        positions.append(place)
        start += len(ids)
    # single_row: all rows end to end, in order (varlen attention), so the places above are the packed positions
    batch = pack_examples(examples, max_length=width, model=model, pad_token_id=pad_token_id, single_row=True)
    return PackedRollouts(
        batch, torch.cat(rows), torch.cat(columns), torch.cat(positions), padded_tokens=num_rows * width
    )


def unpack_scores(packed: PackedRollouts, per_position: torch.Tensor, num_rows: int, logits_to_keep: int) -> torch.Tensor:
    """TRL's ``(rows, logits_to_keep)`` layout of a packed forward's per-token scores (0 where nothing is scored).

    ``per_position[0, j]`` scores packed token ``j + 1`` (the fused head shifts its labels by one).
    """
    device = per_position.device
    values = per_position[0, packed.packed_positions.to(device) - 1]
    out = values.new_zeros(num_rows, logits_to_keep)
    return out.index_put((packed.rows.to(device), packed.columns.to(device)), values)


class PaddingFreeLogpsMixin:
    """For a subclass of TRL's ``GRPOTrainer``: score rollouts packed instead of padded (see the module)."""

    def _setup_padding_free(self) -> None:
        """Say once, at start, why the policy's rollouts will be scored padded (if they will)."""
        blocker = padding_free_blocker(self.args, self.model)
        if blocker and getattr(self.args, "padding_free", True):
            logger.info("GSPO loss forward stays padded: %s", blocker)

    def _get_per_token_logps_and_entropies(
        self, model, input_ids, attention_mask, logits_to_keep, batch_size=None, compute_entropy=False,
        compute_aux_loss=False, pixel_values=None, image_grid_thw=None, num_images=None, mm_token_type_ids=None,
        **other_inputs,
    ):
        padded_path = (
            compute_aux_loss
            or padding_free_blocker(self.args, model) is not None  # per call: the reference model may differ
            or any(other_inputs.get(k) is not None for k in UNPACKED_INPUTS)
            or (pixel_values is not None and (image_grid_thw is None or num_images is None))
        )
        if padded_path:
            return super()._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, logits_to_keep, batch_size, compute_entropy, compute_aux_loss,
                pixel_values=pixel_values, image_grid_thw=image_grid_thw, num_images=num_images,
                mm_token_type_ids=mm_token_type_ids, **other_inputs,
            )
        num_rows = input_ids.size(0)
        batch_size = batch_size or num_rows  # TRL's chunking bounds memory; each chunk is one packed row
        images = row_images(pixel_values, image_grid_thw, num_images) if pixel_values is not None else None
        logps, entropies, real, padded = [], [], 0, 0
        for start in range(0, num_rows, batch_size):
            end = min(start + batch_size, num_rows)
            packed = pack_rollouts(
                model, input_ids[start:end], attention_mask[start:end], logits_to_keep,
                None if mm_token_type_ids is None else mm_token_type_ids[start:end],
                None if images is None else images[start:end], pad_token_id=self._tokenizer.pad_token_id or 0,
            )
            inputs = {k: v.to(input_ids.device) if torch.is_tensor(v) else v for k, v in packed.batch.items()}
            labels = inputs.pop("labels")
            with self.accelerator.autocast():
                outputs = model(**inputs, labels=labels, fused_lm_head=True)
            logps.append(unpack_scores(packed, outputs.log_probs, end - start, logits_to_keep))
            if compute_entropy:
                entropies.append(unpack_scores(packed, outputs.entropy, end - start, logits_to_keep))
            real += packed.batch["input_ids"].numel()
            padded += packed.padded_tokens
        if torch.is_grad_enabled():
            self._metrics["train" if model.training else "eval"]["padding_free/frac_padding_avoided"].append(
                1.0 - real / max(padded, 1)
            )
        return torch.cat(logps), (torch.cat(entropies) if compute_entropy else None), None
