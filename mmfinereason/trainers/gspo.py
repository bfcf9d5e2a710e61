"""Stage 2: GSPO with verifiable rewards — a thin layer over TRL's GRPOTrainer.

GSPO (Zheng et al. 2025) is GRPO with one importance ratio per *sequence*,
s_i = exp(mean_t log π_θ(y_i,t) − log π_old(y_i,t)), clipped to [1 − ε_low, 1 + ε_high], times the group-normalised
advantage A_i = (r_i − mean r) / std r. TRL implements exactly this with ``importance_sampling_level="sequence"`` and
``loss_type="grpo"`` (the per-sequence mean; the token-sum losses ``dapo``/``bnpo``/``dr_grpo`` would re-weight
sequences by length). :class:`GSPOConfig` is that preset with the MMFineReason hyper-parameters (RECIPE.md).

What TRL does and we keep: generation (HF ``generate``, vLLM colocate / server), reward calling, advantages, the
loss, buffering of ``steps_per_generation`` slices, checkpointing, logging. What we add, and why:

* **dynamic sampling** (:mod:`.dynamic_sampling`): zero-variance groups are dropped and refilled from further
  prompts, with a bounded number of retries — TRL has no such filter;
* **overlong completions**: masked from the loss (TRL's ``mask_truncated_completions``) or penalised (DAPO's soft
  length penalty from :mod:`mmfinereason.rewards`), chosen by ``train.overlong``;
* **rewards by name** in the recipe (``accuracy``, ``format`` or a dotted import path);
* **metrics TRL lacks**: reward per ``source``, accuracy and format rate, fraction of zero-variance groups and of
  filtered groups, tokens per second; the resolved recipe saved with every checkpoint.

Generation is TRL's: HF ``generate`` by default (the CPU demo), vLLM with ``use_vllm: true`` and
``vllm_mode: colocate`` (shares the training GPUs) or ``server`` (``trl vllm-serve`` on other GPUs) — the ``vllm``
extra, checked when the trainer is built.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from trl import GRPOConfig as TRLGRPOConfig
from trl import GRPOTrainer as TRLGRPOTrainer

from .dynamic_sampling import concat_batches, informative_groups, pad_groups, select_rows
from .gspo_data import resolve_reward
from .stage_args import StageArgumentsMixin

logger = logging.getLogger(__name__)

OVERLONG_MODES = ("mask", "penalty", "none")


@dataclass
class GSPOConfig(StageArgumentsMixin, TRLGRPOConfig):
    """TRL's ``GRPOConfig`` preset to GSPO with the paper's stage-2 values, plus rewards and dynamic sampling.

    Paper (Table 9): AdamW lr 1e-6 constant after 10 warm-up steps, weight decay 0.1, 16 rollouts per prompt at
    temperature 1.0, sequence-level clipping ε 3e-4 / 4e-4, no KL, prompt ≤ 8,192 and response ≤ 16,384 tokens.
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
        default=True,
        metadata={"help": "Drop groups whose rewards all agree and refill the batch from further prompts (DAPO)."},
    )
    dynamic_sampling_max_retries: int = field(
        default=3, metadata={"help": "Extra generation rounds per step at most; then zero-signal groups fill the gap."}
    )
    overlong: str = field(
        default="mask",
        metadata={"help": "Completions that hit max_completion_length: 'mask' (no loss), 'penalty' (DAPO soft "
                  "length penalty) or 'none'."},
    )
    overlong_buffer: int | None = field(
        default=None, metadata={"help": "Penalty ramp length in tokens (default: a quarter of max_completion_length)."}
    )
    overlong_penalty_weight: float = field(default=1.0, metadata={"help": "Weight of the overlong penalty reward."})
    remove_unused_columns: bool | None = field(
        default=False, metadata={"help": "Keep answer / source / question columns: the rewards need them."}
    )
    logging_steps: float = field(default=1, metadata={"help": "Log every N optimizer steps."})

    def __post_init__(self):
        if self.overlong not in OVERLONG_MODES:
            raise ValueError(f"train.overlong must be one of {list(OVERLONG_MODES)}, got {self.overlong!r}")
        if self.overlong == "mask":
            self.mask_truncated_completions = True
        if self.reward_weights is not None and len(self.reward_weights) != len(self.reward_funcs):
            raise ValueError(
                f"train.reward_weights has {len(self.reward_weights)} weights for {len(self.reward_funcs)} "
                f"train.reward_funcs {self.reward_funcs}"
            )
        if self.dynamic_sampling_max_retries < 0:
            raise ValueError("train.dynamic_sampling_max_retries must be >= 0")
        super().__post_init__()
        local = self.per_device_train_batch_size * self.steps_per_generation
        if self.dynamic_sampling and local % self.num_generations:
            raise ValueError(
                f"dynamic sampling needs whole prompt groups on each process: per_device_train_batch_size × "
                f"steps_per_generation = {local} is not a multiple of num_generations = {self.num_generations}"
            )


