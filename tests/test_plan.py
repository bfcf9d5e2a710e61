"""``mmfinereason plan``: parameter counts from configs only, and the ZeRO / FSDP memory arithmetic."""

from __future__ import annotations

import json

import pytest

from mmfinereason.cli.main import main
from mmfinereason.recipe.loader import load_recipe
from mmfinereason.plan import (
    GIB,
    QWEN3_VL_CONFIGS,
    activation_bytes_per_token,
    backbone_config,
    count_parameters,
    estimate,
    plan_recipe,
    read_launch_config,
    shipped_config,
)


def _recipe(tmp_path, name="Qwen/Qwen3-VL-8B-Instruct", **train):
    train = {"output_dir": str(tmp_path / "o"), "per_device_train_batch_size": 1, "gradient_accumulation_steps": 4, **train}
    lines = [f"stage: sft", f"model: {{name_or_path: {name}, dtype: bfloat16}}", "data: {max_length: 32768, packing: true}",
             "train: " + json.dumps(train)]
    path = tmp_path / "r.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    "name, billions", [("Qwen/Qwen3-VL-2B-Instruct", 2.13), ("Qwen/Qwen3-VL-4B-Instruct", 4.44), ("Qwen/Qwen3-VL-8B-Instruct", 8.77)]
)
def test_shipped_configs_give_the_published_sizes(name, billions):
    config, source = backbone_config(name)
    assert source == f"shipped public config of {name}"
    counts = count_parameters(config)
    total = sum(c["total"] for c in counts.values())
    assert abs(total / 1e9 - billions) < 0.02
    # the paper's setting: vision tower and merger frozen, the language model trains
    assert counts["vision_tower"]["trainable"] == counts["merger"]["trainable"] == 0
    assert counts["language_model"]["trainable"] == counts["language_model"]["total"]


def test_shipped_config_lookup_by_name():
    assert shipped_config("Qwen/Qwen3-VL-8B-Thinking")[0] == "Qwen/Qwen3-VL-8B-Instruct"
    assert shipped_config("my-org/qwen3-vl-2b-instruct")[0] == "Qwen/Qwen3-VL-2B-Instruct"
    assert shipped_config("outputs/qwen3vl-4b-sft")[0] == "Qwen/Qwen3-VL-4B-Instruct"  # the GSPO recipes' init
    assert shipped_config("Qwen/Qwen2.5-VL-7B-Instruct") is None
    assert shipped_config("qwen3-vl-18b") is None
    with pytest.raises(ValueError, match="no config for"):
        backbone_config("nobody/unknown-model")


def test_zero_stages_shard_what_they_should():
    config, _ = backbone_config("Qwen/Qwen3-VL-8B-Instruct")
    counts = count_parameters(config)
    total = sum(c["total"] for c in counts.values())
    trainable = sum(c["trainable"] for c in counts.values())
    p = {s: estimate(config, counts, gpus=8, micro_batch_tokens=32768, strategy=s) for s in ("ddp", "zero2", "zero3", "fsdp2")}
    assert p["ddp"].weights == 2 * total and p["ddp"].gradients == 2 * trainable and p["ddp"].optimizer == 12 * trainable
    assert p["zero2"].weights == 2 * total and p["zero2"].gradients == 2 * trainable / 8 and p["zero2"].optimizer == 12 * trainable / 8
    assert p["zero3"].weights == 2 * total / 8 and vars(p["zero3"]) == {**vars(p["fsdp2"]), "strategy": "zero3"}
    # activations do not depend on the sharding; checkpointing keeps far less
    assert p["ddp"].activations == p["zero3"].activations > 10 * p["zero3"].activations_checkpointed
    per_tok = activation_bytes_per_token(config)
    assert per_tok["layer"] == 2 * (5 * 4096 + 4096 + 2 * 1024 + 4 * 12288)
    assert p["zero3"].total(True) < p["zero2"].total(True) < p["ddp"].total(True)
    with pytest.raises(ValueError):
        estimate(config, counts, gpus=8, micro_batch_tokens=1, strategy="zero4")


def test_launch_configs_are_read(tmp_path):
    from pathlib import Path

    launch = Path(__file__).resolve().parents[1] / "launch" / "accelerate"
    assert read_launch_config(launch / "zero2.yaml")["strategy"] == "zero2"
    assert read_launch_config(launch / "zero3.yaml")["strategy"] == "zero3"
    assert read_launch_config(launch / "fsdp2.yaml")["strategy"] == "fsdp2"
    multi = read_launch_config(launch / "multi-node.yaml")
    assert multi["strategy"] == "zero2" and multi["gpus"] == 32


