"""Preemption: SIGTERM / SIGUSR1 (or a ``STOP`` file in ``output_dir``, for schedulers that can only signal the
batch shell) make every rank save a checkpoint at the same step boundary, write ``preempted.json`` and exit with
:data:`PREEMPTED_EXIT_CODE` (what the SLURM scripts requeue on).

Signal handlers only set a flag; at each ``on_step_end`` the ranks all-reduce it, so every rank stops at the
*same* step — a rank that stopped alone would hang the others in their next collective.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from mmfinereason.runtime.checkpoints import any_rank, atomic_write_json, rank
from mmfinereason.runtime.shutdown import release_trainer, shutdown_distributed

logger = logging.getLogger(__name__)

STOP_FILE_NAME = "STOP"
PREEMPTED_FILE_NAME = "preempted.json"
PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM: what schedulers and shells read as "terminated, not failed"
PREEMPT_SIGNALS = ("SIGTERM", "SIGUSR1")


class PreemptionCallback(TrainerCallback):
    """Turns SIGTERM / SIGUSR1 (or a ``STOP`` file) into "save at the next step boundary, then stop".

    Signal handlers only set a flag (nothing else is safe inside one). At each ``on_step_end`` the ranks
    all-reduce the flag so they stop together — a rank that stopped alone would hang the others in their
    next collective.
    """

    def __init__(self, signals: tuple[str, ...] = PREEMPT_SIGNALS):
        self.signals = signals
        self.requested: str | None = None  # which signal / file asked, on this rank
        self.preempted_at: int | None = None  # the step all ranks stopped at
        self._previous: dict[int, Any] = {}

    def _handler(self, signum, frame) -> None:
        self.requested = signal.Signals(signum).name
        os.write(2, f"[mmfinereason] {self.requested}: saving a checkpoint at the next step boundary\n".encode())

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            logger.warning("not on the main thread: preemption signals are not handled (use the STOP file)")
            return
        for name in self.signals:
            sig = getattr(signal, name, None)
            if sig is not None and sig not in self._previous:
                self._previous[sig] = signal.signal(sig, self._handler)

    def uninstall(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    def on_train_begin(self, args, state, control, **kwargs):
        self.install()

    def on_step_end(self, args, state, control, **kwargs):
        local = self.requested is not None
        if not local and (Path(args.output_dir) / STOP_FILE_NAME).exists():
            self.requested = STOP_FILE_NAME
            local = True
        if any_rank(local, args.device):
            self.requested = self.requested or "another rank"
            self.preempted_at = state.global_step
            control.should_save = True
            control.should_training_stop = True
            logger.warning("preemption (%s): saving checkpoint-%d and stopping", self.requested, state.global_step)
        return control

    def on_train_end(self, args, state, control, **kwargs):
        self.uninstall()


def clear_honoured_stop(output_dir: str | Path) -> None:
    """Forget a stop request the previous run already obeyed (``STOP`` not newer than ``preempted.json``),
    and the ``preempted.json`` itself. A ``STOP`` written after it — e.g. by the SLURM script when the
    time-limit signal came during start-up — is a new request and stays."""
    out = Path(output_dir)
    stop, preempted = out / STOP_FILE_NAME, out / PREEMPTED_FILE_NAME
    if stop.exists() and preempted.exists() and stop.stat().st_mtime <= preempted.stat().st_mtime:
        stop.unlink(missing_ok=True)
    preempted.unlink(missing_ok=True)


def find_callback(trainer, cls: type) -> Any:
    """The trainer's callback of type ``cls``, or None."""
    return next((cb for cb in trainer.callback_handler.callbacks if isinstance(cb, cls)), None)


def exit_if_preempted(trainer) -> None:
    """After ``trainer.train()``: if a preemption stopped training, record it and exit with
    :data:`PREEMPTED_EXIT_CODE` (skipping the final save and evaluation, which the resumed run will do)."""
    cb = find_callback(trainer, PreemptionCallback)
    if cb is None or cb.preempted_at is None:
        return
    out = Path(trainer.args.output_dir)
    if rank() == 0:
        checkpoint = out / f"checkpoint-{cb.preempted_at}"
        atomic_write_json(
            out / PREEMPTED_FILE_NAME,
            {"step": cb.preempted_at, "checkpoint": str(checkpoint), "reason": cb.requested, "time": time.time()},
        )
        print(f"\npreempted ({cb.requested}) at step {cb.preempted_at}; resume from {checkpoint} (resume_from_checkpoint: auto)")
    sys.stdout.flush()
    sys.stderr.flush()
    release_trainer(trainer)  # the SystemExit's traceback keeps the trainer reachable: free its DDP module now
    shutdown_distributed(wait_for_peers=True)
    sys.exit(PREEMPTED_EXIT_CODE)
