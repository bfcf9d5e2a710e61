"""Stage 1: supervised fine-tuning on long chain-of-thought traces (a thin layer over TRL's SFTTrainer).

What TRL does and we keep: the training loop, checkpointing and ``resume_from_checkpoint``, gradient
accumulation with token-count loss normalisation, the fused LM-head loss, DDP / DeepSpeed / FSDP through
accelerate, logging integrations. What we add, and why:

* our :class:`~mmfinereason.data.MultimodalCollator` instead of TRL's VLM collator (TRL truncates through image
  tokens and refuses packing for VLMs — trl#4339); TRL's own dataset preparation is skipped;
* per-module learning rates (vision tower / merger / language model; :mod:`.part_lr`);
* metrics TRL lacks for VLMs: real tokens per second, padding ratio, rows skipped by the loader and samples
  dropped or truncated by the collator;
* the resolved recipe saved into every checkpoint.
"""

from __future__ import annotations

import logging
from collections import Counter

import torch
from trl import SFTTrainer as TRLSFTTrainer

from mmfinereason.data.batching.worker_counts import pop_counts
from mmfinereason.monitoring.callbacks import attach_monitoring
from mmfinereason.trainers.part_lr import PartLearningRatesMixin
from mmfinereason.trainers.run_files import RecipeCheckpointMixin, checkpoint_dir
from mmfinereason.trainers.throughput import TokenRate
from mmfinereason.recipe.train_args import SFTConfig  # noqa: F401  (also importable from here, as before)

logger = logging.getLogger(__name__)


def is_streaming_batcher(sampler) -> bool:
    from mmfinereason.data.batching.streaming import StreamingTokenBudget

    return isinstance(sampler, StreamingTokenBudget)


