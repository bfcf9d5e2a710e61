"""Watching a run: the compact console line, the live log history and training curves as pictures.

* :func:`attach_monitoring` — what both trainers add to themselves: :class:`ConsoleCallback` (one aligned line
  per logging step instead of transformers' dict) and :class:`LogHistoryCallback` (every logged dict appended to
  ``OUTPUT_DIR/log_history.jsonl`` as it is logged).
* :func:`plot_runs` / :func:`write_run_curves` — ``curves.png`` + ``curves.svg`` from one or several run dirs
  (``mmfinereason plot RUN_DIR…``); :func:`read_log_history` for your own plots.

Light imports only (transformers' callback module); matplotlib loads when a picture is drawn.
"""

from __future__ import annotations

from .console import ConsoleCallback, LineFormatter, install_console
from .curves import load_run, plot_runs, write_run_curves
from .history import LOG_HISTORY_FILE, LogHistoryCallback, append_log_entry, read_log_history

__all__ = [
    "ConsoleCallback",
    "LineFormatter",
    "LOG_HISTORY_FILE",
    "LogHistoryCallback",
    "append_log_entry",
    "attach_monitoring",
    "install_console",
    "load_run",
    "plot_runs",
    "read_log_history",
    "write_run_curves",
]


def attach_monitoring(trainer) -> None:
    """The compact console and the live ``log_history.jsonl`` on a Trainer (idempotent)."""
    install_console(trainer)
    if not any(isinstance(cb, LogHistoryCallback) for cb in trainer.callback_handler.callbacks):
        trainer.add_callback(LogHistoryCallback())
