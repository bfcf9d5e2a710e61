"""Dynamic sampling (DAPO; verl ``filter_groups``; EasyR1 online filtering), which TRL's GRPOTrainer lacks.

A group whose n rollouts all earn the same reward has zero advantage everywhere: it adds nothing to the GSPO
gradient but still counts in the loss's mean, so it dilutes the step. Dynamic sampling drops such groups and
fills the batch with groups from further prompts, generating at most ``max_retries`` extra rounds; when the
retries run out, the batch is topped up with some of the dropped groups (zero-gradient rows) so its shape —
which TRL's buffering into ``steps_per_generation`` slices relies on — stays fixed.

Trade-off, documented for recipe writers: each retry is a full generation round, so a step can cost up to
``1 + max_retries`` times the rollouts; in exchange every kept group carries signal. Masking the degenerate
groups without re-sampling would be free but shrinks the effective batch exactly when the task is too easy or
too hard; ``train.dynamic_sampling: false`` keeps TRL's behaviour (no filtering, only the metric).

This module holds the pure parts (which groups carry signal; selecting and concatenating TRL's generation
batches); the trainer decides when to retry.
"""

from __future__ import annotations

from typing import Any

import torch

from mmfinereason.errors import UserError

# Fields of TRL's generation batch (``_generate_and_score_completions`` output) and how each is padded.
LEFT_PADDED = {"prompt_ids", "prompt_mask"}
RIGHT_PADDED = {
    "completion_ids": None,  # pad id, filled in at run time
    "completion_mask": 0,
    "old_per_token_logps": 0.0,
    "sampling_per_token_logps": 0.0,
    "ref_per_token_logps": 0.0,
    "importance_sampling_ratio": 0.0,
    "tool_mask": 1,
}
PROMPT_THEN_COMPLETION = {"mm_token_type_ids", "token_type_ids"}  # (B, P + C): prompt part left-, rest right-padded
PER_IMAGE = {"pixel_values", "image_grid_thw"}  # concatenated over images; split per row by TRL's helpers
SUPPORTED = LEFT_PADDED | set(RIGHT_PADDED) | PROMPT_THEN_COMPLETION | PER_IMAGE | {
    "advantages",
    "num_items_in_batch",
    "num_images",
}


def informative_groups(rewards: torch.Tensor, num_generations: int, atol: float = 1e-6) -> torch.Tensor:
    """One bool per group of ``num_generations`` consecutive rewards: True when the rewards differ.

    NaN rewards (every reward function skipped the row) are ignored; a group with fewer than two scored rows
    carries no signal either.
    """
    if rewards.numel() % num_generations:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {num_generations}")
    groups = rewards.view(-1, num_generations).float()
    finite = ~torch.isnan(groups)
    big, small = torch.finfo(groups.dtype).max, torch.finfo(groups.dtype).min
    hi = torch.where(finite, groups, torch.full_like(groups, small)).max(dim=1).values
    lo = torch.where(finite, groups, torch.full_like(groups, big)).min(dim=1).values
    return (finite.sum(dim=1) >= 2) & ((hi - lo) > atol)


def group_rows(group_ids: list[int] | torch.Tensor, num_generations: int) -> torch.Tensor:
    """Row indices of the given groups, in order."""
    ids = torch.as_tensor(group_ids, dtype=torch.long).view(-1, 1)
    return (ids * num_generations + torch.arange(num_generations)).view(-1)


def _check(batch: dict[str, Any]) -> None:
    unknown = set(batch) - SUPPORTED
    if unknown:
        raise UserError(
            f"dynamic sampling does not know how to merge the generation-batch fields {sorted(unknown)} "
            "(a model type or TRL feature it was not built for); set train.dynamic_sampling: false"
        )


