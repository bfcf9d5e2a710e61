"""Token-budget batching: micro-batches of dataset indices sized by tokens, not rows, bin-packed in a buffer.

Why: MMFineReason traces average ~2,900 tokens with a tail past 16K. A fixed number of rows per micro-batch
makes a step's token count (and so its memory, time and gradient noise) swing by 10x, and packed rows cannot
be filled well from a handful of examples. Here a batch sampler reads the *lengths* of ``buffer_size``
shuffled examples at a time, packs them first-fit-decreasing into rows of ``row_length`` tokens, and emits
``max_tokens // row_length`` rows per micro-batch; the collator then packs exactly those examples (see
:mod:`.packing`). Neither transformers (``group_by_length`` / ``batch_rebalance`` keep rows per batch fixed)
nor TRL (its ``packing`` is text-only, trl#4339) offers this for VLMs.

Lengths come from :mod:`.lengths` (no image decoding; equal to ``len(collator.encode(x))``), so budgets hold
exactly.

Deterministic: the batches of an epoch depend only on ``(seed, epoch)`` and the lengths — a plain list of
index lists — so every rank builds the same list (accelerate then gives each rank every n-th batch) and
resuming mid-epoch skips the same batches that were consumed.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from torch.utils.data import Sampler

from mmfinereason.data.batching.length_index import cached_example_lengths
from mmfinereason.data.batching.lengths import example_lengths  # noqa: F401  (importable from here, as before)
from mmfinereason.data.batching.packing import first_fit_decreasing
from mmfinereason.errors import UserError
from mmfinereason.modeling.introspect import uses_varlen_attention


class TokenBudgetBatchSampler(Sampler[list[int]]):
    """Batches of indices whose lengths fill ``rows_per_batch`` rows of ``row_length`` tokens (FFD in a buffer).

    Args:
        lengths: token length of every dataset item (``None`` = the collator drops it; such items are skipped
            and counted in ``num_skipped``, as are items longer than a row).
        max_tokens: token budget of one micro-batch.
        row_length: capacity of one packed row (the collator's ``max_length``); ``None`` = one row of
            ``max_tokens`` per batch, the flash-attn layout.
        buffer_size: examples bin-packed together; larger fills rows better but groups lengths more.
        shuffle / seed: a new order every epoch (``set_epoch``), the same on every rank.
        drop_last: drop each epoch's last batch when it is not full (it gets FFD's leftovers).

    >>> sampler = TokenBudgetBatchSampler([900, 300, 2000, 1200], max_tokens=4096, row_length=2048)
    >>> DataLoader(dataset, batch_sampler=sampler, collate_fn=collator)
    """

    def __init__(
        self,
        lengths: Sequence[int | None],
        max_tokens: int,
        *,
        row_length: int | None = None,
        buffer_size: int = 1024,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ):
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be positive, got {max_tokens}")
        if row_length is not None and not 0 < row_length <= max_tokens:
            raise UserError(
                f"the token budget per batch ({max_tokens}) must hold at least one row of max_length={row_length} "
                "tokens; raise data.tokens_per_batch or lower data.max_length"
            )
        if buffer_size < 1:
            raise UserError(f"buffer_size (data.packing_buffer_size) must be at least 1, got {buffer_size}")
        self.lengths = list(lengths)
        self.max_tokens = max_tokens
        self.row_length = row_length or max_tokens
        self.rows_per_batch = max_tokens // self.row_length
        self.buffer_size = buffer_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0
        self.usable = [i for i, n in enumerate(self.lengths) if n is not None and 0 < n <= self.row_length]
        self.num_skipped = len(self.lengths) - len(self.usable)
        if not self.usable:
            raise UserError(
                f"no example fits a row of {self.row_length} tokens: every one is longer (or could not be encoded); "
                "raise data.max_length / data.tokens_per_batch or check the data"
            )
        self._cache: tuple[int, list[list[int]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self, epoch: int | None = None) -> list[list[int]]:
        """The epoch's micro-batches (lists of dataset indices), deterministic in ``(seed, epoch)``."""
        epoch = self.epoch if epoch is None else epoch
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        rng = random.Random(self.seed * 1_000_003 + epoch)
        order = list(self.usable)
        if self.shuffle:
            rng.shuffle(order)
        out: list[list[int]] = []
        carry: list[int] = []
        for start in range(0, len(order), self.buffer_size):
            chunk = carry + order[start : start + self.buffer_size]
            bins = first_fit_decreasing([self.lengths[i] for i in chunk], self.row_length)
            groups = [bins[k : k + self.rows_per_batch] for k in range(0, len(bins), self.rows_per_batch)]
            # FFD's last bins are its least full: their examples join the next buffer (or end the epoch).
            carry = [chunk[j] for b in groups.pop() for j in b]
            batches = [[chunk[j] for b in group for j in b] for group in groups]
            if self.shuffle:
                rng.shuffle(batches)  # step order must not follow FFD's longest-first order
            out += batches
        if carry and not (self.drop_last and self.tokens(carry) < self.rows_per_batch * self.row_length):
            out.append(carry)
        self._cache = (epoch, out)
        return out

    def tokens(self, batch: Sequence[int]) -> int:
        return sum(self.lengths[i] for i in batch)

    def __iter__(self):
        return iter(self.batches())

    def __len__(self) -> int:
        return len(self.batches())


def check_token_budget(collator, max_tokens: int) -> None:
    """``data.tokens_per_batch`` needs packing and room for one example of ``data.max_length``; the map-style
    sampler below and the streamed one (:class:`.streaming.StreamingTokenBudget`) are checked alike."""
    if not getattr(collator, "packing", False):
        raise UserError("token-budget batching packs examples: set data.packing: true (or unset data.tokens_per_batch)")
    if max_tokens < collator.max_length:
        raise UserError(
            f"data.tokens_per_batch={max_tokens} cannot hold one example of data.max_length={collator.max_length}"
        )


def token_budget_sampler(
    dataset,
    collator,
    max_tokens: int,
    *,
    buffer_size: int = 1024,
    seed: int = 0,
    shuffle: bool = True,
    drop_last: bool = False,
    num_proc: int | None = None,
) -> TokenBudgetBatchSampler:
    """A :class:`TokenBudgetBatchSampler` over ``dataset`` with the lengths ``collator`` will produce.

    The lengths come from the shared on-disk index (:mod:`.length_index`): built once, by one process, over
    ``num_proc`` workers; every other rank and every resume reads it.

    Rows are the collator's ``max_length`` for padded-row attention (sdpa / eager) and a single row of
    ``max_tokens`` for flash-attn models, matching the layout :func:`.packing.pack_examples` builds.
    """
    check_token_budget(collator, max_tokens)
    single_row = uses_varlen_attention(collator.model)
    return TokenBudgetBatchSampler(
        cached_example_lengths(dataset, collator, num_proc=num_proc),
        max_tokens,
        row_length=None if single_row else collator.max_length,
        buffer_size=buffer_size,
        shuffle=shuffle,
        seed=seed,
        drop_last=drop_last,
    )
