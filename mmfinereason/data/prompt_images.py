"""How many images one prompt of a dataset may hold: vLLM's ``limit_mm_per_prompt``, counted from the data.

vLLM accepts only a fixed number of images per prompt, set when the engine starts. A fixed 1 fails on the first
multi-image row (MMMU has several); a large fixed number reserves encoder memory for nothing. Both generation
paths (GSPO's colocated engine, ``mmfinereason eval --backend vllm``) ask this function instead.
"""

from __future__ import annotations

import itertools

from mmfinereason.data.schema import IMAGE_MARKER

SCAN_STREAMING_ROWS = 10_000  # rows of a streamed dataset looked at; an in-memory one is read in full


def images_per_prompt(dataset) -> int:
    """The most images any row of ``dataset`` holds (>= 1), from the ``<image>`` markers of its ``question``.

    Counting markers, not decoded images: the loader guarantees one marker per image, and for an in-memory
    dataset the count costs one column read. ``dataset``: a ``datasets`` dataset, or any iterable of rows.
    """
    if dataset is None:
        return 1
    columns = getattr(dataset, "column_names", None) or []
    if hasattr(dataset, "__len__") and "question" in columns:
        questions = dataset["question"]
    else:
        questions = (row["question"] for row in itertools.islice(iter(dataset), SCAN_STREAMING_ROWS))
    return max((str(q).count(IMAGE_MARKER) for q in questions), default=0) or 1
