"""LoRA on the tiny model: what trains, what is saved, what the next stage loads, and that resume is exact.

A LoRA stage ends as a full model folder (the adapter merged in, the adapter alone under ``adapter/``) whose
logits are the trained adapter model's; a LoRA checkpoint (an adapter folder) loads merged; a resumed LoRA run
ends on the adapter weights of an uninterrupted one (mmfinereason/modeling/adapters.py says why).
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
import torch
from conftest import toy_examples
from distributed_utils import run, tiny_sft_overrides

from mmfinereason.data.batching.collator import MultimodalCollator
from mmfinereason.errors import UserError
from mmfinereason.modeling.adapters import ADAPTER_CONFIG, ADAPTER_SUBDIR, is_adapter_dir
from mmfinereason.modeling.loading import load_model, load_processor
from mmfinereason.recipe.loader import load_recipe
from mmfinereason.recipe.sections import ModelConfig
from mmfinereason.toy import tiny_model_dir

SFT = "recipes/tiny/sft.yaml"


def _lora_recipe(out: Path, *extra: str):
    return load_recipe(SFT, [
        f"train.output_dir={out}",
        "model.lora.enabled=true",
        "model.freeze_vision_tower=true",
        "model.freeze_merger=true",
        "model.lora.dropout=0.0",  # the logits compared below come from the model in eval mode anyway
        "data.train.0.limit=160",
        "data.eval.0.limit=8",
        "eval.limit=8",
        "eval.before_training=false",
        "eval.after_training=false",
        "train.max_steps=4",
        "train.learning_rate=1e-2",  # adapters start at B = 0: move them visibly in 4 steps
        "train.logging_steps=1",
        "train.save_strategy=steps",
        "train.save_steps=2",
        *extra,
    ])


def _logits(model, batch) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(**batch).logits.float()


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_dir):
    from mmfinereason.pipelines.sft import build_sft
    from mmfinereason.pipelines.stage import run_stage

    out = tmp_path_factory.mktemp("lora") / "run"
    recipe = _lora_recipe(out)
    trainer = build_sft(recipe)
    run_stage(recipe, trainer)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(3)])
    return recipe, trainer.model, batch, out


def test_lora_trains_the_adapters_only(lora_run, tiny_dir):
    from transformers import AutoModelForImageTextToText

    _, peft_model, _, _ = lora_run
    base = AutoModelForImageTextToText.from_pretrained(tiny_dir).state_dict()
    trained = {k.replace("base_model.model.", "").replace(".base_layer", ""): v
               for k, v in peft_model.state_dict().items()}
    adapters = {k: v for k, v in trained.items() if "lora_" in k}
    assert adapters and any(v.abs().max() > 0 for k, v in adapters.items() if "lora_B" in k)  # B starts at 0
    frozen = [k for k in base if not torch.equal(base[k], trained[k])]
    assert frozen == [], f"base weights changed under LoRA: {frozen[:5]}"


def test_lora_output_is_a_merged_model_with_the_adapter_beside_it(lora_run, tiny_dir):
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    _, peft_model, batch, out = lora_run
    assert (out / "config.json").is_file() and not (out / ADAPTER_CONFIG).exists() and not is_adapter_dir(out)
    assert (out / ADAPTER_SUBDIR / ADAPTER_CONFIG).is_file()
    expected = _logits(peft_model, batch)
    merged = AutoModelForImageTextToText.from_pretrained(out)  # what GSPO, eval, vLLM and users load
    assert torch.allclose(_logits(merged, batch), expected, atol=1e-4), (_logits(merged, batch) - expected).abs().max()
    untrained = _logits(AutoModelForImageTextToText.from_pretrained(tiny_dir), batch)
    assert (untrained - expected).abs().max() > 1e-2  # the comparison above can fail: the adapter did something
    adapter_alone = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(tiny_dir), out / ADAPTER_SUBDIR)
    assert torch.allclose(_logits(adapter_alone, batch), expected, atol=1e-4)


def test_a_lora_checkpoint_loads_merged(lora_run, tiny_dir):
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    _, _, batch, out = lora_run
    checkpoint = out / "checkpoint-2"
    assert is_adapter_dir(checkpoint)
    loaded = load_model(ModelConfig(name_or_path=str(checkpoint)))  # the next stage, `mmfinereason eval`
    assert not hasattr(loaded, "peft_config")  # a plain model: no adapter layers left to save or train
    reference = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(tiny_dir), checkpoint)
    assert torch.allclose(_logits(loaded, batch), _logits(reference, batch), atol=1e-4)


def test_an_adapter_whose_base_is_missing_says_so(lora_run, tmp_path):
    import json

    from mmfinereason.modeling.source import ModelSourceError

    _, _, _, out = lora_run
    moved = tmp_path / "moved-checkpoint"
    shutil.copytree(out / "checkpoint-2", moved)
    config = json.loads((moved / ADAPTER_CONFIG).read_text())
    config["base_model_name_or_path"] = str(tmp_path / "gone")  # the base folder of another machine
    (moved / ADAPTER_CONFIG).write_text(json.dumps(config))
    with pytest.raises(ModelSourceError, match="LoRA adapter on the base .*gone.*does not exist"):
        load_model(ModelConfig(name_or_path=str(moved)))


def test_lora_on_top_of_a_lora_checkpoint_names_it_as_its_base(lora_run):
    _, _, _, out = lora_run
    cfg = ModelConfig(name_or_path=str(out / "checkpoint-2"), freeze_vision_tower=True, freeze_merger=True)
    stacked = load_model(dataclasses.replace(cfg, lora=dataclasses.replace(cfg.lora, enabled=True)), training=True)
    assert stacked.peft_config["default"].base_model_name_or_path == str(out / "checkpoint-2")


def test_a_resumed_lora_run_ends_where_an_uninterrupted_one_does(lora_run, tmp_path):
    from mmfinereason.pipelines.sft import run_sft

    recipe, _, _, out = lora_run
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(out / "checkpoint-2", resumed / "checkpoint-2")
    run_sft(_lora_recipe(resumed))
    from safetensors.torch import load_file

    a = load_file(out / ADAPTER_SUBDIR / "adapter_model.safetensors")
    b = load_file(resumed / ADAPTER_SUBDIR / "adapter_model.safetensors")
    assert a.keys() == b.keys() and len(a) > 0
    start = load_file(out / "checkpoint-2" / "adapter_model.safetensors")
    assert any(not torch.equal(a[k], start[k]) for k in a)  # steps 3-4 moved the adapters
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6


def test_lora_refuses_to_freeze_a_part_meant_to_learn(tiny_dir):
    cfg = ModelConfig(name_or_path="tiny", freeze_vision_tower=False)
    cfg = dataclasses.replace(cfg, lora=dataclasses.replace(cfg.lora, enabled=True))
    with pytest.raises(UserError, match="vision_tower.*qkv"):
        load_model(cfg, training=True)
    all_frozen = dataclasses.replace(cfg, freeze_vision_tower=True, freeze_language_model=True)
    with pytest.raises(UserError, match="every part is frozen"):
        load_model(all_frozen, training=True)
    adapted = dataclasses.replace(cfg, lora=dataclasses.replace(cfg.lora, target_modules=["q_proj", "v_proj", "qkv", "linear_fc1"]))
    model = load_model(adapted, training=True)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any(".visual.blocks." in n and "lora_" in n for n in trainable)
    assert all("lora_" in n for n in trainable)


def test_vllm_refuses_a_lora_checkpoint_with_what_to_do(lora_run):
    from mmfinereason.evaluation.generators import GenerationSettings, load_generator

    _, _, _, out = lora_run
    with pytest.raises(UserError, match="LoRA adapter.*--backend hf"):
        load_generator(str(out / "checkpoint-2"), GenerationSettings(), backend="vllm")


def test_gspo_with_lora_from_a_lora_sft_output(lora_run, tmp_path):
    """Stage 2 starts from stage 1's LoRA output as from any model folder, trains its own adapter (the anchor of
    the tiny recipe included) and ends as a merged folder whose logits are the trained adapter model's."""
    from transformers import AutoModelForImageTextToText

    from mmfinereason.pipelines.gspo import build_gspo
    from mmfinereason.pipelines.stage import run_stage

    _, _, batch, sft_out = lora_run
    out = tmp_path / "gspo"
    recipe = load_recipe("recipes/tiny/gspo.yaml", [
        f"model.name_or_path={sft_out}", f"train.output_dir={out}", "model.lora.enabled=true", "model.lora.dropout=0.0",
        "train.max_steps=2", "train.per_device_train_batch_size=8", "train.num_generations=4",
        "train.max_completion_length=16", "train.learning_rate=1e-2", "train.logging_steps=1",
        "data.train.0.limit=40", "data.train.1.limit=40", "data.train.2.limit=40", "data.train.3.limit=40",
        "eval.before_training=false", "eval.after_training=false",
        "train.reward_funcs=[tests.test_gspo:length_reward]", "train.reward_weights=[1.0]",  # the toy reward: 0 here
    ])
    trainer = build_gspo(recipe)
    start = _logits(AutoModelForImageTextToText.from_pretrained(sft_out), batch)
    run_stage(recipe, trainer)
    assert (out / ADAPTER_SUBDIR / ADAPTER_CONFIG).is_file() and not is_adapter_dir(out)
    expected = _logits(trainer.model, batch)
    assert (expected - start).abs().max() > 1e-4  # the adapter moved
    assert torch.allclose(_logits(AutoModelForImageTextToText.from_pretrained(out), batch), expected, atol=1e-4)


