"""Building a trainer never changes the user's recipe, and the saved ``recipe.yaml`` rebuilds the same trainer.

Why: ``mmfinereason eval OUTPUT`` and every resume read the ``recipe.yaml`` saved next to the model; a trainer that
wrote into ``recipe.train`` (the overlong penalty's weight appended to ``reward_weights``) made that file
unloadable and a second trainer from the same recipe object fail. One test per stage, built, not trained.
"""

from __future__ import annotations

import datasets
import pytest

from mmfinereason.recipe.loader import load_recipe

SMALL = ["model.name_or_path=tiny", "data.train.0.limit=16", "data.eval.0.limit=4", "eval.limit=4"]


@pytest.fixture(autouse=True)
def _isolated_hf_cache(tmp_path_factory, monkeypatch, tiny_dir):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path_factory.mktemp("hf_datasets_cache")))


def _build(recipe):
    if recipe.stage == "sft":
        from mmfinereason.pipelines.sft import build_sft

        return build_sft(recipe)
    from mmfinereason.pipelines.gspo import build_gspo

    return build_gspo(recipe)


def _summary(trainer) -> dict:
    """What makes two trainers "the same" for these tests: their arguments and, for GSPO, the rewards."""
    out = {"args": trainer.args.to_dict(), "type": type(trainer).__name__}
    if hasattr(trainer, "reward_func_names"):
        out["rewards"] = list(trainer.reward_func_names)
        out["weights"] = trainer.reward_weights.tolist()
    return out


@pytest.mark.parametrize(
    "stage, overrides",
    [
        ("sft", []),
        ("gspo", []),
        ("gspo", ["train.overlong_completions=penalty", "train.overlong_penalty_weight=0.5"]),
    ],
    ids=["sft", "gspo", "gspo-penalty"],
)
def test_recipe_unchanged_and_saved_recipe_rebuilds_the_same_trainer(tmp_path, stage, overrides):
    recipe = load_recipe(f"recipes/tiny/{stage}.yaml", [f"train.output_dir={tmp_path / 'out'}", *SMALL, *overrides])
    before = recipe.to_dict()
    first = _summary(_build(recipe))
    assert recipe.to_dict() == before, "building the trainer changed the user's recipe"
    second = _summary(_build(recipe))  # a second trainer from the same recipe object
    recipe.save(tmp_path / "recipe.yaml")
    reloaded = load_recipe(tmp_path / "recipe.yaml")
    assert reloaded.to_dict() == before
    third = _summary(_build(reloaded))
    assert first == second == third
    if "penalty" in str(overrides):
        assert first["rewards"][-1] == "length_penalty" and first["weights"] == pytest.approx([1.0, 0.1, 0.5])
        assert recipe.train.reward_weights == [1.0, 0.1]
