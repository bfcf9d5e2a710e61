"""`mmfinereason demo`: SFT then GSPO on the shipped tiny recipes, shrunk here to seconds by overrides."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest

from mmfinereason.recipe.loader import RecipeError, load_recipe
from mmfinereason.pipelines.demo import find_recipe, run_demo

SFT_FAST = [
    "train.max_steps=2",
    "train.per_device_train_batch_size=4",
    "data.train.0.limit=16",
    "eval.limit=4",
    "eval.max_new_tokens=12",
    "eval.batch_size=4",
]
GSPO_FAST = [
    "train.max_steps=1",
    "train.num_generations=2",
    "train.per_device_train_batch_size=4",
    "train.max_completion_length=8",
    "data.train=[{path: toy, split: rl, limit: 8}]",  # one source instead of the recipe's four weighted ones
]


@pytest.fixture(autouse=True)
def _isolated_hf_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path_factory.mktemp("hf_datasets_cache")))


def test_shipped_tiny_recipes_are_found_and_chained():
    sft, gspo = load_recipe(find_recipe("tiny/sft.yaml")), load_recipe(find_recipe("tiny/gspo.yaml"))
    assert (sft.stage, gspo.stage) == ("sft", "gspo")
    assert gspo.model.name_or_path == sft.train.output_dir  # stage 2 starts from stage 1's output
    assert gspo.data.train[0].split == "rl" and sft.data.eval == gspo.data.eval


def test_find_recipe_errors_name_the_places(monkeypatch, tmp_path):
    monkeypatch.setenv("MMFINEREASON_RECIPES", str(tmp_path))
    with pytest.raises(RecipeError, match="MMFINEREASON_RECIPES"):
        find_recipe("tiny/nope.yaml")
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "sft.yaml").write_text("stage: sft\n")
    assert find_recipe("tiny/sft.yaml") == tmp_path / "tiny" / "sft.yaml"


def test_demo_runs_both_stages_and_reports_three_accuracies(tmp_path, tiny_dir, capsys):
    result = run_demo(tmp_path / "demo", sft_overrides=SFT_FAST, gspo_overrides=GSPO_FAST)
    for report in (result.untrained, result.after_sft, result.after_gspo):
        assert len(report.predictions) == 4
    # the same held-out items at every stage
    ids = [sorted(p.id for p in r.predictions) for r in (result.untrained, result.after_sft, result.after_gspo)]
    assert ids[0] == ids[1] == ids[2]
    for folder in (result.sft_dir, result.gspo_dir):
        assert (Path(folder) / "model.safetensors").is_file() and (Path(folder) / "recipe.yaml").is_file()
    assert load_recipe(Path(result.gspo_dir) / "recipe.yaml").model.name_or_path == result.sft_dir
    out = capsys.readouterr().out
    assert "untrained" in out and "after SFT" in out and "after GSPO" in out
    assert "reasoning ceiling" in out  # toy held-out items: what GSPO added against what reasoning could add
    # item by item: the change GSPO made, with its interval over the items
    from mmfinereason.evaluation.paired import paired_difference

    assert "GSPO vs SFT, item by item" in out
    change = paired_difference(result.after_sft.predictions, result.after_gspo.predictions)
    assert change.n == 4 and change.difference == result.after_gspo.accuracy - result.after_sft.accuracy
    assert result.sft_dir in out and result.gspo_dir in out
