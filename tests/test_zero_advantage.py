"""Zero-advantage rows left out of the GSPO loss: the same loss and gradient as the full batch, fewer rows computed.

Real rollouts of the tiny Qwen3-VL on the bundled task's images (pixel values, several images per batch), scored
so that half the groups agree; the loss and every parameter's gradient are compared with TRL's full-batch loss.
"""

from __future__ import annotations

import pytest
import torch

from mmfinereason.trainers.zero_advantage import kept_batch, rows_to_keep, rows_with_signal, zero_uninformative
from tests.test_gspo import _isolated_hf_cache, make_trainer, toy_prompts  # noqa: F401 (autouse fixture)

G = 4
# four groups of four rollouts: groups 0 and 2 agree (no signal), 1 and 3 do not
REWARDS = [0.3, 0.3, 0.3, 0.3, 0.0, 1.0, 0.0, 1.0, 0.7, 0.7, 0.7, 0.7, 1.0, 0.0, 0.0, 0.0]


@pytest.fixture(autouse=True)
def _tiny(tiny_dir):
    """Build the tiny model once, in the session's cache (conftest), before any test loads it."""


def fixed_reward(completions, **kwargs):
    return REWARDS[: len(completions)]


def rollouts(tmp_path, **overrides):
    trainer = make_trainer(
        tmp_path, reward_funcs=[fixed_reward], reward_weights=None, num_generations=G,
        per_device_train_batch_size=16, dynamic_sampling=False, overlong_completions="none", **overrides,
    )
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    prompts = toy_prompts(4)
    batch = trainer._generate_and_score_completions([dict(prompts[i]) for i in range(4) for _ in range(G)])
    return trainer, batch


def loss_and_grads(trainer, inputs, skip: bool):
    seen = []
    compute = trainer._compute_loss

    def spy(model, rows):
        seen.append(rows["prompt_ids"].shape[0])
        return compute(model, rows)

    trainer._compute_loss = spy
    blocker = trainer._skip_blocker
    trainer._skip_blocker = None if skip else "off for the comparison"
    try:
        trainer.model.zero_grad()
        loss = trainer.compute_loss(trainer.model, inputs)
        loss.backward()
    finally:
        trainer._compute_loss, trainer._skip_blocker = compute, blocker
    grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    return loss.item(), grads, seen[0]


@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo", "bnpo", "dapo"])
def test_loss_and_gradient_equal_the_full_batch(tmp_path, loss_type):
    trainer, batch = rollouts(tmp_path)
    assert trainer._skip_blocker is None
    adv = batch["advantages"]
    assert (adv[:4] == 0).all() and (adv[8:12] == 0).all()  # exactly zero, not TRL's ulp-sized leftovers
    assert (adv[4:8] != 0).all() and (adv[12:] != 0).all()
    assert batch["pixel_values"].shape[0] > 0 and sum(batch["num_images"]) == 16
    # off-policy rows, so the ratio and the clip are part of what must match
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        inputs = dict(batch)
        C = batch["completion_ids"].size(1)
        logps, _, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model, torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1),
            torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1), C,
            pixel_values=batch["pixel_values"], image_grid_thw=batch["image_grid_thw"], num_images=batch["num_images"],
            mm_token_type_ids=batch.get("mm_token_type_ids"),
        )
        inputs["old_per_token_logps"] = logps - 1e-3 * torch.randn(logps.shape, generator=g)
    trainer.loss_type = loss_type

    full_loss, full_grads, full_rows = loss_and_grads(trainer, inputs, skip=False)
    loss, grads, rows = loss_and_grads(trainer, inputs, skip=True)

    assert (full_rows, rows) == (16, 8)  # the forward/backward saw only the rows with signal
    assert full_loss != 0.0 and loss == pytest.approx(full_loss, rel=1e-5, abs=1e-8)
    assert grads.keys() == full_grads.keys() and len(grads) > 0
    for name in grads:
        torch.testing.assert_close(grads[name], full_grads[name], rtol=1e-4, atol=1e-7, msg=name)
    assert trainer._metrics["train"]["zero_advantage/frac_rows_skipped"][-1] == pytest.approx(0.5)


