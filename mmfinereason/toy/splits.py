"""The toy task's named splits: ``train`` / ``test`` / ``rl`` are draws with different seeds, so they hold
different items. One rule for every place that reads ``toy:<split>`` (recipes, ``eval --data``, ``select``)."""

from __future__ import annotations

import functools

from mmfinereason.errors import UserError

TOY = "toy"
SPLIT_SEEDS = {"train": 0, "sft": 0, "test": 1, "eval": 1, "validation": 1, "rl": 2}


@functools.lru_cache(maxsize=4)
def toy_split(split: str | None, rows: int):
    """``rows`` items of the toy task's ``split`` (default ``train``) as a ``datasets.Dataset``.

    Cached: a recipe that weights the task's sources lists the same split once per source (``sources:
    [toy_compare]``, …), and drawing 4,000 items takes ~6 s each time. A ``datasets.Dataset`` is never changed in
    place (every operation returns a new one), so sharing the draw is safe.
    """
    from mmfinereason.toy.task import make_dataset

    split = split or "train"
    if split not in SPLIT_SEEDS:
        raise UserError(f"the toy task has splits {sorted(SPLIT_SEEDS)}, got split {split!r}")
    return make_dataset(rows, seed=SPLIT_SEEDS[split])
