"""The hard deadline of one check, the sandbox calls made under it, their cache, and the counters trainers log.

Why a cache: the 16 rollouts of one prompt share a gold, and a policy repeats itself, so the same (answer, gold)
pair reaches sympy many times per step. Why only verdicts are cached: a timeout says how loaded the machine was
when the check ran, not whether the answer is right; caching it would score that (answer, gold) pair 0 for the rest
of the run even after the load is gone (issue 16). A worker that died (memory limit, SIGKILL) is not cached either.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict

from .sandbox import TIMEOUT, SandboxError, get_pool

CACHE_SIZE = 8192

_STATS: Counter = Counter()
_STATS_LOCK = threading.Lock()
_CACHE: OrderedDict = OrderedDict()
_STAT_KEYS = ("checks", "symbolic", "timeouts", "errors", "refused", "no_answer")


def count(key: str) -> None:
    with _STATS_LOCK:
        _STATS[key] += 1


def verification_stats(reset: bool = False) -> dict[str, int]:
    """Counters since start (or the last reset), for trainers to log: `checks`, `symbolic` (sandbox calls),
    `timeouts` (checks cut at the hard limit, scored 0), `errors` (parser errors, scored 0), `refused` (answers over
    the size/nesting limits, scored 0), `no_answer` (nothing to compare)."""
    with _STATS_LOCK:
        out = {k: _STATS.get(k, 0) for k in _STAT_KEYS}
        if reset:
            _STATS.clear()
    return out


def clear_cache() -> None:
    """Forget every cached symbolic verdict (tests; a long-lived evaluator that changed math-verify versions)."""
    with _STATS_LOCK:
        _CACHE.clear()


class Budget:
    """The hard deadline of one `is_correct` call, shared by all the sandbox calls it makes."""

    def __init__(self, timeout: float) -> None:
        self.deadline = time.monotonic() + timeout
        self.timed_out = False

    def symbolic(self, op: str, *args):
        """Run a sandbox op within what is left of the deadline; None on timeout or error (both counted)."""
        key = (op, *args)
        with _STATS_LOCK:
            if key in _CACHE:
                _CACHE.move_to_end(key)
                return _CACHE[key]
        left = self.deadline - time.monotonic()
        if left <= 0 or self.timed_out:
            count("timeouts")
            self.timed_out = True
            return None
        count("symbolic")
        try:
            result = get_pool().call(op, *args, timeout=left)
        except SandboxError:
            count("errors")
            return None  # not cached: a parser error is cheap to meet again, a dead worker is not a verdict
        if result is TIMEOUT:
            count("timeouts")
            self.timed_out = True
            return None  # not cached: see the module docstring
        with _STATS_LOCK:
            _CACHE[key] = result
            if len(_CACHE) > CACHE_SIZE:
                _CACHE.popitem(last=False)
        return result
