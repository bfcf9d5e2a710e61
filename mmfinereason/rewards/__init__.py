r"""Verifiable-answer rewards for GSPO: extract the committed answer, decide equivalence, never hang.

    from mmfinereason.rewards import accuracy_reward, format_reward, is_correct
    is_correct("<think>…</think>The final answer is <answer>\\frac{1}{2}</answer>.", "0.5")   # True
    is_correct("12", "1.2")                                                                 # False

Design, and why:

- **Extract** (`answer.py`, `phrases.py`): the last `<answer>…</answer>` after `</think>`, else the later of the last
  balanced `\boxed{}` (joined with the boxes just before it when only separators divide them) and the last answer
  phrase (`Answer: X`, `The final answer is $X$. I hope it is correct.`, `答案：X`, `La réponse est X`, …), else a
  short bare answer. Linear scans only (`rfind`, a bounded brace matcher, one regex over a bounded window), so a
  megabyte of junk or 10^5 nested braces costs milliseconds.
- **Fast path first** (`equivalence.py`, `numeric.py`, `choices.py`, `structures.py`, `normalize.py`): most golds
  are numbers, option letters, yes/no or words. Comparing them in pure Python (exact `Fraction`s, unit stripping,
  option parsing, matrices entry by entry) takes microseconds, is exact where floats are not, and keeps a
  2,900-token response's check around a millisecond. The fast path is definitive only where it is sure (numbers,
  letters, yes/no, words), so near misses (`12`/`1.2`, `B`/`BC`, `30°`/`60°`) stay wrong without reaching sympy;
  elsewhere (expressions, LaTeX structures, prose) a "not equal" is asked of math-verify (`verify.py`), and a text
  comparison never decides a matrix, set, interval or equation.
- **Conventions** (`conventions.py`): where hand-labelled graders disagree (decimal comma, `10%` vs `10`, list
  order, rounding precision), `is_correct` takes an option with a stated default.
- **Symbolic path in a sandbox process** (`symbolic.py`, `sandbox.py`): only expressions (`2\sqrt{3}`,
  `\frac{\pi}{2}`, intervals, sets, tuples) go to math-verify, in a small pool of worker processes. A check
  running past its hard limit (default 2 s) gets its worker SIGKILLed and replaced; the check scores 0 and is
  counted. A process is the only thing that can be stopped reliably: math-verify's `signal.alarm` timeout is
  disabled outside the main thread (where TRL reward workers run), and sympy can sit inside a single C call
  (`9^{9^{9^{9}}}`) that no in-process timeout interrupts. Workers have an address-space limit (2 GiB), inputs are
  capped (1,000 characters, 24 levels of nesting) before any parser sees them, and workers die with the trainer
  (atexit, closed stdin, parent-pid watch). `MMFINEREASON_VERIFY_WORKERS` / `MMFINEREASON_VERIFY_MEMORY_MB` tune the pool.
- **TRL reward functions** (`functions.py`): `accuracy_reward(completions, answer, **kwargs)` (None = skip a row
  without gold), `format_reward(completions, **kwargs)`, and `make_length_penalty(max_len, buffer)` (DAPO's soft
  overlong punishment). `verification_stats()` returns check / timeout / error counters for logging.
"""

from __future__ import annotations

from .answer import extract_answer
from .functions import accuracy_reward, completion_text, format_reward, make_length_penalty
from .sandbox import shutdown as shutdown_sandbox
from .verify import is_correct, verification_stats

__all__ = [
    "accuracy_reward",
    "completion_text",
    "extract_answer",
    "format_reward",
    "is_correct",
    "make_length_penalty",
    "shutdown_sandbox",
    "verification_stats",
]
