"""GSPO: the loss is GSPO's (sequence ratio, clipping, group-normalised advantages), dynamic sampling, a short run.

Everything runs on the embedded tiny Qwen3-VL (1.3M parameters), offline, in well under a minute per test.
"""

from __future__ import annotations

import datasets
import pytest
import torch

from mmfinereason.recipe.loader import RecipeError, recipe_from_dict
from mmfinereason.data.chat import render_prompt
from mmfinereason.data.io.sources import load_sources
from mmfinereason.data.io.mixing import SourceSpec
from mmfinereason.modeling.loading import load_processor
from mmfinereason.toy import tiny_model_dir
from mmfinereason.trainers.dynamic_sampling import (
    concat_batches,
    group_rows,
    informative_groups,
    pad_groups,
    select_rows,
)
from mmfinereason.trainers.gspo import GSPOConfig, GSPOTrainer
from mmfinereason.data.batching.lengths import prompt_length
from mmfinereason.pipelines.rl_prompts import add_prompts
from mmfinereason.rewards.registry import resolve_reward

EPS_LOW, EPS_HIGH = 3e-4, 4e-4


@pytest.fixture(autouse=True)
def _isolated_hf_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path_factory.mktemp("hf_datasets_cache")))


def toy_prompts(n: int, split: str = "rl") -> datasets.Dataset:
    dataset, _ = load_sources([SourceSpec(path="toy", split=split, limit=n)], require_response=False)
    return add_prompts(dataset)


@pytest.fixture(autouse=True)
def _tiny(tiny_dir):
    """Build the tiny model once, in the session's cache (conftest), before any test loads it."""


def make_trainer(tmp_path, reward_funcs=None, train_dataset=None, **overrides) -> GSPOTrainer:
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir(), dtype=torch.float32)
    model.config.use_cache = False
    settings = dict(
        output_dir=str(tmp_path / "gspo"),
        num_generations=2,
        per_device_train_batch_size=4,
        max_completion_length=8,
        max_steps=2,
        learning_rate=1e-2,
        warmup_steps=0,
        weight_decay=0.0,
        save_strategy="no",
        logging_steps=1,
        seed=0,
        disable_tqdm=True,
    )
    settings.update(overrides)
    return GSPOTrainer(
        model,
        reward_funcs=reward_funcs,
        args=GSPOConfig(**settings),
        train_dataset=train_dataset if train_dataset is not None else toy_prompts(16),
        # the tiny recipe's bounds: the tiny processor ships the real Qwen3-VL defaults (65,536 px minimum)
        processing_class=load_processor("tiny", min_pixels=1024, max_pixels=25600),
    )


# --------------------------------------------------------------------------- config
def test_config_is_the_paper_preset(tmp_path):
    args = GSPOConfig(output_dir=str(tmp_path))
    assert args.importance_sampling_level == "sequence" and args.loss_type == "grpo" and args.beta == 0.0
    assert (args.epsilon, args.epsilon_high) == (3e-4, 4e-4)
    assert (args.num_generations, args.temperature, args.learning_rate) == (16, 1.0, 1e-6)
    assert args.lr_scheduler_type.value == "constant_with_warmup" and args.warmup_steps == 10
    assert args.weight_decay == 0.1 and args.max_prompt_length == 8192 and args.max_completion_length == 16384
    assert args.mask_truncated_completions and args.bf16 is False  # overlong: mask; CPU: no bf16
    with pytest.raises(ValueError, match="overlong_completions"):
        GSPOConfig(output_dir=str(tmp_path), overlong_completions="drop")
    with pytest.raises(ValueError, match="reward_weights"):
        GSPOConfig(output_dir=str(tmp_path), reward_funcs=["accuracy"], reward_weights=[1.0, 0.5])
    with pytest.raises(ValueError, match="straddle|multiple of gradient_accumulation_steps"):
        GSPOConfig(output_dir=str(tmp_path), gradient_accumulation_steps=2, steps_per_generation=3)
    four = GSPOConfig(output_dir=str(tmp_path), gradient_accumulation_steps=2, steps_per_generation=8)
    assert four.generation_batch_size == 16 * 8  # 4 policy updates of 2 micro-batches per rollout batch


