r"""Find the answer a model committed to in a long free-form response.

MMFineReason responses are `<think>…</think>` followed by a solution that ends `the final answer is
<answer>X</answer>.`; other models end with `\boxed{X}` or `Answer: X`. The order of preference is:

1. the last `<answer>…</answer>` after `</think>`,
2. else the last balanced `\boxed{…}` / `\fbox{…}` (nested braces),
3. else a "final answer is X" / "Answer: X" ending,
4. else None.

Reasoning inside `<think>` never counts when there is text after `</think>` (a model may try several answers while
thinking); a `<think>` that is never closed means the model never answered (truncated), so the result is None.
Only when nothing follows `</think>` is the thinking itself searched. Everything is `str.find`/`rfind` and one
bounded regex over the tail, so a megabyte of junk costs about a millisecond and no pattern can backtrack.
"""

from __future__ import annotations

import re

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
MAX_BOX_CHARS = 4000
"""A `\\boxed{` whose closing brace is further than this is treated as unterminated (no unbounded scan)."""
BARE_ANSWER_CHARS = 200
"""A tag-less response this short is taken whole as the answer by `committed_answer` (`is_correct("12", "12")`)."""
_PHRASE_WINDOW = 3000

_PHRASE_RE = re.compile(
    r"(final\s+)?(?:answer|option|choice)(\s+(?:is|would\s+be|should\s+be|will\s+be)\b)?(\s{0,3}[:：=])?",
    re.IGNORECASE,
)


def _post_think(response: str) -> str | None:
    """The text after the reasoning, the reasoning itself if nothing follows it, or None if it never ended."""
    close = response.rfind(THINK_CLOSE)
    last_open = response.rfind(THINK_OPEN)
    if close == -1:
        return None if last_open != -1 else response
    if last_open > close:  # a new <think> after the last </think> was never closed
        return None
    tail = response[close + len(THINK_CLOSE):]
    if tail.strip():
        return tail
    open_at = response.rfind(THINK_OPEN, 0, close)
    return response[open_at + len(THINK_OPEN) if open_at != -1 else 0: close]


def _last_answer_tag(text: str) -> str | None:
    """The last complete `<answer>…</answer>` (two `rfind`s: linear even with 10^5 unclosed tags)."""
    end = text.rfind(ANSWER_CLOSE)
    start = text.rfind(ANSWER_OPEN, 0, end) if end != -1 else -1
    if start == -1:
        return None
    inner = text[start + len(ANSWER_OPEN): end].strip()
    return (last_boxed(inner) or inner) if inner else None


def last_boxed(text: str) -> str | None:
    r"""Content of the last balanced `\boxed{…}` or `\fbox{…}` in `text` (nested braces handled), or None."""
    pos = len(text)
    for _ in range(8):  # a few unterminated boxes at the end (truncation) are skipped; never an unbounded search
        starts = [text.rfind(cmd, 0, pos) for cmd in ("\\boxed", "\\fbox")]
        start = max(starts)
        if start == -1:
            return None
        cmd_end = start + (6 if text.startswith("\\boxed", start) else 5)
        i = cmd_end
        while i < len(text) and text[i] == " ":
            i += 1
        if i < len(text) and text[i] == "{":
            depth, j, limit = 0, i, min(len(text), i + MAX_BOX_CHARS)
            while j < limit:
                ch = text[j]
                if ch == "{":
                    depth += 1
                elif ch == "}":
                    depth -= 1
                    if depth == 0:
                        inner = text[i + 1: j].strip()
                        if inner:
                            return inner
                        break
                elif ch == "\\" and j + 1 < limit:
                    j += 1  # skip escaped braces \{ \}
                j += 1
        elif i < len(text) and text[i] not in "}":  # `\boxed 5`
            m = re.match(r"[^\s$]{1,50}", text[i: i + 50])
            if m:
                return m.group(0)
        pos = start
    return None


def _phrase_answer(text: str) -> str | None:
    """The text after the last `answer is` / `Answer:` / `Final Answer` anchor (its line, or the next line)."""
    window = text[-_PHRASE_WINDOW:]
    last = None
    for m in _PHRASE_RE.finditer(window):
        if m.group(1) or m.group(2) or m.group(3):  # "answer this question" is not an anchor
            last = m
    if last is None:
        return None
    rest = window[last.end():].lstrip(" \t*:：")
    lines = [line.strip(" \t*") for line in rest.split("\n", 3)[:3]]
    answer = next((line for line in lines if line), "")[:300]
    answer = re.sub(r"\s*\.\s*$", "", answer).strip()
    return answer or None


def extract_answer(response: str) -> str | None:
    r"""The final answer a model committed to, or None (see the module docstring for the rules).

    >>> extract_answer("<think>maybe 3</think>So the final answer is <answer>4</answer>.")
    '4'
    >>> extract_answer(r"... hence \boxed{\frac{1}{2}}")
    '\\frac{1}{2}'
    >>> extract_answer("<think>never finished") is None
    True
    """
    if not isinstance(response, str) or not response:
        return None
    tail = _post_think(response)
    if tail is None:
        return None
    for finder in (_last_answer_tag, last_boxed, _phrase_answer):
        found = finder(tail)
        if found:
            return found
    return None


def committed_answer(response: str) -> str | None:
    """`extract_answer`, or the whole text of a short tag-less response (a bare answer such as `"12"` or `"B"`)."""
    found = extract_answer(response)
    if found is not None or not isinstance(response, str):
        return found
    tail = _post_think(response)
    if tail is None or ANSWER_OPEN in tail:
        return None
    tail = tail.strip()
    return tail if 0 < len(tail) <= BARE_ANSWER_CHARS else None
