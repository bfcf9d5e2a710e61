"""``sdpa_varlen``: flash-attn's varlen semantics in plain PyTorch, for packed rows without flash-attn.

sdpa is run on each packed example of a row separately; the boundaries come from row 0 of the packed
``position_ids`` (every restart at 0 starts an example), exactly as transformers' flash-attn path derives them.
On CPU, or a GPU without flash-attn, it costs sum(len_i²) instead of the dense masked sdpa's row_length², and it
never materialises an L×L mask. Unpacked / padded batches fall through to plain sdpa.

Registered with transformers by :func:`register_varlen_sdpa`, which the model loader calls
(:func:`mmfinereason.modeling.loading.load_model`); call it yourself before ``from_pretrained(...,
attn_implementation="sdpa_varlen")`` when you build a model without our loader.
"""

from __future__ import annotations

import torch

VARLEN_SDPA = "sdpa_varlen"


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
