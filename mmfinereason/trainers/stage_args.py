"""Training-argument defaults both stages share, in one place.

``SFTConfig`` (over TRL's ``SFTConfig``) and ``GSPOConfig`` (over TRL's ``GRPOConfig``) both inherit from
transformers' ``TrainingArguments`` through TRL, and both want the same departures from its defaults: no logging
integration unless asked, activation checkpointing under its transformers-5 name, bf16 decided by the hardware,
resume from the newest complete checkpoint. A dataclass mixin placed first in the bases overrides those fields
(dataclasses keep each field's position and take the most derived default) without repeating them per stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


def bf16_supported() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


@dataclass
class StageArgumentsMixin:
    """Put first in the bases: ``class SFTConfig(StageArgumentsMixin, trl.SFTConfig)``."""

    report_to: str | list[str] = field(
        default="none", metadata={"help": "'none', 'wandb', 'trackio', 'tensorboard' or a list of them."}
    )
    gradient_checkpointing: bool | None = field(
        default=None, metadata={"help": "Deprecated alias of activation_checkpointing (transformers 5)."}
    )
    activation_checkpointing: bool | None = field(
        default=False, metadata={"help": "Recompute activations in backward: much less memory, ~30% slower."}
    )
    bf16: bool | None = field(
        default=None, metadata={"help": "bf16 mixed precision; None = on where the GPU supports it, off on CPU."}
    )
    resume_from_checkpoint: str | None = field(
        default="auto",
        metadata={"help": "'auto': the newest complete checkpoint in output_dir (fresh start if none); null: fresh "
                  "start; or a checkpoint path. See mmfinereason.resume."},
    )

    def __post_init__(self):
        if self.bf16 is None:
            self.bf16 = not self.fp16 and bf16_supported() and not self.use_cpu
        if not torch.cuda.is_available():
            self.dataloader_pin_memory = False  # pinning needs an accelerator; avoids a warning per epoch on CPU
        super().__post_init__()
