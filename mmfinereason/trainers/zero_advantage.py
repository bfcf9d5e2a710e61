"""Leave rows with zero advantage out of the GSPO loss: the same loss and gradient, less compute.

Why: a prompt whose rollouts all earn the same reward has advantage 0 on every rollout. With no KL term
(``beta: 0``, the paper's setting) such a row contributes exactly nothing to the gradient, yet TRL still runs
it through the policy's forward and backward. On the embedded task 12-55% of groups are like that at a step,
and on a real run the share typically grows as the model masters prompts. Dropping those rows from the loss batch
and rescaling the loss by the loss type's own normaliser gives the loss and gradient of the full batch (up to
float summation order; ``tests/test_zero_advantage.py`` compares the gradients), so — unlike dynamic sampling — it changes
nothing about what is learned.

Two details make "exactly zero" true. TRL's group mean of identical float rewards can be off by one ulp, and
dividing by the group std (also ~1 ulp) then leaves advantages of ~1e-3 on groups that carry no signal:
:func:`zero_uninformative` sets them to 0, the advantage the maths says they have. And every rank keeps the same
number of rows — the largest number with signal on any rank, at least one — topped up with zero-advantage rows:
TRL all-gathers per-row statistics inside the loss, and every rank must run a forward and backward (DDP / FSDP /
ZeRO-3 collectives).

Not applied where a row's loss depends on other rows: a KL term, an entropy bonus or entropy quantile mask, a
router auxiliary loss, or ``multi_objective_aggregation: normalize_then_sum`` (uniform groups get a non-zero
advantage there). :func:`skip_blocker` names the reason.
"""

from __future__ import annotations

from typing import Any

import torch

from mmfinereason.trainers.dynamic_sampling import informative_groups, select_rows

# How each TRL loss type normalises, and so how the loss over kept rows is rescaled to the full batch's:
# "rows" = mean over the batch's rows (kept / all), "tokens" = mean over its completion tokens (kept tokens /
# all tokens), "global" = divided by num_items_in_batch of the whole generation batch (unchanged: factor 1).
NORMALISER = {
    "grpo": "rows", "sapo": "rows", "dr_grpo": "rows", "luspo": "rows",
    "bnpo": "tokens",
    "dapo": "global", "cispo": "global", "vespo": "global",
}


def skip_blocker(trainer) -> str | None:
    """Why zero-advantage rows must stay in the loss for this trainer, or None when they can be left out."""
    args = trainer.args
    if not getattr(args, "skip_zero_advantage_rows", True):
        return "train.skip_zero_advantage_rows is false"
    if trainer.beta != 0.0:
        return "beta != 0: the KL term gives every row a gradient"
    if trainer.loss_type not in NORMALISER:
        return f"loss_type {trainer.loss_type!r} is not one whose normaliser is known"
    if getattr(trainer, "top_entropy_quantile", 1.0) < 1.0:
        return "top_entropy_quantile < 1: the entropy mask is a quantile over the whole batch"
    if getattr(trainer, "_entropy_bonus_enabled", False):
        return "an entropy bonus gives every row a gradient"
    if getattr(trainer, "aux_loss_enabled", False):
        return "the router auxiliary loss depends on every row"
    if getattr(trainer, "multi_objective_aggregation", "sum_then_normalize") != "sum_then_normalize":
        return "normalize_then_sum gives uniform groups a non-zero advantage"
    return None


def zero_uninformative(advantages: torch.Tensor, all_rewards: torch.Tensor, num_generations: int, process_index: int) -> int:
    """Set to exactly 0 (in place) this process's advantages in groups whose rewards all agree; returns how many.

    ``all_rewards`` are the weighted rewards of every process in TRL's gathered order (groups are consecutive
    there); ``advantages`` is this process's slice of them.
    """
    groups = informative_groups(all_rewards.detach().float().cpu(), num_generations)
    rows = groups.repeat_interleave(num_generations)
    n = advantages.size(0)
    local = rows[process_index * n : (process_index + 1) * n].to(advantages.device)
    if local.numel() != n:
        return 0
    flat = local if advantages.dim() == 1 else local.view(-1, *([1] * (advantages.dim() - 1)))
    uninformative = ~flat.expand_as(advantages)
    count = int((~local).sum())
    advantages.masked_fill_(uninformative, 0.0)
    return count


def rows_with_signal(advantages: torch.Tensor) -> torch.Tensor:
    """Indices of rows whose advantage is not exactly zero (any token, for per-token advantages)."""
    nonzero = advantages != 0
    if nonzero.dim() > 1:
        nonzero = nonzero.flatten(1).any(dim=1)
    return nonzero.nonzero().view(-1)


def rows_to_keep(advantages: torch.Tensor, num_rows: int) -> torch.Tensor:
    """The rows with signal, topped up with zero-advantage rows to ``num_rows`` (>= 1).

    Why top up: every rank must hand TRL's loss the same number of rows — it all-gathers per-row clip statistics,
    and ranks with different row counts would abort the collective. Zero rows add nothing to the gradient.
    """
    signal = rows_with_signal(advantages).cpu()
    if signal.numel() >= num_rows:
        return signal
    zero = torch.ones(advantages.size(0), dtype=torch.bool)
    zero[signal] = False
    extra = zero.nonzero().view(-1)[: num_rows - signal.numel()]
    return torch.cat([signal, extra]).sort().values


def kept_batch(inputs: dict[str, Any], loss_type: str, keep: torch.Tensor) -> tuple[dict[str, Any], float]:
    """``(the batch restricted to the rows keep, loss scale)``: the scale turns the loss over those rows into the
    full batch's loss (and gradient), given that every row left out has advantage 0."""
    n = inputs["advantages"].size(0)
    sub = select_rows(inputs, keep)
    if "num_items_in_batch" in inputs:
        sub["num_items_in_batch"] = inputs["num_items_in_batch"]
    kind = NORMALISER[loss_type]
    if kind == "rows":
        scale = keep.numel() / n
    elif kind == "tokens":
        scale = float(_loss_tokens(sub)) / max(float(_loss_tokens(inputs)), 1.0)
    else:
        scale = 1.0
    return sub, scale


def _loss_tokens(batch: dict[str, Any]) -> torch.Tensor:
    mask = batch["completion_mask"]
    if "tool_mask" in batch:
        mask = mask * batch["tool_mask"]
    return mask.sum().clamp(min=1.0)
