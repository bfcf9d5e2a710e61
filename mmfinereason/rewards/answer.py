r"""Find the answer a model committed to in a long free-form response.

MMFineReason responses are `<think>…</think>` followed by a solution that ends `the final answer is
<answer>X</answer>.`; other models end with `\boxed{X}` or `Answer: X`. The order of preference is:

1. the last `<answer>…</answer>` after `</think>`,
2. else the last balanced `\boxed{…}` / `\fbox{…}` (nested braces), joined with the boxes just before it when only
   separators stand between them (`\boxed{(1,2)}, \boxed{(2,1)}` is one answer of two pairs), or the last answer
   phrase, in any of several languages (`phrases.py`), whichever comes later (`… = \boxed{255} … Final Answer: The
   final answer is $10,455$` means 10,455: the box was an intermediate result),
3. else, for a short response, the whole of it (a bare answer `12`),
4. else None (`is_correct` may still ask math-verify to read a free-text response, see `verify.py`).

A response that runs past its end-of-turn token (`… <|im_start|>user …`, a base model continuing the chat) ends at
the token.

Reasoning inside `<think>` never counts when there is text after `</think>` (a model may try several answers while
thinking); a `<think>` that is never closed means the model never answered (truncated), so the result is None.
Only when nothing follows `</think>` is the thinking itself searched. Everything is `str.find`/`rfind` and one
bounded regex over the tail, so a megabyte of junk costs about a millisecond and no pattern can backtrack.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .phrases import cut_special_tokens, last_phrase

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
MAX_BOX_CHARS = 4000
"""A `\\boxed{` whose closing brace is further than this is treated as unterminated (no unbounded scan)."""
BARE_ANSWER_CHARS = 200
"""A tag-less response this short is taken whole as the answer by `committed_answer` (`is_correct("12", "12")`)."""
MAX_JOINED_BOXES = 12
_CONNECTOR_RE = re.compile(r"(?:^|\W)(?:and|or)(?:\W|$)|[,;]", re.IGNORECASE)
_BOX_SEPARATOR_RE = re.compile(
    r"^(?:\s|[,;$]|\\[(\[)\]]|\\\\|\\q?quad|\\[,;: ]|and|or|&|\\text\s*\{[^{}]{0,30}\}"
    r"|[A-Za-z](?:_\{?\w{1,3}\}?)?\s*=)*$",  # `y_1 = \boxed{…} and y_2 = \boxed{…}`: the parts' names
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
    found = _last_box_span(text, len(text))
    return found[0] if found else None


def boxed_answer(text: str, join_all: bool = False) -> str | None:
    r"""The last box, joined with the boxes right before it that only separators divide from it.

    `\boxed{1}, \boxed{2}` and `\boxed{(1,2)} \text{ and } \boxed{(2,1)}` give `1, 2` and `(1,2), (2,1)`;
    `First \boxed{3}, then corrected: \boxed{4}` gives `4` (words stand between them). `join_all` also joins boxes
    that words divide if a connector is among them (a short gold such as `\boxed{1} papers and \boxed{2} bins`).
    """
    found = _last_box_span(text, len(text))
    if found is None:
        return None
    parts, start = [found[0]], found[1]
    while len(parts) < MAX_JOINED_BOXES:
        before = _last_box_span(text, start)
        between = text[before[2]: start] if before else ""
        if before is None or not (_BOX_SEPARATOR_RE.match(between) or join_all and _CONNECTOR_RE.search(between)):
            break
        parts.insert(0, before[0])
        start = before[1]
    return ", ".join(parts)


def _last_box_span(text: str, pos: int) -> tuple[str, int, int] | None:
    """(content, start, end) of the last complete box that ends before `pos`."""
    end_limit = pos
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
                        if inner and j < end_limit:
                            return inner, start, j + 1
                        break
                elif ch == "\\" and j + 1 < limit:
                    j += 1  # skip escaped braces \{ \}
                j += 1
        elif i < len(text) and text[i] not in "}":  # `\boxed 5`
            m = re.match(r"[^\s$]{1,50}", text[i: i + 50])
            if m:
                return m.group(0), start, i + m.end()
        pos = start
    return None


@dataclass(frozen=True)
class Extraction:
    """What a response committed to, and how it was found.

    `source` is `tag`, `boxed`, `phrase`, `bare` (a short tag-less response taken whole), `free_text` (nothing found
    in a finished response: only math-verify's own reading may still find an answer in `text`) or `unfinished`
    (an unclosed `<think>`: never an answer). `text` is the part of the response after the reasoning.
    """

    answer: str | None
    source: str
    text: str = ""


def extract(response: str) -> Extraction:
    """The committed answer of `response` with its source (see `Extraction`)."""
    if not isinstance(response, str) or not response:
        return Extraction(None, "free_text")
    tail = _post_think(response)
    if tail is None:
        return Extraction(None, "unfinished")
    tail = cut_special_tokens(tail)
    tagged = _last_answer_tag(tail)
    if tagged:
        return Extraction(tagged, "tag", tail)
    box, phrase = _last_box_span(tail, len(tail)), last_phrase(tail)
    if phrase and (box is None or phrase[1] > box[2]):  # `\boxed{255} … Final Answer: 10,455`: the later one
        return Extraction(phrase[0], "phrase", tail)
    if box:
        return Extraction(boxed_answer(tail), "boxed", tail)
    if ANSWER_OPEN in tail:  # an answer tag that never closed: the model did not finish its answer
        return Extraction(None, "unfinished", tail)
    bare = tail.strip()
    if 0 < len(bare) <= BARE_ANSWER_CHARS:
        return Extraction(bare, "bare", tail)
    return Extraction(None, "free_text", tail)


def extract_answer(response: str) -> str | None:
    r"""The final answer a model committed to, or None (see the module docstring for the rules).

    >>> extract_answer("<think>maybe 3</think>So the final answer is <answer>4</answer>.")
    '4'
    >>> extract_answer(r"... hence \boxed{\frac{1}{2}}")
    '\\frac{1}{2}'
    >>> extract_answer("<think>never finished") is None
    True
    """
    found = extract(response)
    return found.answer if found.source in ("tag", "boxed", "phrase") else None


def committed_answer(response: str) -> str | None:
    """`extract_answer`, or the whole text of a short tag-less response (a bare answer such as `"12"` or `"B"`)."""
    return extract(response).answer
