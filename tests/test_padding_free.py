"""The padding-free GSPO loss forward scores rollouts exactly as TRL's padded one does.

Real rollouts of the tiny Qwen3-VL on the bundled task's images: prompts of different lengths (left padding),
completions cut at different places (right padding), one completion masked whole (a truncated rollout under
``mask_truncated_completions``). Log-probs, entropies and gradients are compared with TRL's own
``_get_per_token_logps_and_entropies``, and two training runs (off-policy, so the old-policy forward and the clip
are in play) with and without it end at the same weights, in one process and on 2 DDP ranks.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from trl import GRPOTrainer as TRLGRPOTrainer

from mmfinereason.modeling.attention import VARLEN_SDPA, register_varlen_sdpa
from mmfinereason.trainers.padding_free import pack_rollouts, padding_free_blocker, row_images
from tests.test_gspo import _isolated_hf_cache, make_trainer, toy_prompts  # noqa: F401 (autouse fixture)

G = 4


@pytest.fixture(autouse=True)
def _tiny(tiny_dir):
    """Build the tiny model once, in the session's cache (conftest), before any test loads it."""


def varlen_trainer(tmp_path, **overrides):
    register_varlen_sdpa()
    overrides = {"overlong_completions": "none", **overrides}  # the random model never ends: keep its rollouts
    trainer = make_trainer(tmp_path, num_generations=G, per_device_train_batch_size=16, **overrides)
    trainer.model.set_attn_implementation(VARLEN_SDPA)
    return trainer


def scored_batch(trainer):
    """A generated batch's inputs to the scorer, completions cut to varied lengths (one to nothing)."""
    trainer.model.train()
    prompts = toy_prompts(4)
    batch = trainer._generate_and_score_completions([dict(prompts[i]) for i in range(4) for _ in range(G)])
    completion_mask = batch["completion_mask"].clone()
    width = completion_mask.size(1)
    for row in range(completion_mask.size(0)):
        completion_mask[row, (1 + (row * 5) % width) if row else 0:] = 0  # row 0: masked whole
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1)
    mask = torch.cat([batch["prompt_mask"], completion_mask], 1)
    assert len(set(batch["prompt_mask"].sum(1).tolist())) > 1, "prompts of one length: no left padding to remove"
    images = dict(pixel_values=batch["pixel_values"], image_grid_thw=batch["image_grid_thw"],
                  num_images=batch["num_images"], mm_token_type_ids=batch.get("mm_token_type_ids"))
    return ids, mask, width, images


def scores_and_grads(trainer, scorer, ids, mask, width, images, **kwargs):
    trainer.model.zero_grad()
    logps, entropies, _ = scorer(trainer.model, ids, mask, width, compute_entropy=True, **images, **kwargs)
    weights = torch.linspace(-1.0, 1.0, logps.numel()).view_as(logps)  # every token's gradient counts
    (logps * weights).sum().backward()
    grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    return logps.detach(), entropies.detach(), grads