def test_every_rank_computes_as_many_rows_as_the_busiest(tmp_path):
    """TRL all-gathers per-row clip statistics in the loss: a rank with fewer rows with signal tops up with zero
    rows to the largest count on any rank (a 2-process GSPO run aborted in the collective before this)."""
    trainer, batch = rollouts(tmp_path)
    trainer.accelerator.gather = lambda t: torch.cat([t, torch.tensor([12], device=t.device)])  # the other rank: 12
    full_loss, full_grads, _ = loss_and_grads(trainer, batch, skip=False)
    loss, grads, rows = loss_and_grads(trainer, batch, skip=True)
    assert rows == 12 and loss == pytest.approx(full_loss, rel=1e-5, abs=1e-8)
    for name in grads:
        torch.testing.assert_close(grads[name], full_grads[name], rtol=1e-4, atol=1e-7, msg=name)
    assert trainer._metrics["train"]["zero_advantage/frac_rows_skipped"][-1] == pytest.approx(0.25)


def test_a_batch_without_signal_still_runs_one_row(tmp_path):
    trainer, batch = rollouts(tmp_path)
    inputs = dict(batch, advantages=torch.zeros_like(batch["advantages"]))
    loss, grads, rows = loss_and_grads(trainer, inputs, skip=True)
    assert rows == 1 and loss == 0.0  # a forward and backward (collectives on other ranks) but no gradient
    assert all(float(g.abs().max()) == 0.0 for g in grads.values())
    assert trainer._metrics["train"]["zero_advantage/frac_rows_skipped"][-1] == 15 / 16  # rows not computed


def test_kl_term_keeps_every_row(tmp_path):
    trainer, batch = rollouts(tmp_path, beta=0.04)
    assert "beta" in trainer._skip_blocker
    seen = []
    compute = trainer._compute_loss
    trainer._compute_loss = lambda model, rows: seen.append(rows["prompt_ids"].shape[0]) or compute(model, rows)
    trainer.compute_loss(trainer.model, batch)
    assert seen == [16]


def test_switch_off_in_the_recipe(tmp_path):
    trainer, _ = rollouts(tmp_path, skip_zero_advantage_rows=False)
    assert trainer._skip_blocker == "train.skip_zero_advantage_rows is false"


def test_zero_uninformative_on_hand_built_rewards():
    # TRL's arithmetic on groups of 8: identical rewards whose float mean is off by an ulp, divided by the ~ulp std
    rewards = torch.tensor([0.7] * 8 + [0.0, 1.0] * 4 + [1.2] * 8 + [1.0] * 7 + [0.0])
    grouped = rewards.view(-1, 8)
    mean = grouped.mean(1).repeat_interleave(8)
    std = grouped.std(1).repeat_interleave(8)
    adv = (rewards - mean) / (std + 1e-4)
    assert 1e-4 < adv[16:24].abs().max() < 1e-2  # the leftovers this module removes
    local = adv[16:].clone()  # process 1 of 2 holds groups 2 and 3
    assert zero_uninformative(local, rewards, 8, process_index=1) == 8
    assert (local[:8] == 0).all() and torch.equal(local[8:], adv[24:])
    assert rows_with_signal(local).tolist() == list(range(8, 16))


def test_kept_batch_scales_by_the_loss_normaliser():
    completion_mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]])
    batch = {
        "prompt_ids": torch.arange(8).view(4, 2), "prompt_mask": torch.ones(4, 2, dtype=torch.long),
        "completion_ids": torch.arange(16).view(4, 4), "completion_mask": completion_mask,
        "advantages": torch.tensor([0.0, 1.0, 0.0, -1.0]), "num_items_in_batch": torch.tensor(10),
    }
    keep = rows_to_keep(batch["advantages"], 2)
    assert keep.tolist() == [1, 3] and rows_to_keep(batch["advantages"], 3).tolist() == [0, 1, 3]
    assert rows_to_keep(torch.zeros(4), 1).tolist() == [0]
    rows, scale = kept_batch(batch, "grpo", keep)
    assert scale == 0.5 and rows["prompt_ids"].tolist() == [[2, 3], [6, 7]]
    assert kept_batch(batch, "bnpo", keep)[1] == pytest.approx(3 / 10)  # kept tokens / all tokens
    rows, scale = kept_batch(batch, "dapo", keep)
    assert scale == 1.0 and int(rows["num_items_in_batch"]) == 10  # the global normaliser is kept
    pixels = dict(batch, pixel_values=torch.zeros(4, 3))  # patches without num_images: rows unknown
    with pytest.raises(ValueError, match="num_images"):
        kept_batch(pixels, "grpo", keep)
