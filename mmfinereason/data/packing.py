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

* ``sdpa_varlen`` (registered here, pure PyTorch): flash-attn's varlen semantics without flash-attn — sdpa run
  on each packed example separately, boundaries from row 0 as above. On CPU, or a GPU without flash-attn, it
  costs sum(len_i²) instead of the dense masked sdpa's row_length², which is what makes packing pay there.
  Use it with ``model.attn_implementation: sdpa_varlen``; unpacked / padded batches fall through to sdpa.

The result: ``model(**packed).loss`` equals the token-weighted mean loss of the same examples unpacked.
"""

from __future__ import annotations

import torch

from .collator import IGNORE_INDEX, EncodedExample, _images, _round_up


def _unwrap(model):
    """The innermost model under DDP / torch.compile / PEFT wrappers."""
    for _ in range(8):
        inner = next((getattr(model, a) for a in ("module", "_orig_mod", "base_model") if hasattr(model, a)), None)
        if inner is None or inner is model:
            return model
        model = inner
    return model


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


def attention_implementation(model) -> str:
    """The decoder's attention implementation (``"sdpa"``, ``"eager"``, ``"flash_attention_2"``, …)."""
    config = getattr(_unwrap(model), "config", None)
    for cfg in (getattr(config, "text_config", None), config):
        impl = getattr(cfg, "_attn_implementation", None)
        if impl:
            return str(impl)
    return "sdpa"


VARLEN_SDPA = "sdpa_varlen"


def uses_varlen_attention(model) -> bool:
    """True for flash-attn style kernels (and ``sdpa_varlen``): all packed examples go into one row."""
    impl = attention_implementation(model)
    return "flash" in impl or impl == VARLEN_SDPA


def _segment_lengths(text_positions: torch.Tensor) -> list[int]:
    """Length of each packed example in one row: a new example wherever the position does not go up by 1."""
    starts = (torch.diff(text_positions, prepend=text_positions[:1] - 2) != 1).nonzero().flatten().tolist()
    return [e - s for s, e in zip(starts, starts[1:] + [int(text_positions.shape[0])])]


def varlen_sdpa_attention(module, query, key, value, attention_mask, **kwargs):
    """sdpa on each packed example alone (flash-attn varlen semantics in plain PyTorch); else plain sdpa."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    positions = kwargs.get("position_ids")
    packed = (
        attention_mask is None
        and positions is not None
        and positions.ndim == 2
        and query.shape[2] == key.shape[2] == positions.shape[-1]
    )
    if not packed:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    rows = []
    for b in range(query.shape[0]):
        sizes = _segment_lengths(positions[min(b, positions.shape[0] - 1)])
        # split (not slicing) so that backward concatenates the pieces' gradients instead of zero-filling each
        pieces = zip(*(t[b : b + 1].split(sizes, dim=2) for t in (query, key, value)))
        rows.append(torch.cat([sdpa_attention_forward(module, q, k, v, None, **kwargs)[0] for q, k, v in pieces], dim=1))
    return torch.cat(rows, dim=0), None


def _varlen_sdpa_mask(*args, attention_mask=None, **kwargs):
    """No mask for packed batches (boundaries come from the positions, as for flash-attn); sdpa's otherwise."""
    from transformers.masking_utils import sdpa_mask

    if attention_mask is None:
        return None
    return sdpa_mask(*args, attention_mask=attention_mask, **kwargs)


def register_varlen_sdpa() -> None:
    """Make ``attn_implementation="sdpa_varlen"`` available to transformers models (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(VARLEN_SDPA, varlen_sdpa_attention)
    AttentionMaskInterface.register(VARLEN_SDPA, _varlen_sdpa_mask)


register_varlen_sdpa()


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
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        size = lengths[i]
        for b, free in enumerate(room):
            if size <= free:
                bins[b].append(i)
                room[b] -= size
                break
        else:
            bins.append([i])
            room.append(capacity - size)
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


def packed_boundaries(position_ids: torch.Tensor) -> torch.Tensor:
    """``cu_seqlens`` exactly as transformers' flash-attn path derives them from a packed single-row batch.

    Takes the batch's (4, 1, L) or (1, L) ``position_ids``; used by the tests to check that the boundaries a
    flash-attn forward would use are the packed examples' boundaries.
    """
    from transformers.modeling_flash_attention_utils import prepare_fa_kwargs_from_position_ids

    text = position_ids[0] if position_ids.ndim == 3 else position_ids
    (cu_seqlens, _), _ = prepare_fa_kwargs_from_position_ids(text)
    return cu_seqlens