def test_recipe_rejects_unknown_gspo_key():
    with pytest.raises(RecipeError, match="dynamic_sampling"):
        recipe_from_dict({"stage": "gspo", "train": {"dynamic_samplng": False}})


def test_reward_resolution():
    from mmfinereason.rewards import accuracy_reward, format_reward

    assert resolve_reward("accuracy") is accuracy_reward
    assert resolve_reward("mmfinereason.rewards:format_reward") is format_reward
    assert resolve_reward("mmfinereason.rewards.format_reward") is format_reward
    with pytest.raises(ValueError, match="no callable"):
        resolve_reward("mmfinereason.rewards:nope")
    with pytest.raises(ValueError, match="unknown reward"):
        resolve_reward("accurracy")


def test_prompt_matches_sft_and_length_counts_image_tokens():
    processor = load_processor("tiny", min_pixels=1024, max_pixels=589824)  # TRL calls it without size
    row = toy_prompts(1)[0]
    assert row["prompt"][0]["role"] == "user"
    trl_text = processor.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
    assert trl_text == render_prompt(processor, row["question"], 1)
    encoded = processor(text=[trl_text], images=[row["images"]], return_tensors="pt")
    assert prompt_length(processor, row, None, 1024, 589824) == encoded["input_ids"].shape[1]


# --------------------------------------------------------------------------- the loss is GSPO's
def _gspo_loss(logps, old, mask, adv, level: str):
    """The GSPO objective written from RECIPE.md: s_i = exp(mean_t log ratio), clip to [1-ε_low, 1+ε_high]."""
    log_ratio = logps - old
    if level == "sequence":
        s = torch.exp((log_ratio * mask).sum(-1) / mask.sum(-1)).unsqueeze(-1)
        per_seq = -torch.min(s * adv[:, None], s.clamp(1 - EPS_LOW, 1 + EPS_HIGH) * adv[:, None]).squeeze(-1)
    else:  # token-level (GRPO) — what the test must tell apart
        r = torch.exp(log_ratio)
        per_tok = -torch.min(r * adv[:, None], r.clamp(1 - EPS_LOW, 1 + EPS_HIGH) * adv[:, None])
        per_seq = (per_tok * mask).sum(-1) / mask.sum(-1)
    return per_seq.mean()


def test_loss_is_gspo_sequence_ratio_clipping_and_gradient(tmp_path):
    trainer = make_trainer(tmp_path)
    model = trainer.model
    model.train()
    trainer.current_gradient_accumulation_steps = 1
    g = torch.Generator().manual_seed(0)
    B, P, C = 4, 5, 6
    prompt_ids = torch.randint(10, 200, (B, P), generator=g)
    completion_ids = torch.randint(10, 200, (B, C), generator=g)
    completion_mask = torch.tensor([[1] * 6, [1] * 6, [1] * 4 + [0] * 2, [1] * 5 + [0]])
    prompt_mask = torch.ones(B, P, dtype=torch.long)
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0])  # two groups of 2
    grouped = rewards.view(-1, 2)
    adv = ((grouped - grouped.mean(1, keepdim=True)) / (grouped.std(1, keepdim=True) + 1e-4)).view(-1)
    with torch.no_grad():
        logps, _, _ = trainer._get_per_token_logps_and_entropies(
            model, torch.cat([prompt_ids, completion_ids], 1), torch.cat([prompt_mask, completion_mask], 1), C
        )
    # Per-token log-ratios (θ vs old): row 0 alternates ±0.05 (mean 0: unclipped as a sequence, clipped per token);
    # row 1 is +0.001 everywhere (sequence ratio 1.001 > 1+ε_high with A<0: unclipped side); row 2 -0.002 (A<0,
    # ratio < 1-ε_low: clipped); row 3 +0.002 with A>0 (clipped high).
    delta = torch.tensor(
        [[0.05, -0.05] * 3, [0.001] * 6, [-0.002] * 6, [0.002] * 6]
    )
    old = logps - delta
    inputs = {
        "prompt_ids": prompt_ids,
        "prompt_mask": prompt_mask,
        "completion_ids": completion_ids,
        "completion_mask": completion_mask,
        "advantages": adv,
        "old_per_token_logps": old,
        "num_items_in_batch": completion_mask.sum(),
    }
    model.zero_grad()
    loss = trainer.compute_loss(model, inputs)
    loss.backward()
    got_grad = [p.grad.clone() for p in model.parameters() if p.grad is not None]

    model.zero_grad()
    logps_g, _, _ = trainer._get_per_token_logps_and_entropies(
        model, torch.cat([prompt_ids, completion_ids], 1), torch.cat([prompt_mask, completion_mask], 1), C
    )
    expected = _gspo_loss(logps_g, old, completion_mask.float(), adv, "sequence")
    expected.backward()
    want_grad = [p.grad.clone() for p in model.parameters() if p.grad is not None]

    token_level = _gspo_loss(logps, old, completion_mask.float(), adv, "token")
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)
    assert abs(token_level.item() - expected.item()) > 1e-3  # the test can tell GSPO from token-level GRPO
    assert len(got_grad) == len(want_grad) > 0
    for a, b in zip(got_grad, want_grad):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)
    clipped = trainer._metrics["train"]["clip_ratio/region_mean"][-1]
    assert clipped == pytest.approx(0.5)  # rows 2 and 3 clipped, as sequences

    trainer.importance_sampling_level = "token"  # sanity: the same batch through token-level GRPO differs
    with torch.no_grad():
        assert trainer.compute_loss(model, inputs).item() == pytest.approx(token_level.item(), abs=1e-6)


