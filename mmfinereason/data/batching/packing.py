"""Padding-free packing of multimodal examples with exact per-example mRoPE positions.

Why by hand: TRL refuses packing / padding-free for vision-language models (trl#4339), and naive packing with
Qwen's 3-D mRoPE silently corrupts positions (verl#6040, transformers#39400). The scheme here:

* each row holds several whole examples (never split), chosen first-fit-decreasing to fill ``max_length``;
* ``position_ids`` has 4 rows: row 0 is each example's own text positions ``0..n-1``, rows 1–3 are the
  example's mRoPE positions from the model's own ``get_rope_index``, computed on that example alone, exactly
  as in an unpacked forward;
* the first label of every example is -100, so no token is trained to predict the next example's start;
* images are carried in row-major order with their grids, so image features land on their own placeholders;
* the batch carries ``use_cache=False``: with a KV cache the text model ignores the packed boundaries and lets
  examples attend to each other (see ../shared/DESIGN.md, "Verified pitfalls"; tests/test_packing.py shows it).

How attention learns the boundaries (transformers 5.24, ``Qwen3VLTextModel.forward``): a 4-row
``position_ids`` is split into ``text_position_ids = position_ids[0]`` and the 3 mRoPE rows; row 0 goes to
``create_causal_mask`` and to every decoder layer as ``position_ids``.

* sdpa / eager: with ``attention_mask=None`` and no cache, ``find_packed_sequence_indices`` turns every
  restart of row 0 into a new block, so the mask is block-diagonal causal. Several rows are fine.
* flash-attn (``flash_attention_2/3``, hub kernels): ``_flash_attention_forward`` only switches to the varlen
  kernel when the batch has **one** row (``_is_packed_sequence`` needs ``batch_size == 1``); it then derives
  ``cu_seqlens`` from the indices where row 0 equals its minimum, 0 (``prepare_fa_kwargs_from_position_ids``).
  So for flash models everything is packed into a single row (memory is linear in its length there). Passing
  ``cu_seq_lens_*`` in the batch instead would not work: the kwargs would also reach the vision tower, which
  passes its own.

* ``sdpa_varlen`` (:mod:`mmfinereason.modeling.attention`, pure PyTorch): flash-attn's varlen semantics without flash-attn — sdpa run
  on each packed example separately, boundaries from row 0 as above. On CPU, or a GPU without flash-attn, it
  costs sum(len_i²) instead of the dense masked sdpa's row_length², which is what makes packing pay there.
  Use it with ``model.attn_implementation: sdpa_varlen``; unpacked / padded batches fall through to sdpa.

The result: ``model(**packed).loss`` equals the token-weighted mean loss of the same examples unpacked.
"""

from __future__ import annotations

import torch

from mmfinereason.data.schema import IGNORE_INDEX, EncodedExample, image_tensors, round_up
from mmfinereason.modeling.introspect import rope_index_fn, uses_varlen_attention


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
    """Indices grouped into bins of total length <= capacity (longest first, each into the first bin it fits).

    FFD uses at most 11/9 OPT + 6/9 bins; on SFT length mixes (many short, few long) its bins are ~99% full.
    Ties keep the input order, so the result is deterministic. An item longer than ``capacity`` gets a bin of
    its own (the caller decides whether that is an error).
    """
    bins: list[list[int]] = []
    room: list[int] = []
    # Bins that can still take the smallest item, in creation order: a bin with less room than that is never
    # chosen again, so leaving it out of the scan changes nothing but the time (1.8M lengths: ~25% faster).
    smallest = min(lengths, default=0)
    open_bins: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        size = lengths[i]
        for k, b in enumerate(open_bins):
            if size <= room[b]:
                bins[b].append(i)
                room[b] -= size
                if room[b] < smallest:
                    del open_bins[k]
                break
        else:
            bins.append([i])
            room.append(capacity - size)
            if room[-1] >= smallest:
                open_bins.append(len(bins) - 1)
    return bins


def pack_layout(lengths: list[int], max_length: int, single_row: bool = False) -> list[list[int]]:
    """Which examples go to which row, in order: FFD bins of ``max_length``, or one row holding all of them."""
    if single_row:
        return [list(range(len(lengths)))]
    return first_fit_decreasing(lengths, max_length)


def pack_examples(
    encoded: list[EncodedExample],
    max_length: int,
    model,
    pad_token_id: int,
    pad_to_multiple_of: int | None = None,
    *,
    single_row: bool | None = None,
) -> dict:
    """Pack encoded examples into rows: as few rows of <= ``max_length`` tokens as first-fit-decreasing finds.

    ``single_row`` (default: whether the model uses flash-attn) puts all examples into one row instead, the
    layout flash-attn's varlen path needs; ``max_length`` then bounds each example, not the row.
    """
    rope_index = rope_index_fn(model)
    if single_row is None:
        single_row = uses_varlen_attention(model)
    too_long = [e.id or str(i) for i, e in enumerate(encoded) if len(e) > max_length]
    if too_long:
        raise ValueError(f"examples {too_long} are longer than max_length={max_length}; encode them first")
    bins = pack_layout([len(e) for e in encoded], max_length, single_row)
    length = round_up(max(sum(len(encoded[i]) for i in b) for b in bins), pad_to_multiple_of)
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
    batch.update(image_tensors(ordered))
    return batch
