r"""The answer a response states in words: `Answer: X`, `The final answer is $X$. I hope it is correct.`, `答案：X`.

Models that are not told to use `<answer>` tags or `\boxed{}` end with a sentence, in the language of the prompt.
We look for the *last* answer phrase in the tail of the response (a model that corrects itself, "ANSWER: A …
ANSWER: C", means C) and keep the answer itself, not the sentence around it:

- the MATH / Minerva few-shot ending `Final Answer: The final answer is $X$. I hope it is correct.` gives `X`
  (the phrase repeats, the trailing sentence goes, the `$…$` goes);
- the answer ends at the end of its line or sentence (a `.` outside `$…$` followed by a space, `。`), so a
  justification after it (`B, because …`) stays for the letter reader to skip, but the next sentence never joins;
- an answer that is only a template placeholder (`ANSWER: [LETTER]`, `$ANSWER`) is not an answer: the previous
  phrase counts instead;
- answer phrases in Chinese, French, Spanish, German, Portuguese, Italian, Russian, Arabic and Hindi (MGSM-style
  prompts ask for "the answer is" in the prompt's language).

Everything is one regex pass over a bounded window (the last 3,000 characters), no nested quantifiers.
"""

from __future__ import annotations

import re

PHRASE_WINDOW = 3000

_VERB = (
    r"(?:is|are|would\s+be|should\s+be|will\s+be|must\s+be|is\s+therefore"  # English
    r"|est|serait|es|ser[ií]a|[ée]|[èe]|ist|lautet|هي|هو|है|हैं)"  # French, Spanish, Portuguese, Italian, German, ...
)
_NOUN = (
    r"(?:(?:the\s+)?(?:final|correct|right|best)\s+)?(?:answer|option|choice)s?"  # English
    r"|(?:la\s+)?r[ée]ponse(?:\s+finale)?|(?:la\s+)?respuesta(?:\s+final)?|(?:a\s+)?resposta(?:\s+final)?"
    r"|(?:la\s+)?risposta(?:\s+finale)?|(?:die\s+)?(?:endg[üu]ltige\s+)?antwort|(?:окончательный\s+)?ответ"
    r"|(?:ال)?(?:إجابة|اجابة|جواب)(?:\s+(?:النهائية|الصحيحة))?|(?:अंतिम\s+)?उत्तर"
)
_STRONG = r"最终答案是|最终答案为|答案是|答案为|故选|应选|所以选|因此选|最终答案|正确答案|答案"  # Chinese: commits alone
_PHRASE_RE = re.compile(
    rf"(?P<strong>{_STRONG})|(?<![^\W\d_])(?P<noun>{_NOUN})(?P<verb>\s+{_VERB}(?![^\W\d_]))?(?P<colon>\s{{0,3}}[:：=])?",
    re.IGNORECASE,
)

_PLACEHOLDER_RE = re.compile(r"^\s*(?:\[[A-Z _]{3,20}\]|\$?ANSWER\b|<[a-z ]{3,20}>|\.\.\.|…)", re.IGNORECASE)
_TRAILER_RE = re.compile(r"\s*(?:I hope (?:it|this) is correct|Hope (?:it|this) helps|Let me know)\b.*$",
                         re.IGNORECASE | re.DOTALL)
_SPECIAL_TOKEN_RE = re.compile(r"<\|(?:im_start|im_end|endoftext|eot_id|end)\|>")
_REPEAT_RE = re.compile(r"^(?:the\s+)?(?:final\s+)?answer\s+(?:is|=|:)\s*", re.IGNORECASE)


def cut_special_tokens(text: str) -> str:
    """A response that runs past its end-of-turn token (`… <|im_start|>user …`) ends at the token."""
    m = _SPECIAL_TOKEN_RE.search(text)
    return text[: m.start()] if m and text[: m.start()].strip() else text


def _sentence(text: str) -> str:
    """The first sentence of `text`: up to a line end, or a `.`/`。`/`!` outside `$…$`/`\\(…\\)` before a space."""
    in_math, i, n = False, 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\n" and not in_math and text[:i].strip():
            return text[:i]
        if ch == "$":
            in_math = not in_math
        elif text.startswith(("\\(", "\\["), i):
            in_math = True
        elif text.startswith(("\\)", "\\]"), i):
            in_math = False
        elif not in_math and (ch == "。" or (ch in ".!" and (i + 1 == n or text[i + 1] in " \n"))):
            if ch == "." and i > 0 and text[i - 1].isdigit() and i + 1 < n and text[i + 1].isdigit():
                pass  # a decimal point
            elif text[:i].strip():
                return text[:i]
        i += 1
    return text


def phrase_answer(text: str) -> str | None:
    """The answer stated after the last answer phrase of `text` (see the module docstring), or None."""
    found = last_phrase(text)
    return found[0] if found else None


def last_phrase(text: str) -> tuple[str, int] | None:
    """(answer, position of its phrase in `text`) for the last answer phrase that states an answer, or None."""
    text = cut_special_tokens(text)
    offset = max(len(text) - PHRASE_WINDOW, 0)
    window = text[offset:]
    anchors = [m for m in _PHRASE_RE.finditer(window) if m.group("strong") or m.group("verb") or m.group("colon")]
    for m in reversed(anchors):
        answer = _answer_after(window[m.end():])
        if answer:
            return answer, offset + m.start()
    return None


def _answer_after(rest: str) -> str | None:
    rest = rest.lstrip(" \t*:：")
    if not rest.strip() or _PLACEHOLDER_RE.match(rest):
        return None
    lines = [line.strip(" \t*") for line in rest.split("\n", 3)[:3]]
    answer = next((line for line in lines if line), "")[:400]
    for _ in range(3):  # `Final Answer: The final answer is $X$.` states the phrase twice
        stripped = _REPEAT_RE.sub("", answer)
        if stripped == answer:
            break
        answer = stripped
    answer = _TRAILER_RE.sub("", _sentence(answer)).strip().rstrip(".。").strip()
    if answer.startswith('\\"') and answer.endswith('\\"'):  # an escaped quote left in a JSON-ish dump
        answer = answer[2:-2].strip()
    if not answer or _PLACEHOLDER_RE.match(answer):
        return None
    return answer
