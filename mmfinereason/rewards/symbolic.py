r"""The expensive half of the verifier: math-verify (latex2sympy2 + sympy), run inside a sandbox process.

This file is deliberately standalone (no `mmfinereason` imports): `sandbox.py` starts it as a script,
`python symbolic.py`, so a worker never imports the training stack (torch, transformers) nor re-runs the user's
`__main__`, and starts in well under a second. It speaks one JSON object per line on stdin/stdout.

math-verify's own timeouts are `signal.alarm` based: they raise `ValueError` outside the main thread, and TRL simply
switches them off there. We switch them off too (`parsing_timeout=None`, `timeout_seconds=None`) and rely on the
parent killing this whole process instead, which works in any thread and also stops C-level loops (big-integer
powers in sympy never return to the interpreter, so no in-process timeout can stop them). Memory is bounded with
`RLIMIT_AS`, so a `9^{9^{9^{9}}}` tower dies with MemoryError instead of taking the node down.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import threading
import time
from functools import lru_cache

_PARSE_KW = {"parsing_timeout": None}


@lru_cache(maxsize=1)
def _configs():
    from math_verify import ExprExtractionConfig, LatexExtractionConfig

    # math-verify's default normalisation (units, malformed operators, nits), with \boxed{} matched first.
    return (LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig())


@lru_cache(maxsize=4096)
def _parse(text: str):
    """Parse one answer (cached: the 16 rollouts of a prompt share one gold)."""
    from math_verify import parse

    return _complete(parse("\\boxed{" + text + "}", extraction_config=list(_configs()), **_PARSE_KW))


def _complete(parsed: list) -> list:
    """No parse at all rather than a truncated one: math-verify may stop inside a brace (`1 - \\frac{1}{` from
    `1 - \\frac{1}{\\mathrm{e}}`) and then call `1 - 1/e` and `1 + 1/e` equal."""
    if parsed and isinstance(parsed[-1], str) and parsed[-1].count("{") != parsed[-1].count("}"):
        return []
    return parsed


def read(text: str, gold: str) -> dict:
    """math-verify's own reading of a free-text response (its default extraction: the final-answer phrase, the last
    box, the last LaTeX or number), compared with the gold."""
    from math_verify import parse, verify

    pred_parsed = _complete(parse(text, **_PARSE_KW))
    gold_parsed = _parse(gold)
    return {"equal": bool(gold_parsed and pred_parsed and verify(gold_parsed, pred_parsed, timeout_seconds=None))}


def _numeric_value(parsed) -> float | None:
    """The real value of a closed-form expression (`2\\sqrt{3}` -> 3.4641…), or None."""
    import sympy

    for item in parsed:
        if isinstance(item, sympy.Expr) and not item.free_symbols:
            try:
                value = complex(item.evalf(30))
            except (TypeError, ValueError, OverflowError, ZeroDivisionError, AttributeError):
                return None
            if abs(value.imag) < 1e-12 and math.isfinite(value.real):
                return value.real
            return None
    return None


def compare(pred: str, gold: str) -> dict:
    """math-verify equivalence of two answer strings, plus their numeric values for the caller's rounding rules."""
    from math_verify import verify

    gold_parsed, pred_parsed = _parse(gold), _parse(pred)
    equal = bool(gold_parsed and pred_parsed and verify(gold_parsed, pred_parsed, timeout_seconds=None))
    return {
        "equal": equal,
        "pred_value": None if equal else _numeric_value(pred_parsed),
        "gold_value": None if equal else _numeric_value(gold_parsed),
    }


def value(text: str) -> float | None:
    """Numeric value of one answer string (for comparing an expression with a numeric gold)."""
    return _numeric_value(_parse(text))


OPS = {"compare": compare, "read": read, "value": value, "ping": lambda: "pong", "sleep": lambda s: time.sleep(s)}


def _exit_when_orphaned(parent: int) -> None:
    """If the trainer dies without closing our stdin (SIGKILL), stop anyway."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(0)


def main() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the trainer; it will close our pipe
    logging.disable(logging.WARNING)  # math-verify warns on every call that its timeout is off: we know.
    sys.setrecursionlimit(3000)
    # both spellings: the pool that starts us may be older or newer than the variable's rename
    memory_mb = int(os.environ.get("MMFINEREASON_VERIFY_MEMORY_MB", os.environ.get("MMFR_VERIFY_MEMORY_MB", "2048")))
    threading.Thread(target=_exit_when_orphaned, args=(os.getppid(),), daemon=True).start()
    import math_verify  # noqa: F401  (import before the memory limit: it is the one big allocation we expect)

    _parse("1")  # warm sympy's caches so the first real check is not the slow one
    if memory_mb > 0:
        import resource

        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    stdout.write(b'{"ready": true}\n')
    stdout.flush()
    for line in stdin:
        try:
            request = json.loads(line)
            result = {"ok": OPS[request["op"]](*request.get("args", []))}
        except MemoryError:
            result = {"error": "MemoryError"}
        except RecursionError:
            result = {"error": "RecursionError"}
        except Exception as exc:  # noqa: BLE001 — any parser failure means "not equivalent", reported to the parent
            result = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
        stdout.write(json.dumps(result).encode() + b"\n")
        stdout.flush()


if __name__ == "__main__":
    main()
