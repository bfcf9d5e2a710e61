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
  length penalty from :mod:`mmfinereason.rewards`), chosen by ``train.overlong_completions``;
* **zero-advantage rows left out of the loss** (:mod:`.zero_advantage`): the same loss and gradient without the
  forward/backward of rollouts that cannot move the policy;
* **a padding-free loss forward** (:mod:`.padding_free`): the rollouts' real tokens packed into one row with
  exact mRoPE positions, instead of TRL's padded rectangle;
* **rewards by name** in the recipe (``accuracy``, ``format`` or a dotted import path);
* **per-part learning rates** (:mod:`.part_lr`), as in SFT: an unfrozen vision tower at its own rate;
* **a weight anchor** (:mod:`.weight_anchor`): a pull back toward the SFT weights after each step, a KL to the
  SFT model without the reference forward;
* **each distinct image processed once per rollout batch** (:mod:`mmfinereason.data.batching.repeated_images`):
  TRL runs the image processor on every rollout's copy of the prompt's image, twice a step;
* **exact resume inside a rollout batch** (:mod:`.rollout_buffer`): with several updates per batch, a checkpoint
  between two of them carries the batch, which TRL would regenerate;
* **metrics TRL lacks**: reward per ``source``, accuracy and format rate, fraction of zero-variance groups and of
  filtered groups, tokens per second; the resolved recipe saved with every checkpoint.

Generation is TRL's: HF ``generate`` by default (the CPU demo), vLLM with ``use_vllm: true`` and
``vllm_mode: colocate`` (shares the training GPUs) or ``server`` (``trl vllm-serve`` on other GPUs) — the ``vllm``
extra, checked when the trainer is built.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

import torch
from trl import GRPOTrainer as TRLGRPOTrainer

from mmfinereason.data.batching.repeated_images import images_processed_once
from mmfinereason.errors import UserError
from mmfinereason.trainers.dynamic_sampling import concat_batches, informative_groups, pad_groups, select_rows
from mmfinereason.monitoring.callbacks import attach_monitoring
from mmfinereason.rewards.registry import resolve_reward
from mmfinereason.trainers.padding_free import PaddingFreeLogpsMixin
from mmfinereason.trainers.part_lr import PartLearningRatesMixin
from mmfinereason.trainers.rollout_buffer import RolloutBufferCheckpointMixin
from mmfinereason.trainers.run_files import RecipeCheckpointMixin
from mmfinereason.trainers.throughput import TokenRate
from mmfinereason.trainers.vllm_engine import vllm_context
from mmfinereason.trainers.weight_anchor import WeightAnchor
from mmfinereason.trainers.zero_advantage import kept_batch, rows_to_keep, rows_with_signal, skip_blocker, zero_uninformative
from mmfinereason.recipe.train_args import GSPOConfig

logger = logging.getLogger(__name__)

