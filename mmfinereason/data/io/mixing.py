"""Several sources mixed with weights: the recipe's `data.train:` / `data.eval:` lists.

Each `SourceSpec` is loaded and checked on its own (its own column mapping, filters and skip report, so a
skip-rate error names the source that is broken), then `datasets.interleave_datasets` draws from them with
the normalised weights as probabilities and a fixed seed — deterministic, and the same code path for
in-memory and streaming datasets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import datasets

from mmfinereason.data.io.loading import AnyDataset, SourceLike, load_examples_with_report
from mmfinereason.data.io.report import DataReport
from mmfinereason.errors import UserError
from mmfinereason.recipe.sections import SourceSpec

StoppingStrategy = Literal["first_exhausted", "all_exhausted", "all_exhausted_without_replacement"]


def load_mixture(specs: Sequence[SourceSpec], **kwargs: Any) -> AnyDataset:
    """The mixture of `specs` as one dataset; see `load_mixture_with_report` for the arguments."""
    dataset, _ = load_mixture_with_report(specs, **kwargs)
    return dataset


def load_mixture_with_report(
    specs: Sequence[SourceSpec],
    *,
    streaming: bool = False,
    require_response: bool = True,
    max_skip_rate: float = 0.01,
    num_proc: int | None = None,
    seed: int = 42,
    stopping_strategy: StoppingStrategy = "first_exhausted",
    image_check: str = "full",
) -> tuple[AnyDataset, list[DataReport]]:
    """Load every spec, then interleave them with probabilities proportional to their weights.

    `stopping_strategy="first_exhausted"` (default) keeps the proportions exact and repeats nothing: the mixture
    ends when one source runs out. `"all_exhausted"` oversamples the small sources until every source has
    been seen once. Returns the dataset and one report per spec (live while a stream is iterated;
    `DataReport.combine(reports)` gives the total).
    """
    if not specs:
        raise UserError("data.train is empty: give at least one source")
    loaded, reports = [], []
    for spec in specs:
        dataset, report = load_examples_with_report(
            spec.path,
            spec.split,
            spec.columns,
            streaming,
            subset=spec.subset,
            require_response=require_response,
            caption_in_prompt=spec.caption_in_prompt,
            sources=spec.sources,
            pass_rate_range=spec.pass_rate_range,
            require_consistent=spec.require_consistent,
            max_skip_rate=max_skip_rate,
            num_proc=num_proc,
            limit=spec.limit,
            name=spec.name,
            image_check=image_check,
        )
        loaded.append(dataset)
        reports.append(report)
    if len(loaded) == 1:
        return loaded[0], reports
    total = sum(spec.weight for spec in specs)
    mixed = datasets.interleave_datasets(
        loaded,
        probabilities=[spec.weight / total for spec in specs],
        seed=seed,
        stopping_strategy=stopping_strategy,
    )
    return mixed, reports
