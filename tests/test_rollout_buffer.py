"""Resume inside a rollout batch (several policy updates per batch) ends where the uninterrupted run ends.

TRL regenerates an unfinished rollout batch on resume; mmfinereason/trainers/rollout_buffer.py saves it with the
checkpoint instead. Checked on the tiny model with 2 updates per rollout batch, a checkpoint after every update,
and a reward every random model earns (length); without the saved batch the same resume ends elsewhere.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mmfinereason.pipelines.gspo import run_gspo
from mmfinereason.recipe.loader import load_recipe
from mmfinereason.trainers import rollout_buffer
from mmfinereason.trainers.rollout_buffer import buffer_file


def _run(out: Path) -> dict:
    run_gspo(load_recipe("recipes/tiny/gspo.yaml", [
        "model.name_or_path=tiny", f"train.output_dir={out}", "train.use_cpu=true", "train.max_steps=4",
        "train.save_strategy=steps", "train.save_steps=1", "train.per_device_train_batch_size=8",
        "train.num_generations=4", "train.max_completion_length=24", "train.steps_per_generation=2",
        "train.learning_rate=1e-3", "train.warmup_steps=0", "train.logging_steps=1", "data.train=[{path: toy, split: rl, limit: 32}]",
        "data.eval=[]", "eval.before_training=false", "eval.after_training=false",
        "train.reward_funcs=[tests.test_gspo:length_reward]", "train.reward_weights=[1.0]",
    ]))
    return load_file(out / "model.safetensors")


def _max_diff(a: dict, b: dict) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.mark.slow
def test_resume_inside_a_rollout_batch_matches_an_uninterrupted_run(tmp_path, tiny_dir, monkeypatch, caplog):
    reference = _run(tmp_path / "ref")
    checkpoints = sorted((tmp_path / "ref").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    inside = [p.name for p in checkpoints if buffer_file(p, 0).is_file()]
    assert inside == ["checkpoint-1", "checkpoint-3"]  # the boundaries (2, 4) carry no batch

    for name in ("checkpoint-1", "checkpoint-3"):
        shutil.copytree(tmp_path / "ref" / name, tmp_path / name / name)
        diff = _max_diff(reference, _run(tmp_path / name))
        assert diff <= 1e-6, f"resumed from {name}: weights {diff} from the uninterrupted run"

    # Written by another number of processes: every rank regenerates the batch (a rank that alone skipped
    # generation would hang the others in its collectives), with a warning.
    shutil.copytree(tmp_path / "ref" / "checkpoint-1", tmp_path / "other-world" / "checkpoint-1")
    saved = torch.load(buffer_file(tmp_path / "other-world" / "checkpoint-1", 0), weights_only=False)
    saved["world_size"] = 2
    torch.save(saved, buffer_file(tmp_path / "other-world" / "checkpoint-1", 0))  # same size: the marker still holds
    with caplog.at_level(logging.WARNING, logger="mmfinereason.trainers.rollout_buffer"):
        regenerated = _run(tmp_path / "other-world")
    assert "written by 2 processes, resuming on 1" in caplog.text
    assert _max_diff(reference, regenerated) > 1e-6

    # What TRL alone does: the saved batch is not read, the rest of it is regenerated. (Deleting the file instead
    # would make the checkpoint incomplete, and the run would start over.)
    monkeypatch.setattr(rollout_buffer, "buffer_file", lambda folder, rank: Path(folder) / "not-saved.pt")
    shutil.copytree(tmp_path / "ref" / "checkpoint-1", tmp_path / "trl" / "checkpoint-1")
    diff = _max_diff(reference, _run(tmp_path / "trl"))
    assert diff > 1e-6, "regenerating the batch changed nothing: the comparisons above prove nothing"
