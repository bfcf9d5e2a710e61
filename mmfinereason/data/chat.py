"""Turn a normalised example into chat messages — the one place SFT, GSPO and evaluation build prompts.

MMFineReason questions mark where each image goes with an ``<image>`` placeholder. Qwen3-VL's chat template
wants the image as a content part at that position instead, so the question is split at the markers and the
images are interleaved with the text pieces. Keeping this in one function means the prompt a model is trained
on in SFT is byte-for-byte the prompt it sees in GSPO rollouts and at evaluation.
"""

from __future__ import annotations

from typing import Any

from mmfinereason.data.schema import IMAGE_MARKER


def user_content(question: str, num_images: int, images: list | None = None) -> list[dict[str, Any]]:
    """Content parts for the user turn: text pieces with one image part where each ``<image>`` stood.

    ``images``, when given, are attached to the parts (``{"type": "image", "image": img}``) as TRL's GRPO
    trainer expects; the chat template only needs the part's type.
    """
    pieces = question.split(IMAGE_MARKER)
    if len(pieces) - 1 != num_images:
        raise ValueError(
            f"question has {len(pieces) - 1} {IMAGE_MARKER} markers but the example has {num_images} images; "
            "load rows through mmfinereason.data.load_examples, which fixes or skips such rows"
        )
    parts: list[dict[str, Any]] = []
    for i, piece in enumerate(pieces):
        if i > 0:
            part: dict[str, Any] = {"type": "image"}
            if images is not None:
                part["image"] = images[i - 1]
            parts.append(part)
        # The marker is usually followed by a newline that only separated it from the text.
        text = piece.lstrip("\n") if i > 0 else piece
        if text:
            parts.append({"type": "text", "text": text})
    return parts


def prompt_messages(
    question: str, num_images: int, system_prompt: str | None = None, images: list | None = None
) -> list[dict[str, Any]]:
    """The conversation up to (not including) the assistant's answer."""
    messages: list[dict[str, Any]] = []
    if system_prompt:
        messages.append({"role": "system", "content": system_prompt})
    messages.append({"role": "user", "content": user_content(question, num_images, images)})
    return messages


def render_prompt(processor, question: str, num_images: int, system_prompt: str | None = None) -> str:
    """The prompt text with the generation prompt (``<|im_start|>assistant\\n``) appended."""
    messages = prompt_messages(question, num_images, system_prompt)
    return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


THINK_OPEN = "<think>"


def opens_thinking(prompt: str) -> bool:
    """Whether the rendered prompt (with the generation prompt) already opens the reasoning block.

    Qwen3-VL-*Thinking* templates end the generation prompt with ``<|im_start|>assistant\\n<think>\\n``; the
    Instruct templates (and the tiny model's) end with ``<|im_start|>assistant\\n``. Read from the rendered text,
    so any template that opens the tag is recognised without knowing its name.
    """
    return prompt.rstrip().endswith(THINK_OPEN)


def response_after_prompt(prompt: str, response: str) -> str:
    """The part of a teacher ``response`` the model must still produce after ``prompt``.

    MMFineReason responses start with ``<think>``; after a Thinking template's generation prompt that tag is
    already in the prompt, and training on the full response would teach ``<think>\\n<think>…``. The leading tag
    (and the newline after it) is dropped then, so SFT's target is the continuation GSPO rollouts and evaluation
    generate after the same prompt (``rewards.extract_answer`` and ``format_reward`` accept a response that
    starts inside the reasoning).
    """
    if not opens_thinking(prompt):
        return response
    stripped = response.lstrip()
    if not stripped.startswith(THINK_OPEN):
        return response
    rest = stripped[len(THINK_OPEN):]
    return rest[1:] if rest.startswith("\n") else rest
