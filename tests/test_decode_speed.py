"""The growing KV cache of CPU decoding (mmfinereason/modeling/kv_cache.py): it really engages (a spy sees its
layers), generates the same tokens to the bit, and holds what transformers' DynamicLayer holds through crops and
reordered rows — so a speed-up cannot hide a change of what is generated."""

from __future__ import annotations

import pytest
import torch
from transformers.cache_utils import DynamicLayer

from mmfinereason.modeling.kv_cache import GrowingLayer, use_growing_kv_cache
from tests.conftest import toy_examples


def rollout_batch(processor, n: int = 6):
    """A left-padded batch of toy prompts of different lengths, as TRL and the evaluation build them."""
    from mmfinereason.data.chat import render_prompt

    examples = toy_examples(n, seed=3)
    prompts = [render_prompt(processor, ex["question"] + " x" * i, 1) for i, ex in enumerate(examples)]
    batch = processor(text=prompts, images=[ex["images"] for ex in examples], padding=True, padding_side="left",
                      return_tensors="pt", size={"shortest_edge": 1024, "longest_edge": 25600})
    assert (batch["attention_mask"] == 0).any()  # really padded: the decode step gets a mask
    return batch


def sample(model, batch, seed: int = 0, **kwargs) -> torch.Tensor:
    torch.manual_seed(seed)
    return model.generate(**batch, do_sample=True, temperature=1.0, top_k=0, max_new_tokens=40, min_new_tokens=40,
                          pad_token_id=0, **kwargs)


def cache_layer_types(model, batch) -> set[type]:
    """The classes of the cache layers a ``generate`` call attends through."""
    seen: set[type] = set()

    def spy(module, args, kwargs):
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        if cache is not None:
            seen.update(type(layer) for layer in cache.layers)

    handle = model.model.language_model.register_forward_pre_hook(spy, with_kwargs=True)
    try:
        sample(model, batch)
    finally:
        handle.remove()
    return seen


@torch.no_grad()
def test_growing_cache_gives_the_same_tokens_and_is_really_used(tiny_model, tiny_processor):
    batch = rollout_batch(tiny_processor)
    assert cache_layer_types(tiny_model, batch) == {DynamicLayer}
    stock = [sample(tiny_model, batch, seed) for seed in (0, 1)]
    use_growing_kv_cache(tiny_model)
    use_growing_kv_cache(tiny_model)  # idempotent: one hook
    assert cache_layer_types(tiny_model, batch) == {GrowingLayer}
    for seed, tokens in zip((0, 1), stock):
        assert torch.equal(sample(tiny_model, batch, seed), tokens)
    use_growing_kv_cache(tiny_model, enabled=False)
    assert cache_layer_types(tiny_model, batch) == {DynamicLayer}


def test_growing_layer_holds_what_a_dynamic_layer_holds_through_crop_and_reorder():
    torch.manual_seed(0)
    grow, plain = GrowingLayer(), DynamicLayer()
    steps = [torch.randn(3, 2, n, 4) for n in (5, 1, 1, 70, 1)]  # a prompt, tokens, a chunk past the first room
    for i, k in enumerate(steps):
        for layer in (grow, plain):
            keys, values = layer.update(k, -k)
        assert torch.equal(keys, plain.keys) and torch.equal(grow.keys, plain.keys)
        assert torch.equal(grow.values, plain.values)
        if i == 2:  # crop two tokens off, then go on writing over them
            grow.crop(-2), plain.crop(-2)
        if i == 3:  # beam search reorders rows: the next update must not write into the stale buffer
            order = torch.tensor([2, 0, 1])
            grow.batch_select_indices(order), plain.batch_select_indices(order)
    assert grow.get_seq_length() == plain.get_seq_length() == 76
    assert grow._storage[0].shape[-2] > grow.get_seq_length()  # room to spare: no copy on the next token


if __name__ == "__main__":
    pytest.main([__file__, "-q"])
