"""``resume_from_checkpoint: auto`` resumes only a run with the same training settings (runtime/same_run.py)."""

from __future__ import annotations

import datasets
import pytest

from mmfinereason.recipe.loader import load_recipe, read_yaml
from mmfinereason.runtime.checkpoints import write_marker
from mmfinereason.runtime.same_run import ResumeMismatchError, check_same_run, recipe_differences

TINY_SFT = "recipes/tiny/sft.yaml"


def _checkpoint(tmp_path, overrides=()):
    """A complete checkpoint folder holding the recipe.yaml the run with ``overrides`` would have saved."""
    folder = tmp_path / "out" / "checkpoint-4"
    folder.mkdir(parents=True)
    load_recipe(TINY_SFT, [f"train.output_dir={tmp_path / 'out'}", *overrides]).save(folder / "recipe.yaml")
    (folder / "trainer_state.json").write_text("{}")
    write_marker(folder, 4)
    return folder


def test_same_settings_and_bookkeeping_changes_resume(tmp_path):
    folder = _checkpoint(tmp_path)
    current = load_recipe(
        TINY_SFT,
        [f"train.output_dir={tmp_path / 'out'}", "train.logging_steps=1", "train.save_strategy=steps",
         "train.dataloader_num_workers=2", "eval.limit=10", "data.eval.0.limit=10", "train.num_train_epochs=4"],
    )
    check_same_run(folder, current)  # no error
    saved = read_yaml((folder / "recipe.yaml").read_text())
    assert recipe_differences(saved, current) == ([], ["train.num_train_epochs"])


@pytest.mark.parametrize(
    "override, key",
    [
        ("train.learning_rate=1e-3", "train.learning_rate"),
        ("train.weight_decay=0.1", "train.weight_decay"),  # set by the recipe
        ("train.adam_beta2=0.95", "train.adam_beta2"),  # set by neither before: the default is compared
        ("data.max_pixels=50176", "data.max_pixels"),
        ("data.train.0.limit=100", "data.train.0.limit"),
        ("model.freeze_merger=true", "model.freeze_merger"),
    ],
)
def test_other_settings_stop_with_the_keys_and_the_ways_out(tmp_path, override, key):
    folder = _checkpoint(tmp_path)
    current = load_recipe(TINY_SFT, [f"train.output_dir={tmp_path / 'out'}", override])
    with pytest.raises(ResumeMismatchError) as info:
        check_same_run(folder, current)
    message = str(info.value)
    assert key in message and "train.output_dir" in message and "train.resume_from_checkpoint=null" in message
    assert len(message.splitlines()) <= 2
    check_same_run(folder, current, explicit=True)  # a checkpoint named by path: only a warning


def test_checkpoint_without_recipe_or_trainer_without_recipe_is_not_refused(tmp_path):
    folder = _checkpoint(tmp_path)
    check_same_run(folder, None)
    (folder / "recipe.yaml").unlink()
    check_same_run(folder, load_recipe(TINY_SFT, ["train.learning_rate=1"]))


def test_rerun_of_a_finished_sft_with_another_learning_rate_stops_before_training(tmp_path, tiny_dir, capsys, monkeypatch):
    """The issue's done-when check, through the CLI."""
    from mmfinereason.cli.main import main
    from mmfinereason.pipelines.sft import run_sft

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_datasets_cache"))
    out = tmp_path / "tiny-sft"
    args = [
        "sft", TINY_SFT, f"train.output_dir={out}", "data.train.0.limit=48", "data.eval.0.limit=4", "eval.limit=4",
        "eval.before_training=false", "eval.after_training=false", "train.num_train_epochs=1",
        "train.save_strategy=steps", "train.save_steps=2", "train.logging_steps=1",
    ]
    run_sft(load_recipe(TINY_SFT, args[2:]))
    checkpoints = sorted(out.glob("checkpoint-*"))
    assert checkpoints
    run_sft(load_recipe(TINY_SFT, [*args[2:-1], "train.logging_steps=5"]))  # the same run (bookkeeping changed)
    assert sorted(out.glob("checkpoint-*")) == checkpoints  # resumed at its end: nothing more trained or saved
    capsys.readouterr()
    # main() last: it shuts the process's distributed state down when it returns
    assert main([*args, "train.learning_rate=1e-3"]) == 2
    err = capsys.readouterr().err
    assert "train.learning_rate" in err and "train.resume_from_checkpoint=null" in err and "Traceback" not in err
