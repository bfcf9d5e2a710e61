"""Tokens per second, one way for both stages: the change of a running token count between two logging steps.

SFT counts the real (non-padding) tokens it trained on — TRL's ``_total_train_tokens``, which we correct for
packed rows — and GSPO the prompt + completion tokens it generated and trained on (``num_input_tokens_seen``);
both counts are already summed over ranks, so the rate is the job's, not one GPU's.
"""

from __future__ import annotations

import time


class TokenRate:
    """``per_second(count)`` -> tokens per second since the previous call (or since creation)."""

    def __init__(self) -> None:
        self.count = 0.0
        self.since = time.perf_counter()

    def per_second(self, count: float) -> float:
        now = time.perf_counter()
        rate = (count - self.count) / max(now - self.since, 1e-9)
        self.count, self.since = float(count), now
        return rate
