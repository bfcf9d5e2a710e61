"""`load_examples`: any supported source -> a `datasets` dataset of normalised examples, bad rows counted.

Sources: a Hugging Face hub id (from the local HF cache when offline), a local parquet / jsonl / json file, a
folder of such shards (split names inferred from file names as the Hub does: `data/sft-00000-of-00010.parquet`),
a folder written by `Dataset.save_to_disk`, or an in-memory `datasets.Dataset` / `IterableDataset`.

Every row goes through `rows.RowNormaliser` (filters, text checks, image check, `<image>` markers). The image
check is a full decode (`image_check="full"`) or, for SFT training at scale, the file header only
(`image_check="header"`: microseconds a row; the collator decodes, and counts and replaces a late failure).
Without streaming the whole source is checked up front, the skips are counted exactly, and a skip rate above
`max_skip_rate` raises before training starts. With `streaming=True` (the 1.8M set) rows are checked as they
are read; the counts in the returned report grow during iteration, and the threshold is enforced once
`STREAM_CHECK_AFTER_ROWS` rows have been seen, so a broken stream stops in the first minute, not hours in.

Example:
    >>> from mmfinereason.data.io.loading import load_examples_with_report
    >>> ds, report = load_examples_with_report("rows.jsonl", pass_rate_range=(0.0, 0.5))  # doctest: +SKIP
    >>> print(report.summary())  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import datasets
from datasets.data_files import DataFilesDict, get_data_patterns

from mmfinereason.data.io.report import DataReport
from mmfinereason.errors import UserError
from mmfinereason.data.io.rows import EXAMPLE_FEATURES, RowNormaliser, resolve_columns, row_features

logger = logging.getLogger(__name__)

AnyDataset = Union[datasets.Dataset, datasets.IterableDataset]
SourceLike = Union[str, os.PathLike, datasets.Dataset, datasets.IterableDataset, datasets.DatasetDict]

STREAM_CHECK_AFTER_ROWS = 200  # a streaming skip rate is judged only after this many rows (less is noise)
_FILE_BUILDERS = {".parquet": "parquet", ".jsonl": "json", ".json": "json"}
_BOOKKEEPING = ["_drop", "_fixes"]
IMAGE_CHECKS = ("full", "header")


def example_features(decode_images: bool = True) -> datasets.Features:
    """`EXAMPLE_FEATURES`, with images left encoded (`{"bytes", "path"}`) when `decode_images` is False."""
    return datasets.Features({**EXAMPLE_FEATURES, "images": datasets.List(datasets.Image(decode=decode_images))})


class DataSourceError(UserError, OSError):
    """A source that could not be opened (not on disk, not in the HF cache, no network, not readable); says what
    to do. A :class:`~mmfinereason.errors.UserError` (the CLI prints it in one line) and an ``OSError``."""


def _read_files(builder: str, data_files: dict[str, Any], split: str, streaming: bool) -> AnyDataset:
    """``datasets.load_dataset`` on local files; a file it cannot parse becomes one line naming the files."""
    try:
        return datasets.load_dataset(builder, data_files=data_files, split=split, streaming=streaming)
    except Exception as error:  # ArrowInvalid, DatasetGenerationError, JSONDecodeError …: all "not readable"
        files = ", ".join(str(f) for f in data_files[split][:3]) if isinstance(data_files[split], list) else data_files[split]
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise DataSourceError(
            f"cannot read data file(s) {files} as {builder}: {reason}; check that the file is a complete, valid "
            f".parquet / .jsonl / .json file (e.g. open it with pandas) or point the recipe's data path elsewhere"
        ) from error


def load_examples(
    source: SourceLike,
    split: str | None = None,
    columns: Mapping[str, str] | None = None,
    streaming: bool = False,
    **kwargs: Any,
) -> AnyDataset:
    """A `datasets.Dataset` (an `IterableDataset` when streaming) of normalised examples.

    `columns` maps our field names (`id, image, question, answer, response, caption, source, pass_rate,
    is_consistent`) to the source's column names; unmapped fields use the MMFineReason release names. The other
    keyword arguments are those of `load_examples_with_report`, which also returns the skip report.
    """
    dataset, _ = load_examples_with_report(source, split, columns, streaming, **kwargs)
    return dataset


def load_examples_with_report(
    source: SourceLike,
    split: str | None = None,
    columns: Mapping[str, str] | None = None,
    streaming: bool = False,
    *,
    subset: str | None = None,
    require_response: bool = True,
    caption_in_prompt: bool = False,
    sources: Sequence[str] | None = None,
    pass_rate_range: tuple[float, float] | None = None,
    require_consistent: bool = False,
    max_skip_rate: float = 0.01,
    num_proc: int | None = None,
    limit: int | None = None,
    name: str | None = None,
    image_check: str = "full",
) -> tuple[AnyDataset, DataReport]:
    """Load, filter and check `source`; return `(dataset, report)`.

    Args:
        subset: hub config name (e.g. one source of the Full-2.3M pool), or a sub-folder of a local folder.
        require_response: skip rows without a teacher response (set False for RL prompts and eval data).
        caption_in_prompt: insert the row's dense caption after the `<image>` markers of the question.
        sources: keep only rows whose `source` is one of these.
        pass_rate_range: keep only rows with `low <= pass_rate <= high` (rows without a pass rate go too).
        require_consistent: keep only rows whose `is_consistent` verdict is true.
        max_skip_rate: above this fraction of skipped (bad) rows, raise `DataQualityError`.
        num_proc: worker processes for the up-front check (non-streaming only).
        limit: read at most this many rows of the source (quick experiments, smoke tests).
        name: how the source is called in logs and errors (default: its path or hub id).
        image_check: "full" decodes every image now (exact counts; the returned images decode to RGB PIL images);
            "header" only opens the headers (microseconds a row) and returns images undecoded
            (`{"bytes", "path"}`), for the collator to decode, convert, and count and replace a late failure.
    """
    if image_check not in IMAGE_CHECKS:
        raise UserError(f"image_check (data.image_check) must be one of {IMAGE_CHECKS}, got {image_check!r}")
    if pass_rate_range is not None and (len(pass_rate_range) != 2 or pass_rate_range[0] > pass_rate_range[1]):
        raise UserError(f"pass_rate_range must be (low, high) with low <= high, got {pass_rate_range!r}")
    if not 0.0 <= max_skip_rate <= 1.0:
        raise UserError(
            f"max_skip_rate (data.max_skip_rate, --max-skip-rate) must be within [0, 1], got {max_skip_rate!r}"
        )
    raw, base_dir, default_name = open_source(source, split=split, subset=subset, streaming=streaming)
    name = name or default_name
    if limit is not None:
        raw = raw.take(limit) if isinstance(raw, datasets.IterableDataset) else raw.select(range(min(limit, len(raw))))

    available = _column_names(raw)
    required = {"question", "answer"}
    required |= {"response"} if require_response else set()
    required |= {"caption"} if caption_in_prompt else set()
    required |= {"source"} if sources is not None else set()
    required |= {"pass_rate"} if pass_rate_range is not None else set()
    required |= {"is_consistent"} if require_consistent else set()
    try:
        resolved = resolve_columns(available, columns, required)
    except ValueError as error:
        raise UserError(f"{name}: {error}") from None
    raw = _keep_images_encoded(raw, resolved["image"])

    normaliser = RowNormaliser(
        columns=resolved,
        name=name,
        base_dir=base_dir,
        require_response=require_response,
        caption_in_prompt=caption_in_prompt,
        sources=frozenset(sources) if sources is not None else None,
        pass_rate_range=tuple(pass_rate_range) if pass_rate_range is not None else None,
        require_consistent=require_consistent,
        image_check=image_check,
    )
    report = DataReport(name=name)
    decode = image_check == "full"
    if isinstance(raw, datasets.IterableDataset):
        dataset = _normalise_stream(raw, available, normaliser, report, max_skip_rate, decode)
    else:
        dataset = _normalise_table(raw, normaliser, report, max_skip_rate, num_proc, decode)
    return dataset, report


def _normalise_table(
    raw: datasets.Dataset,
    normaliser: RowNormaliser,
    report: DataReport,
    max_skip_rate: float,
    num_proc: int | None,
    decode: bool = True,
) -> datasets.Dataset:
    """Check every row now (cached by `datasets`), count exactly, raise or drop the bad rows."""
    mapped = raw.map(
        BatchedRows(normaliser),
        with_indices=True,
        batched=True,
        batch_size=256,
        remove_columns=raw.column_names,
        features=row_features(decode_images=decode),  # map never decodes its output: nothing is wasted
        num_proc=num_proc,
        desc=f"Checking rows of {report.name}",
    )
    bookkeeping = mapped.select_columns(["id", *_BOOKKEEPING]).to_dict()
    for row_id, drop, fixes in zip(bookkeeping["id"], bookkeeping["_drop"], bookkeeping["_fixes"]):
        report.record(row_id, drop, fixes)
    logger.info(report.summary())
    report.check(max_skip_rate)
    if report.kept < report.seen:
        mapped = mapped.filter(_is_kept, input_columns="_drop", num_proc=num_proc, desc="Dropping skipped rows")
    return mapped.remove_columns(_BOOKKEEPING)


@dataclass(frozen=True)
class BatchedRows:
    """``datasets.map(batched=True)`` adapter of a per-row function: the same rows out, without ``datasets``'
    per-row formatting (measured: ~40% of the up-front check's time at MMFineReason's row size)."""

    per_row: Any

    def __call__(self, batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        columns = list(batch)
        out: dict[str, list] = {}
        for j, index in enumerate(indices):
            for key, value in self.per_row({c: batch[c][j] for c in columns}, index).items():
                out.setdefault(key, []).append(value)
        return out


def _normalise_stream(
    raw: datasets.IterableDataset,
    available: list[str],
    normaliser: RowNormaliser,
    report: DataReport,
    max_skip_rate: float,
    decode: bool = True,
) -> datasets.IterableDataset:
    """Check rows lazily; the filter counts into `report` and enforces the threshold as rows stream by.

    The counting function is a closure, not a bound method or partial: `datasets` deep-copies its iterable
    pipelines (shuffle, interleave), which would copy a report held by a method but leaves functions as is.
    With a multi-worker DataLoader each worker counts in its own copy; the main process's report then stays 0.
    """

    def count_and_check(row_id: str, drop: str, fixes: list[str]) -> bool:
        kept = report.record(row_id, drop, fixes)
        if report.seen >= STREAM_CHECK_AFTER_ROWS:
            report.check(max_skip_rate)
        return kept

    logger.info("data %r: streaming; rows are checked and counted as they are read", report.name)
    mapped = raw.map(normaliser, with_indices=True, remove_columns=available, features=row_features(False))
    checked = mapped.filter(count_and_check, input_columns=["id", *_BOOKKEEPING])
    return checked.remove_columns(_BOOKKEEPING).cast(example_features(decode))


def _is_kept(drop: str) -> bool:
    return not drop


def open_source(
    source: SourceLike, *, split: str | None = None, subset: str | None = None, streaming: bool = False
) -> tuple[AnyDataset, str | None, str]:
    """Open `source` as a raw dataset; return `(dataset, base_dir for relative image paths, display name)`.

    A string is a local path if it exists on disk, otherwise a hub id.
    """
    if isinstance(source, (datasets.Dataset, datasets.IterableDataset, datasets.DatasetDict)):
        dataset = _pick_split(source, split, "the in-memory dataset")
        if streaming and isinstance(dataset, datasets.Dataset):
            dataset = dataset.to_iterable_dataset()
        return dataset, None, "dataset"
    path = Path(source).expanduser()
    if path.exists():
        return _open_local(path, split, subset, streaming)
    text = str(source)
    if path.suffix in _FILE_BUILDERS or text.startswith(("/", "./", "../", "~")) or text.count("/") > 1:
        raise FileNotFoundError(f"data source {text!r}: no such file or folder ({path.resolve()})")
    return _open_hub(text, split, subset, streaming), None, text + (f":{split}" if split else "")


def _open_local(
    path: Path, split: str | None, subset: str | None, streaming: bool
) -> tuple[AnyDataset, str | None, str]:
    if path.is_file():
        builder = _FILE_BUILDERS.get(path.suffix)
        if builder is None:
            raise UserError(f"data source {str(path)!r}: unsupported file type; use .parquet, .jsonl or .json")
        dataset = _read_files(builder, {"train": str(path)}, "train", streaming)
        return dataset, str(path.parent), str(path)
    if subset is not None and (path / subset).is_dir():
        path = path / subset
    if (path / "state.json").exists() or (path / "dataset_dict.json").exists():  # written by save_to_disk
        dataset = _pick_split(datasets.load_from_disk(str(path)), split, str(path))
        if streaming:
            dataset = dataset.to_iterable_dataset()
        return dataset, str(path), str(path)
    split_files = _data_files_by_split(path)
    if split is not None and split in split_files:
        chosen = split
    elif len(split_files) == 1:
        chosen = next(iter(split_files))
        if split is not None:
            logger.info("%s has one split (%r); using it for the requested split %r", path, chosen, split)
    else:
        raise UserError(
            f"{path} has splits {sorted(split_files)}; choose one with `split:` (or PATH:SPLIT on the command line)"
        )
    files = split_files[chosen]
    builder = _FILE_BUILDERS[Path(files[0]).suffix]
    dataset = _read_files(builder, {chosen: files}, chosen, streaming)
    return dataset, str(path), f"{path}:{chosen}"


def _data_files_by_split(folder: Path) -> dict[str, list[str]]:
    """Data files of `folder` per split, by the Hub's naming rules; parquet wins over jsonl over json.

    Why not `load_dataset(folder)`: with image files next to the data it picks the `imagefolder` builder,
    and `load_dataset("parquet", data_dir=...)` tries to read every file in the folder as parquet.
    """
    patterns = get_data_patterns(str(folder))
    all_files = {str(split): list(files) for split, files in DataFilesDict.from_patterns(patterns, str(folder)).items()}
    for suffix in (".parquet", ".jsonl", ".json"):
        by_split = {split: sorted(f for f in files if f.endswith(suffix)) for split, files in all_files.items()}
        by_split = {split: files for split, files in by_split.items() if files}
        if by_split:
            return by_split
    raise FileNotFoundError(f"data source {str(folder)!r}: no .parquet, .jsonl or .json files in this folder")


def _open_hub(hub_id: str, split: str | None, subset: str | None, streaming: bool) -> AnyDataset:
    try:
        split, data_files = _one_split(hub_id, subset, split)
        loaded = datasets.load_dataset(hub_id, subset, split=split, streaming=streaming, data_files=data_files)
    except OSError as error:  # ConnectionError (offline, not cached), DatasetNotFoundError, LocalEntryNotFoundError
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise DataSourceError(  # two lines: what is missing, what to do
            f"data source {hub_id!r} is no local file or folder, and could not be loaded from the Hugging Face Hub "
            f"or the local HF cache ({reason});\ndownload it on a machine with internet (`hf download {hub_id} "
            f"--repo-type dataset`), then run with HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1, or download with "
            f"`--local-dir DIR` and point the recipe's data path at DIR"
        ) from error
    return _pick_split(loaded, split, hub_id)


def _one_split(hub_id: str, subset: str | None, split: str | None) -> tuple[str | None, dict | None]:
    """`(split, data_files)` that make `load_dataset` download and prepare only the requested split.

    Why: `load_dataset(hub_id, split="rl")` downloads and prepares every split of the release (the ~100 GB `sft`
    split for a GSPO run) and then returns one. The builder's config lists the data files per split without
    downloading them; passing just the requested split's files keeps the rest on the Hub. A release with one
    split (the 123K subset names it `train`) is used for whatever split the recipe asked, with a log line, as
    local folders are. Anything unusual (a script dataset, no data files) falls back to the plain call.
    """
    if split is None:
        return None, None
    try:
        files = datasets.load_dataset_builder(hub_id, subset).config.data_files
    except Exception:  # noqa: BLE001 - the plain load_dataset call below reports real errors
        return split, None
    if not files:
        return split, None
    if split not in files and len(files) == 1:
        only = next(iter(files))
        logger.info("%s has one split (%r); using it for the requested split %r", hub_id, only, split)
        split = only
    if split not in files:  # else load_dataset's own ValueError, which the CLI would not report as the user's
        raise UserError(f"{hub_id} has no split {split!r}; its splits are {sorted(map(str, files))}")
    if len(files) == 1:
        return split, None
    return split, {split: list(files[split])}


def _pick_split(loaded: Any, split: str | None, name: str) -> AnyDataset:
    if isinstance(loaded, (datasets.Dataset, datasets.IterableDataset)):
        return loaded
    if split is not None:
        if split not in loaded:
            raise UserError(f"{name} has no split {split!r}; its splits are {sorted(loaded)}")
        return loaded[split]
    if len(loaded) == 1:
        return next(iter(loaded.values()))
    raise UserError(
        f"{name} has splits {sorted(loaded)}; choose one with `split:` (or PATH:SPLIT on the command line)"
    )


def _column_names(raw: AnyDataset) -> list[str]:
    """Column names; a stream of unknown schema is peeked at (one row) rather than guessed."""
    if raw.column_names is not None:
        return list(raw.column_names)
    first = next(iter(raw), None)
    return list(first) if first is not None else []


def _keep_images_encoded(raw: AnyDataset, column: str | None) -> AnyDataset:
    """Turn off `datasets`' own image decoding so that a broken image reaches our checks as bytes."""
    feature = raw.features.get(column) if column is not None and raw.features is not None else None
    if isinstance(feature, datasets.Image) and feature.decode:
        return raw.cast_column(column, datasets.Image(decode=False))
    inner = getattr(feature, "feature", None)
    if isinstance(feature, datasets.List) and isinstance(inner, datasets.Image) and inner.decode:
        return raw.cast_column(column, datasets.List(datasets.Image(decode=False), length=feature.length))
    if isinstance(feature, datasets.LargeList) and isinstance(inner, datasets.Image) and inner.decode:
        return raw.cast_column(column, datasets.LargeList(datasets.Image(decode=False)))
    return raw
