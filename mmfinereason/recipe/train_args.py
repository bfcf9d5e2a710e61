"""The ``train:`` section of a recipe: our ``SFTConfig`` and ``GSPOConfig``, TRL's configs plus our fields.

Imported only when a recipe is built (``recipe.loader.train_config_class``): these classes pull in TRL, transformers
and torch, which ``mmfinereason --help`` and the rest of ``recipe/`` must not.

Training-argument defaults both stages share live in one place, :class:`StageArgumentsMixin`:

``SFTConfig`` (over TRL's ``SFTConfig``) and ``GSPOConfig`` (over TRL's ``GRPOConfig``) both inherit from
transformers' ``TrainingArguments`` through TRL, and both want the same departures from its defaults: no logging
integration unless asked, activation checkpointing under its transformers-5 name, bf16 decided by the hardware,
resume from the newest complete checkpoint. A dataclass mixin placed first in the bases overrides those fields
(dataclasses keep each field's position and take the most derived default) without repeating them per stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from trl import GRPOConfig as TRLGRPOConfig
from trl import SFTConfig as TRLSFTConfig


def bf16_supported() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


TRACKER_MODULES = {"trackio": "trackio", "tensorboard": "tensorboard", "wandb": "wandb"}


def _require_trackers(report_to) -> None:
    """A tracker named in ``train.report_to`` must be installed: say which extra, before the model loads."""
    from mmfinereason.import_utils import is_available, require

    names = [report_to] if isinstance(report_to, str) else list(report_to or [])
    for name in names:
        if name in TRACKER_MODULES and not is_available(TRACKER_MODULES[name]):
            require(TRACKER_MODULES[name], extra=name, feature=f"train.report_to: {name}")  # raises, naming the extra


@dataclass
class StageArgumentsMixin:
    """Put first in the bases: ``class SFTConfig(StageArgumentsMixin, trl.SFTConfig)``."""

    report_to: str | list[str] = field(
        default="none",
        metadata={"help": "'none', 'wandb', 'trackio', 'tensorboard' or a list of them. trackio and tensorboard "
                  "stay on this machine: `trackio show --project mmfinereason`, `tensorboard --logdir OUTPUT_DIR/runs`."},
    )
    project: str = field(
        default="mmfinereason", metadata={"help": "Project name in trackio (and the run's group in its dashboard)."}
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
                  "start; or a checkpoint path. See mmfinereason.runtime.resume."},
    )

    vision_tower_learning_rate: float | None = field(
        default=None, metadata={"help": "Learning rate of the ViT blocks when unfrozen (default: learning_rate)."}
    )
    merger_learning_rate: float | None = field(
        default=None, metadata={"help": "Learning rate of the patch merger(s) when unfrozen (default: learning_rate)."}
    )

    def __post_init__(self):
        _require_trackers(self.report_to)
        if self.bf16 is None:
            self.bf16 = not self.fp16 and bf16_supported() and not self.use_cpu
        if not torch.cuda.is_available():
            self.dataloader_pin_memory = False  # pinning needs an accelerator; avoids a warning per epoch on CPU
        super().__post_init__()


@dataclass
class SFTConfig(StageArgumentsMixin, TRLSFTConfig):
    """TRL's ``SFTConfig`` with defaults suited to our collator (per-part learning rates: the mixin above).

    Sequence length, packing and image resolution live in the recipe's ``data:`` section (they are the
    collator's business); TRL's own ``packing`` / ``padding_free`` flags are rejected for VLMs by TRL and are
    refused here with a pointer to ``data.packing``.
    """

    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Keep raw example columns: the collator needs images and text."}
    )
    logging_steps: float = field(default=10, metadata={"help": "Log every N optimizer steps."})

    def __post_init__(self):
        if self.packing or self.padding_free:
            raise ValueError(
                "train.packing / train.padding_free are TRL's text-only flags; for vision-language models use "
                "data.packing: true (our exact multimodal packing)"
            )
        self.dataset_kwargs = {**(self.dataset_kwargs or {}), "skip_prepare_dataset": True}
        super().__post_init__()


OVERLONG_MODES = ("mask", "penalty", "none")


@dataclass
class GSPOConfig(StageArgumentsMixin, TRLGRPOConfig):
    """TRL's ``GRPOConfig`` preset to GSPO with the paper's stage-2 values, plus rewards and dynamic sampling.

    Paper (Table 9): AdamW lr 1e-6 constant after 10 warm-up steps, weight decay 0.1, 16 rollouts per prompt at
    temperature 1.0, sequence-level clipping ε 3e-4 / 4e-4, no KL, prompt ≤ 8,192 and response ≤ 16,384 tokens.

    Policy updates per rollout batch = ``steps_per_generation × num_iterations / gradient_accumulation_steps``
    (TRL's keys; ``generation_batch_size`` sets ``steps_per_generation`` from a completion count). With more than
    one, TRL computes the old-policy log-probs once, at generation, shuffles the (dynamically sampled) batch and
    hands out one slice per micro-step; from the second update on the sequence ratio departs from 1 and the
    ε clip acts. The GSPO paper uses 4 (one rollout batch, four mini-batches); TRL's default is 1 (on-policy).
    """

    importance_sampling_level: str = field(
        default="sequence", metadata={"help": "'sequence' is GSPO (one ratio per completion); 'token' is GRPO."}
    )
    loss_type: str = field(
        default="grpo",
        metadata={"help": "'grpo' averages each sequence's loss, the GSPO objective (token-sum losses re-weight by length)."},
    )
    beta: float = field(default=0.0, metadata={"help": "KL coefficient; the paper uses no KL term."})
    epsilon: float = field(default=3e-4, metadata={"help": "Lower clip ε_low of the sequence ratio (paper 3e-4)."})
    epsilon_high: float | None = field(default=4e-4, metadata={"help": "Upper clip ε_high (paper 4e-4)."})
    num_generations: int | None = field(default=16, metadata={"help": "Rollouts per prompt (paper 16)."})
    per_device_train_batch_size: int = field(
        default=16, metadata={"help": "Completions per device per micro-step (a multiple of num_generations helps)."}
    )
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature of the rollouts (paper 1.0)."})
    learning_rate: float = field(default=1e-6, metadata={"help": "AdamW learning rate (paper 1e-6, constant)."})
    lr_scheduler_type: str = field(default="constant_with_warmup", metadata={"help": "Paper: constant after warm-up."})
    warmup_steps: float = field(default=10, metadata={"help": "Warm-up steps (paper 10); a float < 1 is a ratio."})
    weight_decay: float = field(default=0.1, metadata={"help": "AdamW weight decay (paper 0.1)."})
    max_completion_length: int | None = field(default=16384, metadata={"help": "Response budget in tokens (paper 16,384)."})
    max_prompt_length: int | None = field(
        default=8192,
        metadata={"help": "Prompts longer than this (text + image tokens) are skipped and counted (paper 8,192)."},
    )
    reward_funcs: list[str] = field(
        default_factory=lambda: ["accuracy", "format"],
        metadata={"help": "Rewards: 'accuracy', 'format' or dotted import paths (my_pkg.rewards:fn), TRL signature."},
    )
    reward_weights: list[float] | None = field(
        default_factory=lambda: [1.0, 0.1],
        metadata={"help": "One weight per entry of reward_funcs (the overlong penalty's weight is separate)."},
    )
    dynamic_sampling: bool = field(
        default=False,
        metadata={"help": "Drop groups whose rewards all agree and refill the batch from further prompts (DAPO). Off "
                  "by default, as in the paper: on the tiny task the refills cost a generation round a step and "
                  "bought nothing measurable (docs/gspo-study-task-v5.md)."},
    )
    dynamic_sampling_max_retries: int = field(
        default=3, metadata={"help": "Extra generation rounds per step at most; then zero-signal groups fill the gap."}
    )
    padding_free: bool = field(
        default=True,
        metadata={"help": "Score rollouts (loss, old-policy and reference log-probs) with their real tokens packed into "
                  "one row, not TRL's padded rectangle; same log-probs, less compute (trainers/padding_free.py). "
                  "Qwen-VL models; switches sdpa/eager to sdpa_varlen. Else, or when false, TRL's padded forward."},
    )
    skip_zero_advantage_rows: bool = field(
        default=True,
        metadata={"help": "Leave rows with advantage 0 (every rollout of the prompt scored the same) out of the loss "
                  "forward/backward, rescaled so loss and gradient equal the full batch's; exact when beta is 0 "
                  "(otherwise ignored). The logged entropy and clip ratios then cover the computed rows."},
    )
    overlong_completions: str = field(
        default="mask",
        metadata={"help": "Rollouts that hit max_completion_length: 'mask' (no loss), 'penalty' (DAPO soft "
                  "length penalty) or 'none'. (SFT's over-long *examples*: data.overlong_examples.)"},
    )
    overlong_buffer: int | None = field(
        default=None, metadata={"help": "Penalty ramp length in tokens (default: a quarter of max_completion_length)."}
    )
    overlong_penalty_weight: float = field(default=1.0, metadata={"help": "Weight of the overlong penalty reward."})
    weight_anchor: float = field(
        default=0.0,
        metadata={"help": "Pull toward the start (SFT) weights after each optimizer step: p += min(1, lr x "
                  "weight_anchor) x (p_start - p), AdamW's decoupled decay aimed at the start instead of zero. 0: off "
                  "(the paper). A KL to the SFT model in weight space, for one copy of the trainable weights and no "
                  "reference forward; not with DeepSpeed or FSDP (trainers/weight_anchor.py)."},
    )
    remove_unused_columns: bool | None = field(
        default=False, metadata={"help": "Keep answer / source / question columns: the rewards need them."}
    )
    logging_steps: float = field(default=1, metadata={"help": "Log every N optimizer steps."})

    def __post_init__(self):
        if self.overlong_completions not in OVERLONG_MODES:
            raise ValueError(
                f"train.overlong_completions must be one of {list(OVERLONG_MODES)}, got {self.overlong_completions!r}"
            )
        if self.overlong_completions == "mask":
            self.mask_truncated_completions = True
        if self.reward_weights is not None and len(self.reward_weights) != len(self.reward_funcs):
            raise ValueError(
                f"train.reward_weights has {len(self.reward_weights)} weights for {len(self.reward_funcs)} "
                f"train.reward_funcs {self.reward_funcs}"
            )
        if self.weight_anchor < 0:
            raise ValueError(f"train.weight_anchor must be >= 0 (0: off), got {self.weight_anchor}")
        if self.dynamic_sampling_max_retries < 0:
            raise ValueError("train.dynamic_sampling_max_retries must be >= 0")
        if self.sync_ref_model and self.beta == 0.0:  # TRL refuses it in the trainer, after loading the model
            raise ValueError("train.sync_ref_model needs a reference model: set train.beta > 0 (the KL coefficient)")
        super().__post_init__()
        spg, accum = self.steps_per_generation, self.gradient_accumulation_steps
        if spg % accum and accum % spg:
            # TRL would let an optimizer step straddle two rollout batches; nobody means that.
            raise ValueError(
                f"steps_per_generation = {spg} micro-batches per rollout batch must be a multiple of "
                f"gradient_accumulation_steps = {accum} (that many policy updates per rollout batch) or divide it"
            )
        local = self.per_device_train_batch_size * self.steps_per_generation
        if self.dynamic_sampling and local % self.num_generations:
            raise ValueError(
                f"dynamic sampling needs whole prompt groups on each process: per_device_train_batch_size × "
                f"steps_per_generation = {local} is not a multiple of num_generations = {self.num_generations}"
            )
