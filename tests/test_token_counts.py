"""The per-piece token counter (data/batching/token_counts.py) equals the tokenizer on every text, or steps aside."""

from __future__ import annotations

import pickle
import random

import pytest

from mmfinereason.data.batching import token_counts
from mmfinereason.data.batching.token_counts import TokenCounter

# Stable characters (see the module docstring) and unstable ones (emoji, zero-width space, ASCII separators, CR,
# a combining accent that NFC composes), whole words, LaTeX, the added tokens of the tiny / Qwen tokenizers.
STABLE = list("abc XYZ 123\n\t'sllve.,;:!?()[]{}\\$^_-+=") + [
    "é", "×", "√", "π", "²", "≈", "中", "文", "°", "Ω", "ß", "Ä", " ", "  ", "   \n", "\n\n", "'re", " the", "\\frac{1}{2}",
    "<think>", "</think>", "<|im_end|>", "<|im_start|>", "<|image_pad|>",
]
UNSTABLE = ["😀", "\u200b", "\x1c", "\r", "e\u0301", "\x0b", "\U0001d400"]


def texts(seed: int, alphabet: list[str], n: int = 1500) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 200))) for _ in range(n)]


def exact(tokenizer, batch):
    return [len(ids) for ids in tokenizer(batch, add_special_tokens=False)["input_ids"]]


def with_backend(tiny_processor, mutate):
    """A copy of the tiny tokenizer whose tokenizer.json is changed by ``mutate(spec)``."""
    import json

    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    spec = json.loads(tiny_processor.tokenizer.backend_tokenizer.to_str())
    mutate(spec)
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(spec)))


def qwen_like(spec):  # Qwen2/3's tokenizer.json: the same split and ByteLevel, plus an NFC normalizer
    spec["normalizer"] = {"type": "NFC"}


def gpt2_like(spec):  # ByteLevel with its own GPT-2 pattern, no Split
    spec["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}


def unrecognised(spec):
    spec["pre_tokenizer"] = {"type": "Whitespace"}


@pytest.mark.parametrize("variant", [None, qwen_like, gpt2_like])
def test_the_shortcut_is_exact_on_every_text_and_takes_the_stable_ones(tiny_processor, variant):
    tokenizer = tiny_processor.tokenizer if variant is None else with_backend(tiny_processor, variant)
    counter = TokenCounter(tokenizer)
    assert counter.fast and counter._plan.ascii_patterns is not None  # plain ASCII goes through the stdlib engine
    stable = texts(0, STABLE)
    mixed = texts(1, STABLE + UNSTABLE)
    assert counter(stable) == exact(tokenizer, stable)
    assert counter(mixed) == exact(tokenizer, mixed)
    assert counter.fast, "a verified difference switched the shortcut off"
    assert counter.stats["fast"] >= len(stable)  # every stable text took the shortcut
    assert counter.stats["tokenised"] > counter.stats["verified"]  # the unstable ones were tokenised


def test_an_unrecognised_tokenizer_is_counted_by_the_tokenizer(tiny_processor):
    tokenizer = with_backend(tiny_processor, unrecognised)
    counter = TokenCounter(tokenizer)
    batch = texts(2, STABLE, 200)
    assert not counter.fast
    assert counter(batch) == exact(tokenizer, batch)


def test_a_verified_difference_switches_the_shortcut_off_and_the_counts_stay_exact(tiny_processor, monkeypatch):
    tokenizer = tiny_processor.tokenizer
    counter = TokenCounter(tokenizer)
    real_count = counter._plan.count
    monkeypatch.setattr(counter._plan, "count", lambda text, memo, tok: real_count(text, memo, tok) + 1)
    batch = texts(3, STABLE, 100)
    assert counter(batch) == exact(tokenizer, batch)
    assert not counter.fast


def test_the_counter_pickles_for_dataset_workers_without_its_memo(tiny_processor):
    counter = TokenCounter(tiny_processor.tokenizer)
    batch = texts(4, STABLE, 50)
    counter(batch)
    assert counter._memo
    copy = pickle.loads(pickle.dumps(counter))
    assert copy.fast and not copy._memo
    assert copy(batch) == exact(tiny_processor.tokenizer, batch)


def test_the_verification_sample_keeps_running(tiny_processor, monkeypatch):
    monkeypatch.setattr(token_counts, "VERIFY_FIRST", 3)
    monkeypatch.setattr(token_counts, "VERIFY_EVERY", 10)
    counter = TokenCounter(tiny_processor.tokenizer)
    counter(texts(5, STABLE, 100))
    assert counter.stats["verified"] == 3 + 10  # the first 3, then the 10th, 20th, ..., 100th


def test_one_counter_per_tokenizer_so_the_memo_outlives_a_batch(tiny_processor):
    from mmfinereason.data.batching.token_counts import counter_for

    assert counter_for(tiny_processor.tokenizer) is counter_for(tiny_processor.tokenizer)
