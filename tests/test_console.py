"""The compact console: one aligned line per log, transformers' dict printing gone, the full dict kept."""

from __future__ import annotations

import io
import re

import pytest
import torch

from mmfinereason.monitoring.console import ConsoleCallback, LineFormatter, install_console

SFT_LOG = {
    "loss": 0.8123, "grad_norm": 1.52, "learning_rate": 1.85e-3, "tokens_per_second": 1015.2, "padding_ratio": 0.02,
    "samples_dropped_overlong": 0.0, "entropy": 1.2, "mean_token_accuracy": 0.721, "num_tokens": 23250.0, "epoch": 1.4,
}
GSPO_LOG = {
    "loss": -7.87e-08, "grad_norm": 0.05, "learning_rate": 9.7e-05, "reward": 0.512, "reward_std": 0.3,
    "reward/toy_color": 0.8, "accuracy": 0.484, "accuracy/toy_color": 0.75, "format_rate": 0.95,
    "completions/mean_length": 61.0, "clip_ratio/region_mean": 0.0, "tokens_per_second": 412.0, "entropy": 0.4,
    "dynamic_sampling/frac_zero_variance_groups": 0.31, "epoch": 0.2,
}


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_one_short_aligned_line_per_training_log():
    clock = Clock()
    fmt = LineFormatter(clock)
    fmt.start(0, 80)
    lines = []
    for step in (5, 10, 15):
        clock.t += 3.0 * 5
        lines.append(fmt.format(GSPO_LOG, step))
    assert all("\n" not in line and len(line) < 100 for line in lines)
    first = lines[-1]
    assert first.startswith("step 15/80")
    assert "reward   0.512" in first and "acc  48.4%" in first and "lr 9.70e-05" in first
    assert "412 tok/s" in first and "3.00 s/step" in first
    assert re.search(r"ETA\s+3m15s$", first)  # 65 steps left x 3.0 s
    # aligned: the same columns start at the same offsets on every line
    for word in ("reward", "acc", "lr", "tok/s", "s/step", "ETA"):
        assert len({line.index(word) for line in lines}) == 1, (word, lines)


def test_sft_line_leads_with_loss_and_token_accuracy():
    fmt = LineFormatter(Clock())
    fmt.start(0, 76)
    line = fmt.format(SFT_LOG, 40)
    assert line.startswith("step 40/76  loss   0.8123  tok-acc  72.1%  lr 1.85e-03")
    assert "1,015 tok/s" in line


def test_a_part_with_a_learning_rate_of_its_own_is_shown_beside_the_language_models():
    fmt = LineFormatter(Clock())
    fmt.start(0, 80)
    line = fmt.format({**GSPO_LOG, "learning_rate/vision_tower": 3e-5, "learning_rate/merger": 3e-5}, 5)
    assert "lr 9.70e-05  vision lr 3.0e-05  merger lr 3.0e-05" in line
    assert "vision lr" not in fmt.format(GSPO_LOG, 10)


def test_tokens_per_second_from_num_tokens_when_not_logged():
    clock = Clock()
    fmt = LineFormatter(clock)
    fmt.start(0, 10)
    logs = {"loss": 1.0, "learning_rate": 1e-3, "num_tokens": 1000.0}
    fmt.format(logs, 1)
    clock.t += 2.0
    line = fmt.format({**logs, "num_tokens": 3000.0}, 2)
    assert "1,000 tok/s" in line


def test_eval_and_summary_lines():
    fmt = LineFormatter(Clock())
    fmt.start(0, 80)
    line = fmt.format({"eval_accuracy": 0.632, "eval_accuracy/toy_color": 0.84, "eval_accuracy/toy_count": 0.328}, 40)
    assert line == "step 40/80  held-out  63.2%  toy_color 84.0%  toy_count 32.8%"
    summary = fmt.format({"train_runtime": 312.4, "train_loss": 0.61, "train_samples_per_second": 3.0}, 80)
    assert summary == "done: 80 steps in 5m12s  mean loss 0.6100"


class _Args:
    disable_tqdm = True


class _State:
    is_world_process_zero = True
    global_step = 10
    max_steps = 20


def test_callback_prints_without_touching_the_dict():
    out = io.StringIO()
    cb = ConsoleCallback(bar=False, stream=out)
    cb.on_train_begin(_Args(), _State(), None)
    logs = dict(GSPO_LOG, total_flos=1e12)
    before = dict(logs)
    cb.on_log(_Args(), _State(), None, logs=logs)
    assert logs == before  # PrinterCallback pops total_flos; the trackers after us must see everything
    text = out.getvalue()
    assert text.count("\n") == 1 and text.startswith("step 10/20  reward") and "{" not in text


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Linear(2, 1)

    def forward(self, x, labels):
        return {"loss": ((self.w(x).squeeze(-1) - labels) ** 2).mean()}


@pytest.mark.parametrize("disable_tqdm", [False, True])
def test_trainer_prints_compact_lines_and_keeps_full_history(tmp_path, capsys, disable_tqdm):
    from transformers import Trainer, TrainingArguments
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    g = torch.Generator().manual_seed(0)
    data = [{"x": torch.randn(2, generator=g), "labels": torch.randn((), generator=g)} for _ in range(32)]
    args = TrainingArguments(
        output_dir=str(tmp_path), max_steps=6, logging_steps=2, per_device_train_batch_size=4, report_to="none",
        use_cpu=True, save_strategy="no", disable_tqdm=disable_tqdm, learning_rate=1e-2,
    )
    trainer = Trainer(model=_Tiny(), args=args, train_dataset=data)
    console = install_console(trainer)
    assert install_console(trainer) is console  # idempotent
    kinds = [type(cb) for cb in trainer.callback_handler.callbacks]
    assert ProgressCallback not in kinds and PrinterCallback not in kinds and ConsoleCallback in kinds
    trainer.train()
    printed = capsys.readouterr()
    text = printed.out + printed.err
    lines = [ln for ln in text.splitlines() if ln.startswith("step ")]
    assert [ln.split()[1] for ln in lines] == ["2/6", "4/6", "6/6"]
    assert "'grad_norm'" not in text and "{'loss'" not in text
    assert "done: 6 steps in" in text
    # the full dict still goes to the history (and so to every tracker callback)
    logged = [e for e in trainer.state.log_history if "loss" in e]
    assert len(logged) == 3 and all("grad_norm" in e and "learning_rate" in e for e in logged)
