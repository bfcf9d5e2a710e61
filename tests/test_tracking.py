"""A CLI run watched the local way: compact console, log_history.jsonl, curves.png at the end, and
``train.report_to`` trackio / tensorboard writing offline (no account, no network)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FAST = [
    "train.max_steps=4",
    "train.logging_steps=2",
    "train.per_device_train_batch_size=4",
    "data.train.0.limit=16",
    "eval.before_training=false",
    "eval.after_training=false",
    "eval.every_n_steps=2",  # on the logging steps: the training log of those steps must survive
    "eval.during_training_limit=4",
    "eval.max_new_tokens=8",
]


def _trackers() -> list[str]:
    found = []
    for module, name in (("trackio", "trackio"), ("tensorboard", "tensorboard")):
        try:
            __import__(module)
            found.append(name)
        except ImportError:
            pass
    return found


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_cli_run_writes_curves_history_and_local_trackers(tmp_path, tiny_dir):
    trackers = _trackers()
    if not trackers:
        pytest.skip("neither trackio nor tensorboard installed (pip install -e '.[dev]')")
    out = tmp_path / "run"
    env = dict(os.environ, TRACKIO_DIR=str(tmp_path / "trackio"), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               MMFINEREASON_CACHE=str(Path(tiny_dir).parent), HF_DATASETS_CACHE=str(tmp_path / "hf-datasets"))
    report_to = "[" + ",".join(trackers) + "]"
    cmd = [sys.executable, "-m", "mmfinereason", "sft", str(ROOT / "recipes" / "tiny" / "sft.yaml"), *FAST,
           f"train.output_dir={out}", f"train.report_to={report_to}"]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=850)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-4000:]

    # the console: one compact line per logging step, never transformers' dict
    lines = [ln.strip() for ln in text.replace("\r", "\n").splitlines()]
    assert [ln.split()[1] for ln in lines if ln.startswith("step ") and " loss " in ln] == ["2/4", "4/4"], text[-4000:]
    assert [ln.split()[1] for ln in lines if ln.startswith("step ") and "held-out" in ln] == ["2/4", "4/4"]
    assert "{'loss'" not in text and "'grad_norm'" not in text

    # the full dicts on disk, and the picture
    history = [json.loads(ln) for ln in (out / "log_history.jsonl").read_text().splitlines()]
    logged = [e for e in history if "loss" in e]
    assert [e["step"] for e in logged] == [2, 4] and all("grad_norm" in e and "padding_ratio" in e for e in logged)
    assert [e["step"] for e in history if "eval_accuracy" in e] == [2, 4]
    assert (out / "curves.png").stat().st_size > 10_000 and (out / "curves.svg").is_file()
    assert str(out / "curves.png") in text  # the run says where its curves are

    if "trackio" in trackers:
        code = (
            "from trackio.sqlite_storage import SQLiteStorage as S; import json; "
            "runs = S.get_runs('mmfinereason'); "
            "print(json.dumps([e.get('train/loss') for r in runs for e in S.get_logs('mmfinereason', r)]))"
        )
        read = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert read.returncode == 0, read.stderr
        losses = [v for v in json.loads(read.stdout.strip().splitlines()[-1]) if v is not None]
        assert len(losses) == 2, read.stdout
    if "tensorboard" in trackers:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        [log_dir] = {p.parent for p in (out / "runs").glob("*/events.out.tfevents.*")}
        events = EventAccumulator(str(log_dir))
        events.Reload()
        assert len(events.Scalars("train/loss")) == 2
        assert "train/tokens_per_second" in events.Tags()["scalars"]