class SFTTrainer(RecipeCheckpointMixin, PartLearningRatesMixin, TRLSFTTrainer):
    """TRL's SFTTrainer fed by :class:`~mmfinereason.data.MultimodalCollator`, with VLM metrics.

    Build it like TRL's (``SFTTrainer(model, args, train_dataset=..., processing_class=processor,
    data_collator=collator)``) or from a recipe with :func:`mmfinereason.pipelines.sft.build_sft`.

    >>> from mmfinereason import load_recipe, build_sft
    >>> trainer = build_sft(load_recipe("recipes/tiny/sft.yaml"))
    >>> trainer.train()
    """

    def __init__(self, *args, data_report=None, recipe=None, train_batch_sampler=None, **kwargs):
        self.data_report = data_report
        self.recipe = recipe
        self.train_batch_sampler = train_batch_sampler
        self._token_rate = TokenRate()
        self._padding_window = {"real": 0, "total": 0}
        self._worker_counts: Counter = Counter()
        super().__init__(*args, **kwargs)
        # Qwen-VL models declare `accepts_loss_kwargs = False`, so transformers would not count the label tokens
        # of the whole accumulated step (`num_items_in_batch`) and would average per-micro-batch means instead —
        # wrong for packed / token-budget micro-batches of unequal token counts. TRL's compute_loss computes the
        # loss itself (sum / num_items_in_batch) and never forwards the count to the model, so this is safe.
        self.model_accepts_loss_kwargs = True
        attach_monitoring(self)  # one compact console line per log; every log dict into OUTPUT_DIR/log_history.jsonl

    # ------------------------------------------------------------------ data
    def get_train_dataloader(self):
        """Token-budget micro-batches (``data.tokens_per_batch``) when a batch sampler was given, else TRL's.

        Why not TRL's ``packing`` flag: it is text-only (refused for VLMs, trl#4339) and packs token streams
        before the collator, cutting through image tokens; our collator packs whole multimodal examples with
        exact mRoPE positions (:mod:`mmfinereason.data.batching.packing`) and this sampler decides which examples share
        a micro-batch (:mod:`mmfinereason.data.batching.sampler`). The loader is prepared by accelerate like
        ``Trainer``'s, which gives each rank every n-th batch of the (rank-identical) batch list.
        """
        if self.train_batch_sampler is None:
            return super().get_train_dataloader()
        from functools import partial

        from torch.utils.data import DataLoader
        from transformers.trainer_utils import seed_worker

        args = self.args
        if is_streaming_batcher(self.train_batch_sampler):
            # Streamed token budgets: each rank reads its own part of the stream (the batcher splits it by node),
            # so the loader is not prepared by accelerate, whose dispatching would concatenate the ranks' packed
            # batches of different shapes; the Trainer moves each batch to the device itself.
            return DataLoader(
                self.train_batch_sampler,
                batch_size=None,
                collate_fn=self.data_collator,
                num_workers=args.dataloader_num_workers,
                pin_memory=args.dataloader_pin_memory,
                worker_init_fn=partial(seed_worker, num_workers=args.dataloader_num_workers, rank=args.process_index),
            )
        loader = DataLoader(
            self.train_dataset,
            batch_sampler=self.train_batch_sampler,
            collate_fn=self.data_collator,
            num_workers=args.dataloader_num_workers,
            pin_memory=args.dataloader_pin_memory,
            persistent_workers=args.dataloader_persistent_workers and args.dataloader_num_workers > 0,
            prefetch_factor=args.dataloader_prefetch_factor if args.dataloader_num_workers > 0 else None,
            worker_init_fn=partial(seed_worker, num_workers=args.dataloader_num_workers, rank=args.process_index),
        )
        return self.accelerator.prepare(loader)

    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        """Trainer's ``train``; a streamed token-budget run resumes at its saved stream position (no re-reading)."""
        if is_streaming_batcher(self.train_batch_sampler):
            from mmfinereason.trainers.stream_state import load_stream_state

            if load_stream_state(self.train_batch_sampler, resume_from_checkpoint, self.args.process_index):
                self.args.ignore_data_skip = True
        return super().train(resume_from_checkpoint, *args, **kwargs)

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if is_streaming_batcher(self.train_batch_sampler):
            from mmfinereason.trainers.stream_state import save_stream_state

            folder = checkpoint_dir(self)
            consumed = self.state.global_step * self.args.gradient_accumulation_steps
            save_stream_state(self.train_batch_sampler, folder, self.args.process_index, consumed,
                              self.args.dataloader_num_workers)

    # ------------------------------------------------------------------ metrics
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        self._worker_counts.update(pop_counts(inputs))  # counts from collators in DataLoader workers
        if not model.training:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if "attention_mask" in inputs:
            real = int(inputs["attention_mask"].sum())
        else:  # packed rows: everything but the tail padding is real
            real = int((inputs["input_ids"] != self._tokenizer.pad_token_id).sum())
        self._padding_window["real"] += real
        self._padding_window["total"] += inputs["input_ids"].numel()
        before = self._total_train_tokens
        out = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if "attention_mask" not in inputs:
            # TRL counts a padding-free batch as position_ids.size(1) tokens, which with our (4, rows, length)
            # mRoPE ids is the number of rows: count the real tokens instead.
            self._total_train_tokens = before + int(self._gather_sum(real))
            self._metrics["train"]["num_tokens"] = [self._total_train_tokens]
        return out

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self.model.training and "loss" in logs:
            logs["tokens_per_second"] = self._token_rate.per_second(self._total_train_tokens)
            real = self._gather_sum(self._padding_window["real"])
            total = self._gather_sum(self._padding_window["total"])
            logs["padding_ratio"] = 1.0 - real / total if total else 0.0
            self._padding_window = {"real": 0, "total": 0}
            stats = getattr(self.data_collator, "stats", {})  # collator in this process + in workers (summed)
            for name in ("dropped_overlong", "truncated"):
                logs[f"samples_{name}"] = float(stats.get(name, 0) + self._worker_counts[name])
            if self.data_report is not None:
                logs["rows_skipped"] = float(self.data_report.num_skipped)
        super().log(logs, start_time)

    def _gather_sum(self, value: int) -> float:
        t = torch.tensor(float(value), device=self.accelerator.device)
        return float(self.accelerator.reduce(t, reduction="sum")) if self.accelerator.num_processes > 1 else value