def test_a_lora_recipe_is_reproducible_and_exact_under_activation_checkpointing(tmp_path):
    """New adapters draw lora_A from the RNG before the trainer seeds it: make_model seeds first. And the classic
    LoRA pitfall, no gradient reaching adapters inside checkpointed layers whose input (frozen embeddings) needs
    none, would show here as adapters that differ from the run without checkpointing."""
    from mmfinereason.pipelines.sft import build_sft

    adapters = {}
    for checkpointing in ("false", "true"):
        recipe = _lora_recipe(tmp_path / checkpointing, f"train.activation_checkpointing={checkpointing}",
                              "train.save_strategy=no")
        trainer = build_sft(recipe)
        start = {k: v.detach().clone() for k, v in trainer.model.named_parameters() if "lora_" in k}
        trainer.train()
        adapters[checkpointing] = {k: v.detach().clone() for k, v in trainer.model.named_parameters() if "lora_" in k}
        assert any(not torch.equal(start[k], adapters[checkpointing][k]) for k in start)
        if checkpointing == "false":
            first_start = start
        else:
            assert trainer.model.base_model.model.is_activation_checkpointing
            assert all(torch.equal(first_start[k], start[k]) for k in start)  # same seed, same lora_A
    diff = max((adapters["true"][k] - adapters["false"][k]).abs().max().item() for k in adapters["true"])
    assert diff <= 1e-6, diff


