"""Token-budget micro-batches from a *streamed* dataset: first-fit-decreasing over a buffer, resumable exactly.

Why: the map-style sampler (:mod:`.sampler`) needs every length before step 1, which on the full 1.8M set is
the pass that streaming exists to avoid. Here lengths are computed as rows stream by (header sizes and
tokenisation only, :class:`.length_index.LengthSpec`), ``buffer_size`` examples at a time are packed
first-fit-decreasing into rows of ``row_length`` tokens, grouped ``rows_per_batch`` rows per micro-batch, and the
buffer's micro-batches are shuffled with a seed that depends only on ``(seed, buffer index)``. Unlike the
map-style sampler no example is carried into the next buffer (the buffer's least-full micro-batch is emitted as
it is), so a position is just "source position at the buffer's start + micro-batches already emitted from it":

* **deterministic** per seed, for a given stream order;
* **resumable to the exact position** through ``datasets.IterableDataset.state_dict()`` (``state_dict`` /
  ``load_state_dict`` here wrap it; the buffer is re-read and re-packed, the emitted micro-batches skipped);
* **endless**: the stream is re-read (a new epoch) when it runs out, so every rank runs exactly
  ``train.max_steps`` steps (streaming needs ``max_steps`` anyway) and no rank's epoch ends before another's;
* **per rank**: each rank reads its own part of the stream (``datasets.distributed.split_dataset_by_node``),
  so no rank decodes or tokenises another's rows and nothing is broadcast.

Items are lists of examples; use ``DataLoader(batcher, batch_size=None, collate_fn=collator)``.
"""

from __future__ import annotations

import random
from itertools import islice
from typing import Any

import torch

from mmfinereason.data.batching.length_index import LengthSpec
from mmfinereason.data.batching.packing import first_fit_decreasing
from mmfinereason.errors import UserError

_HISTORY = 256  # buffer starts remembered for state_at(); a checkpoint is never that many buffers behind


class StreamingTokenBudget(torch.utils.data.IterableDataset):
    """Endless token-budget micro-batches (lists of examples) of ``stream``; see the module docstring.

    Args:
        stream: a ``datasets.IterableDataset`` of normalised examples (``load_examples(..., streaming=True)``).
        collator: the :class:`~.collator.MultimodalCollator` the batches go to (its lengths rule is used).
        max_tokens: token budget of one micro-batch; ``row_length``: capacity of one packed row (None = one row
            of ``max_tokens``, the varlen layout). ``buffer_size``, ``seed``: as in the map-style sampler.
        rank / world_size: this process's part of the stream (default: accelerate's ``PartialState``).
    """

    def __init__(
        self,
        stream,
        collator,
        max_tokens: int,
        *,
        row_length: int | None = None,
        buffer_size: int = 1024,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
    ):
        if row_length is not None and not 0 < row_length <= max_tokens:
            raise ValueError(f"the token budget per batch ({max_tokens}) must hold one row of {row_length} tokens")
        if rank is None or world_size is None:
            from accelerate import PartialState

            state = PartialState()
            rank, world_size = state.process_index, state.num_processes
        if world_size > 1:
            from datasets.distributed import split_dataset_by_node

            stream = split_dataset_by_node(stream, rank=rank, world_size=world_size)
        self.stream = stream
        self.spec = LengthSpec.of(collator)
        self.row_length = row_length or max_tokens
        self.rows_per_batch = max(1, max_tokens // self.row_length)
        self.buffer_size = buffer_size
        self.seed = seed
        self.num_skipped = 0
        self._start: dict[str, Any] = {"epoch": 0, "buffer": 0, "source": None, "emitted": 0}
        self._history: list[tuple[int, dict[str, Any]]] = []  # (batches yielded before buffer, its start)
        self._yielded = 0

    # ------------------------------------------------------------------ position
    def state_dict(self) -> dict[str, Any]:
        """The position after the last micro-batch this iterator yielded."""
        return self.state_at(self._yielded)

    def state_at(self, count: int) -> dict[str, Any]:
        """The position after the ``count``-th yielded micro-batch (e.g. steps x accumulation of a checkpoint)."""
        for first, start in reversed(self._history):
            if first <= count:
                return {**start, "emitted": count - first, "yielded": count}
        if not self._history and count == self._start.get("yielded", 0):
            return dict(self._start)
        raise ValueError(f"position {count} is older than the {_HISTORY} buffers remembered")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Start the next ``iter()`` at ``state`` (from ``state_dict()`` / ``state_at()``)."""
        self._start = dict(state)
        self._yielded = int(state.get("yielded", 0))
        self._history = []

    # ------------------------------------------------------------------ batches
    def __iter__(self):
        start = dict(self._start)
        epoch, buffer_index, skip = start["epoch"], start["buffer"], start["emitted"]
        source_state = start["source"]
        self._yielded = int(start.get("yielded", 0))
        # DataLoader workers: each reads the stream and yields every n-th batch, so that the loader's round-robin
        # gives the batches in the one order (decoding and collating, the costly part, is spread over them).
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        while True:
            self.stream.set_epoch(epoch)
            if source_state is not None:
                self.stream.load_state_dict(source_state)
            rows = iter(self.stream)
            empty = True
            while True:
                chunk = list(islice(rows, self.buffer_size))
                if not chunk:
                    break
                empty = False
                self._remember(self._yielded - skip, {"epoch": epoch, "buffer": buffer_index, "source": source_state})
                batches = self._pack(chunk, epoch, buffer_index)
                for batch in batches[skip:]:
                    self._yielded += 1
                    if (self._yielded - 1) % workers == worker:
                        yield batch
                skip = 0
                buffer_index += 1
                source_state = self.stream.state_dict()  # the next buffer starts here
            if empty and source_state is None:
                raise UserError(
                    "the streamed training data is empty (or every row was skipped): check the paths and filters of "
                    "data.train (sources, pass_rate_range, require_consistent) and the skip report in the log"
                )
            epoch, buffer_index, source_state = epoch + 1, 0, None

    def _remember(self, first: int, start: dict[str, Any]) -> None:
        self._history.append((first, start))
        del self._history[:-_HISTORY]

    def _pack(self, chunk: list[dict], epoch: int, buffer_index: int) -> list[list[dict]]:
        lengths = self.spec({k: [x.get(k) for x in chunk] for k in ("question", "response", "images")})["_length"]
        usable = [j for j, n in enumerate(lengths) if 0 < n <= self.row_length]
        self.num_skipped += len(chunk) - len(usable)
        if not usable:
            return []
        bins = first_fit_decreasing([lengths[j] for j in usable], self.row_length)
        groups = [bins[k : k + self.rows_per_batch] for k in range(0, len(bins), self.rows_per_batch)]
        batches = [[chunk[usable[j]] for b in group for j in b] for group in groups]
        random.Random(f"{self.seed}:{epoch}:{buffer_index}").shuffle(batches)
        return batches
