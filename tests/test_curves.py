"""Training curves: log history read back from a run dir (live jsonl, resumes, checkpoints), PNG + SVG drawn."""

from __future__ import annotations

import json
import math

import pytest

from mmfinereason.monitoring.curves import PANELS, load_run, plot_runs, write_run_curves
from mmfinereason.monitoring.callbacks import LogHistoryCallback
from mmfinereason.monitoring.history import LOG_HISTORY_FILE, append_log_entry, read_log_history, stage_of

pytest.importorskip("matplotlib")

SOURCES = ("toy_color", "toy_compare", "toy_count", "toy_shape")


def sft_history(steps=40, every=5):
    out = []
    for s in range(every, steps + 1, every):
        out.append({"loss": 4.0 * math.exp(-s / 15) + 0.3, "grad_norm": 2.0 / (1 + s / 10), "learning_rate": 2e-3 * (1 - s / steps),
                    "tokens_per_second": 900.0 + s, "padding_ratio": 0.01, "mean_token_accuracy": 0.4 + s / 100, "step": s})
    for s in (20, 40):
        out.append({"eval_accuracy": s / 60, **{f"eval_accuracy/{src}": s / 60 + i / 20 for i, src in enumerate(SOURCES)}, "step": s})
    out.append({"train_runtime": 300.0, "train_loss": 1.0, "step": steps})
    return out


def gspo_history(steps=20, shift=0.0):
    out = []
    for s in range(1, steps + 1):
        e = {"loss": 1e-8, "reward": 0.5 + s / 50 + shift, "accuracy": 0.45 + s / 60, "format_rate": 0.9,
             "completions/mean_length": 60.0 - s, "completions/max_length": 96.0, "completions/clipped_ratio": 0.05,
             "dynamic_sampling/frac_zero_variance_groups": 0.3, "dynamic_sampling/frac_filtered": 0.1,
             "clip_ratio/region_mean": 0.001 * s, "clip_ratio/low_mean": 0.0, "clip_ratio/high_mean": 0.001 * s,
             "entropy": 0.5, "learning_rate": 1e-4, "tokens_per_second": 400.0, "step": s}
        for i, src in enumerate(SOURCES):
            e[f"reward/{src}"] = 0.3 + i / 10 + s / 50
            e[f"accuracy/{src}"] = 0.25 + i / 10 + s / 60
        out.append(e)
    out.append({"eval_accuracy": 0.7, **{f"eval_accuracy/{src}": 0.6 + i / 20 for i, src in enumerate(SOURCES)}, "step": steps})
    return out


def make_run(path, stage, history):
    path.mkdir(parents=True)
    (path / "recipe.yaml").write_text(f"stage: {stage}\n")
    for e in history:
        append_log_entry(path, e)
    return path


def test_jsonl_history_drops_what_a_resumed_run_trained_again(tmp_path):
    run = tmp_path / "run"
    for e in [{"event": "train_begin", "step": 0}, {"loss": 3.0, "step": 10}, {"loss": 2.0, "step": 20},
              {"loss": 1.9, "step": 30}, {"event": "train_begin", "step": 20}, {"loss": 1.8, "step": 30},
              {"loss": 1.5, "step": 40}]:
        append_log_entry(run, e)
    with (run / LOG_HISTORY_FILE).open("a") as f:
        f.write('{"loss": 1.4, "st')  # a line cut short by a kill
    assert [(e["step"], e["loss"]) for e in read_log_history(run)] == [(10, 3.0), (20, 2.0), (30, 1.8), (40, 1.5)]


def test_history_falls_back_to_the_newest_checkpoint(tmp_path):
    run = tmp_path / "run"
    for step in (10, 2):
        (run / f"checkpoint-{step}").mkdir(parents=True)
        state = {"global_step": step, "log_history": [{"loss": float(s), "step": s} for s in range(1, step + 1)]}
        (run / f"checkpoint-{step}" / "trainer_state.json").write_text(json.dumps(state))
    assert len(read_log_history(run)) == 10
    assert stage_of(run) == "sft"
    with pytest.raises(FileNotFoundError, match="log_history.jsonl"):
        read_log_history(tmp_path)