def test_a_half_precision_lora_run_keeps_the_base_half_and_trains_fp32_adapters(tmp_path):
    """Full fine-tuning loads fp32 master weights for a bf16 recipe; LoRA need not: nothing updates the base. An
    8B base in fp32 would cost 35 GB a GPU under DDP where `mmfinereason plan` counts 16 GB."""
    from mmfinereason.pipelines.sft import build_sft
    from mmfinereason.pipelines.stage import run_stage

    recipe = _lora_recipe(tmp_path / "bf16", "model.dtype=bfloat16", "train.save_strategy=no")
    trainer = build_sft(recipe)
    dtypes = {("lora_" in n, p.dtype) for n, p in trainer.model.named_parameters()}
    assert dtypes == {(False, torch.bfloat16), (True, torch.float32)}, dtypes
    start = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_B" in n}
    run_stage(recipe, trainer)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    assert any(not torch.equal(start[n], p) for n, p in trainer.model.named_parameters() if "lora_B" in n)
    from transformers import AutoModelForImageTextToText

    merged = AutoModelForImageTextToText.from_pretrained(tmp_path / "bf16")
    assert merged.dtype == torch.bfloat16  # saved in the recipe's dtype, as a full fine-tune of it would be


@pytest.mark.slow
def test_lora_under_two_process_ddp_exports_once(tmp_path, tiny_dir):
    """`accelerate launch` with 2 CPU processes: the ranks train one adapter together and only the main process
    writes the merged folder, whose logits are the saved adapter's on its base."""
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    out, log = tmp_path / "ddp", tmp_path / "ddp.log"
    overrides = [*tiny_sft_overrides(out, rows=32, epochs=1, save_steps=2), "model.lora.enabled=true",
                 "model.freeze_vision_tower=true", "model.freeze_merger=true", "train.learning_rate=1e-2"]
    assert run("sft", SFT, overrides, tmp_path / "trace", log) == 0, log.read_text()[-3000:]
    assert log.read_text().count("LoRA: the adapter merged into the model at") == 1
    assert is_adapter_dir(out / "checkpoint-2") and (out / ADAPTER_SUBDIR / ADAPTER_CONFIG).is_file()
    merged = AutoModelForImageTextToText.from_pretrained(out)
    collator = MultimodalCollator(load_processor(str(out)), 512)
    batch = collator(toy_examples(3, seed=4))
    adapter = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(tiny_dir), out / ADAPTER_SUBDIR)
    assert torch.allclose(_logits(merged, batch), _logits(adapter, batch), atol=1e-4)
    assert (_logits(merged, batch) - _logits(AutoModelForImageTextToText.from_pretrained(tiny_dir), batch)).abs().max() > 1e-3


