"""Thinking templates (issue 16, item 3): no doubled ``<think>`` in SFT targets; GSPO / eval rewards cope.

The real Qwen3-VL-Thinking template ends its generation prompt with ``<|im_start|>assistant\\n<think>\\n``, and
MMFineReason responses start with ``<think>``. The test template below copies that generation-prompt behaviour
onto the tiny model's template.
"""

from __future__ import annotations

import copy

import pytest

from mmfinereason.data.chat import opens_thinking, response_after_prompt
from tests.conftest import toy_examples

INSTRUCT_GENERATION = "{{- '<|im_start|>assistant\\n' -}}"
THINKING_GENERATION = "{{- '<|im_start|>assistant\\n<think>\\n' -}}"  # Qwen3-VL-Thinking's generation prompt


@pytest.fixture()
def thinking_processor(tiny_processor):
    processor = copy.deepcopy(tiny_processor)
    assert INSTRUCT_GENERATION in processor.chat_template
    processor.chat_template = processor.chat_template.replace(INSTRUCT_GENERATION, THINKING_GENERATION)
    return processor


def _target_text(processor, example) -> str:
    from mmfinereason.data.batching.collator import MultimodalCollator

    collator = MultimodalCollator(processor, 1024, min_pixels=1024, max_pixels=25600)
    encoded = collator.encode(example)
    return processor.tokenizer.decode(encoded.input_ids[encoded.labels != -100])


def test_thinking_template_trains_no_doubled_think(thinking_processor):
    example = toy_examples(1)[0]
    assert example["response"].startswith("<think>")
    assistant_turn = _prompt_plus_target(thinking_processor, example)
    assert assistant_turn.startswith("<|im_start|>assistant\n<think>\n")
    assert assistant_turn.count("<think>") == 1, assistant_turn
    target = _target_text(thinking_processor, example)
    assert not target.lstrip().startswith("<think>") and "</think>" in target


def _prompt_plus_target(processor, example) -> str:
    from mmfinereason.data.batching.collator import MultimodalCollator

    collator = MultimodalCollator(processor, 1024, min_pixels=1024, max_pixels=25600)
    encoded = collator.encode(example)
    text = processor.tokenizer.decode(encoded.input_ids)
    return text[text.index("<|im_start|>assistant"):]


def test_instruct_template_keeps_the_whole_response(tiny_processor):
    example = toy_examples(1)[0]
    assert _target_text(tiny_processor, example).startswith("<think>")


def test_detection_reads_the_rendered_generation_prompt(thinking_processor, tiny_processor):
    from mmfinereason.data.chat import render_prompt

    assert opens_thinking(render_prompt(thinking_processor, "<image>\nq", 1))
    assert not opens_thinking(render_prompt(tiny_processor, "<image>\nq", 1))
    prompt = "<|im_start|>assistant\n<think>\n"
    assert response_after_prompt(prompt, "<think>\nabc</think>x") == "abc</think>x"
    assert response_after_prompt(prompt, "<think>abc</think>x") == "abc</think>x"
    assert response_after_prompt(prompt, "abc</think>x") == "abc</think>x"  # already without the tag
    assert response_after_prompt("<|im_start|>assistant\n", "<think>\nabc") == "<think>\nabc"


def test_rewards_score_completions_that_start_inside_the_reasoning():
    """GSPO / eval: after a Thinking prompt the completion starts after ``<think>\\n``; rewards must agree."""
    from mmfinereason.rewards import accuracy_reward, extract_answer, format_reward

    inside = "3 circles, 2 red.</think>The final answer is <answer>2</answer>."
    assert extract_answer(inside) == "2"
    assert accuracy_reward([inside, "<think>" + inside], answer=["2", "2"]) == [1.0, 1.0]
    assert format_reward([inside, "<think>" + inside]) == [1.0, 1.0]


def test_length_index_agrees_with_the_collator_under_a_thinking_template(thinking_processor):
    """The token-budget sampler's lengths (data/batching/lengths.py) must equal what the collator encodes."""
    from mmfinereason.data.batching.collator import MultimodalCollator
    from mmfinereason.data.batching.lengths import batch_lengths

    collator = MultimodalCollator(thinking_processor, 1024, min_pixels=1024, max_pixels=25600)
    examples = toy_examples(3)
    sizes = [[img.size[::-1] for img in ex["images"]] for ex in examples]
    lengths = batch_lengths(collator, [ex["question"] for ex in examples], [ex["response"] for ex in examples], sizes)
    assert lengths == [len(collator.encode(ex)) for ex in examples]