class GSPOTrainer(TRLGRPOTrainer):
    """TRL's GRPOTrainer run as GSPO, with dynamic sampling, overlong handling and per-source metrics.

    Build it like TRL's (``GSPOTrainer(model, args=GSPOConfig(...), train_dataset=..., processing_class=...)``;
    ``reward_funcs`` defaults to ``args.reward_funcs``) or from a recipe with :func:`build_gspo`.

    >>> from mmfinereason import load_recipe
    >>> from mmfinereason.trainers.gspo import build_gspo
    >>> trainer = build_gspo(load_recipe("recipes/tiny/gspo.yaml"))
    >>> trainer.train()
    """

    def __init__(self, model, reward_funcs=None, args: GSPOConfig | None = None, *, recipe=None, data_report=None, **kwargs):
        from ..rewards import make_length_penalty

        args = args if args is not None else GSPOConfig(output_dir="outputs/gspo")
        if args.use_vllm:
            from ..import_utils import require

            require("vllm", feature=f"train.use_vllm (vllm_mode: {args.vllm_mode})")
        self.recipe = recipe
        self.data_report = data_report
        if reward_funcs is None:
            reward_funcs = [resolve_reward(name) for name in args.reward_funcs]
            if args.overlong == "penalty":
                buffer = args.overlong_buffer or max(1, args.max_completion_length // 4)
                reward_funcs.append(make_length_penalty(args.max_completion_length, buffer))
                weights = args.reward_weights or [1.0] * (len(reward_funcs) - 1)
                args.reward_weights = [*weights, args.overlong_penalty_weight]
        processor = kwargs.get("processing_class")
        tokenizer = getattr(processor, "tokenizer", processor)
        if tokenizer is not None:
            # TRL left-pads prompt ids itself but takes mm_token_type_ids from the processor: both must agree.
            tokenizer.padding_side = "left"
        self._token_window = (0, time.perf_counter())
        self._last_rewards: torch.Tensor | None = None
        super().__init__(model, reward_funcs=reward_funcs, args=args, **kwargs)

    # ------------------------------------------------------------------ rewards and metrics
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        """TRL's reward calling, then our metrics; keeps the weighted rewards for dynamic sampling."""
        from accelerate.utils import gather_object

        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        weights = self.reward_weights.to(rewards_per_func.device)
        rewards = (rewards_per_func * weights).nansum(dim=1)
        rewards[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan
        self._last_rewards = rewards
        mode = "train" if self.model.training else "eval"
        metrics = self._metrics[mode]
        sources = gather_object([str(x.get("source") or "unknown") for x in inputs])
        for source in sorted(set(sources)):
            idx = torch.tensor([s == source for s in sources], device=rewards.device)
            metrics[f"reward/{source}"].append(torch.nanmean(rewards[idx]).item())
        for i, name in enumerate(self.reward_func_names):
            column = rewards_per_func[:, i]
            alias = {"accuracy_reward": "accuracy", "format_reward": "format_rate"}.get(name)
            if alias:
                metrics[alias].append(torch.nanmean(column).item())
            if name == "accuracy_reward":
                for source in sorted(set(sources)):
                    idx = torch.tensor([s == source for s in sources], device=column.device)
                    metrics[f"accuracy/{source}"].append(torch.nanmean(column[idx]).item())
        return rewards_per_func

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self.model.training and "loss" in logs:
            tokens, since = self._token_window
            now, seen = time.perf_counter(), self.state.num_input_tokens_seen
            logs["tokens_per_second"] = (seen - tokens) / max(now - since, 1e-9)
            self._token_window = (seen, now)
            if self.data_report is not None:
                logs["rows_skipped"] = float(self.data_report.num_skipped)
        super().log(logs, start_time)

    # ------------------------------------------------------------------ dynamic sampling
    def _local_rewards(self, num_rows: int) -> torch.Tensor:
        start = self.accelerator.process_index * num_rows
        return self._last_rewards[start : start + num_rows].cpu()

    def _more_prompts(self, num_groups: int, retry: int = 1) -> list[dict[str, Any]]:
        """Further prompts for refilling, each repeated num_generations times.

        Stateless on purpose: the draw depends only on (seed, rank, global step, retry), so a run resumed from a
        checkpoint refills exactly as the uninterrupted run did — no iterator position to save.
        """
        dataset = self.train_dataset
        seed = (self.args.seed * 1_000_003 + 104729 * (self.accelerator.process_index + 1)
                + 7919 * self.state.global_step + retry) % (2**63)
        if hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__"):
            g = torch.Generator().manual_seed(seed)
            picked = [dataset[i] for i in torch.randint(len(dataset), (num_groups,), generator=g).tolist()]
        else:  # streaming: a differently seeded shuffle of the stream per refill
            picked = list(itertools.islice(dataset.shuffle(seed=seed % (2**32), buffer_size=1000), num_groups))
        return [dict(row) for row in picked for _ in range(self.num_generations)]

    def _generate_and_score_completions(self, inputs):
        """TRL's rollout + scoring, repeated on further prompts while groups carry no signal (bounded)."""
        if not self.model.training:
            return super()._generate_and_score_completions(inputs)
        g = self.num_generations
        num_groups = len(inputs) // g
        batches, masks = [], []
        batch = super()._generate_and_score_completions(inputs)
        mask = informative_groups(self._local_rewards(len(inputs)), g)
        self._log_group_stats(mask)
        if not self.args.dynamic_sampling:
            return batch
        batches.append(batch)
        masks.append(mask)
        retries = 0
        while True:
            deficit = max(num_groups - int(sum(int(m.sum()) for m in masks)), 0)
            # every process must run the same number of rounds (generation and rewards gather across processes)
            global_deficit = int(self.accelerator.gather(torch.tensor([deficit], device=self.accelerator.device)).max())
            if global_deficit == 0 or retries >= self.args.dynamic_sampling_max_retries:
                break
            retries += 1
            # Refill with twice the missing groups, not a whole batch: about a third of groups carry no signal on
            # a model that already solves the task, so 2x almost always fills, at a fraction of a full round's
            # generation cost. The same size on every process (global deficit), as the gathers require.
            more = self._more_prompts(min(num_groups, 2 * global_deficit), retries)
            batches.append(super()._generate_and_score_completions(more))
            masks.append(informative_groups(self._local_rewards(len(more)), g))
            self._log_group_stats(masks[-1], retry=True)
        generated = sum(m.numel() for m in masks)
        degenerate = generated - sum(int(m.sum()) for m in masks)
        rows, kept = pad_groups(batches, masks, num_groups, g)
        metrics = self._metrics["train"]
        # zero-variance groups left out of the batch, as a share of all groups generated this step
        metrics["dynamic_sampling/frac_filtered"].append((degenerate - (num_groups - kept)) / generated)
        metrics["dynamic_sampling/retries"].append(float(retries))
        metrics["dynamic_sampling/frac_informative_in_batch"].append(kept / num_groups)
        if len(batches) == 1:  # nothing to swap in: the batch as generated
            return batch
        parts = [select_rows(b, r) for b, r in zip(batches, rows) if r.numel()]
        merged = concat_batches(parts, self._tokenizer.pad_token_id)
        loss_mask = merged["completion_mask"] * merged.get("tool_mask", 1)
        merged["num_items_in_batch"] = self.accelerator.gather(loss_mask.sum()).sum()
        return merged

    def _log_group_stats(self, mask: torch.Tensor, retry: bool = False) -> None:
        zero = 1.0 - float(mask.float().mean()) if mask.numel() else 0.0
        self._metrics["train"]["dynamic_sampling/frac_zero_variance_groups" + ("_retry" if retry else "")].append(zero)

    # ------------------------------------------------------------------ checkpoints
    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if self.recipe is not None and self.args.should_save:
            from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

            folder = Path(self.args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            if folder.is_dir():
                self.recipe.save(folder / "recipe.yaml")


def build_gspo(recipe, model=None, processor=None) -> GSPOTrainer:
    """A :class:`GSPOTrainer` wired from the recipe: model (the SFT output), RL prompts, rewards."""
    from ..models import load_model, load_processor
    from ..pipeline import add_accuracy_callback, load_train_data
    from .gspo_data import add_prompts, drop_long_prompts

    if recipe.stage != "gspo":
        raise ValueError(f"build_gspo needs a recipe with stage: gspo, got stage: {recipe.stage}")
    d, args = recipe.data, recipe.train
    processor = processor or load_processor(recipe.model.name_or_path)
    # TRL runs the processor without size arguments: set the recipe's pixel bounds on it (as SFT's collator does).
    processor.image_processor.size = {"shortest_edge": d.min_pixels, "longest_edge": d.max_pixels}
    model = model or load_model(recipe.model)
    dataset, report = load_train_data(recipe, require_response=False)
    logger.info(report.summary())
    dataset, _ = drop_long_prompts(
        dataset, processor, args.max_prompt_length,
        system_prompt=d.system_prompt, min_pixels=d.min_pixels, max_pixels=d.max_pixels,
    )
    trainer = GSPOTrainer(
        model,
        args=args,
        train_dataset=add_prompts(dataset, d.system_prompt),
        processing_class=processor,
        recipe=recipe,
        data_report=report,
    )
    return add_accuracy_callback(recipe, trainer)


def run_gspo(recipe):
    """Train stage 2 as the recipe says; print held-out accuracy before and after; save model + recipe."""
    from ..pipeline import run_stage

    return run_stage(recipe, build_gspo(recipe), "GSPO")