def test_all_linear_adapts_every_linear_layer_of_the_parts_that_learn(tiny_dir):
    cfg = ModelConfig(name_or_path="tiny", freeze_vision_tower=False, freeze_merger=True)
    cfg = dataclasses.replace(cfg, lora=dataclasses.replace(cfg.lora, enabled=True, target_modules=["all-linear"]))
    model = load_model(cfg, training=True)
    adapted = {n.rsplit(".lora_A", 1)[0] for n, _ in model.named_parameters() if ".lora_A." in n}
    assert any(".visual.blocks." in n and n.endswith("qkv") for n in adapted)
    assert any(".language_model." in n and n.endswith("down_proj") for n in adapted)
    assert not any("merger" in n or n.endswith("lm_head") for n in adapted)  # frozen part; the output head


def test_plan_counts_the_adapters_peft_creates(tiny_dir):
    from transformers import AutoConfig

    from mmfinereason.modeling.backbone import count_parameters

    for targets, tower_frozen in ((["q_proj", "v_proj"], True), (["all-linear"], False)):
        cfg = ModelConfig(name_or_path="tiny", freeze_vision_tower=tower_frozen)
        cfg = dataclasses.replace(cfg, lora=dataclasses.replace(cfg.lora, enabled=True, target_modules=targets))
        trainable, _ = load_model(cfg, training=True).get_nb_trainable_parameters()
        assert count_parameters(AutoConfig.from_pretrained(tiny_dir), cfg)["lora_adapters"]["trainable"] == trainable


def test_rerunning_a_finished_lora_run_keeps_a_loadable_merged_folder(lora_run):
    """The adapter is saved under adapter/, never at the top of the output folder, where transformers would read
    the folder as an adapter even beside the merged config.json."""
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    from mmfinereason.pipelines.sft import run_sft

    recipe, _, batch, out = lora_run
    run_sft(_lora_recipe(out))  # resumes from the final checkpoint: no step left, saved and merged again
    assert not (out / ADAPTER_CONFIG).exists() and (out / "config.json").is_file()
    base = AutoModelForImageTextToText.from_pretrained(tiny_model_dir())
    expected = _logits(PeftModel.from_pretrained(base, out / ADAPTER_SUBDIR), batch)
    assert torch.allclose(_logits(AutoModelForImageTextToText.from_pretrained(out), batch), expected, atol=1e-4)


def test_a_lora_output_whose_merge_was_killed_loads_its_adapter_merged(lora_run, tmp_path, caplog):
    """A kill during the final merge leaves the complete adapter/ and no config.json (written last): the run is not
    lost. The folder loads as its adapter merged into the base, with a warning, and vLLM is refused with what to do."""
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    from mmfinereason.evaluation.generators import GenerationSettings, load_generator

    from mmfinereason.modeling.source import ModelSourceError

    _, _, batch, out = lora_run
    killed = tmp_path / "killed-mid-merge"
    shutil.copytree(out, killed, ignore=shutil.ignore_patterns("checkpoint-*"))
    (killed / "config.json").unlink()  # the merged weights were moved in; the commit (config.json last) never came
    with caplog.at_level("WARNING"):
        loaded = load_model(ModelConfig(name_or_path=str(killed)))
    assert "stopped while merging" in caplog.text
    base = AutoModelForImageTextToText.from_pretrained(tiny_model_dir())
    untrained = _logits(base, batch)
    reference = _logits(PeftModel.from_pretrained(base, killed / ADAPTER_SUBDIR), batch)
    assert torch.allclose(_logits(loaded, batch), reference, atol=1e-4)
    assert (_logits(loaded, batch) - untrained).abs().max() > 1e-2  # the merge did something
    with pytest.raises(UserError, match="stopped while merging"):
        load_generator(str(killed), GenerationSettings(), backend="vllm")
    shutil.rmtree(killed / ADAPTER_SUBDIR)  # neither a model nor an adapter: transformers' own error, not a merge
    with pytest.raises(ModelSourceError, match="could not load model"):
        load_model(ModelConfig(name_or_path=str(killed)))


@pytest.mark.parametrize("folder", ["checkpoint-2", "killed"])
def test_gspo_with_vllm_refuses_an_adapter_folder_before_preparing_data(lora_run, tmp_path, folder):
    from mmfinereason.pipelines.gspo import build_gspo

    _, _, _, out = lora_run
    source = out / "checkpoint-2"
    if folder == "killed":  # a LoRA output folder whose merge never committed its config.json
        source = tmp_path / "killed"
        shutil.copytree(out, source, ignore=shutil.ignore_patterns("checkpoint-*"))
        (source / "config.json").unlink()
    recipe = load_recipe("recipes/tiny/gspo.yaml", [f"model.name_or_path={source}", "train.use_vllm=true",
                                                    f"train.output_dir={tmp_path / 'gspo'}"])
    with pytest.raises(UserError, match="holds a LoRA adapter and no merged model.*train.use_vllm=false"):
        build_gspo(recipe)
