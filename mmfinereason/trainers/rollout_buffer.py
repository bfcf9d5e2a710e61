"""The rollout batch a GSPO run is part-way through, saved with a checkpoint and put back on resume.

Why: with several policy updates per rollout batch (``steps_per_generation`` > ``gradient_accumulation_steps``, or
``num_iterations`` > 1) a checkpoint can fall between two updates of one batch: a ``save_steps`` that is not a
multiple of the updates per batch, or a preemption. TRL keeps the batch only in memory (``_buffered_inputs``) and
on resume generates a new one from the same prompts, with the policy one update newer: the run goes on, but not as
the uninterrupted one does (measured on the tiny model, 2 updates per batch, resumed after update 1 of 4: final
weights 2.7e-4 apart; 0.0 when resumed at a batch boundary). So each rank saves its slices of the batch
(``rollout_buffer_rank{R}.pt``) when a checkpoint falls inside one, with TRL's micro-step counter, and the
resumed run starts from them. A checkpoint at a batch boundary, which is every checkpoint of an on-policy run
(the shipped recipes), writes nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from mmfinereason.trainers.run_files import checkpoint_dir

logger = logging.getLogger(__name__)


def buffer_file(folder: str | Path, rank: int) -> Path:
    return Path(folder) / f"rollout_buffer_rank{rank}.pt"


def _moved(value: Any, device: torch.device | str) -> Any:
    """``value`` with every tensor in it (dicts, lists, tuples) on ``device``."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: _moved(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_moved(v, device) for v in value)
    return value


class RolloutBufferCheckpointMixin:
    """For a subclass of TRL's ``GRPOTrainer``: save the unfinished rollout batch with a checkpoint, restore it
    in ``train(resume_from_checkpoint=...)``."""

    def _inside_rollout_batch(self) -> bool:
        generate_every = self.args.steps_per_generation * self.num_iterations
        return self._buffered_inputs is not None and self._step % generate_every != 0

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if not self._inside_rollout_batch():
            return
        folder = checkpoint_dir(self)
        if folder.is_dir():  # written before the completion marker (on_save), so the marker lists it
            saved = {"step": self._step, "world_size": self.args.world_size,
                     "slices": _moved(self._buffered_inputs, "cpu")}
            torch.save(saved, buffer_file(folder, self.args.process_index))

    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        if isinstance(resume_from_checkpoint, (str, Path)):
            path = buffer_file(resume_from_checkpoint, self.args.process_index)
            if path.is_file():
                saved = torch.load(path, map_location="cpu", weights_only=False)  # our own file, not a download
                if saved["world_size"] != self.args.world_size:
                    # Every rank sees the same mismatch (a new rank has no file at all), so all of them regenerate
                    # together: a rank that skipped generation would leave the others waiting in its collectives.
                    logger.warning("%s was written by %d processes, resuming on %d: the rollout batch is generated "
                                   "again", path.name, saved["world_size"], self.args.world_size)
                    return super().train(resume_from_checkpoint, *args, **kwargs)
                self._buffered_inputs = _moved(saved["slices"], self.accelerator.device)
                self._step = saved["step"]
                every = self.args.steps_per_generation * self.num_iterations
                logger.info("resuming inside a rollout batch, at micro-step %d of its %d (%s)",
                            self._step % every, every, path.name)
        return super().train(resume_from_checkpoint, *args, **kwargs)
