"""Stage 1 end to end on the tiny model: loss falls, held-out accuracy rises, checkpoints reload and generate."""

from __future__ import annotations

import math

import pytest
import torch

from mmfinereason.recipe.loader import load_recipe
from mmfinereason.pipelines.sft import run_sft


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory, tiny_dir):
    out = tmp_path_factory.mktemp("sft")
    recipe = load_recipe(
        "recipes/tiny/sft.yaml",
        [
            f"train.output_dir={out}",
            "data.train.0.limit=1200",
            "data.eval.0.limit=60",
            "eval.limit=60",
            "train.num_train_epochs=2",
            "train.logging_steps=5",
            "train.save_strategy=steps",
            "train.save_steps=50",
        ],
    )
    return recipe, run_sft(recipe)


def test_sft_lowers_loss_and_raises_heldout_accuracy(sft_run):
    recipe, result = sft_run
    before, after = result.accuracy_before, result.accuracy_after
    assert before is not None and after is not None and len(after.predictions) == 60
    # The untrained model never writes a final <answer>; the trained one must clearly beat it.
    assert after.accuracy >= before.accuracy + 0.15, (before.accuracy, after.accuracy)
    losses = [log["loss"] for log in result.log_history if "loss" in log]
    assert len(losses) >= 5 and all(math.isfinite(x) for x in losses)
    assert losses[-1] < 0.5 * losses[0]


def test_sft_logs_vlm_metrics(sft_run):
    _, result = sft_run
    logs = [log for log in result.log_history if "loss" in log]
    for key in ("tokens_per_second", "padding_ratio", "rows_skipped", "samples_dropped_overlong", "num_tokens"):
        assert key in logs[-1], key
    assert 0.0 <= logs[-1]["padding_ratio"] < 0.5
    assert logs[-1]["tokens_per_second"] > 0
    # packed batches count real tokens (TRL would count rows)
    assert logs[-1]["num_tokens"] > 1000


def test_checkpoint_and_final_model_reload_and_generate(sft_run):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from mmfinereason.evaluation.accuracy import generate_responses
    from tests.conftest import toy_examples

    recipe, result = sft_run
    out = result.output_dir
    checkpoints = sorted(p for p in __import__("pathlib").Path(out).glob("checkpoint-*"))
    assert checkpoints, "save_strategy=steps wrote no checkpoint"
    assert (checkpoints[0] / "recipe.yaml").exists() and (checkpoints[0] / "optimizer.pt").exists()
    assert load_recipe(checkpoints[0] / "recipe.yaml").data.max_length == recipe.data.max_length
    for folder in (out, str(checkpoints[-1])):
        model = AutoModelForImageTextToText.from_pretrained(folder)
        processor = AutoProcessor.from_pretrained(out)
        responses = generate_responses(model, processor, toy_examples(2, seed=9), max_new_tokens=48,
                                       max_pixels=recipe.data.max_pixels)
        assert len(responses) == 2 and all(isinstance(r, str) and r for r in responses)
    reloaded = AutoModelForImageTextToText.from_pretrained(out)
    trained_state = reloaded.state_dict()
    untrained = AutoModelForImageTextToText.from_pretrained(recipe.model.name_or_path if recipe.model.name_or_path != "tiny" else __import__("mmfinereason.toy", fromlist=["x"]).tiny_model_dir())
    changed = [k for k, v in untrained.state_dict().items() if not torch.equal(v, trained_state[k])]
    assert len(changed) > 10
