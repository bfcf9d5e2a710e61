"""TRL reward functions: `accuracy_reward`, `format_reward` and a DAPO-style overlong penalty.

They follow TRL's reward-function signature, `fn(completions, **dataset_columns) -> list[float | None]`: TRL passes
every dataset column as a keyword (`answer`, `question`, `prompts`, `source`, …) and completions either as strings
or as conversational message lists (`[{"role": "assistant", "content": ...}]`, content possibly a list of parts).
TRL's own `accuracy_reward` parses LaTeX only and disables math-verify's timeout outside the main thread; ours
verifies every answer type of MMFineReason (see `verify.py`) under a hard time limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mmfinereason.errors import UserError

from .answer import ANSWER_CLOSE, ANSWER_OPEN, THINK_CLOSE, THINK_OPEN
from .verify import DEFAULT_REL_TOL, DEFAULT_TIMEOUT_S, is_correct


def completion_text(completion: Any) -> str:
    """The assistant text of one completion: a string, a message dict, a list of messages, or content parts."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return _content_text(completion.get("content", ""))
    if isinstance(completion, Sequence):
        # the assistant turn(s): TRL gives one message; tool-calling flows may give several, the last one answers
        messages = [m for m in completion if isinstance(m, dict)]
        assistant = [m for m in messages if m.get("role", "assistant") == "assistant"] or messages
        return _content_text(assistant[-1].get("content", "")) if assistant else ""
    return ""


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type", "text") == "text")
    return ""


def _question_text(prompt: Any) -> str | None:
    """The user's text from a prompt (string or conversation), for options listed in the question."""
    if prompt is None:
        return None
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, Sequence):
        users = [m for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        return _content_text(users[-1].get("content", "")) if users else None
    return None


def accuracy_reward(
    completions: list,
    answer: list[str | None],
    *,
    question: list[str] | None = None,
    prompts: list | None = None,
    rel_tol: float = DEFAULT_REL_TOL,
    timeout: float = DEFAULT_TIMEOUT_S,
    **kwargs: Any,
) -> list[float | None]:
    r"""1.0 when the committed answer equals the gold `answer`, else 0.0; None (skip) when the gold is missing.

    The question (the `question` column, or the user turn of `prompts`) lets an answer given as an option's text
    match a gold letter. Each check runs under a hard `timeout` (seconds); a timed-out check scores 0.0 and is
    counted in `mmfinereason.rewards.verification_stats()`. Unlike `is_correct`'s default, a completion with no
    answer marker at all (no tag, box or answer phrase) scores 0.0 (`free_text=False`): a rollout cut at the
    length limit has committed to nothing, and paying for the last number of unfinished reasoning would reward
    truncation.

    Example:
    >>> from mmfinereason.rewards import accuracy_reward
    >>> completions = [[{"role": "assistant", "content": "<think>…</think>So <answer>\\frac{1}{2}</answer>."}],
    ...                [{"role": "assistant", "content": "<think>…</think>So <answer>0.05</answer>."}]]
    >>> accuracy_reward(completions, answer=["0.5", "0.5"])
    [1.0, 0.0]
    """
    questions = question if question is not None else [None] * len(completions)
    if question is None and prompts is not None:
        questions = [_question_text(p) for p in prompts]
    rewards: list[float | None] = []
    for completion, gold, q in zip(completions, answer, questions, strict=True):
        if gold is None or (isinstance(gold, str) and not gold.strip()):
            rewards.append(None)
            continue
        ok = is_correct(completion_text(completion), gold, question=q, rel_tol=rel_tol, timeout=timeout,
                        free_text=False)
        rewards.append(1.0 if ok else 0.0)
    return rewards


def format_reward(completions: list, **kwargs: Any) -> list[float]:
    """1.0 for exactly one `<think>…</think>` followed by a non-empty `<answer>…</answer>`, else 0.0.

    The opening `<think>` may be absent: Qwen3 thinking chat templates put it in the prompt, so completions start
    inside the reasoning. Text around the answer tag after `</think>` is allowed (MMFineReason's own traces end
    `… the final answer is <answer>X</answer>.`); a second think block or answer tag is not.
    """
    rewards = []
    for completion in completions:
        text = completion_text(completion)
        ok = (
            text.count(THINK_CLOSE) == 1
            and text.count(THINK_OPEN) <= 1
            and (THINK_OPEN not in text or text.lstrip().startswith(THINK_OPEN))
        )
        if ok:  # one answer, after the reasoning, not empty
            tail = text.split(THINK_CLOSE, 1)[1]
            ok = text.count(ANSWER_OPEN) == 1 == tail.count(ANSWER_OPEN) and text.count(ANSWER_CLOSE) == 1
            if ok:
                start, end = tail.index(ANSWER_OPEN), tail.find(ANSWER_CLOSE)
                ok = start < end and bool(tail[start + len(ANSWER_OPEN): end].strip())
        rewards.append(1.0 if ok else 0.0)
    return rewards


class _LengthPenalty:
    """DAPO's soft overlong punishment (Yu et al. 2025, eq. 13), as a picklable callable.

    0 for completions up to `max_completion_length - buffer` tokens, then a linear ramp down to -1 at
    `max_completion_length` (and -1 beyond). Add it to the accuracy reward with a weight in the GSPO recipe.
    """

    __name__ = "length_penalty"

    def __init__(self, max_completion_length: int, buffer: int) -> None:
        if max_completion_length <= 0 or not 0 < buffer <= max_completion_length:
            raise UserError(
                "need 0 < buffer <= max_completion_length (train.overlong_buffer, train.max_completion_length), "
                f"got buffer={buffer}, max_completion_length={max_completion_length}"
            )
        self.max_completion_length = max_completion_length
        self.buffer = buffer

    def __call__(self, completions: list, completion_ids: list[list[int]] | None = None, **kwargs: Any) -> list[float]:
        if completion_ids is None:
            raise ValueError("length_penalty needs `completion_ids` (TRL passes them to reward functions)")
        free = self.max_completion_length - self.buffer
        return [max(-1.0, min(0.0, (free - len(ids)) / self.buffer)) for ids in completion_ids]


def make_length_penalty(max_completion_length: int, buffer: int = 4096) -> _LengthPenalty:
    """A reward function penalising completions that run into the last `buffer` tokens of the length budget.

    >>> penalty = make_length_penalty(max_completion_length=100, buffer=20)
    >>> penalty(completions=["", "", ""], completion_ids=[[0] * 80, [0] * 90, [0] * 100])
    [0.0, -0.5, -1.0]
    """
    return _LengthPenalty(max_completion_length, buffer)
