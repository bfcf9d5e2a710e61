"""Smaller real-checkpoint items of issue 16 (item 11, part): eval image budget, data.caption_in_prompt."""

from __future__ import annotations

from types import SimpleNamespace

from mmfinereason.recipe.loader import load_recipe, recipe_from_dict


def test_eval_of_a_trained_folder_uses_the_papers_image_budget():
    from mmfinereason.cli.commands.eval import EvalTarget, generation_settings
    from mmfinereason.evaluation.generators import PAPER_MAX_PIXELS

    recipe = load_recipe("recipes/qwen3vl-8b/sft.yaml")
    target = EvalTarget("outputs/qwen3vl-8b-sft", recipe)
    flags = dict(max_new_tokens=None, repetition_penalty=None, temperature=None, top_p=None, min_pixels=None,
                 max_pixels=None, system_prompt=None)
    settings = generation_settings(SimpleNamespace(**flags), target)
    assert settings.max_pixels == PAPER_MAX_PIXELS == 2048 * 2048  # not the training 768²
    assert settings.min_pixels == recipe.data.min_pixels
    asked = generation_settings(SimpleNamespace(**{**flags, "max_pixels": 589824}), target)
    assert asked.max_pixels == 589824


def test_data_caption_in_prompt_turns_captions_on_for_every_source():
    raw = {"data": {"caption_in_prompt": True, "train": [{"path": "toy"}, {"path": "toy", "split": "rl"}],
                    "eval": [{"path": "toy", "split": "test"}]}}
    data = recipe_from_dict(raw).data
    assert all(s.caption_in_prompt for s in [*data.train, *data.eval])
    off = recipe_from_dict({"data": {"train": [{"path": "toy"}, {"path": "toy", "caption_in_prompt": True}]}}).data
    assert [s.caption_in_prompt for s in off.train] == [False, True]


def test_data_caption_in_prompt_reaches_the_loaded_question(tiny_dir):
    from mmfinereason.data.io.sources import load_sources

    data = recipe_from_dict({"data": {"caption_in_prompt": True, "train": [{"path": "toy", "limit": 2}]}}).data
    dataset, _ = load_sources(data.train, require_response=True)
    plain, _ = load_sources(recipe_from_dict({"data": {"train": [{"path": "toy", "limit": 2}]}}).data.train)
    assert len(dataset[0]["question"]) > len(plain[0]["question"])
