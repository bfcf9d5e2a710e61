"""Data: rows -> normalised examples (:mod:`.io`: sources, loading, rows, images, mixing, report) -> batches
(:mod:`.batching`: collator, packing, lengths, token-budget sampler). :mod:`.schema` holds what both agree on."""

from mmfinereason.data.batching.collator import MultimodalCollator
from mmfinereason.data.batching.packing import pack_examples
from mmfinereason.data.batching.sampler import TokenBudgetBatchSampler, token_budget_sampler
from mmfinereason.data.io.images import BadImageError, to_rgb_image
from mmfinereason.data.io.loading import DataSourceError, load_examples, load_examples_with_report
from mmfinereason.data.io.mixing import load_mixture, load_mixture_with_report
from mmfinereason.data.io.report import DataQualityError, DataReport
from mmfinereason.data.io.sources import load_sources
from mmfinereason.data.schema import IGNORE_INDEX, IMAGE_MARKER, EncodedExample, pad_examples
from mmfinereason.recipe.sections import SourceSpec

__all__ = [
    "BadImageError",
    "DataQualityError",
    "DataReport",
    "DataSourceError",
    "EncodedExample",
    "IGNORE_INDEX",
    "IMAGE_MARKER",
    "MultimodalCollator",
    "SourceSpec",
    "TokenBudgetBatchSampler",
    "load_examples",
    "load_examples_with_report",
    "load_mixture",
    "load_mixture_with_report",
    "load_sources",
    "pack_examples",
    "pad_examples",
    "to_rgb_image",
    "token_budget_sampler",
]
