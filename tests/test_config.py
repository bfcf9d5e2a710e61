"""Recipes: every shipped YAML loads; overrides, unknown keys and wrong types give errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmfinereason.recipe.loader import RecipeError, apply_override, load_recipe

RECIPES = sorted(Path(__file__).resolve().parents[1].glob("recipes/*/*.yaml"))


def test_recipes_are_shipped():
    names = {f"{p.parent.name}/{p.name}" for p in RECIPES}
    assert {"tiny/sft.yaml", "qwen3vl-2b/sft.yaml", "qwen3vl-4b/sft.yaml", "qwen3vl-8b/sft.yaml"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_recipe_loads_and_starts_with_its_command(path):
    recipe = load_recipe(path)
    assert recipe.stage in ("sft", "gspo")
    first = path.read_text().splitlines()[0]
    assert first.startswith("#") and f"mmfinereason {recipe.stage}" in first and path.name in first


def test_paper_hyperparameters_in_8b_sft_recipe():
    r = load_recipe("recipes/qwen3vl-8b/sft.yaml")
    assert r.train.learning_rate == 1e-5 and r.train.num_train_epochs == 3 and r.train.weight_decay == 0.0
    assert r.train.lr_scheduler_type.value == "cosine" and r.train.seed == 42
    assert r.data.max_length == 32768 and r.data.packing is True
    # max 768² as in the paper's config; min 256², the paper's effective minimum (HF processor default, issue 16)
    assert (r.data.min_pixels, r.data.max_pixels) == (65536, 589824)
    assert r.model.freeze_vision_tower and r.model.freeze_merger and not r.model.freeze_language_model
    assert r.train.per_device_train_batch_size * r.train.gradient_accumulation_steps * 8 == 32


def _write(tmp_path, text):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


def test_overrides_are_typed_and_dotted(tmp_path):
    path = _write(tmp_path, "stage: sft\ndata:\n  train:\n    - path: toy\ntrain:\n  output_dir: x\n")
    r = load_recipe(path, ["train.learning_rate=2e-5", "data.max_length=128", "model.freeze_merger=false",
                           "data.train.0.limit=7"])
    assert r.train.learning_rate == pytest.approx(2e-5) and isinstance(r.train.learning_rate, float)
    assert r.data.max_length == 128 and r.model.freeze_merger is False and r.data.train[0].limit == 7


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.learnig_rate=1e-5", "unknown key 'train.learnig_rate'; did you mean 'learning_rate'"),
        ("data.max_lenght=5", "unknown key 'data.max_lenght'; did you mean 'max_length'"),
        ("modle.dtype=float32", "unknown key 'modle'; did you mean 'model'"),
        ("data.max_length=long", "data.max_length: expected an integer, got 'long'"),
        ("model.freeze_merger=maybe", "model.freeze_merger: expected true or false"),
        ("train.learning_rate=fast", "train.learning_rate: expected a number"),
        ("data.train.3.limit=1", "sets no list at 'data.train'"),
        ("stage=rl", "stage must be one of"),
    ],
)
def test_bad_overrides_name_the_key(tmp_path, override, message):
    path = _write(tmp_path, "stage: sft\ntrain:\n  output_dir: x\n")
    with pytest.raises(RecipeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_recipe(path, [override])


def test_bad_recipe_files(tmp_path):
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "missing.yaml")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(_write(tmp_path, "stage: [sft\n"))
    with pytest.raises(RecipeError, match="must be a mapping"):
        load_recipe(_write(tmp_path, "- a\n- b\n"))
    with pytest.raises(RecipeError, match="key=value"):
        apply_override({}, "train.learning_rate")
    with pytest.raises(RecipeError, match="data.train\\[0\\]|data.train.0|source"):
        load_recipe(_write(tmp_path, "data:\n  train:\n    - path: toy\n      wieght: 2\n"))
    with pytest.raises(RecipeError, match="data.packing"):
        load_recipe(_write(tmp_path, "train:\n  packing: true\n"))


def test_resolved_recipe_round_trips(tmp_path):
    r = load_recipe("recipes/tiny/sft.yaml", ["train.output_dir=" + str(tmp_path / "out")])
    r.save(tmp_path / "resolved.yaml")
    again = load_recipe(tmp_path / "resolved.yaml")
    assert again.to_dict() == r.to_dict()
