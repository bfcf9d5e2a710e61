"""The image processor on one rank's GSPO rollout batch: every rollout's copy vs each distinct image once.

    python bench/repeated_images.py                  # ~1 min on 2 cores, 7 GB of RAM
    python bench/repeated_images.py --prompts 16     # 256 rows: ~1.5 min, 13 GB (the recipes' 32 need ~26 GB)

TRL processes the rollout batch's images twice per generation round: ``apply_chat_template(tokenize=True)`` for the
prompt ids it generates from, and ``processor(images=..., text=...)`` for the loss forward's ``pixel_values``.
This times both calls as TRL makes them, with the Qwen3-VL processor (the tiny model ships the real preprocessor
values) at the qwen3vl recipes' bounds (65,536 .. 589,824 px: images up to 768x768), on ``--prompts`` x
``--generations`` rows whose images are copies of ``--prompts`` distinct 1024x768 ones — the plain processor
against :func:`mmfinereason.data.batching.repeated_images.images_processed_once`. The qwen3vl recipes generate 512 rows
per rank a round (1 x 512 accumulation steps: 32 prompts x 16 rollouts). Arms alternate (plain, once, once,
plain, ...) so that machine noise hits both; compare the ratio. Checks that both arms return equal tensors. Prints
one JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import statistics
import time

import numpy as np
import torch
from PIL import Image

from mmfinereason.data.chat import prompt_messages
from mmfinereason.modeling.loading import load_processor
from mmfinereason.toy import tiny_model_dir
from mmfinereason.data.batching.repeated_images import images_processed_once
from gspo_step import abba  # bench/ is on the path when a bench runs as a script

MIN_PIXELS, MAX_PIXELS = 65_536, 589_824  # recipes/qwen3vl-*/gspo.yaml


def rollout_batch(prompts: int, generations: int) -> list[list[Image.Image]]:
    """One image per prompt, each row a separate copy (a dataset decodes a new object per access), grouped by
    prompt as TRL's repeat sampler orders them."""
    rng = np.random.default_rng(0)
    pixels = [rng.integers(0, 256, (768, 1024, 3), dtype=np.uint8) for _ in range(prompts)]
    return [[Image.fromarray(p)] for p in pixels for _ in range(generations)]


def trl_calls(processor, images) -> tuple[float, float, dict]:
    """Seconds of TRL's two processor calls on ``images``, and the second call's output."""
    conversations = [prompt_messages("<image>\nWhat is shown? Answer with a number.", 1, images=i) for i in images]
    start = time.perf_counter()
    processor.apply_chat_template(conversation=conversations, add_generation_prompt=True, tokenize=True,
                                  return_dict=True)
    tokenize = time.perf_counter() - start
    texts = processor.apply_chat_template(conversations, add_generation_prompt=True, tokenize=False)
    start = time.perf_counter()
    out = processor(images=images, text=texts, padding=True, return_tensors="pt")
    return tokenize, time.perf_counter() - start, out  # the second: the loss forward's pixel_values


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--generations", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2, help="plain/once pairs")
    args = parser.parse_args()
    processor = load_processor(tiny_model_dir(), min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    images = rollout_batch(args.prompts, args.generations)
    reference: dict = {}

    def run(arm: str, _round: int) -> dict:
        with images_processed_once(processor) if arm == "once" else contextlib.nullcontext():
            tokenize, pixels, out = trl_calls(processor, images)
        if not reference:
            reference.update({k: v.clone() for k, v in out.items()})
        same = all(torch.equal(reference[k], out[k]) for k in reference)
        del out
        gc.collect()
        return {"seconds": tokenize + pixels, "same": same}

    arms = abba(("plain", "once"), args.rounds, run)
    seconds = {arm: [r["seconds"] for r in rounds] for arm, rounds in arms.items()}
    same = all(r["same"] for rounds in arms.values() for r in rounds)
    plain, once = statistics.median(seconds["plain"]), statistics.median(seconds["once"])
    print(json.dumps({
        "bench": "repeated_images", "rows": len(images), "distinct_images": args.prompts,
        "pixel_values_rows": int(reference["pixel_values"].shape[0]),
        "seconds_per_round": {"plain": round(plain, 2), "once": round(once, 2)},
        "speedup": round(plain / once, 2), "same_tensors": same, "threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
