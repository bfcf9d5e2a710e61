"""MultimodalCollator on hand-checked examples (tiny Qwen3-VL processor: patch 16, merge 2).

Chat rendering and label masks as exact strings; image-token counts equal the processor's grid for odd sizes
and extreme aspect ratios; overlong samples are truncated in the response or dropped, never cut through an
image; multi-image and text-only rows; ``mm_token_type_ids`` in every batch.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mmfinereason.data.batching.collator import IGNORE_INDEX, MultimodalCollator
from mmfinereason.data.batching.lengths import image_token_count

IMAGE_PAD = "<|image_pad|>"


@pytest.fixture(scope="module")
def processor(tiny_processor):
    return tiny_processor


@pytest.fixture(scope="module")
def model(tiny_dir):
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(tiny_dir, dtype=torch.float32)


def image(h: int, w: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8))


def example(question: str, images: list, response: str = "<think>two</think>The answer is 2.", id: str = "x") -> dict:
    return {"id": id, "images": images, "question": question, "response": response, "answer": "2"}


def decode(processor, ids) -> str:
    return processor.tokenizer.decode([int(i) for i in ids], skip_special_tokens=False)


def test_chat_rendering_and_labels_hand_checked(processor):
    collator = MultimodalCollator(processor, 256)
    enc = collator.encode(example("<image>\nHow many circles?", [image(32, 32)]))  # 32x32 -> 2x2 patches -> 1 token
    assert decode(processor, enc.input_ids) == (
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>How many circles?<|im_end|>\n"
        "<|im_start|>assistant\n<think>two</think>The answer is 2.<|im_end|>"
    )
    trained = enc.labels != IGNORE_INDEX
    # Labels are exactly the response plus the closing <|im_end|>, a contiguous suffix; the prompt is masked.
    assert decode(processor, enc.labels[trained]) == "<think>two</think>The answer is 2.<|im_end|>"
    first = int(trained.nonzero()[0])
    assert bool(trained[first:].all()) and decode(processor, enc.input_ids[:first]).endswith("<|im_start|>assistant\n")
    assert torch.equal(enc.labels[trained], enc.input_ids[trained])

    with_system = MultimodalCollator(processor, 256, system_prompt="Be brief.").encode(example("Two plus zero?", []))
    assert decode(processor, with_system.input_ids).startswith(
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nTwo plus zero?<|im_end|>\n<|im_start|>assistant\n"
    )


@pytest.mark.parametrize(
    "size", [(32, 32), (31, 33), (17, 45), (97, 211), (333, 129), (16, 1000), (1000, 16), (28, 2000), (1023, 1021)]
)
def test_image_tokens_equal_processor_grid(processor, size):
    h, w = size
    collator = MultimodalCollator(processor, 4096, max_pixels=200_000)
    enc = collator.encode(example("<image>What is it?", [image(h, w)]))
    direct = processor.image_processor(images=[image(h, w)], size={"shortest_edge": 1024, "longest_edge": 200_000})
    grid = direct["image_grid_thw"]
    assert torch.equal(enc.image_grid_thw, torch.as_tensor(grid))
    merge = processor.image_processor.merge_size ** 2
    n_tokens = int((enc.input_ids == processor.tokenizer.convert_tokens_to_ids(IMAGE_PAD)).sum())
    assert n_tokens == int(grid.prod()) // merge == image_token_count(collator, h, w)
    assert enc.pixel_values.shape[0] == int(grid.prod())
    assert int(enc.mm_token_type_ids.sum()) == n_tokens  # image tokens are type 1, everything else 0


def test_overlong_truncates_the_response_never_an_image(processor):
    pad_id = processor.tokenizer.convert_tokens_to_ids(IMAGE_PAD)
    long_response = "<think>" + "count the shapes again " * 80 + "</think>2"
    row = example("<image> and <image>: which is larger?", [image(64, 64), image(40, 120, 1)], long_response)
    full = MultimodalCollator(processor, 4096).encode(row)
    prompt_len = int((full.labels == IGNORE_INDEX).sum())

    truncate = MultimodalCollator(processor, prompt_len + 10)
    enc = truncate.encode(row)
    assert len(enc) == prompt_len + 10 and truncate.stats["truncated"] == 1
    assert torch.equal(enc.input_ids[:prompt_len], full.input_ids[:prompt_len])  # prompt and images intact
    assert int((enc.input_ids == pad_id).sum()) == int((full.input_ids == pad_id).sum())
    assert int((enc.labels != IGNORE_INDEX).sum()) == 10

    drop = MultimodalCollator(processor, prompt_len + 10, overlong="drop")
    assert drop.encode(row) is None and drop.stats["dropped_overlong"] == 1
    # A prompt (with its images) that alone exceeds max_length is dropped under either policy, never cut.
    for policy in ("truncate", "drop"):
        tight = MultimodalCollator(processor, prompt_len - 3, overlong=policy)
        assert tight.encode(row) is None and tight.stats["dropped_overlong"] == 1
        with pytest.raises(ValueError, match="exceeded max_length"):
            tight([row])
    # Truncation leaving no response token at all is a drop too (room < 1).
    assert MultimodalCollator(processor, prompt_len).encode(row) is None


def test_multi_image_and_text_only_rows_in_one_padded_batch(processor, model):
    rows = [
        example("<image>\nLeft: <image>\nRight: <image>\nSame colour?", [image(50, 70), image(16, 300, 1), image(90, 33, 2)], id="three"),
        example("What is two plus two?", [], "<think>4</think>4", id="text"),
        example("<image>Count.", [image(120, 64, 3)], id="one"),
    ]  # fmt: skip
    collator = MultimodalCollator(processor, 1024, pad_to_multiple_of=8)
    batch = collator(rows)
    assert set(batch) == {"input_ids", "attention_mask", "labels", "mm_token_type_ids", "pixel_values", "image_grid_thw"}
    assert batch["input_ids"].shape[1] % 8 == 0
    encoded = [collator.encode(r) for r in rows]
    assert encoded[1].pixel_values is None and encoded[1].image_grid_thw is None
    # Grids in row order, images within a row in marker order.
    assert torch.equal(batch["image_grid_thw"], torch.cat([encoded[0].image_grid_thw, encoded[2].image_grid_thw]))
    assert batch["image_grid_thw"].shape[0] == 4
    assert batch["pixel_values"].shape[0] == int(batch["image_grid_thw"].prod(-1).sum())
    image_id = model.config.image_token_id
    assert torch.equal(batch["mm_token_type_ids"].bool(), batch["input_ids"] == image_id)
    lengths = batch["attention_mask"].sum(-1).tolist()
    assert lengths == [len(e) for e in encoded]
    for i, n in enumerate(lengths):
        assert bool((batch["input_ids"][i, n:] == collator.pad_token_id).all())
        assert bool((batch["labels"][i, n:] == IGNORE_INDEX).all())
    assert collator.stats["real_tokens"] == sum(lengths) and collator.stats["batch_tokens"] == batch["input_ids"].numel()
    with torch.no_grad():
        assert torch.isfinite(model(**batch, use_cache=False).loss)


def test_text_only_batches_and_packed_batches_carry_mm_token_type_ids(processor, model):
    rows = [example("One plus one?", [], "2", id="a"), example("Two plus two?", [], "4", id="b")]
    padded = MultimodalCollator(processor, 128)(rows)
    assert "pixel_values" not in padded and "image_grid_thw" not in padded
    assert not bool(padded["mm_token_type_ids"].any())
    packed = MultimodalCollator(processor, 128, packing=True, model=model)(rows + [example("<image>?", [image(48, 48)])])
    assert packed["input_ids"].shape[0] == 1 and packed["position_ids"].shape[:2] == (4, 1)
    assert packed["mm_token_type_ids"].shape == packed["input_ids"].shape and bool(packed["mm_token_type_ids"].any())


def test_bad_input_is_a_clear_error(processor):
    with pytest.raises(ValueError, match="markers"):
        MultimodalCollator(processor, 128).encode(example("<image><image> two?", [image(32, 32)]))
    with pytest.raises(ValueError, match="overlong"):
        MultimodalCollator(processor, 128, overlong="cut")
    with pytest.raises(ValueError, match="needs the model"):
        MultimodalCollator(processor, 128, packing=True)