def select_rows(batch: dict[str, Any], rows: torch.Tensor) -> dict[str, Any]:
    """The generation batch restricted to ``rows`` (``num_items_in_batch`` is left to the caller)."""
    _check(batch)
    if "pixel_values" in batch and "num_images" not in batch:
        raise ValueError("a generation batch with pixel_values but no num_images: which rows own which image "
                         "patches is unknown, so rows cannot be selected")
    rows_list = rows.tolist()
    out: dict[str, Any] = {}
    per_image = {}
    if "pixel_values" in batch and "num_images" in batch:
        from trl.trainer.utils import split_pixel_values_by_grid

        per_image = split_pixel_values_by_grid({k: batch[k] for k in ("pixel_values", "image_grid_thw", "num_images")})
    for key, value in batch.items():
        if key == "num_items_in_batch":
            continue
        if key in PER_IMAGE and per_image:
            out[key] = torch.cat([per_image[key][i] for i in rows_list], dim=0)
        elif key == "num_images":
            out[key] = [value[i] for i in rows_list]
        elif isinstance(value, torch.Tensor):
            out[key] = value[rows.to(value.device)]
        else:
            out[key] = [value[i] for i in rows_list]
    return out


def _repad(t: torch.Tensor, width: int, side: str, value: float) -> torch.Tensor:
    """Widen an already padded (B, T) batch to ``width`` columns (TRL's ``pad`` takes unpadded 1-D rows)."""
    missing = width - t.size(1)
    if missing <= 0:
        return t
    fill = torch.full((t.size(0), missing), value, dtype=t.dtype, device=t.device)
    return torch.cat([fill, t] if side == "left" else [t, fill], dim=1)


def concat_batches(batches: list[dict[str, Any]], pad_token_id: int) -> dict[str, Any]:
    """Stack generation batches row-wise, re-padding prompts on the left and completions on the right."""
    for b in batches:
        _check(b)
    keys = [k for k in batches[0] if k != "num_items_in_batch"]
    p_width = max(b["prompt_ids"].size(1) for b in batches)
    c_width = max(b["completion_ids"].size(1) for b in batches)
    out: dict[str, Any] = {}
    for key in keys:
        values = [b[key] for b in batches]
        if key in LEFT_PADDED:
            fill = pad_token_id if key == "prompt_ids" else 0
            out[key] = torch.cat([_repad(v, p_width, "left", fill) for v in values], dim=0)
        elif key in RIGHT_PADDED:
            if values[0].size(1) == 1 and c_width != 1:  # sequence-level ratios: one column, nothing to pad
                out[key] = torch.cat(values, dim=0)
                continue
            fill = pad_token_id if key == "completion_ids" else RIGHT_PADDED[key]
            out[key] = torch.cat([_repad(v, c_width, "right", fill) for v in values], dim=0)
        elif key in PROMPT_THEN_COMPLETION:
            parts = []
            for v, b in zip(values, batches):
                p = b["prompt_ids"].size(1)
                parts.append(torch.cat([_repad(v[:, :p], p_width, "left", 0), _repad(v[:, p:], c_width, "right", 0)], 1))
            out[key] = torch.cat(parts, dim=0)
        elif isinstance(values[0], torch.Tensor):
            out[key] = torch.cat(values, dim=0)
        else:
            out[key] = [x for v in values for x in v]
    return out


def pad_groups(batches: list[dict[str, Any]], informative: list[torch.Tensor], target_groups: int, num_generations: int):
    """Pick ``target_groups`` groups: informative ones first (in order of generation), then the others.

    Returns ``(rows_per_batch, num_informative_kept)``: for each batch the row indices to keep.
    """
    picked: list[list[int]] = [[] for _ in batches]
    need = target_groups
    kept_informative = 0
    for want in (True, False):
        for i, mask in enumerate(informative):
            ids = [g for g in range(mask.numel()) if bool(mask[g]) == want]
            take = ids[:need]
            picked[i].extend(take)
            need -= len(take)
            if want:
                kept_informative += len(take)
            if need == 0:
                break
        if need == 0:
            break
    rows = [group_rows(sorted(p), num_generations) for p in picked]
    return rows, kept_informative
