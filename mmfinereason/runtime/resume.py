"""Resumable training, the one call both stages make: :func:`train_resumable`.

What the Trainer already does right, and we keep: saving/restoring weights, optimizer, LR scheduler, RNG states
(per rank) and ``trainer_state.json``; skipping the already-trained batches of the current epoch on resume
(``ignore_data_skip=False``, through the sampler for map-style data and by iterating for streaming data). What we
add: completion markers and newest-complete resolution (:mod:`.checkpoints`), stop-on-signal (:mod:`.preemption`),
the sampler epoch fix below, the parallel-strategy log line and, with ``MMFINEREASON_TRACE_IDS``, a trace of the
example ids every step trained on.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

import torch
from transformers import TrainerCallback

from mmfinereason.runtime.checkpoints import (
    _NO_RESUME,
    MARKER_NAME,
    CheckpointMarkerCallback,
    barrier,
    quarantine,
    rank,
    resolve_resume,
    num_processes,
)
from mmfinereason.runtime.preemption import PreemptionCallback, clear_honoured_stop, exit_if_preempted, find_callback

logger = logging.getLogger(__name__)

TRACE_ENV = "MMFINEREASON_TRACE_IDS"  # a directory: log the example ids every micro-batch trained on


class SamplerEpochCallback(TrainerCallback):
    """Sets the epoch on every sampler under the train dataloader at each epoch start.

    Why: when resuming mid-epoch the Trainer wraps the loader's batch sampler in accelerate's
    ``SkipBatchSampler``, and its own ``set_epoch`` calls then stop one level short of a custom batch sampler
    (``BatchSamplerShard(TokenBudgetBatchSampler)``): the resumed epoch would replay epoch 0's order. Calling
    ``set_epoch`` on the same epoch the Trainer uses is harmless for the samplers it does reach.
    """

    def on_epoch_begin(self, args, state, control, train_dataloader=None, **kwargs):
        epoch = math.floor((state.epoch or 0.0) + 1e-6)
        todo, seen = [train_dataloader], set()
        while todo:
            node = todo.pop()
            if node is None or id(node) in seen:
                continue
            seen.add(id(node))
            if hasattr(node, "set_epoch") and not isinstance(node, torch.utils.data.DataLoader):
                node.set_epoch(epoch)
            todo += [getattr(node, a, None) for a in ("batch_sampler", "sampler", "base_dataloader")]


def prepare_resume(trainer, resume: str | bool | None = "auto") -> str | None:
    """Install the marker + preemption callbacks on ``trainer`` and return the checkpoint to resume from.

    Call on every rank before ``trainer.train(resume_from_checkpoint=...)``. Incomplete checkpoints are
    reported and quarantined by rank 0; an obeyed ``STOP`` and the previous ``preempted.json`` are removed.
    """
    args = trainer.args
    if os.environ.get(TRACE_ENV):
        from mmfinereason.runtime.trained_ids import record_trained_ids

        record_trained_ids(trainer, os.environ[TRACE_ENV])
    if args.save_only_model:
        logger.warning("train.save_only_model=true: checkpoints lack optimizer/scheduler/RNG; resume will not be exact")
    for cls in (CheckpointMarkerCallback, PreemptionCallback, SamplerEpochCallback):
        if find_callback(trainer, cls) is None:
            trainer.add_callback(cls())
    from mmfinereason.runtime.parallel import ParallelismLogCallback

    if find_callback(trainer, ParallelismLogCallback) is None:
        trainer.add_callback(ParallelismLogCallback(trainer))
    checkpoint, scan = resolve_resume(resume, args.output_dir)
    if checkpoint:  # on every rank, so that all of them stop together on a mismatch
        from mmfinereason.runtime.same_run import check_same_run

        explicit = not (resume is True or str(resume).strip().lower() in ("auto", "latest", "true"))
        check_same_run(checkpoint, getattr(trainer, "recipe", None), explicit=explicit)
    barrier()  # every rank has scanned before rank 0 renames anything
    if rank() == 0:
        for path, why in scan.incomplete:
            moved = quarantine(path)
            logger.warning("ignored incomplete checkpoint %s (%s); moved to %s", path, why, moved)
        clear_honoured_stop(args.output_dir)
        if checkpoint:
            marker = Path(checkpoint) / MARKER_NAME
            saved_ws = json.loads(marker.read_text()).get("world_size") if marker.is_file() else None
            if saved_ws and saved_ws != num_processes():
                logger.warning(
                    "%s was written by %d processes, resuming on %d: the data position (batches to skip) is "
                    "only exact with the same world size and per-device batch", checkpoint, saved_ws, num_processes()
                )
            logger.info("resuming from %s", checkpoint)
        elif resume not in (None, False) and str(resume).lower() not in _NO_RESUME:
            logger.info("no complete checkpoint in %s: starting fresh", args.output_dir)
    barrier()
    return checkpoint


def train_resumable(trainer, resume: str | bool | None = "auto"):
    """``trainer.train`` with resolution, completion markers and preemption handling: the one call the
    SFT and GSPO pipelines make. Returns the ``TrainOutput``; exits the process when preempted."""
    checkpoint = prepare_resume(trainer, resume)
    output = trainer.train(resume_from_checkpoint=checkpoint)
    exit_if_preempted(trainer)
    return output
