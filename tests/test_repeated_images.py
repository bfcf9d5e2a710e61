"""Each distinct image of a batch through the image processor once (mmfinereason/data/batching/repeated_images.py).

What the processor returns must be bit for bit what the plain call returns, on the real Qwen3-VL preprocessor
values the tiny model ships (patch 16, merge 2, mean/std 0.5), for the two calls TRL makes per step; and a GSPO
run with it must be the same run as without it.
"""

from __future__ import annotations

import contextlib
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from mmfinereason.data.chat import prompt_messages
from mmfinereason.trainers import gspo as gspo_module
from mmfinereason.data.batching.repeated_images import DistinctImageProcessor, distinct_images, images_processed_once


def noise(size, seed, mode="RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).convert(mode)


def rollout_images(generations: int = 4) -> list[list[Image.Image]]:
    """Three prompts' images (two of one size), each prompt repeated ``generations`` times as TRL's sampler does;
    every copy a separate PIL object, as a dataset decodes one per access."""
    prompts = [((300, 200), 1), ((300, 200), 2), ((96, 400), 3)]
    return [[noise(size, seed)] for size, seed in prompts for _ in range(generations)]


def test_distinct_images_keys_on_pixels_not_objects():
    a, a_copy, b = noise((20, 10), 0), noise((20, 10), 0), noise((20, 10), 1)
    assert a is not a_copy
    distinct, inverse = distinct_images([a, b, a_copy, b])
    assert inverse == [0, 1, 0, 1] and distinct == [a, b]
    # another mode is another image, and so are the same bytes read as another size
    assert distinct_images([a, a.convert("RGBA")]) is None
    flat = Image.frombytes("RGB", (10, 20), a.tobytes())
    assert distinct_images([a, flat]) is None
    assert distinct_images([a, b]) is None, "nothing repeats: the plain call"
    # palette images: the bytes are indices, the colours are the palette's (and transparency, through RGBA)
    indexed = Image.new("P", (4, 4), 1)
    red, blue, red_clear = indexed.copy(), indexed.copy(), indexed.copy()
    for image, colour in ((red, [255, 0, 0]), (blue, [0, 0, 255]), (red_clear, [255, 0, 0])):
        image.putpalette([0, 0, 0, *colour])
    red_clear.info["transparency"] = 1
    assert red.tobytes() == blue.tobytes() == red_clear.tobytes()
    assert distinct_images([red, blue, red_clear]) is None
    assert distinct_images([red, red.copy()])[1] == [0, 0]
    assert distinct_images([np.zeros((4, 4, 3), np.uint8)] * 2) is None, "not PIL: the plain call"


def assert_same_batch(plain, deduped):
    assert set(plain.keys()) == set(deduped.keys())
    for key in plain:
        assert torch.equal(plain[key], deduped[key]), key


def test_processor_call_is_bitwise_the_plain_one(tiny_processor):
    """TRL's second call (the loss forward's pixel_values): processor(images=..., text=...), here with the copies
    interleaved (a, b, c, a, b, c, ...) so that the output order is checked, not only TRL's grouped order."""
    images = rollout_images()
    images = [images[copy + 4 * prompt] for copy in range(4) for prompt in range(3)]
    texts = [f"<|vision_start|><|image_pad|><|vision_end|>question {i}" for i in range(len(images))]
    plain = tiny_processor(images=images, text=texts, padding=True, return_tensors="pt")
    with images_processed_once(tiny_processor) as wrapper:
        deduped = tiny_processor(images=images, text=texts, padding=True, return_tensors="pt")
    assert (wrapper.images_seen, wrapper.images_processed) == (12, 3)
    assert_same_batch(plain, deduped)
    grids = plain["image_grid_thw"].tolist()
    assert grids[:3] == grids[3:6] and grids[0] != grids[2]


def test_prompts_with_several_images(tiny_processor):
    """Rows with two images each (MMMU has several), the copies interleaved: the flat order is row-major."""
    rows = [[noise((200, 120), 10 + r), noise((64, 300), 20 + r)] for r in range(2)]
    images = [[image.copy() for image in rows[r]] for _ in range(3) for r in range(2)]
    pad = "<|vision_start|><|image_pad|><|vision_end|>"
    texts = [f"{pad} and {pad}: which is larger?"] * len(images)
    plain = tiny_processor(images=images, text=texts, padding=True, return_tensors="pt")
    with images_processed_once(tiny_processor) as wrapper:
        deduped = tiny_processor(images=images, text=texts, padding=True, return_tensors="pt")
    assert (wrapper.images_seen, wrapper.images_processed) == (12, 4)
    assert_same_batch(plain, deduped)


def test_chat_template_call_is_bitwise_the_plain_one(tiny_processor):
    """TRL's first call (prompt ids for generation): apply_chat_template(tokenize=True) on the conversations."""
    conversations = [prompt_messages("<image>\nHow many shapes?", 1, images=imgs) for imgs in rollout_images()]

    def tokenize():
        return tiny_processor.apply_chat_template(
            conversation=conversations, add_generation_prompt=True, tokenize=True, return_dict=True, padding=True,
            return_tensors="pt",
        )

    plain = tokenize()
    with images_processed_once(tiny_processor) as wrapper:
        deduped = tokenize()
    assert wrapper.images_processed == 3
    assert_same_batch(plain, deduped)


@pytest.mark.parametrize("tensors", ["pt", "np"])
def test_image_processor_alone_in_either_tensor_type(tiny_processor, tensors):
    images = [image for row in rollout_images(2) for image in row][::-1]
    plain = tiny_processor.image_processor(images, return_tensors=tensors)
    deduped = DistinctImageProcessor(tiny_processor.image_processor)(images, return_tensors=tensors)
    for key in plain:
        assert type(plain[key]) is type(deduped[key]) and np.array_equal(np.asarray(plain[key]), np.asarray(deduped[key]))


def test_the_real_image_processor_is_back_after_the_block(tiny_processor):
    real = tiny_processor.image_processor
    with pytest.raises(RuntimeError), images_processed_once(tiny_processor) as wrapper:
        assert tiny_processor.image_processor is wrapper and wrapper.merge_size == real.merge_size
        raise RuntimeError("a failed rollout")
    assert tiny_processor.image_processor is real
    with images_processed_once(tiny_processor.tokenizer) as nothing:  # a text-only processing class
        assert nothing is None


class OtherLayout:
    """An image processor whose output is not Qwen-style (one tensor per image, an extra key)."""

    def __init__(self):
        self.calls = []

    def __call__(self, images, **kwargs):
        self.calls.append(len(images))
        return {"pixel_values": torch.zeros(len(images), 3, 4, 4), "image_sizes": torch.ones(len(images), 2)}


def test_other_layouts_get_the_plain_call(caplog, monkeypatch):
    monkeypatch.setattr(DistinctImageProcessor, "not_gatherable", set())
    other = OtherLayout()
    images = [noise((8, 8), 0), noise((8, 8), 0)]
    with caplog.at_level(logging.WARNING):
        out = DistinctImageProcessor(other)(images)
        again = DistinctImageProcessor(other)(images)  # a later batch: not tried again, not warned again
    assert other.calls == [1, 2, 2] and out["pixel_values"].shape[0] == again["pixel_values"].shape[0] == 2
    assert caplog.text.count("not Qwen-style") == 1


def count_processor_calls(patch) -> list[tuple[int, int]]:
    """From now on (under ``patch``, a monkeypatch), each call of a :class:`DistinctImageProcessor` appends its
    wrapper's (images seen, images processed) so far to the returned list."""
    seen = []
    real_call = DistinctImageProcessor.__call__

    def counting(self, *args, **kwargs):
        out = real_call(self, *args, **kwargs)
        seen.append((self.images_seen, self.images_processed))
        return out

    patch.setattr(DistinctImageProcessor, "__call__", counting)
    return seen


def run_gspo(tmp_path, monkeypatch, dedupe: bool):
    """Two GSPO steps of 2 prompts x 4 rollouts on the tiny model; the weights, the logs and, per processor call,
    (images seen, images processed) of the step's wrapper."""
    from test_gspo import length_reward, make_trainer

    with monkeypatch.context() as patch:
        if not dedupe:
            patch.setattr(gspo_module, "images_processed_once", lambda processor: contextlib.nullcontext())
        seen = count_processor_calls(patch)
        trainer = make_trainer(tmp_path / str(dedupe), reward_funcs=[length_reward], reward_weights=None,
                               overlong_completions="none", num_generations=4, per_device_train_batch_size=8)
        trainer.train()
    params = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    return params, [h for h in trainer.state.log_history if "loss" in h], seen


def test_gspo_run_is_the_same_run_with_each_image_processed_once(tmp_path, monkeypatch):
    plain_params, plain_logs, plain_seen = run_gspo(tmp_path, monkeypatch, dedupe=False)
    params, logs, seen = run_gspo(tmp_path, monkeypatch, dedupe=True)
    assert plain_seen == []
    # per step, one wrapper and two processor calls (prompt ids for generation, pixel_values for the loss) on 8 rows
    # of 2 prompts: 2 images processed per call instead of 8
    assert seen == [(8, 2), (16, 4)] * 2
    assert [h["loss"] for h in logs] == [h["loss"] for h in plain_logs]
    assert [h["reward"] for h in logs] == [h["reward"] for h in plain_logs]
    assert all(torch.equal(params[n], plain_params[n]) for n in params)


def test_seeded_sampling_processes_each_question_image_once(tiny_model, tiny_processor, monkeypatch):
    """Pass-rate selection's seeded sampling repeats each question k times: same completions, 1/k the images."""
    from conftest import toy_examples

    from mmfinereason.evaluation import generation

    examples, k = toy_examples(3, seed=5), 4
    seeds = list(range(100, 100 + 3 * k))

    def sample():
        return generation.generate_responses(tiny_model, tiny_processor, examples, max_new_tokens=12, do_sample=True,
                                             num_return_sequences=k, row_seeds=seeds, max_pixels=25600)

    seen = count_processor_calls(monkeypatch)
    deduped = sample()
    monkeypatch.setattr(generation, "images_processed_once", lambda processor: contextlib.nullcontext())
    plain = sample()
    assert len(deduped) == len(plain) == 3 * k and deduped == plain
    assert seen == [(3 * k, 3)]
