"""The position of a streamed token-budget run, saved into every checkpoint and restored on resume.

Why: on resume the Trainer fast-forwards a streamed dataloader by *reading and discarding* every batch already
trained on — for a run deep into the 1.8M-row stream that re-reads (and re-decodes) hours of data before the
first new step. :class:`~mmfinereason.data.batching.streaming.StreamingTokenBudget` knows its position as a
``datasets.IterableDataset.state_dict()`` plus a count of micro-batches, so a checkpoint stores that (one JSON per
rank, each rank reads its own part of the stream) and a resume jumps there; the Trainer's own skip is then turned
off for that run (``ignore_data_skip``). Without a saved position (older checkpoints, or ``dataloader_num_workers >
0``, where the position lives in the worker processes) the Trainer's exact-but-slow skip is kept.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def state_file(folder: str | Path, rank: int) -> Path:
    return Path(folder) / f"stream_state_rank{rank}.json"


def save_stream_state(batcher, folder: str | Path, rank: int, micro_batches: int, num_workers: int) -> bool:
    """Write the position after ``micro_batches`` consumed micro-batches; False when it is not known here."""
    if num_workers > 0 or not Path(folder).is_dir():
        return False
    state_file(folder, rank).write_text(json.dumps(batcher.state_at(micro_batches)))
    return True


def load_stream_state(batcher, folder: str | Path | None, rank: int) -> bool:
    """Position ``batcher`` at the state saved in ``folder``; True when there was one."""
    if not folder or not isinstance(folder, (str, Path)) or not state_file(folder, rank).is_file():
        return False
    state = json.loads(state_file(folder, rank).read_text())
    batcher.load_state_dict(state)
    logger.info("streamed data: resuming at epoch %d, buffer %d, %d micro-batches in (no re-reading)",
                state["epoch"], state["buffer"], state["emitted"])
    return True