def test_advantages_are_group_normalised(tmp_path, monkeypatch):
    rewards = [0.0, 1.0, 1.0, 1.0, 0.2, 0.9, 0.0, 0.0]

    def fixed_reward(completions, **kwargs):
        return rewards[: len(completions)]

    trainer = make_trainer(
        tmp_path, reward_funcs=[fixed_reward], num_generations=4, per_device_train_batch_size=8, dynamic_sampling=False,
        reward_weights=None,
    )
    rows = [dict(trainer.train_dataset[i]) for i in (0, 1) for _ in range(4)]
    out = trainer._generate_and_score_completions(rows)
    r = torch.tensor(rewards).view(2, 4)
    expected = ((r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True) + 1e-4)).view(-1)
    torch.testing.assert_close(out["advantages"], expected, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- several updates per rollout batch
def test_second_update_of_a_rollout_batch_is_off_policy_and_clipped(tmp_path):
    """steps_per_generation = 2 × gradient accumulation: one rollout batch — here one that dynamic sampling refilled
    and merged — buys two optimizer steps. The old-policy log-probs are computed once per rollout batch (at
    generation), the batch is sliced by TRL's buffering, and on the second update the sequence ratio departs from
    1, the clip engages (clip_ratio > 0) and the loss is the GSPO formula on that slice."""
    calls: list[int] = []

    def reward(completions, **kwargs):  # round 1: half the groups carry no signal, so a refill round follows
        calls.append(len(completions))
        if len(calls) == 1:
            return [0.5 if i < len(completions) // 2 else float(i % 2) for i in range(len(completions))]
        return [float(i % 2) for i in range(len(completions))]

    trainer = make_trainer(
        tmp_path, reward_funcs=[reward], reward_weights=None, overlong_completions="none", num_generations=2,
        per_device_train_batch_size=8, steps_per_generation=2, max_steps=2, dynamic_sampling=True,
        dynamic_sampling_max_retries=1,
    )
    assert trainer.args.gradient_accumulation_steps == 1 and trainer.args.generation_batch_size == 16
    logps_calls: list[tuple[bool, torch.Tensor]] = []
    get_logps = trainer._get_per_token_logps_and_entropies

    def spy_logps(*args, **kwargs):
        out = get_logps(*args, **kwargs)
        logps_calls.append((torch.is_grad_enabled(), out[0].detach().clone()))
        return out

    updates: list[dict] = []
    compute = trainer._compute_loss

    def spy_loss(model, inputs):
        loss = compute(model, inputs)
        metrics = trainer._metrics["train"]
        updates.append({"inputs": inputs, "logps": logps_calls[-1][1], "loss": loss.item(),
                        "clip": {k: metrics[f"clip_ratio/{k}"][-1] for k in ("low_mean", "high_mean", "region_mean")}})
        return loss

    trainer._get_per_token_logps_and_entropies = spy_logps
    trainer._compute_loss = spy_loss
    trainer.train()

    assert calls == [16, 16]  # one rollout batch of 8 groups; 4 had no signal, refilled from 2 x 4 more groups
    old_logps_passes = [g for g, _ in logps_calls if not g]
    assert len(old_logps_passes) == 2  # old log-probs: once per generation round of that batch, never per update
    assert len(updates) == 2 and trainer.state.global_step == 2
    first, second = updates
    for u in updates:  # each slice: 8 rows of the merged batch, every row with signal (refill made it through)
        assert u["inputs"]["prompt_ids"].shape[0] == 8 and sum(u["inputs"]["num_images"]) == 8
        assert bool((u["inputs"]["advantages"].abs() > 0).all())
    rows = lambda u: {tuple(r.tolist()) for r in torch.cat([u["inputs"]["prompt_ids"], u["inputs"]["completion_ids"]], 1)}
    assert not rows(first) & rows(second)  # two disjoint halves of one batch, not one slice seen twice

    def gspo(u):
        mask = u["inputs"]["completion_mask"].float()
        log_ratio = ((u["logps"] - u["inputs"]["old_per_token_logps"]) * mask).sum(-1) / mask.sum(-1)
        s = torch.exp(log_ratio)
        adv = u["inputs"]["advantages"]
        loss = -torch.min(s * adv, s.clamp(1 - EPS_LOW, 1 + EPS_HIGH) * adv).mean()
        clipped = ((s < 1 - EPS_LOW) & (adv < 0)) | ((s > 1 + EPS_HIGH) & (adv > 0))
        return s, loss.item(), clipped.float().mean().item()

    s1, loss1, clip1 = gspo(first)
    assert (s1 - 1).abs().max().item() < 1e-5 and first["clip"]["region_mean"] == 0.0  # update 1: on-policy
    assert first["loss"] == pytest.approx(loss1, abs=1e-6)
    s2, loss2, clip2 = gspo(second)
    assert (s2 - 1).abs().max().item() > EPS_HIGH  # update 2: the policy moved since the rollouts
    assert second["clip"]["region_mean"] > 0 and second["clip"]["region_mean"] == pytest.approx(clip2)
    assert second["loss"] == pytest.approx(loss2, abs=1e-6)
    logged = [h for h in trainer.state.log_history if "clip_ratio/region_mean" in h]
    assert logged[0]["clip_ratio/region_mean"] == 0.0 and logged[1]["clip_ratio/region_mean"] > 0


# --------------------------------------------------------------------------- dynamic sampling
def test_informative_groups_on_hand_built_rewards():
    rewards = torch.tensor([1, 1, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0.5, float("nan"), float("nan"), 0.5])
    assert informative_groups(rewards, 4).tolist() == [False, True, False, False]
    nan_pair = torch.tensor([1.0, float("nan"), float("nan"), float("nan")])
    assert informative_groups(nan_pair, 2).tolist() == [False, False]
    assert group_rows([1, 3], 2).tolist() == [2, 3, 6, 7]
    rows, kept = pad_groups([None, None], [torch.tensor([False, True]), torch.tensor([True, True])], 2, 2)
    assert kept == 2 and [r.tolist() for r in rows] == [[2, 3], [0, 1]]
    rows, kept = pad_groups([None, None], [torch.tensor([False, True]), torch.tensor([False, False])], 2, 2)
    assert kept == 1 and [r.tolist() for r in rows] == [[0, 1, 2, 3], []]


def test_select_and_concat_repad_generation_batches():
    a = {
        "prompt_ids": torch.tensor([[0, 5, 6], [7, 8, 9]]),
        "prompt_mask": torch.tensor([[0, 1, 1], [1, 1, 1]]),
        "completion_ids": torch.tensor([[1, 0], [2, 3]]),
        "completion_mask": torch.tensor([[1, 0], [1, 1]]),
        "advantages": torch.tensor([0.5, -0.5]),
        "mm_token_type_ids": torch.tensor([[0, 1, 0, 0, 0], [1, 1, 0, 0, 0]]),
        "pixel_values": torch.arange(8.0).view(4, 2),
        "image_grid_thw": torch.tensor([[1, 1, 1], [1, 1, 3]]),
        "num_images": [1, 1],
        "num_items_in_batch": torch.tensor(3),
    }
    b = {
        "prompt_ids": torch.tensor([[4]]),
        "prompt_mask": torch.tensor([[1]]),
        "completion_ids": torch.tensor([[1, 2, 3]]),
        "completion_mask": torch.tensor([[1, 1, 1]]),
        "advantages": torch.tensor([1.0]),
        "mm_token_type_ids": torch.tensor([[0, 0, 0, 0]]),
        "pixel_values": torch.full((2, 2), -1.0),
        "image_grid_thw": torch.tensor([[1, 1, 2]]),
        "num_images": [1],
        "num_items_in_batch": torch.tensor(3),
    }
    picked = select_rows(a, torch.tensor([1]))
    assert picked["pixel_values"].tolist() == [[2, 3], [4, 5], [6, 7]] and picked["num_images"] == [1]
    merged = concat_batches([picked, b], pad_token_id=0)
    assert merged["prompt_ids"].tolist() == [[7, 8, 9], [0, 0, 4]]
    assert merged["prompt_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]
    assert merged["completion_ids"].tolist() == [[2, 3, 0], [1, 2, 3]]
    assert merged["completion_mask"].tolist() == [[1, 1, 0], [1, 1, 1]]
    assert merged["mm_token_type_ids"].tolist() == [[1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]]
    assert merged["image_grid_thw"].tolist() == [[1, 1, 3], [1, 1, 2]]
    assert merged["pixel_values"].shape == (5, 2) and merged["advantages"].tolist() == [-0.5, 1.0]
    with pytest.raises(ValueError, match="dynamic_sampling: false"):
        select_rows({**a, "image_sizes": torch.zeros(2, 2)}, torch.tensor([0]))


def no_signal_on_count(completions, source, **kwargs):
    """toy_count prompts get identical rewards (no signal); the others alternate 0/1 within their group."""
    return [0.5 if s == "toy_count" else float(i % 2) for i, s in enumerate(source)]


def refill_setup(tmp_path, num_count_groups: int, max_retries: int):
    """A trainer with the reward above, and 4 groups of 2 of which ``num_count_groups`` carry no signal."""
    trainer = make_trainer(
        tmp_path, reward_funcs=[no_signal_on_count], reward_weights=None, per_device_train_batch_size=8,
        dynamic_sampling=True, dynamic_sampling_max_retries=max_retries,
    )
    trainer.model.train()
    data = trainer.train_dataset
    count = [i for i in range(len(data)) if data[i]["source"] == "toy_count"][:num_count_groups]
    other = [i for i in range(len(data)) if data[i]["source"] != "toy_count"][: 4 - num_count_groups]
    order = [i for pair in zip(count, other) for i in pair] + count[len(other):] + other[len(count):]
    return trainer, [dict(data[i]) for i in order for _ in range(2)]


def test_dynamic_sampling_refills_degenerate_groups(tmp_path):
    """Groups whose rewards agree are replaced by groups from further prompts; the batch keeps its size."""
    trainer, rows = refill_setup(tmp_path, num_count_groups=2, max_retries=2)
    out = trainer._generate_and_score_completions(rows)
    assert out["advantages"].shape == (8,) and out["prompt_ids"].shape[0] == 8
    assert sum(out["num_images"]) == 8 and out["image_grid_thw"].shape[0] == 8
    adv = out["advantages"].view(-1, 2)
    metrics = trainer._metrics["train"]
    assert metrics["dynamic_sampling/frac_zero_variance_groups"][-1] == pytest.approx(0.5)
    if metrics["dynamic_sampling/frac_informative_in_batch"][-1] == 1.0:
        assert bool((adv.abs().sum(1) > 0).all())
    assert metrics["dynamic_sampling/retries"][-1] >= 1
    assert out["num_items_in_batch"] == out["completion_mask"].sum()


def test_refill_is_sized_to_the_missing_groups(tmp_path):
    """A retry generates twice the missing groups (capped at the batch), not a whole new batch."""
    trainer, rows = refill_setup(tmp_path, num_count_groups=1, max_retries=1)
    asked: list[int] = []
    draw = trainer._more_prompts
    trainer._more_prompts = lambda num_groups, retry=1: asked.append(num_groups) or draw(num_groups, retry)
    out = trainer._generate_and_score_completions(rows)
    assert trainer._metrics["train"]["dynamic_sampling/frac_zero_variance_groups"][0] == pytest.approx(0.25)
    assert asked == [2] and out["prompt_ids"].shape[0] == 8


# --------------------------------------------------------------------------- end to end
def length_reward(completions, **kwargs):
    """A signal even a random model has: longer completions score higher."""
    from mmfinereason.rewards import completion_text

    return [len(completion_text(c)) / 100.0 for c in completions]


def test_short_gspo_run_changes_parameters(tmp_path):
    trainer = make_trainer(tmp_path, reward_funcs=[length_reward], reward_weights=None, overlong_completions="none")
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    changed = [n for n, p in trainer.model.named_parameters() if not torch.equal(before[n], p.detach())]
    assert changed, "no parameter moved"
    assert any("visual" not in n for n in changed)
    history = [h for h in trainer.state.log_history if "reward" in h]
    assert history and "tokens_per_second" in history[0] and "dynamic_sampling/frac_zero_variance_groups" in history[0]


def test_an_unfrozen_vision_tower_trains_at_its_own_learning_rate(tmp_path):
    """train.vision_tower_learning_rate / merger_learning_rate reach GSPO's optimizer (trainers/part_lr.py), not
    only SFT's: Adam moves each weight by about its group's lr per step, so after 2 steps the tower's weights
    have moved by at most ~2e-5 while the language model's (lr 1e-2) move by far more."""
    trainer = make_trainer(tmp_path, reward_funcs=[length_reward], reward_weights=None, overlong_completions="none",
                           vision_tower_learning_rate=1e-5, merger_learning_rate=1e-5, lr_scheduler_type="constant")
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    moved = {n: float((p.detach() - before[n]).abs().max()) for n, p in trainer.model.named_parameters()}
    vision = [v for n, v in moved.items() if ".visual." in f".{n}"]
    text = [v for n, v in moved.items() if "language_model" in n]
    assert vision and max(vision) <= 2.5e-5
    assert max(text) > 1e-3
    lrs = sorted({g["lr"] for g in trainer.optimizer.param_groups})
    assert lrs == [1e-5, 1e-2]
    # The logged rate is the language model's, not the first param group's; each part's is logged beside it.
    logged = [h for h in trainer.state.log_history if "learning_rate" in h]
    assert logged and all(h["learning_rate"] == 1e-2 for h in logged)
    assert all(h["learning_rate/vision_tower"] == h["learning_rate/merger"] == 1e-5 for h in logged)


@pytest.mark.gpu
@pytest.mark.parametrize("vllm_mode", ["colocate"])
def test_vllm_generation_on_gpu(tmp_path, vllm_mode):
    """vLLM rollouts (the `vllm` extra) on a lent GPU; skipped on CPU-only machines and in CI."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    pytest.importorskip("vllm")
    trainer = make_trainer(
        tmp_path, reward_funcs=[length_reward], reward_weights=None, use_vllm=True, vllm_mode=vllm_mode,
        vllm_gpu_memory_utilization=0.2, vllm_enable_sleep_mode=False, max_steps=1,
    )
    trainer.train()
    assert any("reward" in h for h in trainer.state.log_history)
