"""Build the embedded default model: a tiny, randomly initialised but *real* Qwen3-VL, offline, in seconds.

Why not a mock: the bugs this framework exists to avoid (image-token/feature mismatches, mRoPE positions under
packing, label masks around the chat template, resume) live in the real ``Qwen3VLForConditionalGeneration``
and the real Qwen3-VL processor. So the tiny model is that class with small sizes: vision tower (patch 16,
spatial merge 2, deepstack), a 4-layer text decoder with interleaved mRoPE, the real ``Qwen2VLImageProcessor``
configured as Qwen3-VL ships it, and a tokenizer trained on the bundled task (:mod:`.tokenizer`).

The directory is cached under a key that hashes the build parameters and the library versions, written
atomically (temp dir + rename) so concurrent processes (DDP ranks, pytest-xdist) never see half a model.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

_BUILD_VERSION = 9  # bump when the architecture, tokenizer corpus, template or processor defaults change

TEXT_CONFIG = dict(
    hidden_size=128,
    intermediate_size=384,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=32,
    max_position_embeddings=4096,
    rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [6, 5, 5], "mrope_interleaved": True},
    tie_word_embeddings=False,
)
VISION_CONFIG = dict(
    depth=2,
    hidden_size=64,
    intermediate_size=192,
    num_heads=2,
    patch_size=16,
    spatial_merge_size=2,
    temporal_patch_size=2,
    out_hidden_size=128,
    num_position_embeddings=256,  # 16x16 learned grid, interpolated to any image size
    deepstack_visual_indexes=[1],
)
# The real Qwen3-VL preprocessor_config.json values (patch 16, merge 2, temporal 2, mean/std 0.5, and its own
# size: 65,536 .. 16,777,216 pixels = 256² .. 4096²), checked against public copies of the file. The defaults
# are the real ones on purpose: a recipe's narrower bounds must be written into every folder training saves
# (mmfinereason.modeling.loading.set_pixel_bounds), and only real defaults let the tests see a folder that
# forgot them — the mismatch a real checkpoint would have (trl#6401).
IMAGE_PROCESSOR = dict(
    patch_size=16,
    merge_size=2,
    temporal_patch_size=2,
    image_mean=[0.5, 0.5, 0.5],
    image_std=[0.5, 0.5, 0.5],
    size={"shortest_edge": 65536, "longest_edge": 16777216},
)
VIDEO_PROCESSOR = dict(
    patch_size=16, merge_size=2, temporal_patch_size=2, size={"shortest_edge": 4096, "longest_edge": 25165824}
)


def _default_cache_dir() -> Path:
    root = os.environ.get("MMFINEREASON_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "mmfinereason"
    )
    return Path(root)


def _task_sources_digest() -> str:
    """The bytes of the modules the tokenizer is trained from (the task's text, the chat template).

    Why: the BPE is trained on the task's traces, so a trace changed without a bump of ``_BUILD_VERSION`` would
    load a cached tokenizer trained on the old text (it happened once while developing task v9).
    """
    from mmfinereason.toy import task, tokenizer

    digest = hashlib.sha256()
    for module in (task, tokenizer):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()


def _cache_key() -> str:
    import tokenizers
    import transformers

    blob = json.dumps(
        [_BUILD_VERSION, TEXT_CONFIG, VISION_CONFIG, IMAGE_PROCESSOR, VIDEO_PROCESSOR, transformers.__version__,
         tokenizers.__version__, _task_sources_digest()],
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _tokenizer_corpus() -> list[str]:
    """Text the BPE is trained on: the task's questions and traces, in chat form, plus digits and words."""
    from mmfinereason.toy.task import make_example

    corpus = []
    for i in range(400):
        row = make_example(i, seed=12345)
        corpus += [row["question"], row["qwen3vl_235b_thinking_response"], row["caption"]]
    corpus += [" ".join(str(k) for k in range(200)), "user assistant system Answer: The final answer is \\boxed{}"]
    return corpus


def build_tiny_model(path: str | os.PathLike, seed: int = 0) -> None:
    """Write a tiny Qwen3-VL checkpoint + processor to ``path`` (overwrites). Deterministic in ``seed``."""
    import torch
    from transformers import (
        Qwen2VLImageProcessor,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    from mmfinereason.toy.tokenizer import CHAT_TEMPLATE, train_tokenizer

    tokenizer = train_tokenizer(_tokenizer_corpus())
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")}
    config = Qwen3VLConfig(
        text_config=dict(TEXT_CONFIG, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id),
        vision_config=dict(VISION_CONFIG),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    config.eos_token_id = tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, tokenizer.pad_token_id]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.do_sample = False

    processor = Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(**IMAGE_PROCESSOR),
        tokenizer=tokenizer,
        video_processor=Qwen3VLVideoProcessor(**VIDEO_PROCESSOR),
        chat_template=CHAT_TEMPLATE,
    )
    # Every process may build its own copy (DDP ranks racing on a cold cache); transformers writes model files
    # only on rank 0 once torch.distributed is up, which would leave a rank's copy without weights.
    model.should_save_on_this_rank = lambda is_main_process: True
    model.save_pretrained(path)
    processor.save_pretrained(path)
    missing = [f for f in ("config.json", "model.safetensors", "tokenizer.json") if not (Path(path) / f).exists()]
    if missing:
        raise RuntimeError(f"building the tiny model in {path} did not write {missing}")


def tiny_model_dir(cache_dir: str | os.PathLike | None = None) -> str:
    """Directory holding the tiny Qwen3-VL + processor; built on first use (a few seconds), then cached.

    Loadable with ``AutoModelForImageTextToText.from_pretrained`` and ``AutoProcessor.from_pretrained``.
    ``cache_dir`` defaults to ``$MMFINEREASON_CACHE`` or ``~/.cache/mmfinereason``.
    """
    root = Path(cache_dir) if cache_dir is not None else _default_cache_dir()
    target = root / f"tiny-qwen3vl-{_cache_key()}"
    if (target / "config.json").exists() and (target / ".complete").exists():
        return str(target)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-build-", dir=root))
    try:
        build_tiny_model(tmp)
        (tmp / ".complete").write_text("ok\n")
        try:
            os.rename(tmp, target)
        except OSError:
            # Another process finished first: its copy is identical (deterministic build); keep it.
            if not (target / ".complete").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(target)
