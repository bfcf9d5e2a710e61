"""Collator counters that survive DataLoader worker processes.

Why: with ``dataloader_num_workers > 0`` the collator runs in worker processes, each with its own copy of
``collator.stats``; the trainer's copy in the main process stayed at 0, so ``samples_truncated`` and
``samples_dropped_overlong`` were logged as 0 however many samples were cut. In a worker the collator therefore
also puts the batch's own counts into the batch (:func:`attach_counts`), and the trainer takes them out before the
forward (:func:`pop_counts`) and adds them up. In the main process (no workers) nothing is added to the batch, so
``model(**collator(examples))`` keeps working and ``collator.stats`` stays the place to read.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch

WORKER_COUNTS_KEY = "collator_counts"
COUNTED = ("dropped_overlong", "truncated", "replaced")


def in_worker() -> bool:
    return torch.utils.data.get_worker_info() is not None


def snapshot(stats: Counter) -> list[int]:
    """The counted values now, to subtract at the end of a batch."""
    return [stats[k] for k in COUNTED]


def attach_counts(batch: dict[str, Any], stats: Counter, before: list[int]) -> None:
    """In a worker process: this batch's counts (``stats`` now minus ``before``) as ``batch[WORKER_COUNTS_KEY]``."""
    if in_worker():
        batch[WORKER_COUNTS_KEY] = torch.tensor([stats[k] - b for k, b in zip(COUNTED, before)], dtype=torch.long)


def pop_counts(batch: dict[str, Any]) -> Counter:
    """Remove the counts a worker attached (none in the main process) and return them by name."""
    counts = batch.pop(WORKER_COUNTS_KEY, None) if isinstance(batch, dict) else None
    if counts is None:
        return Counter()
    # several batches concatenated (accelerate's dispatching) arrive as one longer vector
    summed = counts.reshape(-1, len(COUNTED)).sum(0).tolist()
    return Counter({k: int(v) for k, v in zip(COUNTED, summed)})
