"""Held-out accuracy *during* training: the recipe's ``eval.every_n_steps``, logged like any training metric.

Why a callback and not the Trainer's own evaluation loop: ``Trainer.evaluate`` measures loss under teacher
forcing; what matters for a reasoning model is whether the generated final answer is right, which needs
generation and the verifier. This callback runs :func:`mmfinereason.evaluation.accuracy.evaluate_accuracy` — the same
code as the accuracy before / after training and ``mmfinereason eval`` — every N optimizer steps, and hands the
result to ``trainer.log``, so it lands in ``trainer.state.log_history`` and in wandb / trackio / tensorboard
under ``eval/accuracy`` and ``eval/accuracy/<source>``.

Several processes: each rank generates for its own slice of the held-out set (slices padded to equal length,
so that every rank makes the same number of ``generate`` calls, as ZeRO-3 / FSDP need) and the correctness
flags are gathered before logging.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from transformers import TrainerCallback

from mmfinereason.errors import UserError

logger = logging.getLogger(__name__)


class AccuracyCallback(TrainerCallback):
    """Every ``every_n_steps`` optimizer steps, measure held-out accuracy and log it through the trainer.

    >>> trainer.add_callback(AccuracyCallback(trainer, examples, every_n_steps=50, max_new_tokens=96))  # doctest: +SKIP
    """

    def __init__(
        self,
        trainer,
        examples: list[dict[str, Any]],
        every_n_steps: int,
        *,
        batch_size: int = 16,
        max_new_tokens: int = 256,
        prefix: str = "eval_",
        **generate_kwargs: Any,
    ) -> None:
        if every_n_steps < 1:
            raise UserError(f"eval.every_n_steps must be >= 1, got {every_n_steps}")
        if not examples:
            raise UserError("eval.every_n_steps needs held-out examples: add a data.eval source to the recipe")
        self.trainer = trainer
        self.examples = list(examples)
        self.every_n_steps = every_n_steps
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.prefix = prefix  # "eval_": the logging integrations file it under eval/
        self.generate_kwargs = generate_kwargs
        self.history: list[tuple[int, float]] = []  # (step, accuracy), for notebooks and tests

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step > 0 and state.global_step % self.every_n_steps == 0:
            should_log = control.should_log
            self.run(state.global_step)
            # trainer.log() clears should_log: without this, a step that is both an evaluation and a logging step
            # loses its training log (loss, reward, lr …) from the console, the history and the trackers
            control.should_log = should_log
        return control

    def run(self, step: int) -> dict[str, float]:
        """Measure now and log; returns the logged metrics."""
        from mmfinereason.evaluation.accuracy import evaluate_accuracy

        trainer = self.trainer
        accelerator = trainer.accelerator
        rank, world = accelerator.process_index, accelerator.num_processes
        mine, real = _shard(self.examples, rank, world)
        model = trainer.model
        was_training = model.training
        model.eval()  # also tells TRL's log() that these are eval metrics, so its train averages are not consumed
        try:
            report = evaluate_accuracy(
                model,
                trainer.processing_class,
                mine,
                batch_size=self.batch_size,
                max_new_tokens=self.max_new_tokens,
                progress=False,
                desc=f"accuracy at step {step}",
                **self.generate_kwargs,
            )
            flags = [(p.source, bool(p.correct)) for p in report.predictions[:real]]
            if world > 1:
                from accelerate.utils import gather_object

                flags = gather_object(flags)
            metrics = _metrics(flags, self.prefix)
            trainer.log(dict(metrics))
        finally:
            model.train(was_training)
        self.history.append((step, metrics[f"{self.prefix}accuracy"]))
        logger.info("step %d: held-out accuracy %.1f%% (%d items)", step, 100 * metrics[f"{self.prefix}accuracy"], len(flags))
        return metrics


def _shard(examples: list[dict[str, Any]], rank: int, world: int) -> tuple[list[dict[str, Any]], int]:
    """This rank's slice, padded with repeats to the common length; returns (slice, number of real rows).

    Mixed image / text-only sets are not sliced (every rank does all of them): their batches are formed per
    kind, and unequal kinds per rank would mean unequal numbers of ``generate`` calls.
    """
    if world == 1:
        return examples, len(examples)
    kinds = {bool(ex.get("images")) for ex in examples}
    if len(kinds) > 1:
        return (examples, len(examples)) if rank == 0 else (examples, 0)
    per_rank = math.ceil(len(examples) / world)
    mine = examples[rank * per_rank : (rank + 1) * per_rank]
    real = len(mine)
    return mine + [examples[0]] * (per_rank - real), real


def _metrics(flags: list[tuple[str, bool]], prefix: str) -> dict[str, float]:
    by_source: dict[str, list[bool]] = {}
    for source, ok in flags:
        by_source.setdefault(source, []).append(ok)
    out = {f"{prefix}accuracy": sum(ok for _, ok in flags) / max(len(flags), 1)}
    out.update({f"{prefix}accuracy/{s}": sum(v) / len(v) for s, v in sorted(by_source.items())})
    return out
