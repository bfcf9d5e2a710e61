"""Recipe sources -> datasets: the bundled task behind ``path: toy``, everything else through the loader.

A recipe names its data as a list of :class:`~mmfinereason.recipe.sections.SourceSpec`. ``path: toy`` selects the
bundled verifiable task (:mod:`mmfinereason.toy`), drawn with a seed per split so that ``train``, ``test`` and
``rl`` hold different items; it then goes through the same loader as real data, so the toy path exercises
the real code.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from mmfinereason.data.io.mixing import load_mixture_with_report
from mmfinereason.recipe.sections import SourceSpec
from mmfinereason.toy.splits import TOY, toy_split
from mmfinereason.data.io.report import DataReport

TOY_DEFAULT_ROWS = 1000


def materialise(spec: SourceSpec) -> SourceSpec:
    """Replace ``path: toy`` by the drawn dataset; other specs are returned unchanged."""
    if spec.path != TOY:
        return spec
    split = spec.split or "train"
    dataset = toy_split(split, spec.limit or TOY_DEFAULT_ROWS)
    return dataclasses.replace(spec, path=dataset, split=None, name=spec.name or f"toy:{split}")


def load_sources(
    specs: Sequence[SourceSpec],
    *,
    require_response: bool = True,
    streaming: bool = False,
    max_skip_rate: float = 0.01,
    seed: int = 42,
    num_proc: int | None = None,
    image_check: str = "full",
):
    """The weighted mixture of ``specs`` and one combined :class:`DataReport` (keywords: ``load_examples_with_report``)."""
    dataset, reports = load_mixture_with_report(
        [materialise(s) for s in specs],
        streaming=streaming,
        require_response=require_response,
        max_skip_rate=max_skip_rate,
        seed=seed,
        num_proc=num_proc,
        image_check=image_check,
    )
    return dataset, DataReport.combine(reports)
