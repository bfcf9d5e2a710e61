"""The token-length index of a training set: computed once per node (or shared filesystem), in parallel, cached.

Why: the token-budget sampler needs every example's length before step 1. On MMFineReason-1.8M that is ~5B
tokens of tokenisation — hours in one process — and before this module every rank paid it at every start and
every requeue. Here it is paid once:

* **keyed by what it depends on** — the dataset's ``datasets`` fingerprint (its data files and every transform
  applied to them, filters and the row normaliser's settings included; in-memory datasets, which only have a
  random fingerprint, are hashed by content), the tokenizer (name, size, and its serialised vocabulary), the chat
  template, the pixel bounds, ``max_length``, the overlong policy, the system prompt;
* **computed by one process** — the first process to take the file lock ``<key>.lock`` computes, writes the
  index atomically (``os.replace``) and releases; every other process (the other ranks of the node, or of every
  node on a shared filesystem) blocks on the lock, then reads the file. A file lock and not
  ``accelerate``'s ``main_process_first``: it needs no process group (it also serialises independent jobs and
  notebook runs that share the cache), it is once per *filesystem* rather than once per node, and no rank sits in
  a collective (with its NCCL timeout) while rank 0 works;
* **in parallel** — ``datasets.map(num_proc=...)`` over the undecoded images (header reads only) with
  batched fast tokenisation, so ``data.num_proc: 16`` cuts the cold pass ~16x;
* **reused on resume** — a requeued job finds the file and reads it in well under a second.

The cache lives in ``$MMFINEREASON_LENGTH_INDEX`` if set, else ``$MMFINEREASON_CACHE/length_index`` (default
``~/.cache/mmfinereason/length_index``); point it at a shared filesystem to build once for all nodes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmfinereason.data.batching.lengths import _image_size, batch_lengths, example_lengths

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1  # bump when the length rule changes: old indexes are then ignored
_NONE = -1  # how an example the collator would drop (length None) is stored


@dataclass
class LengthSpec:
    """What ``batch_lengths`` reads from a collator, without the model: small and picklable for ``num_proc``."""

    processor: Any
    max_length: int
    overlong: str
    min_pixels: int
    max_pixels: int
    system_prompt: str | None
    end_of_turn: str

    @classmethod
    def of(cls, collator) -> "LengthSpec":
        return cls(
            collator.processor, collator.max_length, collator.overlong, collator.min_pixels, collator.max_pixels,
            collator.system_prompt, collator.end_of_turn,
        )

    @property
    def tokenizer(self):
        return getattr(self.processor, "tokenizer", self.processor)

    def __call__(self, batch: dict[str, list]) -> dict[str, list[int]]:
        """``datasets.map(batched=True)`` function: the ``_length`` column (-1 = dropped by the collator)."""
        sizes = [[_image_size(img) for img in (imgs or [])] for imgs in batch["images"]]
        lengths = batch_lengths(self, batch["question"], batch["response"], sizes)
        return {"_length": [_NONE if n is None else n for n in lengths]}


def cache_root() -> Path:
    """``$MMFINEREASON_LENGTH_INDEX`` if set (e.g. a shared filesystem), else ``$MMFINEREASON_CACHE/length_index``."""
    if os.environ.get("MMFINEREASON_LENGTH_INDEX"):
        return Path(os.environ["MMFINEREASON_LENGTH_INDEX"])
    root = os.environ.get("MMFINEREASON_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "mmfinereason"
    )
    return Path(root) / "length_index"


def index_key(dataset, spec: LengthSpec) -> str:
    """Hex digest of everything the lengths depend on (see the module docstring)."""
    tokenizer = spec.tokenizer
    try:
        vocab = tokenizer.backend_tokenizer.to_str()  # fast tokenizers: the whole tokenizer.json
    except AttributeError:
        vocab = json.dumps(sorted(tokenizer.get_vocab().items()))
    template = getattr(spec.processor, "chat_template", None) or getattr(tokenizer, "chat_template", None)
    parts = {
        "version": FORMAT_VERSION,
        "data": dataset_fingerprint(dataset),
        "tokenizer": [getattr(tokenizer, "name_or_path", ""), len(tokenizer), _sha(vocab)],
        "chat_template": _sha(json.dumps(template, sort_keys=True, default=str)),
        "pixels": [spec.min_pixels, spec.max_pixels],
        "image_processor": _image_processor_settings(spec.processor),
        "max_length": spec.max_length,
        "overlong": spec.overlong,
        "system_prompt": spec.system_prompt,
        "end_of_turn": spec.end_of_turn,
    }
    return _sha(json.dumps(parts, sort_keys=True, default=str))[:32]


def dataset_fingerprint(dataset) -> str:
    """``datasets``' own fingerprint for file-backed datasets; a content hash for in-memory ones.

    Why the content hash: an in-memory ``Dataset`` (``from_dict``, the toy task) gets a *random* fingerprint,
    which would differ between ranks and between runs — a cache that never hits and ranks that disagree.
    """
    if dataset.cache_files:
        return "fp:" + dataset._fingerprint
    digest = hashlib.sha256()
    table = dataset.data.table
    for name in table.column_names:
        digest.update(name.encode())
        for chunk in table.column(name).chunks:
            for buffer in chunk.buffers():
                if buffer is not None:
                    digest.update(memoryview(buffer))
    if dataset._indices is not None:
        for chunk in dataset._indices.column(0).chunks:
            digest.update(np.asarray(chunk).tobytes())
    return "content:" + digest.hexdigest()


def cached_example_lengths(
    dataset, collator, *, num_proc: int | None = None, cache_dir: str | os.PathLike | None = None
) -> list[int | None]:
    """``example_lengths(dataset, collator)``, computed once and shared through the on-disk cache."""
    lengths, _ = load_or_build(dataset, collator, num_proc=num_proc, cache_dir=cache_dir)
    return lengths


def load_or_build(
    dataset, collator, *, num_proc: int | None = None, cache_dir: str | os.PathLike | None = None
) -> tuple[list[int | None], bool]:
    """``(lengths, built_here)``: read the index if cached, else take the lock and build it (or wait and read)."""
    import datasets
    from filelock import FileLock

    if not isinstance(dataset, datasets.Dataset):  # a list of dicts (tests, notebooks): small, nothing to share
        return example_lengths(dataset, collator), True
    spec = LengthSpec.of(collator)
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{index_key(dataset, spec)}.npy"
    if path.is_file():
        return _read(path, len(dataset)), False
    start = time.monotonic()
    with FileLock(str(path) + ".lock"):
        if path.is_file():  # another process built it while we waited
            logger.info("length index: read %s, built by another process (waited %.1fs)", path.name,
                        time.monotonic() - start)
            return _read(path, len(dataset)), False
        array = _build(dataset, spec, num_proc)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, array)
        os.replace(tmp, path)
    logger.info("length index: %d examples in %.1fs (num_proc=%s), cached as %s", len(array),
                time.monotonic() - start, num_proc, path)
    return _to_list(array), True


def _build(dataset, spec: LengthSpec, num_proc: int | None) -> np.ndarray:
    import datasets

    columns = dataset.select_columns(["question", "response", "images"])
    inner = getattr(columns.features["images"], "feature", None)
    if isinstance(inner, datasets.Image) and inner.decode:
        columns = columns.cast_column("images", datasets.List(datasets.Image(decode=False)))
    num_proc = num_proc if num_proc and num_proc > 1 and len(columns) >= 2 * num_proc else None
    mapped = columns.map(
        spec,
        batched=True,
        batch_size=512,
        remove_columns=columns.column_names,
        num_proc=num_proc,
        keep_in_memory=True,  # the .npy file is the cache; no second copy in the datasets cache
        new_fingerprint=f"length-index-{os.getpid()}-{time.time_ns()}",  # skip hashing the processor
        desc="Token-length index",
    )
    return np.asarray(mapped.with_format("numpy")["_length"], dtype=np.int32)


def _read(path: Path, expected: int) -> list[int | None]:
    array = np.load(path)
    if len(array) != expected:  # cannot happen for a correct key; never train on a wrong index
        raise RuntimeError(f"length index {path} has {len(array)} entries for a dataset of {expected}; delete it")
    return _to_list(array)


def _to_list(array: np.ndarray) -> list[int | None]:
    return [None if n == _NONE else n for n in array.tolist()]


def _image_processor_settings(processor) -> dict:
    ip = getattr(processor, "image_processor", None)
    keys = ("patch_size", "merge_size", "temporal_patch_size", "min_pixels", "max_pixels", "size")
    return {k: getattr(ip, k, None) for k in keys} if ip is not None else {}


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
