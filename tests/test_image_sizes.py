"""One source of truth for image sizes (issue 16, item 1).

The tiny model ships the real Qwen3-VL processor defaults (65,536 .. 16,777,216 px), the tiny recipes train at
1,024 .. 25,600 px. Whatever loads a folder training wrote (vLLM started by TRL from ``model.name_or_path``,
``eval``, ``from_pretrained``) must resize like training did, or an image outside the bounds gets two different
image-token counts (trl#6401). Checked on the SFT output, an SFT checkpoint and a GSPO output.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from mmfinereason.data.chat import prompt_messages
from mmfinereason.recipe.loader import load_recipe

MIN_PIXELS, MAX_PIXELS = 1024, 25600  # recipes/tiny/*.yaml
# below the minimum, at it, inside, at the maximum, above it, and a thin one (aspect ratio kept)
SIZES = [(16, 16), (32, 32), (96, 96), (160, 160), (320, 240), (400, 40)]


def image_tokens_like_trl(processor, size) -> int:
    """The image-token count of a prompt built as TRL's GRPOTrainer builds it (``_tokenize_prompts``): the
    processor's own ``apply_chat_template`` on the conversational prompt, with no size arguments."""
    image = Image.new("RGB", size, (200, 30, 30))
    conversation = prompt_messages("<image>\nWhat colour is the shape?", 1, images=[image])
    out = processor.apply_chat_template(
        conversation=[conversation], add_generation_prompt=True, tokenize=True, return_dict=True
    )
    image_token = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    return sum(1 for t in out["input_ids"][0] if t == image_token)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_dir):
    """A 1-step tiny SFT run saved as `mmfinereason sft` saves it (with a checkpoint), then a GSPO trainer built
    from its output and saved by the trainer's own save."""
    from mmfinereason.pipelines.gspo import build_gspo
    from mmfinereason.pipelines.sft import run_sft

    root = tmp_path_factory.mktemp("image-sizes")
    common = ["eval.before_training=false", "eval.after_training=false", "data.eval.0.limit=1", "train.max_steps=1"]
    sft = load_recipe("recipes/tiny/sft.yaml", [
        f"train.output_dir={root / 'sft'}", "data.train.0.limit=16", "train.save_strategy=steps", "train.save_steps=1",
        *common,
    ])
    run_sft(sft)
    gspo = load_recipe("recipes/tiny/gspo.yaml", [
        f"model.name_or_path={root / 'sft'}", f"train.output_dir={root / 'gspo'}",
        "data.train=[{path: toy, split: rl, limit: 8}]", "train.per_device_train_batch_size=8", *common,
    ])
    trainer = build_gspo(gspo)
    trainer.save_model(str(root / "gspo"))
    return root, trainer.processing_class


def test_tiny_processor_ships_the_real_qwen3vl_defaults(tiny_processor):
    ip = tiny_processor.image_processor
    assert (ip.size["shortest_edge"], ip.size["longest_edge"]) == (65536, 16777216)
    assert (ip.patch_size, ip.merge_size, ip.temporal_patch_size) == (16, 2, 2)
    assert list(ip.image_mean) == list(ip.image_std) == [0.5, 0.5, 0.5]


@pytest.mark.parametrize("folder", ["sft", "sft/checkpoint-1", "gspo"])
def test_saved_folder_resizes_like_training(trained, folder, tiny_processor):
    from transformers import AutoProcessor

    root, in_memory = trained
    saved = AutoProcessor.from_pretrained(str(root / folder))
    size = saved.image_processor.size
    assert (size["shortest_edge"], size["longest_edge"]) == (MIN_PIXELS, MAX_PIXELS)
    for wh in SIZES:
        assert image_tokens_like_trl(saved, wh) == image_tokens_like_trl(in_memory, wh), wh
    # the check has teeth: the base model's processor (real defaults) counts differently below and above the bounds
    assert image_tokens_like_trl(tiny_processor, (16, 16)) != image_tokens_like_trl(saved, (16, 16))
    assert image_tokens_like_trl(tiny_processor, (320, 240)) != image_tokens_like_trl(saved, (320, 240))


def test_collator_counts_match_the_saved_processor(trained):
    """SFT's collator (explicit size) and the saved folder's processor (its own size) agree too."""
    from transformers import AutoProcessor

    from mmfinereason.data.batching.collator import MultimodalCollator

    root, _ = trained
    saved = AutoProcessor.from_pretrained(str(root / "sft"))
    collator = MultimodalCollator(saved, 2048, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    image_token = saved.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    for wh in SIZES:
        example = {"id": 0, "question": "<image>\nWhat colour is the shape?", "response": "red",
                   "images": [Image.new("RGB", wh, (200, 30, 30))]}
        encoded = collator.encode(example)
        assert int((encoded.input_ids == image_token).sum()) == image_tokens_like_trl(saved, wh), wh


def test_load_processor_sets_and_validates_bounds(tiny_dir, tmp_path):
    from mmfinereason.modeling.loading import load_processor

    processor = load_processor("tiny", min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    processor.save_pretrained(tmp_path)
    assert load_processor(str(tmp_path)).image_processor.size["longest_edge"] == MAX_PIXELS
    with pytest.raises(ValueError, match="min_pixels <= max_pixels"):
        load_processor("tiny", min_pixels=4096, max_pixels=1024)
    assert Path(tmp_path, "processor_config.json").exists() or Path(tmp_path, "preprocessor_config.json").exists()
