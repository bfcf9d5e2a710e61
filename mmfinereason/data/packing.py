"""Padding-free packing of multimodal examples with exact per-example mRoPE positions.

Why by hand: TRL refuses packing / padding-free for vision-language models (trl#4339), and naive packing with
Qwen's 3-D mRoPE silently corrupts positions (verl#6040, transformers#39400). The scheme here:

* each row holds several whole examples (never split), chosen first-fit-decreasing to fill ``max_length``;
* ``position_ids`` has 4 rows: row 0 is each example's own text positions ``0..n-1`` — transformers reads the
  restarts in this row to build a block-diagonal causal mask (sdpa / eager) or ``cu_seqlens`` (flash-attn
  varlen) — and rows 1–3 are the example's mRoPE positions from the model's own ``get_rope_index``, computed
  on that example alone, exactly as in an unpacked forward;
* the first label of every example is -100, so no token is trained to predict the next example's start;
* images are carried in row order with their grids, so image features land on their own placeholder tokens;
* the batch carries ``use_cache=False``: with a KV cache the text model ignores the packed boundaries and lets
  examples attend to each other (see ../shared/DESIGN.md, "Verified pitfalls").

The result: ``model(**packed).loss`` equals the token-weighted mean loss of the same examples unpacked.
"""

from __future__ import annotations

import torch

from .collator import IGNORE_INDEX, EncodedExample, _images, _round_up


def rope_index_fn(model):
    """Find ``get_rope_index`` on a (possibly DDP- / compile- / PEFT-wrapped) Qwen-VL model."""
    for _ in range(8):
        for candidate in (model, getattr(model, "model", None)):
            if hasattr(candidate, "get_rope_index"):
                return candidate.get_rope_index
        unwrapped = next((getattr(model, a) for a in ("module", "_orig_mod", "base_model") if hasattr(model, a)), None)
        if unwrapped is None:
            break
        model = unwrapped
    raise TypeError(
        f"{type(model).__name__} has no get_rope_index; packing supports Qwen-VL style models with mRoPE "
        "(Qwen2-VL, Qwen2.5-VL, Qwen3-VL). Set data.packing=false for other models."
    )


def example_positions(example: EncodedExample, rope_index) -> torch.Tensor:
    """(4, L) positions of one example: text positions then its 3-D mRoPE positions."""
    n = len(example)
    text = torch.arange(n, dtype=torch.long)
    if example.image_grid_thw is None:
        return text.expand(4, n).clone()
    mrope, _ = rope_index(
        example.input_ids[None],
        mm_token_type_ids=example.mm_token_type_ids[None],
        image_grid_thw=example.image_grid_thw,
    )
    return torch.cat([text[None], mrope[:, 0].to(torch.long)])


def first_fit_decreasing(lengths: list[int], capacity: int) -> list[list[int]]:
    """Indices grouped into bins of total length <= capacity (longest first, each into the first bin it fits)."""
    bins: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for b, free in enumerate(room):
            if lengths[i] <= free:
                bins[b].append(i)
                room[b] -= lengths[i]
                break
        else:
            bins.append([i])
            room.append(capacity - lengths[i])
    return bins


def pack_examples(
    encoded: list[EncodedExample],
    max_length: int,
    model,
    pad_token_id: int,
    pad_to_multiple_of: int | None = None,
) -> dict:
    """Pack encoded examples into as few rows of <= ``max_length`` tokens as first-fit-decreasing finds."""
    rope_index = rope_index_fn(model)
    bins = first_fit_decreasing([len(e) for e in encoded], max_length)
    length = _round_up(max(sum(len(encoded[i]) for i in b) for b in bins), pad_to_multiple_of)
    rows = len(bins)
    input_ids = torch.full((rows, length), pad_token_id, dtype=torch.long)
    labels = torch.full((rows, length), IGNORE_INDEX, dtype=torch.long)
    mm_token_type_ids = torch.zeros((rows, length), dtype=torch.long)
    position_ids = torch.zeros((4, rows, length), dtype=torch.long)
    ordered: list[EncodedExample] = []
    for r, members in enumerate(bins):
        start = 0
        for i in members:
            e = encoded[i]
            end = start + len(e)
            input_ids[r, start:end] = e.input_ids
            labels[r, start:end] = e.labels
            labels[r, start] = IGNORE_INDEX
            mm_token_type_ids[r, start:end] = e.mm_token_type_ids
            position_ids[:, r, start:end] = example_positions(e, rope_index)
            start = end
            ordered.append(e)
        # Tail padding is its own pseudo-sequence (positions restart at 0) so it never joins an example.
        position_ids[:, r, start:] = torch.arange(length - start)
    batch = {
        "input_ids": input_ids,
        "labels": labels,
        "mm_token_type_ids": mm_token_type_ids,
        "position_ids": position_ids,
        "use_cache": False,
    }
    batch.update(_images(ordered))
    return batch
