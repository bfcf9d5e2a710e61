r"""Exact token counts of long texts, ~6x faster than tokenising them: count per pre-token piece, memoised.

Why: the length index (:mod:`.length_index`) tokenises every teacher trace of the training set once, and on
MMFineReason-1.8M that is ~4 billion words. Measured on MMFineReason-shaped traces (bench/data_scale.py), the fast
tokenizer spends ~3.5 µs a *word* — in its regex pre-tokenizer and in building the ``Encoding`` (ids, offsets,
masks) that a length does not need — whatever the vocabulary (a 1k and an 8k BPE cost the same per row): ~4 CPU
hours for the set. A BPE-family tokenizer encodes each pre-token piece on its own, so a text's count is the sum of
its pieces' counts, and a corpus has few distinct pieces: split with the tokenizer's own pattern (the ``regex``
module; on plain-ASCII text the same pattern with ``\p{L}``/``\p{N}`` spelled out for the ~3x faster stdlib
``re``), look each piece's count up (the first time, ask the tokenizer itself), add: ~6x faster than tokenising.

Exactness is by construction and checked, never assumed:

* the shortcut is used only for a tokenizer whose structure it recognises (read from its ``tokenizer.json``): no
  normalizer or NFC; pre-tokenizers = ``Split(pattern, "isolated")`` and/or ``ByteLevel(add_prefix_space=False)``;
  added tokens that are matched verbatim (not normalised, no ``lstrip``/``rstrip``/``single_word``). Anything
  else is counted by the tokenizer, as before;
* per text: a text takes the shortcut only if every character outside printable ASCII (and tab, newline) is
  *stable* — in the Basic Multilingual Plane, already assigned in Unicode 3.2 with the same category as today (the
  Unicode tables of two regex engines can differ on characters assigned or re-classified since; on these they
  cannot) — and, for an NFC tokenizer, the text is already NFC. Other texts (rare) are tokenised;
* every ``VERIFY_EVERY``-th text (and the first ``VERIFY_FIRST``) is also tokenised and compared; one difference
  switches the shortcut off for this counter for good (a warning says so) and the batch is recounted exactly.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import unicodedata
import weakref
from collections.abc import Sequence
from typing import Any

logger = logging.getLogger(__name__)

VERIFY_FIRST = 64  # texts compared with the tokenizer when a counter starts
VERIFY_EVERY = 97  # then one text in this many (a prime: no lock-step with batch sizes)
MAX_MEMO = 2_000_000  # distinct pieces remembered (a few hundred MB at most); the memo restarts beyond it
# GPT-2's pattern, what ByteLevel(use_regex=True) splits with (tokenizers' byte_level.rs).
_NOT_PLAIN = re.compile(r"[^\t\n\x20-\x7e]")  # anything but printable ASCII, tab, newline
_COUNTERS: "weakref.WeakKeyDictionary[Any, TokenCounter]" = weakref.WeakKeyDictionary()
_BYTE_LEVEL_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"


def counter_for(tokenizer: Any) -> "TokenCounter":
    """The one counter of ``tokenizer`` (built once: reading a 150k-entry tokenizer.json takes a moment)."""
    try:
        counter = _COUNTERS.get(tokenizer)
    except TypeError:  # not hashable / not weak-referenceable: a fresh counter each call (still exact)
        return TokenCounter(tokenizer)
    if counter is None:
        counter = _COUNTERS[tokenizer] = TokenCounter(tokenizer)
    return counter


class TokenCounter:
    """``counter(texts) -> [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]``, fast.

    Picklable (``datasets.map(num_proc=...)`` ships it to workers; each keeps its own memo). ``fast`` says
    whether the shortcut is in use; ``stats`` counts texts counted fast, tokenised, and verified.
    """

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self._plan = _recognise(tokenizer)
        self.fast = self._plan is not None
        self.stats = {"fast": 0, "tokenised": 0, "verified": 0}
        self._memo: dict[str, int] = {}
        self._seen = 0

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_plan"] = None if self._plan is None else self._plan.spec  # compiled patterns do not pickle
        state["_memo"] = {}
        return state

    def __setstate__(self, state: dict) -> None:
        spec = state.pop("_plan")
        self.__dict__.update(state)
        self._plan = None if spec is None else _Plan(*spec)

    def __call__(self, texts: Sequence[str]) -> list[int]:
        if not self.fast:
            return self._tokenise(texts)
        counts: list[int | None] = [self._plan.count(t, self._memo, self.tokenizer) for t in texts]
        slow = [i for i, n in enumerate(counts) if n is None]
        check = [i for i, n in enumerate(counts) if n is not None and self._due()]
        exact = self._tokenise([texts[i] for i in slow + check])
        for i, n in zip(slow, exact):
            counts[i] = n
        for i, n in zip(check, exact[len(slow):]):
            if counts[i] != n:
                logger.warning(
                    "token counts: the per-piece shortcut counted %d tokens where the tokenizer gives %d; "
                    "counting with the tokenizer from now on (slower, exact)", counts[i], n)
                self.fast = False
                return self._tokenise(texts)
        self.stats["verified"] += len(check)
        self.stats["fast"] += len(texts) - len(slow)
        if len(self._memo) > MAX_MEMO:
            self._memo.clear()
        return counts  # type: ignore[return-value]

    def _due(self) -> bool:
        self._seen += 1
        return self._seen <= VERIFY_FIRST or self._seen % VERIFY_EVERY == 0

    def _tokenise(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        self.stats["tokenised"] += len(texts)
        return [len(ids) for ids in self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]]


class _Plan:
    """The recognised structure: added tokens to cut on, then the split patterns, applied in order."""

    def __init__(self, added: tuple[str, ...], patterns: tuple[str, ...], nfc: bool):
        import regex

        self.spec = (added, patterns, nfc)
        self.nfc = nfc
        self.added = frozenset(added)
        self.cut = regex.compile("(" + "|".join(regex.escape(t) for t in sorted(added, key=len, reverse=True)) + ")") if added else None
        self.patterns = [regex.compile(p) for p in patterns]
        # The same patterns for plain-ASCII segments (almost all of a trace) in the stdlib engine, ~3x faster.
        ascii_patterns = [_ascii_pattern(p) for p in patterns]
        self.ascii_patterns = None if None in ascii_patterns else ascii_patterns

    def count(self, text: str, memo: dict[str, int], tokenizer: Any) -> int | None:
        """Tokens of ``text``, or None when the text must be tokenised (not ASCII, or not NFC)."""
        segments = self.cut.split(text) if self.cut is not None else [text]
        total = 0
        for segment in segments:
            if segment in self.added:
                total += 1
                continue
            patterns = self.patterns
            if not segment.isascii():
                odd = set(_NOT_PLAIN.findall(segment))
                if not all(_stable(c) for c in odd) or (self.nfc and not unicodedata.is_normalized("NFC", segment)):
                    return None
            elif _NOT_PLAIN.search(segment):  # an ASCII control other than tab / newline: engines may differ on \s
                return None
            elif self.ascii_patterns is not None:
                patterns = self.ascii_patterns
            pieces = [segment]
            for pattern in patterns:
                pieces = [p for piece in pieces for p in pattern.findall(piece)]
            try:
                total += sum(map(memo.__getitem__, pieces))
            except KeyError:  # pieces not met before: ask the tokenizer once for each
                missing = list(dict.fromkeys(p for p in pieces if p not in memo))
                encoded = tokenizer.backend_tokenizer.encode_batch(missing, add_special_tokens=False)
                memo.update((p, len(e.ids)) for p, e in zip(missing, encoded))
                total += sum(map(memo.__getitem__, pieces))
        return total


def _ascii_pattern(pattern: str) -> re.Pattern | None:
    r"""``pattern`` for the stdlib ``re`` engine, equal on printable ASCII + tab + newline; None if not translatable.

    Only ``\p{L}`` (letters: A-Z a-z on ASCII) and ``\p{N}`` (numbers: 0-9), in or out of a character class, are
    rewritten; any other Unicode property, or a pattern ``re`` rejects, keeps the ``regex`` engine.
    """
    ascii_classes = {"L": "A-Za-z", "N": "0-9"}
    out, i, in_class = [], 0, False
    while i < len(pattern):
        if pattern.startswith(("\\p{", "\\P{"), i):
            end = pattern.find("}", i)
            body = ascii_classes.get(pattern[i + 3:end])
            negated = pattern[i + 1] == "P"
            if body is None or (negated and in_class):
                return None
            out.append(body if in_class else f"[{'^' if negated else ''}{body}]")
            i = end + 1
            continue
        if pattern[i] == "\\":
            out.append(pattern[i:i + 2])
            i += 2
            continue
        if pattern[i] == "[" and not in_class:
            in_class = True
        elif pattern[i] == "]" and in_class:
            in_class = False
        out.append(pattern[i])
        i += 1
    try:
        return re.compile("".join(out), re.ASCII)
    except re.error:
        return None


def _recognise(tokenizer: Any) -> _Plan | None:
    """The plan for ``tokenizer``, or None (then every text is tokenised) — with the reason in the debug log."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return _unrecognised("not a fast tokenizer")
    try:
        import regex  # noqa: F401  (a transformers dependency)
    except ImportError:
        return _unrecognised("the `regex` package is not installed")
    spec = json.loads(backend.to_str())
    normalizer = spec.get("normalizer")
    if normalizer is not None and normalizer.get("type") != "NFC":
        return _unrecognised(f"normalizer {normalizer.get('type')}")
    pre = spec.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    patterns: list[str] = []
    for step in steps:
        kind = step.get("type")
        if kind == "Split" and "Regex" in step.get("pattern", {}) and step.get("behavior") == "Isolated" \
                and not step.get("invert"):
            patterns.append(step["pattern"]["Regex"])
        elif kind == "ByteLevel" and not step.get("add_prefix_space"):
            if step.get("use_regex", True):
                patterns.append(_BYTE_LEVEL_PATTERN)
        else:
            return _unrecognised(f"pre-tokenizer {kind} {step}")
    if not patterns:
        return _unrecognised("no splitting pre-tokenizer")
    if (spec.get("model") or {}).get("type") not in ("BPE", "WordPiece", "WordLevel", "Unigram"):
        return _unrecognised(f"model {(spec.get('model') or {}).get('type')}")
    added = []
    for token in spec.get("added_tokens", []):
        if token.get("normalized") or token.get("lstrip") or token.get("rstrip") or token.get("single_word"):
            return _unrecognised(f"added token {token.get('content')!r} is not matched verbatim")
        added.append(token["content"])
    try:
        return _Plan(tuple(added), tuple(patterns), normalizer is not None)
    except Exception as error:  # noqa: BLE001 - a pattern the regex module does not take: count exactly
        return _unrecognised(f"pattern not understood ({error})")


def _unrecognised(reason: str) -> None:
    logger.debug("token counts: counting with the tokenizer (%s)", reason)
    return None


@functools.lru_cache(maxsize=65536)
def _stable(char: str) -> bool:
    """Classified the same by every Unicode version since 3.2 (so by both regex engines): see the module docstring."""
    if ord(char) > 0xFFFF:
        return False
    old = unicodedata.ucd_3_2_0.category(char)
    return old != "Cn" and old == unicodedata.category(char) and not old.startswith("C")
