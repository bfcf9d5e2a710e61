"""Per-row seeded sampling (mmfinereason/evaluation/row_sampling.py): a sample of softmax(logits / T), and a row's
draws that depend on its seed, not on the batch it shares."""

from __future__ import annotations

import pytest
import torch

from mmfinereason.evaluation.row_sampling import RowSeededSampling


def draw(logits: torch.Tensor, seeds: list[int], steps: int, temperature: float = 1.0, top_p: float = 1.0) -> torch.Tensor:
    """``steps`` tokens per row, as greedy generate picks them: argmax of the processed logits."""
    sampler = RowSeededSampling(seeds, temperature, top_p)
    return torch.stack([sampler(None, logits).argmax(-1) for _ in range(steps)], dim=1)


def test_draws_follow_softmax_at_the_temperature():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    n = 20000
    for temperature in (1.0, 0.5):
        tokens = draw(logits, [11], n, temperature)[0]
        freq = torch.bincount(tokens, minlength=4).float() / n
        expected = (logits[0] / temperature).softmax(-1)
        assert torch.allclose(freq, expected, atol=0.015), (temperature, freq, expected)


def test_top_p_never_draws_outside_the_nucleus():
    logits = torch.tensor([[3.0, 2.0, 0.0, -2.0]])  # probabilities .705 .259 .035 .005
    tokens = draw(logits, [5], 5000, top_p=0.9)[0]
    assert set(tokens.tolist()) == {0, 1}
    assert set(draw(logits, [5], 5000, top_p=0.5)[0].tolist()) == {0}  # the most likely token always stays


def test_a_rows_draws_depend_on_its_seed_not_on_its_neighbours():
    torch.manual_seed(0)
    logits = torch.randn(3, 50)
    together = draw(logits, [7, 8, 9], 30)
    alone = draw(logits[1:2], [8], 30)
    assert torch.equal(together[1], alone[0])
    assert not torch.equal(together[0], together[2])  # different seeds, different streams
    assert torch.equal(draw(logits, [7, 8, 9], 30), together)  # and the same seeds again, the same draws
    torch.rand(5)  # the global generator is not what they draw from
    assert torch.equal(draw(logits, [7, 8, 9], 30), together)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="temperature"):
        RowSeededSampling([1], temperature=0.0)
    with pytest.raises(ValueError, match="top_p"):
        RowSeededSampling([1], top_p=0.0)
    with pytest.raises(ValueError, match="2 rows to sample, 1 seeds"):
        RowSeededSampling([1])(None, torch.zeros(2, 4))