class GSPOTrainer(
    RecipeCheckpointMixin, RolloutBufferCheckpointMixin, PartLearningRatesMixin, PaddingFreeLogpsMixin, TRLGRPOTrainer
):
    """TRL's GRPOTrainer run as GSPO, with dynamic sampling, overlong handling and per-source metrics.

    Build it like TRL's (``GSPOTrainer(model, args=GSPOConfig(...), train_dataset=..., processing_class=...)``;
    ``reward_funcs`` defaults to ``args.reward_funcs``) or from a recipe with :func:`mmfinereason.pipelines.gspo.build_gspo`.

    >>> from mmfinereason import load_recipe
    >>> from mmfinereason import build_gspo
    >>> trainer = build_gspo(load_recipe("recipes/tiny/gspo.yaml"))
    >>> trainer.train()
    """

    def __init__(self, model, reward_funcs=None, args: GSPOConfig | None = None, *, recipe=None, data_report=None, **kwargs):
        from mmfinereason.rewards import make_length_penalty

        args = args if args is not None else GSPOConfig(output_dir="outputs/gspo")
        if args.use_vllm:
            from mmfinereason.import_utils import require

            require("vllm", feature=f"train.use_vllm (vllm_mode: {args.vllm_mode})")
        self.recipe = recipe
        self.data_report = data_report
        penalty = None
        if reward_funcs is None:
            reward_funcs = [resolve_reward(name) for name in args.reward_funcs]
            if args.overlong_completions == "penalty":
                buffer = args.overlong_buffer or max(1, args.max_completion_length // 4)
                penalty = make_length_penalty(args.max_completion_length, buffer)
        processor = kwargs.get("processing_class")
        tokenizer = getattr(processor, "tokenizer", processor)
        if tokenizer is not None:
            # TRL left-pads prompt ids itself but takes mm_token_type_ids from the processor: both must agree.
            tokenizer.padding_side = "left"
        self._token_rate = TokenRate()
        self._last_rewards: torch.Tensor | None = None
        # vLLM colocate: images per prompt counted from the data, compute dtype (trainers/vllm_engine.py)
        with vllm_context(args, kwargs.get("train_dataset")):
            super().__init__(model, reward_funcs=reward_funcs, args=args, **kwargs)
        if penalty is not None:
            self._add_internal_reward(penalty, args.overlong_penalty_weight)
        self._skip_blocker = skip_blocker(self)
        self._setup_padding_free()
        if self._skip_blocker and args.skip_zero_advantage_rows:
            logger.info("zero-advantage rows stay in the loss: %s", self._skip_blocker)
        self._anchor = self._make_anchor(args.weight_anchor)
        attach_monitoring(self)  # one compact console line per log; every log dict into OUTPUT_DIR/log_history.jsonl

    def _make_anchor(self, strength: float) -> WeightAnchor | None:
        """The weight anchor, its start weights copied now: before ``train()`` loads any checkpoint."""
        if not strength:
            return None
        if self.is_deepspeed_enabled or self.is_fsdp_enabled:
            raise UserError(
                "train.weight_anchor works on the weights the optimizer steps in place; DeepSpeed and FSDP step "
                "sharded or fp32 master copies that would overwrite the pull. Set train.weight_anchor: 0 (or "
                "train.beta > 0, the KL to the SFT model) with them."
            )
        anchor = WeightAnchor(self.model, strength)
        self.add_callback(anchor)
        return anchor

    def _add_internal_reward(self, func, weight: float) -> None:
        """Append a reward the recipe does not list (the overlong penalty), with its weight, after TRL's setup.

        Why here and not in ``args.reward_weights``: ``args`` is the user's recipe object. Appending to it made
        the saved ``recipe.yaml`` unloadable (one weight more than ``reward_funcs``) and broke a second trainer
        built from the same recipe. TRL adds its environment rewards the same way.
        """
        from trl.trainer.utils import get_callable_name

        self.reward_funcs.append(func)
        self.reward_func_names.append(get_callable_name(func))
        self.reward_processing_classes.append(None)
        self.reward_weights = torch.cat([self.reward_weights, torch.tensor([float(weight)])])

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
            logs["tokens_per_second"] = self._token_rate.per_second(self.state.num_input_tokens_seen)
            if self.data_report is not None:
                logs["rows_skipped"] = float(self.data_report.num_skipped)
            if self._anchor is not None:
                logs["weight_anchor/rms_from_start"] = self._anchor.distance_from_start(self.model)
        super().log(logs, start_time)

    # ------------------------------------------------------------------ rollouts
    def _trl_rollouts(self, inputs):
        """TRL's rollout + scoring, with each distinct image through the image processor once (repeated_images.py)."""
        with images_processed_once(self.processing_class):
            return super()._generate_and_score_completions(inputs)

    # ------------------------------------------------------------------ zero-advantage rows
    def _scored_rollouts(self, inputs):
        """TRL's rollout + scoring; groups whose rewards agree get an advantage of exactly 0 (zero_advantage.py)."""
        batch = self._trl_rollouts(inputs)
        if self._skip_blocker is None and self._last_rewards is not None:
            zero_uninformative(batch["advantages"], self._last_rewards, self.num_generations, self.accelerator.process_index)
        return batch

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """TRL's loss over the rows whose advantage is not zero, rescaled to the whole batch's loss."""
        if self._skip_blocker is None and self.model.training and not return_outputs:
            n = inputs["advantages"].size(0)
            signal = torch.tensor([rows_with_signal(inputs["advantages"]).numel()], device=self.accelerator.device)
            num_rows = max(int(self.accelerator.gather(signal).max()), 1)  # the same on every rank
            picked = None
            if num_rows < n:
                try:
                    picked = kept_batch(inputs, self.loss_type, rows_to_keep(inputs["advantages"], num_rows))
                except ValueError as e:  # a generation-batch field rows cannot be selected from (same on every rank)
                    self._skip_blocker = str(e)
                    logger.warning("zero-advantage rows stay in the loss from now on: %s", e)
            skipped = n - num_rows if picked is not None else 0
            self._metrics["train"]["zero_advantage/frac_rows_skipped"].append(skipped / n)
            if picked is not None:
                rows, scale = picked
                return super().compute_loss(model, rows, return_outputs, num_items_in_batch) * scale
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

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
            return self._trl_rollouts(inputs)
        g = self.num_generations
        num_groups = len(inputs) // g
        batches, masks = [], []
        batch = self._scored_rollouts(inputs)
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
            batches.append(self._scored_rollouts(more))
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
