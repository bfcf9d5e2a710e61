"""The console: one compact, aligned line per logging step instead of transformers' 40-key dict.

transformers prints every log dict whole (``ProgressCallback.on_log`` writes ``str(logs)`` under the tqdm bar,
``PrinterCallback`` prints it when tqdm is off, ``NotebookProgressCallback`` tabulates it in Jupyter). A GSPO
step logs ~40 keys; what a person watches is a handful::

    step   40/1125  loss   0.8123  tok-acc  72.1%  lr 1.85e-03   1,015 tok/s    0.28 s/step  ETA    5m04s
    step   60/1125  held-out  63.2%  toy_color 84.0%  toy_compare 78.4%  toy_count 32.8%  toy_shape 57.6%
    step 15/80  reward   0.512  acc  48.4%  lr 9.70e-05     412 tok/s    3.10 s/step  ETA    3m22s

:class:`ConsoleCallback` replaces those callbacks' printing (:func:`install_console` swaps it in; the tqdm bar
stays). Only what is printed changes: the full dict still reaches ``trainer.state.log_history``,
``RUN_DIR/log_history.jsonl`` and the trackers (wandb / trackio / tensorboard), which are other callbacks.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable

from transformers.trainer_callback import PrinterCallback, ProgressCallback

# the number a line leads with, by stage: SFT's loss, GSPO's reward (its loss is ~0 by construction)
ACCURACY_KEYS = {"accuracy": "acc", "mean_token_accuracy": "tok-acc"}  # GSPO rollouts / SFT teacher-forced tokens
EVAL_PREFIX = "eval_accuracy"
SUMMARY_KEYS = ("train_runtime", "train_loss")


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


class LineFormatter:
    """Turns one log dict into one line; keeps the timing state (step time, ETA) between calls.

    ``start(step, max_steps)`` at train begin, then ``format(logs, step)`` per log; ``clock`` is injectable for tests.
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.start(0, 0)

    def start(self, step: int, max_steps: int) -> None:
        now = self.clock()
        self.max_steps = max_steps
        self.last_step, self.last_time = step, now
        self.last_tokens: tuple[float, float] | None = None  # (num_tokens, time) when the trainer logs no tok/s
        self.pace: float | None = None  # seconds per step, smoothed over logging windows (for the ETA)

    def _step(self, step: int) -> str:
        width = len(str(self.max_steps or step))
        total = f"/{self.max_steps}" if self.max_steps else ""
        return f"step {step:>{width}}{total}"

    def format(self, logs: dict[str, Any], step: int) -> str | None:
        """The line for this log dict, or None for nothing worth a line."""
        if "loss" in logs or "reward" in logs:
            return self._train_line(logs, step)
        if EVAL_PREFIX in logs:
            return self._eval_line(logs, step)
        if any(k in logs for k in SUMMARY_KEYS):
            return self._summary_line(logs, step)
        return self._other_line(logs, step)

    def _train_line(self, logs: dict[str, Any], step: int) -> str:
        now = self.clock()
        parts = [self._step(step)]
        if "reward" in logs:
            parts.append(f"reward {_number(logs['reward']):>7.3f}")
        else:
            parts.append(f"loss {_number(logs['loss']):>8.4f}")
        key = next((k for k in ACCURACY_KEYS if _number(logs.get(k)) is not None), None)
        if key is not None:  # "acc": correct rollouts (GSPO); "tok-acc": teacher-forced next tokens (SFT)
            parts.append(f"{ACCURACY_KEYS[key]} {100 * _number(logs[key]):>5.1f}%")
        lr = _number(logs.get("learning_rate"))
        parts.append(f"lr {lr:.2e}" if lr is not None else f"lr {'-':>8}")
        for part in ("vision_tower", "merger"):  # a part at a rate of its own (trainers/part_lr.py)
            part_lr = _number(logs.get(f"learning_rate/{part}"))
            if part_lr is not None:
                parts.append(f"{part.split('_')[0]} lr {part_lr:.1e}")
        tps = _number(logs.get("tokens_per_second"))
        tokens = _number(logs.get("num_tokens"))
        if tps is None and tokens is not None and self.last_tokens is not None:
            seen, since = self.last_tokens
            tps = (tokens - seen) / max(now - since, 1e-9)
        if tokens is not None:
            self.last_tokens = (tokens, now)
        parts.append(f"{tps:>6,.0f} tok/s" if tps is not None else f"{'-':>6} tok/s")
        steps = step - self.last_step
        step_time = (now - self.last_time) / steps if steps > 0 else _number(logs.get("step_time"))
        parts.append(f"{step_time:>6.2f} s/step" if step_time is not None else f"{'-':>6} s/step")
        if steps > 0:  # recent windows count most: a slow start or a busy machine fades out of the ETA
            self.pace = step_time if self.pace is None else 0.7 * self.pace + 0.3 * step_time
        if self.max_steps and self.pace is not None:
            parts.append(f"ETA {_duration(self.pace * max(self.max_steps - step, 0)):>8}")
        self.last_step, self.last_time = step, now
        return "  ".join(parts)

    def _eval_line(self, logs: dict[str, Any], step: int) -> str:
        per_source = [
            f"{k[len(EVAL_PREFIX) + 1:]} {100 * _number(v):.1f}%"
            for k, v in sorted(logs.items())
            if k.startswith(EVAL_PREFIX + "/") and _number(v) is not None
        ]
        head = f"{self._step(step)}  held-out {100 * _number(logs[EVAL_PREFIX]):>5.1f}%"
        return "  ".join([head, *per_source])

    def _summary_line(self, logs: dict[str, Any], step: int) -> str:
        parts = [f"done: {step} steps"]
        if "train_runtime" in logs:
            parts[0] += f" in {_duration(_number(logs['train_runtime']) or 0)}"
        if _number(logs.get("train_loss")) is not None:
            parts.append(f"mean loss {_number(logs['train_loss']):.4f}")
        return "  ".join(parts)

    def _other_line(self, logs: dict[str, Any], step: int) -> str | None:
        shown = [(k, _number(v)) for k, v in logs.items() if k not in ("epoch", "total_flos") and _number(v) is not None]
        if not shown:
            return None
        cells = [f"{k} {v:.4g}" for k, v in shown[:6]]
        more = f"  (+{len(shown) - 6} more)" if len(shown) > 6 else ""
        return "  ".join([self._step(step), *cells]) + more


