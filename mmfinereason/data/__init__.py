"""Data: sources -> normalised examples (loading, images, rows, mixing) -> batches (collator, packing)."""

from .collator import IGNORE_INDEX, EncodedExample, MultimodalCollator, pad_examples
from .images import BadImageError, to_rgb_image
from .loading import DataSourceError, load_examples, load_examples_with_report
from .mixing import SourceSpec, load_mixture, load_mixture_with_report
from .packing import pack_examples
from .report import DataQualityError, DataReport
from .sampler import TokenBudgetBatchSampler, token_budget_sampler
from .sources import load_sources

__all__ = [
    "BadImageError",
    "TokenBudgetBatchSampler",
    "to_rgb_image",
    "token_budget_sampler",
    "IGNORE_INDEX",
    "DataQualityError",
    "DataReport",
    "DataSourceError",
    "EncodedExample",
    "MultimodalCollator",
    "SourceSpec",
    "load_examples",
    "load_examples_with_report",
    "load_mixture",
    "load_mixture_with_report",
    "load_sources",
    "pack_examples",
    "pad_examples",
]
