"""Shared fixtures: the tiny model is built once per session (cached under MMFINEREASON_CACHE)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> str:
    from mmfinereason.toy import tiny_model_dir

    cache = os.environ.get("MMFINEREASON_CACHE") or str(tmp_path_factory.mktemp("mmfr-cache"))
    os.environ["MMFINEREASON_CACHE"] = cache
    return tiny_model_dir(cache)


@pytest.fixture(scope="session")
def tiny_processor(tiny_dir):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_dir)


@pytest.fixture()
def tiny_model(tiny_dir):
    import torch
    from transformers import AutoModelForImageTextToText

    torch.manual_seed(0)
    return AutoModelForImageTextToText.from_pretrained(tiny_dir).eval()


def toy_examples(n: int, seed: int = 0, **kwargs) -> list[dict]:
    """Normalised examples (the loader's output schema) drawn from the bundled task."""
    from mmfinereason.toy import make_example

    rows = [make_example(i, seed, **kwargs) for i in range(n)]
    return [
        {
            "id": r["id"],
            "images": [r["image"]],
            "question": r["question"],
            "answer": r["answer"],
            "response": r["qwen3vl_235b_thinking_response"],
            "source": r["source"],
            "pass_rate": r["pass_rate"],
        }
        for r in rows
    ]
