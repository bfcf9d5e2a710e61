"""Several sources mixed with weights: the recipe's `data.sources:` list.

Each `SourceSpec` is loaded and checked on its own (its own column mapping, filters and skip report, so a
skip-rate error names the source that is broken), then `datasets.interleave_datasets` draws from them with
the normalised weights as probabilities and a fixed seed — deterministic, and the same code path for
in-memory and streaming datasets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import datasets

from mmfinereason.data.loading import AnyDataset, SourceLike, load_examples_with_report
from mmfinereason.data.report import DataReport

StoppingStrategy = Literal["first_exhausted", "all_exhausted", "all_exhausted_without_replacement"]


@dataclass
class SourceSpec:
    """One data source of a mixture (one entry of the recipe's `data.sources:` list)."""

    path: SourceLike = field(
        metadata={"help": "Hub id (e.g. OpenDataArena/MMFineReason-1.8M-Qwen3-VL-235B-Thinking), local parquet/jsonl/"
                  "json file or folder of shards, or (from Python) a datasets.Dataset."}
    )
    split: str | None = field(default=None, metadata={"help": "Split to read, e.g. 'sft' or 'rl'; None if only one."})
    subset: str | None = field(
        default=None, metadata={"help": "Hub config name (one source of the Full-2.3M pool) or a sub-folder."}
    )
    weight: float = field(
        default=1.0, metadata={"help": "Relative sampling weight; weights are normalised to probabilities."}
    )
    columns: dict[str, str] | None = field(
        default=None,
        metadata={"help": "Our field name -> this source's column name, e.g. {response: response, answer: gt}. "
                  "Unmapped fields use the MMFineReason release names."},
    )
    sources: list[str] | None = field(
        default=None, metadata={"help": "Keep only rows whose `source` column is one of these (e.g. [MMR1, WeMath])."}
    )
    pass_rate_range: tuple[float, float] | None = field(
        default=None,
        metadata={"help": "Keep only rows with low <= pass_rate <= high, e.g. [0.0, 0.0] for the hard 123K subset."},
    )
    require_consistent: bool = field(
        default=False, metadata={"help": "Keep only rows whose `is_consistent` judge verdict is true."}
    )
    caption_in_prompt: bool = field(
        default=False, metadata={"help": "Insert the dense caption after the <image> markers of the question."}
    )
    limit: int | None = field(default=None, metadata={"help": "Read at most this many rows of this source."})
    name: str | None = field(default=None, metadata={"help": "Name in logs and errors (default: path + split)."})

    def __post_init__(self) -> None:
        if not self.weight > 0:
            raise ValueError(f"data source {self.path!r}: weight must be > 0, got {self.weight!r}")
        if self.pass_rate_range is not None:
            if len(self.pass_rate_range) != 2 or self.pass_rate_range[0] > self.pass_rate_range[1]:
                raise ValueError(
                    f"data source {self.path!r}: pass_rate_range must be [low, high], got {self.pass_rate_range!r}"
                )
            self.pass_rate_range = (float(self.pass_rate_range[0]), float(self.pass_rate_range[1]))
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"data source {self.path!r}: limit must be >= 1, got {self.limit!r}")


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
) -> tuple[AnyDataset, list[DataReport]]:
    """Load every spec, then interleave them with probabilities proportional to their weights.

    `stopping_strategy="first_exhausted"` (default) keeps the proportions exact and repeats nothing: the mixture
    ends when one source runs out. `"all_exhausted"` oversamples the small sources until every source has
    been seen once. Returns the dataset and one report per spec (live while a stream is iterated;
    `DataReport.combine(reports)` gives the total).
    """
    if not specs:
        raise ValueError("data.sources is empty: give at least one source")
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
