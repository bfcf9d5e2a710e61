"""Packed batches are exact: loss, per-token logits and gradients equal the unpacked ones (tiny Qwen3-VL, fp32).

Random batches mix images of odd sizes and extreme aspect ratios, multi-image rows and text-only rows. Also:
gradient accumulation over packed micro-batches equals one big batch (trainer level, one SGD step), the
``use_cache=False`` guard is needed, the flash-attn layout (one row, ``cu_seqlens`` from position row 0) is
exact under an attention that sees no mask, and the token-budget sampler keeps its budget.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from mmfinereason.data.batching.collator import MultimodalCollator
from mmfinereason.data.batching.packing import (
    first_fit_decreasing,
    pack_examples,
    pack_layout,
    uses_varlen_attention,
)
from mmfinereason.data.batching.sampler import TokenBudgetBatchSampler, example_lengths, token_budget_sampler
from mmfinereason.modeling.attention import register_varlen_sdpa

register_varlen_sdpa()  # what our model loader does for `attn_implementation: sdpa_varlen`

WORDS = "the largest shape is a red blue green square circle triangle so count answer image of two three".split()
SIZES = [(32, 32), (17, 45), (129, 31), (16, 400), (400, 16), (77, 77), (200, 90), (33, 257)]
MAX_PIXELS = 16384


def packed_boundaries(position_ids: torch.Tensor) -> torch.Tensor:
    """``cu_seqlens`` exactly as transformers' flash-attn path derives them from a packed single-row batch.

    Takes the batch's (4, 1, L) or (1, L) ``position_ids``; used to check that the boundaries a
    flash-attn forward would use are the packed examples' boundaries.
    """
    from transformers.modeling_flash_attention_utils import prepare_fa_kwargs_from_position_ids

    text = position_ids[0] if position_ids.ndim == 3 else position_ids
    (cu_seqlens, _), _ = prepare_fa_kwargs_from_position_ids(text)
    return cu_seqlens


@pytest.fixture(scope="module")
def tiny(tiny_dir, tiny_processor):
    from transformers import AutoModelForImageTextToText

    torch.manual_seed(0)
    model = AutoModelForImageTextToText.from_pretrained(tiny_dir, dtype=torch.float32, attn_implementation="sdpa")
    model.train()  # dropout is 0 in the tiny config; train mode is what the trainer runs
    return model, tiny_processor


def random_examples(seed: int, n: int = 7) -> list[dict]:
    """Images of mixed sizes (0-2 per row), text-only rows, responses of log-normal length."""
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        k = [0, 1, 1, 2][i % 4] if i else 1
        images = [Image.fromarray(nrng.integers(0, 255, (*rng.choice(SIZES), 3), dtype=np.uint8)) for _ in range(k)]
        question = " ".join(["<image>"] * k + rng.choices(WORDS, k=rng.randint(3, 12)))
        response = "<think>" + " ".join(rng.choices(WORDS, k=int(np.clip(nrng.lognormal(3.0, 0.8), 1, 150)))) + "</think>"
        rows.append({"id": f"r{seed}-{i}", "images": images, "question": question, "response": response})
    rng.shuffle(rows)
    return rows


def reference(model, encoded) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Token-weighted mean loss of the examples run one by one, and each example's logits."""
    from mmfinereason.data.batching.collator import pad_examples

    total = sum(int((e.labels[1:] != -100).sum()) for e in encoded)
    loss, logits = 0.0, []
    for e in encoded:
        batch = pad_examples([e], pad_token_id=0)
        out = model(**batch, use_cache=False)
        logits.append(out.logits[0])
        per_token = F.cross_entropy(out.logits[0, :-1], batch["labels"][0, 1:], ignore_index=-100, reduction="sum")
        loss = loss + per_token / total
    return loss, logits


def grads(model) -> dict[str, torch.Tensor]:
    out = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return out


def max_rel_err(a: dict, b: dict) -> float:
    assert a.keys() == b.keys() and a
    return max(float((a[k] - b[k]).abs().max() / b[k].abs().max().clamp(min=1e-12)) for k in a)


def packed_logits(out_logits, encoded, bins) -> list[torch.Tensor]:
    found = {}
    for r, members in enumerate(bins):
        start = 0
        for i in members:
            found[i] = out_logits[r, start : start + len(encoded[i])]
            start += len(encoded[i])
    return [found[i] for i in range(len(encoded))]


