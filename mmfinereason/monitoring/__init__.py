"""Watching a run: the compact console line, the live log history and training curves as pictures.

* :func:`attach_monitoring` — what both trainers add to themselves: :class:`ConsoleCallback` (one aligned line
  per logging step instead of transformers' dict) and :class:`LogHistoryCallback` (every logged dict appended to
  ``OUTPUT_DIR/log_history.jsonl`` as it is logged).
* :func:`plot_runs` / :func:`write_run_curves` — ``curves.png`` + ``curves.svg`` from one or several run dirs
  (``mmfinereason plot RUN_DIR…``); :func:`read_log_history` for your own plots.

Names load on first use: reading and plotting a history imports neither transformers nor torch, and matplotlib
only when a picture is drawn.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "ConsoleCallback": "console",
    "LineFormatter": "console",
    "install_console": "console",
    "LogHistoryCallback": "callbacks",
    "attach_monitoring": "callbacks",
    "LOG_HISTORY_FILE": "history",
    "append_log_entry": "history",
    "read_log_history": "history",
    "load_run": "curves",
    "plot_runs": "curves",
    "write_run_curves": "curves",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
