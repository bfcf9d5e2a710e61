"""train.weight_anchor: after each optimizer step the weights are pulled toward the start weights by
min(1, lr x weight_anchor) (trainers/weight_anchor.py). That a resumed run is pulled toward the same start
weights as the uninterrupted one is tested by tests/test_resume.py, whose GSPO run sets train.weight_anchor."""

from __future__ import annotations

import pytest
import torch

from mmfinereason.recipe.train_args import GSPOConfig
from mmfinereason.trainers.weight_anchor import WeightAnchor
from tests.test_gspo import _isolated_hf_cache, _tiny, length_reward, make_trainer  # noqa: F401 (autouse fixtures)


def test_the_pull_is_decoupled_decay_toward_the_start_at_each_groups_rate():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    model[1].bias.requires_grad_(False)  # a frozen parameter: never touched
    start = [p.detach().clone() for p in model.parameters()]
    first, second = model[0].parameters(), [model[1].weight]
    optimizer = torch.optim.SGD([{"params": list(first), "lr": 0.1}, {"params": second, "lr": 0.01}])
    anchor = WeightAnchor(model, strength=3.0)
    full = WeightAnchor(model, strength=1e3)  # lr x strength >= 1: all the way back
    model(torch.randn(5, 3)).pow(2).sum().backward()
    optimizer.step()
    stepped = [p.detach().clone() for p in model.parameters()]
    anchor.on_optimizer_step(None, None, None, optimizer=optimizer)
    weights = [0.3, 0.3, 0.03, None]  # min(1, lr x 3) per group; the frozen bias keeps its value
    for p, s0, s1, w in zip(model.parameters(), start, stepped, weights):
        expected = s1 if w is None else s1 + w * (s0 - s1)
        torch.testing.assert_close(p.detach(), expected, rtol=0, atol=1e-7)
    assert not torch.equal(stepped[0], start[0])  # the step moved it: the pull has something to undo
    assert anchor.distance_from_start(model) > 0
    full.on_optimizer_step(None, None, None, optimizer=optimizer)
    for p, s0 in zip(list(model.parameters())[:3], start):
        assert torch.equal(p.detach(), s0)
    assert full.distance_from_start(model) == anchor.distance_from_start(model) == 0.0


def test_a_parameter_the_anchor_never_saw_is_refused():
    model = torch.nn.Linear(2, 2)
    anchor = WeightAnchor(model, strength=1.0)
    stranger = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.SGD([{"params": [*model.parameters(), stranger], "lr": 0.1}])
    with pytest.raises(RuntimeError, match="weight_anchor"):
        anchor.on_optimizer_step(None, None, None, optimizer=optimizer)


def test_negative_anchor_is_refused(tmp_path):
    with pytest.raises(ValueError, match="weight_anchor"):
        GSPOConfig(output_dir=str(tmp_path), weight_anchor=-1.0)


def _distance_after_training(tmp_path, **overrides) -> tuple[float, object]:
    trainer = make_trainer(tmp_path, reward_funcs=[length_reward], reward_weights=None, overlong_completions="none",
                           lr_scheduler_type="constant", **overrides)
    start = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    squares = sum(float((p.detach() - start[n]).pow(2).sum()) for n, p in trainer.model.named_parameters() if n in start)
    count = sum(start[n].numel() for n in start)
    return (squares / count) ** 0.5, trainer


def test_gspo_training_is_held_near_the_start_weights(tmp_path):
    free, _ = _distance_after_training(tmp_path / "free")
    held, trainer = _distance_after_training(tmp_path / "held", weight_anchor=30.0)  # pull 0.3 a step at lr 1e-2
    pinned, _ = _distance_after_training(tmp_path / "pinned", weight_anchor=1e3)  # pull 1: back to the start
    assert free > 0 and pinned == 0.0
    assert held < 0.9 * free
    logged = [h["weight_anchor/rms_from_start"] for h in trainer.state.log_history if "weight_anchor/rms_from_start" in h]
    assert logged and logged[-1] == pytest.approx(held, rel=1e-5)