def test_callback_writes_every_log_with_its_step(tmp_path):
    class Args:
        output_dir = str(tmp_path)

    class State:
        is_world_process_zero = True
        global_step = 0
        max_steps = 4

    cb = LogHistoryCallback()
    cb.on_train_begin(Args(), State(), None)
    State.global_step = 2
    cb.on_log(Args(), State(), None, logs={"loss": 1.5, "grad_norm": float("nan")})
    [entry] = read_log_history(tmp_path)
    assert entry["loss"] == 1.5 and entry["step"] == 2 and entry["grad_norm"] is None and "time" in entry


def _svg_text(path):
    return path.with_suffix(".svg").read_text()


def test_sft_run_gets_its_panels(tmp_path):
    run = make_run(tmp_path / "sft", "sft", sft_history())
    png, svg = write_run_curves(run)
    assert png == run / "curves.png" and svg == run / "curves.svg"
    from PIL import Image

    with Image.open(png) as im:
        assert im.width >= 1000 and im.height >= 500
    text = _svg_text(png)
    for title in ("training loss", "learning rate", "gradient norm", "throughput", "padding", "held-out accuracy"):
        assert title in text, title
    assert "reward" not in text  # no GSPO panel for an SFT run
    assert all(src in text for src in SOURCES)  # per-source lines carry their names in the legend
    assert "optimizer step" in text


def test_demo_pair_and_overlay(tmp_path):
    sft = make_run(tmp_path / "demo" / "sft", "sft", sft_history())
    gspo = make_run(tmp_path / "demo" / "gspo", "gspo", gspo_history())
    written = plot_runs([sft, gspo])
    assert set(written) == {str(sft), str(gspo), "combined"}
    assert written["combined"][0] == (tmp_path / "demo" / "curves.png").resolve()
    assert all(p.is_file() for paths in written.values() for p in paths)
    text = _svg_text(written["combined"][0])
    assert "SFT" in text and "GSPO" in text
    gspo_titles = [p.title for p in PANELS["gspo"]]
    for title in ("reward", "rollout accuracy", "format rate", "completion length", "clipped completions",
                  "prompt groups", "clip ratios", "entropy"):
        assert title in gspo_titles and title in _svg_text(written[str(gspo)][0]), title

    # two GSPO runs overlay in one section, told apart by a run legend
    other = make_run(tmp_path / "seed1" / "gspo", "gspo", gspo_history(shift=0.1))
    out = tmp_path / "compare.png"
    written = plot_runs([gspo, other], out, labels=["seed 42", "seed 1"], each=False)
    assert list(written) == ["combined"] and written["combined"][0] == out
    text = _svg_text(out)
    assert "seed 42" in text and "seed 1" in text


def test_stage_from_keys_without_recipe(tmp_path):
    run = tmp_path / "g"
    for e in gspo_history(3):
        append_log_entry(run, e)
    assert load_run(run).stage == "gspo"


def test_nothing_to_plot_is_a_clear_error(tmp_path):
    run = tmp_path / "empty"
    append_log_entry(run, {"foo": 1.0, "step": 1})
    with pytest.raises(ValueError, match="no known metric"):
        write_run_curves(run)


def test_plot_command(tmp_path, capsys):
    from mmfinereason.cli.main import main

    sft = make_run(tmp_path / "demo" / "sft", "sft", sft_history())
    gspo = make_run(tmp_path / "demo" / "gspo", "gspo", gspo_history())
    assert main(["plot", str(sft), str(gspo), "--output", str(tmp_path / "docs" / "demo-curves.png")]) == 0
    out = capsys.readouterr().out
    for path in (sft / "curves.png", gspo / "curves.png", tmp_path / "docs" / "demo-curves.png",
                 tmp_path / "docs" / "demo-curves.svg"):
        assert path.is_file() and str(path) in out, path


def test_plot_command_names_a_run_dir_without_history(tmp_path, capsys):
    from mmfinereason.cli.main import main

    (tmp_path / "nothing").mkdir()
    assert main(["plot", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert "no log history in" in err and str(tmp_path / "nothing") in err
