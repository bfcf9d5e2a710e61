"""A weight anchor for GSPO: after every optimizer step, pull the policy part of the way back to the weights
training started from (the SFT model).

Why: with the vision tower frozen, GSPO's updates for what the model can read move weights that every source
shares, and on a source it cannot see (the tiny task's shapes) the rewards are coin flips, so its answers walk:
'circle' answers went 38 -> 60 or 27 of 125 and shape fell 3-5 points, cancelling the gains elsewhere (issue 17).
A KL term to the SFT model (``train.beta``) holds it there too, but costs a reference forward per row and keeps the
zero-advantage rows in the loss (1.55x the time per step on the tiny model). This is the same idea in weight space
(L2-SP, Li et al. 2018), AdamW's decoupled weight decay aimed at the start weights instead of at zero::

    p <- p + min(1, lr * weight_anchor) * (p_start - p)

for the price of one copy of the trainable weights. Each parameter uses its own group's learning rate (per-part
rates, :mod:`.part_lr`), so the pull follows the schedule. Neither TRL nor transformers has such an option.

The start weights are copied when the trainer is built, before ``train()`` loads a checkpoint: a resumed run is
pulled toward the same weights as the uninterrupted one (``tests/test_resume.py`` kills and resumes a GSPO run
with the anchor on). Refused under DeepSpeed and FSDP, whose optimizers step sharded or fp32 master copies of the
weights and would overwrite the pull. With bf16 weights a pull far below a weight's rounding step (lr 1e-6 x a
modest anchor) rounds away, as the optimizer's own updates of bf16 weights do.
"""

from __future__ import annotations

import torch
from transformers import TrainerCallback


class WeightAnchor(TrainerCallback):
    """Pull every trainable parameter toward its value at construction, after each optimizer step."""

    def __init__(self, model: torch.nn.Module, strength: float):
        if strength <= 0:
            raise ValueError(f"weight_anchor must be > 0 to anchor, got {strength}")
        self.strength = float(strength)
        self._start = {id(p): p.detach().clone() for p in model.parameters() if p.requires_grad}
        self._checked = False

    def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        groups = optimizer.param_groups
        if not self._checked:
            # A parameter the optimizer steps but the anchor never saw (replaced after the trainer was built)
            # would drift unanchored without a word: refuse instead.
            missing = sum(1 for g in groups for p in g["params"] if p.requires_grad and id(p) not in self._start)
            if missing:
                raise RuntimeError(
                    f"train.weight_anchor: {missing} trained parameters were not there when the trainer was built "
                    "(was the model wrapped or its parameters replaced afterwards?); set train.weight_anchor: 0"
                )
            self._checked = True
        with torch.no_grad():
            for group in groups:
                weight = min(1.0, float(group["lr"]) * self.strength)
                for p in group["params"]:
                    start = self._start.get(id(p))
                    if start is not None:
                        p.lerp_(start, weight)

    def distance_from_start(self, model: torch.nn.Module) -> float:
        """Root-mean-square distance of the trainable weights from the start: how far the policy has moved."""
        total, count = 0.0, 0
        with torch.no_grad():
            for p in model.parameters():
                start = self._start.get(id(p))
                if start is not None:
                    total += float((p.detach() - start).float().pow(2).sum())
                    count += p.numel()
        return (total / max(count, 1)) ** 0.5
