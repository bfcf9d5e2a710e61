"""The callbacks both trainers attach to themselves (:func:`attach_monitoring`): the compact console and the live
log history. Trackers (``train.report_to``) are transformers' own callbacks and see the same full dicts."""

from __future__ import annotations

import time
from pathlib import Path

from transformers import TrainerCallback

from mmfinereason.monitoring.console import install_console
from mmfinereason.monitoring.history import TRAIN_BEGIN, append_log_entry


class LogHistoryCallback(TrainerCallback):
    """Appends every logged dict, with its ``step`` and wall ``time``, to ``OUTPUT_DIR/log_history.jsonl``.

    Main process only. ``run_dir`` defaults to the trainer's ``output_dir``.

    >>> trainer.add_callback(LogHistoryCallback())  # doctest: +SKIP
    """

    def __init__(self, run_dir: str | Path | None = None) -> None:
        self.run_dir = run_dir

    def _dir(self, args) -> Path:
        return Path(self.run_dir or args.output_dir)

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            append_log_entry(
                self._dir(args),
                {"event": TRAIN_BEGIN, "step": state.global_step, "max_steps": state.max_steps, "time": time.time()},
            )

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            append_log_entry(self._dir(args), {**logs, "step": state.global_step, "time": time.time()})


def attach_monitoring(trainer) -> None:
    """The compact console line and the live ``OUTPUT_DIR/log_history.jsonl`` on a Trainer (idempotent).

    To get transformers' dict printing back: ``trainer.remove_callback(ConsoleCallback)`` then
    ``trainer.add_callback(transformers.trainer_callback.ProgressCallback)``.
    """
    install_console(trainer)
    if not any(isinstance(cb, LogHistoryCallback) for cb in trainer.callback_handler.callbacks):
        trainer.add_callback(LogHistoryCallback())