class ConsoleCallback(ProgressCallback):
    """transformers' progress bar, with one compact line per log instead of the dict (main process only).

    ``bar=False`` (``disable_tqdm``) prints the lines without a bar, as ``PrinterCallback`` would print dicts.
    """

    def __init__(self, bar: bool = True, stream=None, formatter: LineFormatter | None = None) -> None:
        super().__init__()
        self.bar = bar
        self.stream = stream
        self.formatter = formatter or LineFormatter()

    def on_train_begin(self, args, state, control, **kwargs):
        if self.bar:
            super().on_train_begin(args, state, control, **kwargs)
        self.formatter.start(state.global_step, state.max_steps)

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar and self.training_bar is not None:
            super().on_step_end(args, state, control, **kwargs)

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        if self.bar:
            super().on_prediction_step(args, state, control, eval_dataloader=eval_dataloader, **kwargs)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        line = self.formatter.format(logs, state.global_step)  # reads logs, never changes them
        if line is None:
            return
        if self.bar and self.training_bar is not None:
            self.training_bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream or sys.stdout, flush=True)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar and self.training_bar is not None:
            super().on_train_end(args, state, control, **kwargs)


def _printing_callbacks() -> tuple[type, ...]:
    classes: list[type] = [ProgressCallback, PrinterCallback]
    try:
        from transformers.utils.notebook import NotebookProgressCallback

        classes.append(NotebookProgressCallback)
    except ImportError:  # no IPython
        pass
    return tuple(classes)


def install_console(trainer, **kwargs) -> ConsoleCallback:
    """Swap the trainer's printing callbacks (progress bar + dict, dict printer, notebook table) for one
    :class:`ConsoleCallback`; returns it. Idempotent."""
    handler = trainer.callback_handler
    for cb in list(handler.callbacks):
        if isinstance(cb, ConsoleCallback):
            return cb
    for cb in list(handler.callbacks):
        if isinstance(cb, _printing_callbacks()):
            handler.remove_callback(cb)
    console = ConsoleCallback(bar=not trainer.args.disable_tqdm, **kwargs)
    trainer.add_callback(console)
    return console