@pytest.mark.parametrize("seed, attn", [(0, "sdpa"), (1, "sdpa"), (2, "eager"), (3, "sdpa_varlen")])
def test_packed_loss_logits_and_grads_equal_unpacked(tiny, seed, attn):
    model, processor = tiny
    model.set_attn_implementation(attn)
    try:
        check_packed_equals_unpacked(model, processor, seed)
    finally:
        model.set_attn_implementation("sdpa")


def check_packed_equals_unpacked(model, processor, seed: int) -> None:
    collator = MultimodalCollator(processor, 320, packing=True, model=model, max_pixels=MAX_PIXELS)
    examples = random_examples(seed)
    encoded = [collator.encode(x) for x in examples]
    assert all(e is not None for e in encoded)
    assert any(e.pixel_values is None for e in encoded)  # a text-only row
    assert any(e.image_grid_thw is not None and len(e.image_grid_thw) == 2 for e in encoded)  # a two-image row

    ref_loss, ref_logits = reference(model, encoded)
    ref_loss.backward()
    ref_grads = grads(model)

    batch = collator(examples)
    bins = pack_layout([len(e) for e in encoded], 320, single_row=uses_varlen_attention(model))
    assert batch["input_ids"].shape[0] == len(bins) < len(examples)  # really packed: several examples per row
    out = model(**batch)
    out.loss.backward()
    assert abs(out.loss.item() - ref_loss.item()) <= 1e-5
    for got, want in zip(packed_logits(out.logits, encoded, bins), ref_logits):
        assert (got - want).detach().abs().max().item() <= 1e-4
    assert max_rel_err(grads(model), ref_grads) <= 1e-3


