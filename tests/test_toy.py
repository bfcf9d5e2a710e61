"""The embedded default: a real, deterministic tiny Qwen3-VL and the bundled task in the MMFineReason schema."""

from __future__ import annotations

import hashlib
import itertools
import re
from pathlib import Path

import torch

from mmfinereason.toy import SOURCES, build_tiny_model, make_dataset


def _digest(folder: Path) -> str:
    return hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()


def test_tiny_model_is_a_real_qwen3vl_with_qwen_tokens(tiny_dir, tiny_processor):
    from transformers import AutoModelForImageTextToText, Qwen3VLForConditionalGeneration

    model = AutoModelForImageTextToText.from_pretrained(tiny_dir)
    assert isinstance(model, Qwen3VLForConditionalGeneration)
    assert 0.5e6 < sum(p.numel() for p in model.parameters()) < 10e6
    ip = tiny_processor.image_processor
    assert (ip.patch_size, ip.merge_size) == (16, 2)
    vocab = tiny_processor.tokenizer.get_vocab()
    for token in ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>", "<think>", "</think>"]:
        assert token in vocab, token
    assert model.config.image_token_id == vocab["<|image_pad|>"]
    # <think> survives decoding with skip_special_tokens, as in Qwen3
    ids = tiny_processor.tokenizer("<think>x</think>", add_special_tokens=False)["input_ids"]
    assert tiny_processor.tokenizer.decode(ids, skip_special_tokens=True) == "<think>x</think>"


def test_tiny_model_build_is_deterministic(tmp_path):
    build_tiny_model(tmp_path / "a")
    build_tiny_model(tmp_path / "b")
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert (tmp_path / "a" / "tokenizer.json").read_text() == (tmp_path / "b" / "tokenizer.json").read_text()


def test_tiny_model_runs_forward_and_generate(tiny_model, tiny_processor):
    ds = make_dataset(2, seed=3)
    prompt = tiny_processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What?"}]}],
        add_generation_prompt=True, tokenize=False,
    )
    assert prompt.startswith("<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>What?<|im_end|>")
    assert prompt.endswith("<|im_start|>assistant\n")
    batch = tiny_processor(text=[prompt], images=[ds[0]["image"]], return_tensors="pt")
    assert "mm_token_type_ids" in batch
    out = tiny_model(**batch)
    assert out.logits.shape[:2] == batch["input_ids"].shape and torch.isfinite(out.logits).all()
    gen = tiny_model.generate(**batch, max_new_tokens=5, do_sample=False)
    assert gen.shape[1] == batch["input_ids"].shape[1] + 5


def test_dataset_schema_and_format():
    ds = make_dataset(40, seed=1)
    assert set(ds.column_names) >= {"id", "image", "question", "answer", "qwen3vl_235b_thinking_response",
                                    "caption", "source", "pass_rate"}
    assert set(ds["source"]) == set(SOURCES)
    sizes = set()
    for row in ds:
        assert row["question"].startswith("<image>")
        assert row["question"].count("<image>") == 1
        response = row["qwen3vl_235b_thinking_response"]
        assert re.fullmatch(r"<think>\n.+\n</think>\n\n.+Therefore, the final answer is <answer>(.+)</answer>\.",
                            response, re.S)
        assert response.endswith(f"<answer>{row['answer']}</answer>.")
        assert row["pass_rate"] in (0.0, 0.25, 0.5, 0.75, 1.0)
        assert row["image"].mode == "RGB"
        sizes.add(row["image"].size)
    assert len(sizes) >= 3 and any(w != h for w, h in sizes)  # several sizes and aspect ratios


def test_answer_types_and_difficulty_knob():
    ds = make_dataset(80, seed=2)
    by_source = {}
    for row in ds:
        by_source.setdefault(row["source"], set()).add(row["answer"])
    assert by_source["toy_color"] <= set("ABCD")
    assert all(a.isdigit() for a in by_source["toy_count"])
    assert by_source["toy_compare"] <= {"yes", "no"}
    assert by_source["toy_shape"] <= {"circle", "square", "triangle"}
    easy, hard = make_dataset(40, seed=5, difficulty=0), make_dataset(40, seed=5, difficulty=2)
    counts = lambda d: [int(r["answer"]) for r in d if r["source"] == "toy_count"]  # noqa: E731
    assert max(counts(hard)) > max(counts(easy))
    assert sum(easy["pass_rate"]) > sum(hard["pass_rate"])


def test_dataset_is_deterministic_per_seed():
    a, b, c = make_dataset(6, seed=7), make_dataset(6, seed=7), make_dataset(6, seed=8)
    assert a["question"] == b["question"] and a["answer"] == b["answer"]
    assert a["question"] != c["question"]


def test_think_traces_list_every_drawn_shape_and_the_answer_follows_from_the_list():
    """Task v8: every trace first lists the shapes (compare: their colours, with the running lead) in reading
    order, then answers from that list — so the list must be exactly what was drawn (the caption), and the answer
    must follow from it."""
    for row in make_example_rows(400, seed=3):
        drawn = row["caption"].removeprefix("An image showing ").removesuffix(".").split(", ")
        think = row["qwen3vl_235b_thinking_response"].split("</think>")[0]
        listed = re.search(r"from left to right: ([^.]+)\.", think).group(1).split(", ")
        question, answer = row["question"], row["answer"]
        if row["source"] == "toy_compare":
            # Task v9: the question's two colours, in its order, come first; then each listed colour carries the
            # running lead of the first over the second, one step at a time, and the answer is the final lead's sign.
            a, b = re.search(r"more (\w+) shapes than (\w+) shapes", question).groups()
            assert think.startswith(f"<think>\nI compare {a} with {b}. The lead of {a} from left to right: ")
            colours = [entry.split()[0] for entry in listed]
            assert sorted(colours) == sorted(d.split()[1] for d in drawn)
            leads = [int(entry.split()[1]) for entry in listed]
            assert leads == list(itertools.accumulate(1 if c == a else -1 for c in colours))
            assert f"So {a} leads by {listed[-1].split()[1]}." in think
            assert answer == ("yes" if leads[-1] > 0 else "no")
            continue
        assert sorted(listed) == sorted(drawn)
        if row["source"] == "toy_count":
            kind = re.search(r"How many (\w+)s are", question).group(1)
            assert answer == str(sum(item.endswith(" " + kind) for item in listed))
        else:  # colour / shape of the largest: one of the listed shapes
            named = re.search(r" is the (\w+ \w+)\.", think).group(1)
            assert "a " + named in listed
            colour, kind = named.split()
            if row["source"] == "toy_shape":
                assert answer == kind
            else:  # the option whose text is the named shape's colour
                assert f"\n{answer}. {colour}" in question


def make_example_rows(n: int, seed: int):
    from mmfinereason.toy import make_example

    return [make_example(i, seed=seed) for i in range(n)]
