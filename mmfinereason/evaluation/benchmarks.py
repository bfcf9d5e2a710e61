"""Evaluation data: ``--data`` arguments -> named benchmarks of normalised examples (+ ``category``).

A benchmark is any source the loader reads (parquet / jsonl / json file or folder, hub id, ``toy``) with at
least ``question`` and ``answer``, and an image column (``image`` or ``images``) for visual questions. Two
optional columns that the training schema does not have are read here, from the raw rows, keyed by row id:

* ``options`` — a list (``["3", "4"]``), a mapping (``{"A": "3", "B": "4"}``) or their JSON / Python text; when
  the question does not list them already they are appended as ``Options:\\nA. 3\\nB. 4`` (the layout of the
  MMFineReason questions), so that letter answers can be checked;
* ``category`` — a label the accuracy table is broken down by (MMBench's category, MathVista's task, ...).

``--data`` is ``PATH``, ``NAME=PATH``, ``PATH:SPLIT`` or ``toy`` / ``toy:SPLIT`` (the bundled task, the held-out
``test`` split by default, with its difficulty as the category).
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets

from mmfinereason.data.io.report import DataReport
from mmfinereason.data.io.rows import row_id
from mmfinereason.errors import UserError

EXTRA_COLUMNS = ("category", "options")
TOY_DEFAULT_LIMIT = 200
TOY_LEVELS = {0: "easy", 1: "medium", 2: "hard"}  # the toy task's `difficulty`, shown as its category
_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")
_SPLIT_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")


@dataclass
class BenchmarkSpec:
    """One ``--data`` argument, parsed."""

    name: str
    path: str
    split: str | None = None
    columns: dict[str, str] = field(default_factory=dict)  # our name -> the file's column name
    limit: int | None = None  # at most this many rows (a recipe source's `limit`); --limit caps it further


@dataclass
class Benchmark:
    """A loaded benchmark: normalised examples (rows of ``dataset``) and what the loader skipped."""

    name: str
    dataset: datasets.Dataset
    report: DataReport
    extras: dict[str, dict[str, Any]]  # row id -> {"category": …, "options": …}

    def __len__(self) -> int:
        return len(self.dataset)

    def ids(self) -> list[str]:
        return [str(i) for i in self.dataset["id"]]  # one column: images are not decoded

    def example(self, index: int) -> dict[str, Any]:
        """Row ``index`` with ``category`` set and the options written into the question where needed."""
        ex = dict(self.dataset[index])
        extra = self.extras.get(ex["id"], {})
        ex["category"] = None if extra.get("category") in (None, "") else str(extra["category"])
        if extra.get("options") is not None:
            ex["question"] = with_options(ex["question"], extra["options"], ex["id"])
        return ex


def parse_data_arg(text: str, columns: Mapping[str, str] | None = None) -> BenchmarkSpec:
    """``NAME=PATH[:SPLIT]`` / ``PATH[:SPLIT]`` -> spec; the name defaults to the file stem (``toy`` for toy)."""
    name = None
    head, eq, rest = text.partition("=")
    if eq and _NAME_RE.match(head) and not Path(text).exists():
        name, text = head, rest
    path, split = text, None
    stem, colon, tail = text.rpartition(":")
    if colon and stem and _SPLIT_RE.match(tail) and not Path(text).exists():
        path, split = stem, tail
    if not path:
        raise UserError(f"--data {text!r}: empty path; give --data [NAME=]PATH[:SPLIT]")
    if path == "toy":
        split = split or "test"
    default = "toy" if path == "toy" else Path(path.rstrip("/")).stem if Path(path).exists() else path.split("/")[-1]
    name = name or (f"{default}-{split}" if split and path != "toy" else default)
    return BenchmarkSpec(name=name, path=path, split=split, columns=dict(columns or {}))


def load_benchmark(spec: BenchmarkSpec, *, limit: int | None = None, max_skip_rate: float = 0.05) -> Benchmark:
    """Load ``spec`` through :func:`mmfinereason.data.load_examples_with_report` (no teacher response needed)."""
    from mmfinereason.data.io.loading import load_examples_with_report, open_source

    caps = [cap for cap in (limit, spec.limit) if cap is not None]
    limit = min(caps) if caps else None
    source: Any = spec.path
    extra_columns = {k: spec.columns.get(k, k) for k in EXTRA_COLUMNS}
    split = spec.split
    if spec.path == "toy":
        from mmfinereason.toy.splits import toy_split

        source = toy_split(split, limit or TOY_DEFAULT_LIMIT)
        split, limit = None, None
        extra_columns["category"] = spec.columns.get("category", "difficulty")  # the task's level, 0-2
    loader_columns = {k: v for k, v in spec.columns.items() if k not in EXTRA_COLUMNS}
    dataset, report = load_examples_with_report(
        source,
        split,
        loader_columns or None,
        require_response=False,
        max_skip_rate=max_skip_rate,
        limit=limit,
        name=spec.name,
    )
    raw, _, _ = open_source(source, split=split)
    if limit is not None:
        raw = raw.select(range(min(limit, len(raw))))
    extras = read_extras(raw, spec.name, id_column=spec.columns.get("id", "id"), columns=extra_columns)
    if spec.path == "toy" and "category" not in spec.columns:
        for extra in extras.values():
            extra["category"] = TOY_LEVELS.get(extra.get("category"), extra.get("category"))
    return Benchmark(spec.name, dataset, report, extras)


def read_extras(
    raw: datasets.Dataset, name: str, *, id_column: str, columns: Mapping[str, str]
) -> dict[str, dict[str, Any]]:
    """``{row id: {"category": …, "options": …}}`` from the raw rows (only the columns that exist).

    Row ids follow the loader's rule (:func:`~mmfinereason.data.io.rows.row_id`), so they match the ids of the
    normalised examples.
    """
    present = {ours: theirs for ours, theirs in columns.items() if theirs in raw.column_names}
    for ours, theirs in columns.items():
        if theirs != ours and ours not in present:  # an explicit mapping to a missing column is a mistake
            raise UserError(
                f"{name}: `columns` maps {ours!r} to {theirs!r}, which is not a column of the file; "
                f"its columns are {raw.column_names}"
            )
    if not present:
        return {}
    wanted = list(dict.fromkeys(present.values()))
    table = raw.select_columns(wanted + ([id_column] if id_column in raw.column_names else [])).to_dict()
    ids = table.get(id_column) if id_column in raw.column_names else None
    extras = {}
    for index in range(len(raw)):
        rid = row_id(ids[index] if ids is not None else None, name, index)
        extras[rid] = {ours: table[theirs][index] for ours, theirs in present.items()}
    return extras


def parse_options(options: Any, row_id: str = "?") -> dict[str, str]:
    """Options as ``{letter: text}`` from a list, a mapping, or their JSON / Python-literal text."""
    if isinstance(options, str):
        text = options.strip()
        if not text:
            return {}
        for parse in (json.loads, ast.literal_eval):  # literal_eval evaluates literals only, never code
            try:
                options = parse(text)
                break
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                continue
        else:
            raise UserError(f"row {row_id}: cannot read options {text[:80]!r} (expected a list or a mapping)")
    if hasattr(options, "tolist"):  # numpy arrays from parquet
        options = options.tolist()
    if isinstance(options, Mapping):
        return {str(k).strip(): str(v) for k, v in options.items() if v is not None and str(v).strip()}
    if isinstance(options, (list, tuple)):
        if len(options) > 26:
            raise UserError(f"row {row_id}: {len(options)} options, at most 26 can be lettered")
        return {chr(ord("A") + i): str(v) for i, v in enumerate(options) if v is not None}
    raise UserError(f"row {row_id}: options must be a list or a mapping, got {type(options).__name__}")


def with_options(question: str, options: Any, row_id: str = "?") -> str:
    """The question with ``Options:`` lines appended, unless it already lists (at least two) options."""
    from mmfinereason.rewards.choices import parse_options as options_in_text

    parsed = parse_options(options, row_id)
    if not parsed or len(options_in_text(question)) >= 2:
        return question
    lines = "\n".join(f"{letter}. {text}" for letter, text in parsed.items())
    return f"{question.rstrip()}\nOptions:\n{lines}"