def test_packed_equals_padded_batch_and_marks_boundaries(tiny):
    model, processor = tiny
    examples = random_examples(5)
    padded = MultimodalCollator(processor, 320, max_pixels=MAX_PIXELS)(examples)
    packed_collator = MultimodalCollator(processor, 320, packing=True, model=model, max_pixels=MAX_PIXELS)
    packed = packed_collator(examples)
    with torch.no_grad():
        assert abs(float(model(**packed).loss) - float(model(**padded, use_cache=False).loss)) <= 1e-5
    # Every example starts at text position 0 with label -100; images travel in row-major order with their grids.
    text = packed["position_ids"][0]
    starts = (text == 0) & (packed["input_ids"] != packed_collator.pad_token_id)
    assert int(starts.sum()) == len(examples)
    assert bool((packed["labels"][starts] == -100).all())
    assert torch.equal(packed["mm_token_type_ids"].bool(), packed["input_ids"] == model.config.image_token_id)
    assert int(packed["image_grid_thw"].prod(-1).sum()) == packed["pixel_values"].shape[0]
    merge = processor.image_processor.merge_size ** 2
    assert int((packed["image_grid_thw"].prod(-1) // merge).sum()) == int(packed["mm_token_type_ids"].sum())


def test_use_cache_true_lets_packed_examples_attend_to_each_other(tiny):
    """The pitfall the batch's ``use_cache=False`` guards against: with a cache, the mask is not block-diagonal."""
    model, processor = tiny
    collator = MultimodalCollator(processor, 320, packing=True, model=model, max_pixels=MAX_PIXELS)
    batch = collator(random_examples(3))
    assert batch["use_cache"] is False
    with torch.no_grad():
        exact = float(model(**batch).loss)
        leaky = float(model(**{**batch, "use_cache": True}).loss)
    assert abs(exact - leaky) > 1e-4


def _varlen_sdpa(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None, **kwargs):
    """Stand-in for flash-attn: no mask, boundaries only from ``position_ids`` exactly as transformers derives them."""
    from transformers.integrations.sdpa_attention import repeat_kv
    from transformers.modeling_flash_attention_utils import _is_packed_sequence, prepare_fa_kwargs_from_position_ids

    assert attention_mask is None  # flash models get no mask: what the mask builder returns for them
    groups = query.shape[1] // key.shape[1]
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    causal = module.is_causal if is_causal is None else is_causal
    position_ids = kwargs.get("position_ids")
    bounds = [0, query.shape[2]]
    if _is_packed_sequence(position_ids, query.shape[0]):
        (cu, _), _ = prepare_fa_kwargs_from_position_ids(position_ids)
        bounds = cu.tolist()
    parts = [
        F.scaled_dot_product_attention(query[:, :, s:e], key[:, :, s:e], value[:, :, s:e], is_causal=causal, scale=scaling)
        for s, e in zip(bounds[:-1], bounds[1:])
    ]
    return torch.cat(parts, dim=2).transpose(1, 2).contiguous(), None


def test_flash_layout_single_row_is_exact_with_boundaries_from_positions(tiny):
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, flash_attention_mask

    model, processor = tiny
    collator = MultimodalCollator(processor, 320, packing=True, model=model, max_pixels=MAX_PIXELS)
    examples = random_examples(4)
    encoded = [collator.encode(x) for x in examples]
    single = pack_examples(encoded, 320, model, collator.pad_token_id, single_row=True)
    multi = pack_examples(encoded, 320, model, collator.pad_token_id, single_row=False)
    assert single["input_ids"].shape[0] == 1 and multi["input_ids"].shape[0] > 1
    lengths = [len(e) for e in encoded]
    assert packed_boundaries(single["position_ids"]).tolist() == np.cumsum([0, *lengths]).tolist()

    AttentionInterface.register("varlen_sdpa_test", _varlen_sdpa)
    AttentionMaskInterface.register("varlen_sdpa_test", flash_attention_mask)
    with torch.no_grad():
        want = float(model(**single).loss)  # sdpa, block-diagonal mask from position row 0
        model.set_attn_implementation("varlen_sdpa_test")
        try:
            assert abs(float(model(**single).loss) - want) <= 1e-5
            # Several rows: transformers' varlen detection needs batch size 1, so the examples would leak.
            assert abs(float(model(**multi).loss) - want) > 1e-4
        finally:
            model.set_attn_implementation("sdpa")
    assert not uses_varlen_attention(model)
    # Our pure-PyTorch varlen attention is exact on both layouts (rows are segmented by their positions).
    model.set_attn_implementation("sdpa_varlen")
    try:
        assert uses_varlen_attention(model)
        with torch.no_grad():
            assert abs(float(model(**single).loss) - want) <= 1e-5
            assert abs(float(model(**multi).loss) - want) <= 1e-5
    finally:
        model.set_attn_implementation("sdpa")

    class Cfg:
        _attn_implementation = "flash_attention_2"

    assert uses_varlen_attention(type("M", (), {"config": Cfg()})())


def test_gradient_accumulation_counts_tokens_across_packed_micro_batches(tiny, tiny_dir, tmp_path):
    """2 packed micro-batches of unequal token counts (GA=2) == one padded batch: same weights after one SGD step."""
    import datasets
    from transformers import AutoModelForImageTextToText

    from mmfinereason.trainers.sft import SFTConfig, SFTTrainer

    _, processor = tiny
    rows = random_examples(7, n=6)
    rows[0]["response"] = " ".join(["the largest shape"] * 60)  # make the micro-batches' token counts very unequal
    dataset = datasets.Dataset.from_list(rows)

    def one_step(batch_size: int, accumulation: int, sampler_budget: int | None, accepts_loss_kwargs=None):
        torch.manual_seed(0)
        model = AutoModelForImageTextToText.from_pretrained(tiny_dir, dtype=torch.float32, attn_implementation="sdpa")
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        args = SFTConfig(
            output_dir=str(tmp_path / f"run{batch_size}{accumulation}"), per_device_train_batch_size=batch_size,
            gradient_accumulation_steps=accumulation, max_steps=1, learning_rate=1.0, optim="sgd",
            lr_scheduler_type="constant", max_grad_norm=0.0, weight_decay=0.0, save_strategy="no", use_cpu=True,
            seed=0, dataloader_num_workers=0, logging_steps=1, disable_tqdm=True,
        )  # fmt: skip
        collator = MultimodalCollator(processor, 1024, packing=sampler_budget is not None, model=model, max_pixels=MAX_PIXELS)
        sampler = None
        if sampler_budget is not None:
            sampler = TokenBudgetBatchSampler(example_lengths(dataset, collator), sampler_budget, seed=3)
            assert len(sampler) == accumulation
        trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=processor,
                             data_collator=collator, train_batch_sampler=sampler)  # fmt: skip
        if accepts_loss_kwargs is not None:
            trainer.model_accepts_loss_kwargs = accepts_loss_kwargs
        trainer.train()
        return {n: p.detach() - before[n] for n, p in model.named_parameters() if p.requires_grad}

    total = sum(example_lengths(dataset, MultimodalCollator(processor, 1024, max_pixels=MAX_PIXELS)))
    one_batch = one_step(6, 1, None)
    budget = total // 2 + 200  # two micro-batches of the six examples
    packed_accumulated = one_step(1, 2, budget)
    assert max_rel_err(packed_accumulated, one_batch) <= 1e-3
    # Control: averaging per-micro-batch means (what transformers does for Qwen-VL models) is measurably different.
    averaged = one_step(1, 2, budget, accepts_loss_kwargs=False)
    assert max_rel_err(averaged, one_batch) > 1e-2


# ---------------------------------------------------------------------------------------------- sampler
def test_first_fit_decreasing_is_textbook_ffd_on_random_inputs():
    """The skip-the-closed-bins scan (packing.py) must place every item where plain first-fit-decreasing does:
    the sampler's batches, and so resumes across versions, depend on it."""

    def textbook(lengths, capacity):
        bins, room = [], []
        for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
            b = next((b for b, free in enumerate(room) if lengths[i] <= free), None)
            if b is None:
                bins.append([i])
                room.append(capacity - lengths[i])
            else:
                bins[b].append(i)
                room[b] -= lengths[i]
        return bins

    rng = random.Random(0)
    for _ in range(300):
        capacity = rng.randint(20, 3000)
        lengths = [rng.randint(1, capacity) for _ in range(rng.randint(0, 200))]
        assert first_fit_decreasing(lengths, capacity) == textbook(lengths, capacity)


def test_first_fit_decreasing_fills_bins():
    rng = random.Random(0)
    lengths = [rng.randint(1, 100) for _ in range(300)]
    bins = first_fit_decreasing(lengths, 128)
    assert sorted(i for b in bins for i in b) == list(range(300))
    assert all(sum(lengths[i] for i in b) <= 128 for b in bins)
    assert len(bins) <= -(-sum(lengths) // 128) * 11 // 9 + 1  # within FFD's bound of the optimum
    assert first_fit_decreasing([5, 5, 5], 10) == [[0, 1], [2]]


def test_token_budget_sampler_is_deterministic_covers_the_data_and_keeps_the_budget():
    rng = np.random.default_rng(0)
    lengths = [int(x) for x in np.clip(rng.lognormal(5.5, 0.8, 2000), 20, 1024)]
    lengths[7] = None  # dropped by the collator
    lengths[8] = 5000  # longer than a row
    sampler = TokenBudgetBatchSampler(lengths, 4096, row_length=1024, buffer_size=256, seed=1)
    assert sampler.num_skipped == 2
    epoch0 = sampler.batches()
    assert sorted(i for b in epoch0 for i in b) == sampler.usable
    tokens = [sampler.tokens(b) for b in epoch0]
    assert max(tokens) <= 4096
    assert sum(t >= 0.95 * 4096 for t in tokens[:-1]) >= 0.9 * (len(tokens) - 1)  # a stable step size
    assert all(len(first_fit_decreasing([lengths[i] for i in b], 1024)) <= 4 for b in epoch0)
    again = TokenBudgetBatchSampler(lengths, 4096, row_length=1024, buffer_size=256, seed=1)
    assert again.batches() == epoch0 and list(again) == epoch0
    again.set_epoch(1)
    assert list(again) != epoch0 and len(again) == len(again.batches(1))
    with pytest.raises(ValueError, match="at least one row"):
        TokenBudgetBatchSampler(lengths, 512, row_length=1024)


def test_sampler_lengths_equal_encoded_lengths(tiny):
    model, processor = tiny
    rows = random_examples(11, n=12)
    rows[3]["response"] = " ".join(["shape"] * 400)  # overlong
    for overlong in ("truncate", "drop"):
        collator = MultimodalCollator(processor, 300, packing=True, model=model, max_pixels=MAX_PIXELS, overlong=overlong)
        want = [None if (e := collator.encode(x)) is None else len(e) for x in rows]
        assert example_lengths(rows, collator) == want
        assert example_lengths(__import__("datasets").Dataset.from_list(rows), collator) == want
    assert want[3] is None
    sampler = token_budget_sampler(rows, collator, 600, seed=0)
    assert sampler.num_skipped == 1 and sampler.row_length == 300
    with pytest.raises(ValueError, match="packing"):
        token_budget_sampler(rows, MultimodalCollator(processor, 300), 600)