def test_packed_scores_and_gradients_equal_trl_padded_ones(tmp_path):
    trainer = varlen_trainer(tmp_path)
    assert padding_free_blocker(trainer.args, trainer.model) is None
    ids, mask, width, images = scored_batch(trainer)

    def padded(*args, **kwargs):
        return TRLGRPOTrainer._get_per_token_logps_and_entropies(trainer, *args, **kwargs)

    ref_logps, ref_entropies, ref_grads = scores_and_grads(trainer, padded, ids, mask, width, images)
    for batch_size in (None, 3):  # one packed row, and uneven chunks of 3 rows
        logps, entropies, grads = scores_and_grads(
            trainer, trainer._get_per_token_logps_and_entropies, ids, mask, width, images, batch_size=batch_size
        )
        torch.testing.assert_close(logps, ref_logps, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(entropies, ref_entropies, atol=1e-5, rtol=1e-5)
        assert grads.keys() == ref_grads.keys()
        for name in grads:
            torch.testing.assert_close(grads[name], ref_grads[name], atol=1e-5, rtol=1e-4, msg=name)
    completion = mask[:, -width:].bool()
    assert (logps[~completion] == 0).all() and (logps[completion] < 0).all()
    assert not completion[0].any() and completion[1:].any(1).all()
    assert trainer._metrics["train"]["padding_free/frac_padding_avoided"][-1] > 0.1


def test_pack_rollouts_keeps_only_real_tokens_in_order(tmp_path):
    trainer = varlen_trainer(tmp_path)
    ids, mask, width, images = scored_batch(trainer)
    per_row = row_images(images["pixel_values"], images["image_grid_thw"], images["num_images"])
    packed = pack_rollouts(trainer.model, ids, mask, width, images["mm_token_type_ids"], per_row)
    row = packed.batch["input_ids"]
    assert row.shape == (1, int(mask.sum())) and packed.padded_tokens == ids.numel()
    torch.testing.assert_close(row[0], ids[mask.bool()])  # row by row, pads dropped
    assert (row[0, packed.packed_positions] == ids[packed.rows, ids.size(1) - width + packed.columns]).all()
    text_positions = packed.batch["position_ids"][0, 0]
    assert int((text_positions == 0).sum()) == ids.size(0)  # each rollout restarts its positions: no cross-attention


def alternating_reward(completions, **kwargs):
    """Every group has rollouts scored 0 and 1: every row carries a gradient."""
    return [float(i % 2) for i in range(len(completions))]


def test_four_training_steps_end_at_the_same_weights(tmp_path):
    """Off-policy (2 updates per rollout batch, 2 batches): the old-policy forward runs without grad, the ratio
    departs from 1 and the clip acts, so every caller of the scorer is exercised; the runs sample the same rollouts.
    Plain SGD: Adam would turn float noise in a near-zero gradient into a full step of either sign."""
    weights, start = {}, None
    for padding_free in (False, True):
        trainer = varlen_trainer(
            tmp_path / str(padding_free), padding_free=padding_free, max_steps=4, steps_per_generation=2,
            max_completion_length=12, reward_funcs=[alternating_reward], reward_weights=None, optim="sgd",
            learning_rate=1.0,
        )
        start = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
        trainer.train()
        weights[padding_free] = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
        logged = [h for h in trainer.state.log_history if "loss" in h]
        avoided = [h.get("padding_free/frac_padding_avoided") for h in logged]
        assert all(a is not None and a > 0 for a in avoided) if padding_free else not any(avoided)
        assert max(h["clip_ratio/region_mean"] for h in logged) > 0  # the second update of a batch is clipped
    moved = max((weights[True][n] - start[n]).abs().max().item() for n in start)
    assert moved > 1e-3  # the runs trained: equal weights are not the start weights twice
    for name, value in weights[True].items():
        torch.testing.assert_close(value, weights[False][name], atol=1e-6, rtol=1e-5, msg=name)


@pytest.mark.slow
def test_two_ranks_end_at_the_same_weights_as_the_padded_forward(tmp_path):
    """The real CLI under ``accelerate launch``, 2 CPU ranks (gloo DDP), 2 updates per rollout batch: padding-free
    and padded end at the same weights (~20 s a run)."""
    from distributed_utils import run
    from safetensors.torch import load_file

    from mmfinereason.toy import tiny_model_dir

    weights = {}
    for padding_free in ("false", "true"):
        out = tmp_path / f"padding_free_{padding_free}"
        overrides = [
            f"train.output_dir={out}", "model.name_or_path=tiny", "train.use_cpu=true", f"train.padding_free={padding_free}",
            "train.max_steps=4", "train.num_generations=4", "train.per_device_train_batch_size=8",
            "train.steps_per_generation=2", "train.max_completion_length=12", "train.optim=sgd", "train.learning_rate=1.0",
            "train.warmup_steps=0", "train.weight_decay=0.0", "train.weight_anchor=0", "train.logging_steps=1",
            "train.reward_funcs=[tests.test_padding_free:alternating_reward]", "train.reward_weights=[1.0]",
            *[f"data.train.{i}.limit=64" for i in range(4)], "eval.before_training=false", "eval.after_training=false",
            "data.eval=[]",
        ]
        assert run("gspo", "recipes/tiny/gspo.yaml", overrides, tmp_path / f"trace_{padding_free}",
                   tmp_path / f"{padding_free}.log", timeout=600) == 0, (tmp_path / f"{padding_free}.log").read_text()[-3000:]
        weights[padding_free] = load_file(str(out / "model.safetensors"))
    logged = (tmp_path / "padding_free_true" / "log_history.jsonl").read_text()
    assert logged.count("padding_free/frac_padding_avoided") == 4
    start = load_file(str(Path(tiny_model_dir()) / "model.safetensors"))
    assert max((weights["true"][k] - start[k]).abs().max().item() for k in start) > 1e-3
    for name, value in weights["true"].items():
        torch.testing.assert_close(value, weights["false"][name], atol=1e-6, rtol=1e-5, msg=name)


def test_why_the_forward_stays_padded(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    trainer = varlen_trainer(tmp_path)
    assert "padding_free is false" in padding_free_blocker(type("A", (), {"padding_free": False})(), trainer.model)
    trainer.model.set_attn_implementation("sdpa")
    assert "sdpa_varlen" in padding_free_blocker(trainer.args, trainer.model)
    text_only = LlamaForCausalLM(LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                             num_attention_heads=2, vocab_size=32))
    assert "get_rope_index" in padding_free_blocker(trainer.args, text_only)


def test_the_gspo_recipe_switches_dense_attention_to_varlen():
    from mmfinereason import load_recipe
    from mmfinereason.pipelines.inputs import attention_for_packing

    assert attention_for_packing(load_recipe("recipes/tiny/gspo.yaml")).attn_implementation == VARLEN_SDPA
    off = load_recipe("recipes/tiny/gspo.yaml", ["train.padding_free=false"])
    assert attention_for_packing(off).attn_implementation == "sdpa"
    flash = load_recipe("recipes/qwen3vl-2b/gspo.yaml")
    assert attention_for_packing(flash).attn_implementation == "flash_attention_2"  # varlen already