def test_plan_recipe_and_cli(tmp_path, capsys):
    recipe = load_recipe(_recipe(tmp_path, activation_checkpointing=True))
    report = plan_recipe(recipe, gpus=8)
    assert report["shapes"]["micro_batch_tokens"] == 32768 and report["shapes"]["tokens_per_step_per_gpu"] == 4 * 32768
    assert report["shapes"]["checkpointing"]
    # the paper's 8B SFT (ZeRO-2, checkpointing, Liger) fits on 80 GiB; plain DDP does not
    assert report["plans"]["zero2"].total(True, True) < 80 * GIB < report["plans"]["ddp"].total(True, True)
    assert main(["plan", str(_recipe(tmp_path)), "--gpus", "8"]) == 0
    out = capsys.readouterr().out
    assert "8.767B parameters" in out and "zero3" in out and "1,048,576 on 8 GPUs" in out
    assert main(["plan", str(_recipe(tmp_path)), "train.per_device_train_batch_size=2", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["shapes"]["micro_batch_tokens"] == 65536
    assert main(["plan", str(_recipe(tmp_path, name="nobody/unknown")), "--backbone", "Qwen/Qwen3-VL-2B-Instruct"]) == 0
    assert "Qwen/Qwen3-VL-2B-Instruct (shipped public config" in capsys.readouterr().out
    assert main(["plan", str(_recipe(tmp_path, name="nobody/unknown"))]) == 2
    assert "--backbone" in capsys.readouterr().err


def test_plan_of_the_tiny_recipe_runs():
    report = plan_recipe(load_recipe("recipes/tiny/sft.yaml"), gpus=2)
    total = sum(c["total"] for c in report["counts"].values())
    assert 1e6 < total < 2e6  # the tiny model, ~1.3M parameters
    assert report["shapes"]["dtype_bytes"] == 4


# --------------------------------------------------------------------------- every shipped recipe fits (issue 16)
def _shipped_qwen3vl_recipes():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    return sorted(root.glob("recipes/qwen3vl-*/*.yaml"))


def _launch_of(path):
    """The accelerate config named in the recipe's first line (the command that runs it)."""
    import re

    match = re.search(r"--config_file\s+(\S+)", path.read_text().splitlines()[0])
    assert match, f"{path}: the first line must be the launch command with --config_file"
    return path.parents[2] / match.group(1)


@pytest.mark.parametrize("path", _shipped_qwen3vl_recipes(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_qwen3vl_recipe_fits_an_80gb_gpu(path):
    from mmfinereason.plan import MARGIN_GIB, fits, peak_bytes

    report = plan_recipe(load_recipe(path), _launch_of(path))
    peak = peak_bytes(report) / GIB
    assert fits(report, 80.0), f"{path}: {peak:.1f} GiB + {MARGIN_GIB} GiB margin per GPU > 80 GiB"


def test_gspo_plan_counts_what_trl_materialises(tmp_path):
    """TRL 1.16 scores completions through its chunked LM head (no [tokens, vocab] logits), keeps the rollout
    buffer on the GPU, and adds a reference model only when beta > 0."""
    from pathlib import Path

    from mmfinereason.plan import chunked_logprob_bytes, fits, format_plan

    path = Path(__file__).resolve().parents[1] / "recipes" / "qwen3vl-8b" / "gspo.yaml"
    report = plan_recipe(load_recipe(path), gpus=8)
    s, p = report["shapes"], report["plans"]["zero2"]
    assert s["micro_batch_tokens"] == 24576 and s["chunked_logprobs"] and not s["reference_model"]
    config, _ = backbone_config("Qwen/Qwen3-VL-8B-Instruct")
    assert p.logits == chunked_logprob_bytes(config, 24576) < 24576 * activation_bytes_per_token(config)["logits"] / 5
    assert s["rollout_rows_per_gpu"] == 512 and p.rollout_buffer > 512 * 2304 * 1536 * 4  # each row's 768² pixels
    assert p.reference == 0.0
    with_ref = plan_recipe(load_recipe(path, ["train.beta=0.04"]), gpus=8)["plans"]["zero2"]
    assert with_ref.reference == with_ref.weights  # a full bf16 copy under ZeRO-2
    lora_ref = plan_recipe(load_recipe(path, ["train.beta=0.04", "model.lora.enabled=true"]), gpus=8)
    assert lora_ref["plans"]["zero2"].reference == 0.0  # TRL copies the adapter as its reference, not the model
    anchored = plan_recipe(load_recipe(path, ["train.weight_anchor=100"]), gpus=8)["plans"]["ddp"]
    plain = report["plans"]["ddp"]
    trainable = report["counts"]["language_model"]["trainable"]  # tower and merger frozen, as in the paper
    assert plain.anchor == 0.0 and anchored.anchor == 2 * trainable  # one bf16 copy of what trains
    assert anchored.states() == plain.states() + anchored.anchor
    # The trainer refuses the anchor under DeepSpeed and FSDP: those rows count no copy and never "fit".
    anchored_report = plan_recipe(load_recipe(path, ["train.weight_anchor=100"]), gpus=8)
    for strategy in ("zero1", "zero2", "zero3", "fsdp2"):
        refused = anchored_report["plans"][strategy]
        assert refused.refused and refused.anchor == 0.0 and not fits(anchored_report, 1e6, strategy)
        assert fits(report, 1e6, strategy)  # the same recipe without the anchor fits an unlimited GPU
    assert not anchored.refused and fits(anchored_report, 1e6, "ddp")
    table = format_plan(anchored_report)
    assert table.count("refused: train.weight_anchor runs under DDP only") == 4
    # DeepSpeed ZeRO stage 0 shards nothing (the ddp row's memory), but the engine is DeepSpeed: refused there too.
    zero0 = tmp_path / "zero0.yaml"
    zero0.write_text((Path(__file__).resolve().parents[1] / "launch" / "accelerate" / "zero2.yaml").read_text().replace("zero_stage: 2", "zero_stage: 0"))
    assert read_launch_config(zero0) == {"strategy": "ddp", "gpus": 8, "offload_optimizer": False, "deepspeed": True}
    under_zero0 = plan_recipe(load_recipe(path, ["train.weight_anchor=100"]), launch=zero0)
    assert "ZeRO stage 0" in under_zero0["plans"]["ddp"].refused and not fits(under_zero0, 1e6)
    assert "refused: train.weight_anchor runs under DDP only (this is DeepSpeed ZeRO stage 0)" in format_plan(under_zero0)
    assert not read_launch_config(Path(__file__).resolve().parents[1] / "launch" / "accelerate" / "fsdp2.yaml")["deepspeed"]
