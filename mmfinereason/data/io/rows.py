"""Turn one raw source row into one normalised example, or into a counted reason to drop it.

The normalised schema (see the `examples` contract): `id, images, question, answer, response, source,
pass_rate`, with RGB images and exactly `len(images)` `<image>` markers in `question`. Every repair and every
skip is named here (`_fixes`, `_drop` bookkeeping columns) so that the loader can count them without a second
pass over the images; the loader removes both columns before handing the dataset out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import datasets

from mmfinereason.data.io.images import MISSING_IMAGE, BadImageError, checked_image_header, rgb_image_bytes
from mmfinereason.data.schema import IMAGE_MARKER
from mmfinereason.errors import UserError

# Our name -> candidate source column names, in order of preference. The first candidates are the names of
# the MMFineReason releases; the later ones are the names used by the paper / other releases.
DEFAULT_COLUMNS: dict[str, tuple[str, ...]] = {
    "id": ("id",),
    "image": ("image", "images"),
    "question": ("question",),
    "answer": ("answer",),
    "response": ("qwen3vl_235b_thinking_response", "response"),
    "caption": ("caption", "qwen3vl_235b_instruct_caption"),
    "source": ("source",),
    "pass_rate": ("pass_rate", "qwen3vl_4b_pass_rate"),
    "is_consistent": ("is_consistent",),
}

EXAMPLE_FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "images": datasets.List(datasets.Image()),
        "question": datasets.Value("string"),
        "answer": datasets.Value("string"),
        "response": datasets.Value("string"),
        "source": datasets.Value("string"),
        "pass_rate": datasets.Value("float64"),
    }
)


def row_features(decode_images: bool = True) -> datasets.Features:
    """What `RowNormaliser` writes: `EXAMPLE_FEATURES` plus the bookkeeping columns the loader counts and removes.

    `decode_images=False` is for streaming, where every feature is applied to every row as it passes: the
    count-and-filter step then does not decode images a second time (the loader casts back at the end).
    """
    return datasets.Features(
        {
            **EXAMPLE_FEATURES,
            "images": datasets.List(datasets.Image(decode=decode_images)),
            "_drop": datasets.Value("string"),
            "_fixes": datasets.List(datasets.Value("string")),
        }
    )


CAPTION_TEMPLATE = "Image description: {caption}\n\n"
_TRUE_STRINGS = {"true", "yes", "1", "y", "t"}


def row_id(value: Any, source_name: str, index: int) -> str:
    """A row's id: its id column as text, or ``<source name>-<row index>`` when it has none.

    The one rule for every place that names rows (the loader, ``eval``'s extra columns, ``select``'s alignment
    of pass rates back to the raw rows), so that they agree on which row is which.
    """
    return str(value) if value is not None else f"{source_name}-{index}"


def resolve_columns(
    available: Sequence[str], columns: Mapping[str, str] | None, required: set[str]
) -> dict[str, str | None]:
    """Map each of our field names to a column of the source (None where the source has none).

    `columns` (the recipe's `columns:` mapping, our name -> source name) wins over `DEFAULT_COLUMNS`. A mapped
    column that does not exist, or a `required` field with no column, is an error that lists what the source
    has — a wrong mapping should fail at once, not as a 100% skip rate.
    """
    columns = dict(columns or {})
    unknown = sorted(set(columns) - set(DEFAULT_COLUMNS))
    if unknown:
        raise UserError(f"unknown key(s) {unknown} in `columns`; valid keys are {sorted(DEFAULT_COLUMNS)}")
    resolved: dict[str, str | None] = {}
    for ours, candidates in DEFAULT_COLUMNS.items():
        if ours in columns:
            if columns[ours] not in available:
                raise UserError(
                    f"`columns` maps {ours!r} to {columns[ours]!r}, but the source has no such column; "
                    f"its columns are {list(available)}"
                )
            resolved[ours] = columns[ours]
        else:
            resolved[ours] = next((name for name in candidates if name in available), None)
        if ours in required and resolved[ours] is None:
            raise UserError(
                f"the source has no column for {ours!r} (looked for {list(candidates)}); its columns are "
                f"{list(available)}. Map it with `columns: {{{ours}: <column name>}}` in the recipe."
            )
    return resolved


@dataclass
class RowNormaliser:
    """`datasets.map` function (`with_indices=True`) producing `row_features()` rows.

    Filters run first (cheap, no image decode), then text checks, then images, then `<image>` markers.
    A plain dataclass so that `datasets` can hash it for its cache and pickle it for `num_proc` workers.
    """

    columns: dict[str, str | None]
    name: str = "data"
    base_dir: str | None = None
    require_response: bool = True
    caption_in_prompt: bool = False
    sources: frozenset[str] | None = None
    pass_rate_range: tuple[float, float] | None = None
    require_consistent: bool = False
    image_check: str = "full"  # "header": open the header only; the collator decodes (see checked_image_header)

    def __call__(self, row: dict[str, Any], index: int) -> dict[str, Any]:
        raw_id = self._get(row, "id")
        out: dict[str, Any] = {
            "id": row_id(raw_id, self.name, index),
            "images": [],
            "question": "",
            "answer": "",
            "response": "",
            "source": _text(self._get(row, "source")) or "unknown",
            "pass_rate": _to_float(self._get(row, "pass_rate")),
            "_drop": "",
            "_fixes": [],
        }
        out["_drop"] = self._filter_reason(row, out) or self._fill(row, out)
        if out["_drop"]:
            out["images"], out["_fixes"] = [], []  # a dropped row carries no data, only its reason
        return out

    def _get(self, row: Mapping[str, Any], ours: str) -> Any:
        column = self.columns.get(ours)
        return row.get(column) if column is not None else None

    def _filter_reason(self, row: Mapping[str, Any], out: dict[str, Any]) -> str:
        if self.sources is not None and out["source"] not in self.sources:
            return "source_not_selected"
        if self.pass_rate_range is not None:
            low, high = self.pass_rate_range
            if out["pass_rate"] is None or not low <= out["pass_rate"] <= high:
                return "pass_rate_out_of_range"
        if self.require_consistent and not _to_bool(self._get(row, "is_consistent")):
            return "not_consistent"
        return ""

    def _fill(self, row: Mapping[str, Any], out: dict[str, Any]) -> str:
        """Fill the text and image fields of `out`; return a skip reason or ""."""
        fields = ["question", "answer"] + (["response"] if self.require_response else [])
        for ours in fields:
            value = self._get(row, ours)
            if value is None:
                return f"missing_{ours}"
            out[ours] = _text(value)
            if not out[ours].strip():
                return f"empty_{ours}"
        if not self.require_response:
            out["response"] = _text(self._get(row, "response"))

        for value in _as_list(self._get(row, "image")):
            if value is None:  # a hole in an `images` list: the question's markers no longer line up
                return MISSING_IMAGE
            try:
                if self.image_check == "header":
                    data, converted_from = checked_image_header(value, self.base_dir), None
                else:
                    data, converted_from = rgb_image_bytes(value, self.base_dir)
            except BadImageError as error:
                return error.reason
            out["images"].append({"bytes": data, "path": None})
            if converted_from is not None:
                out["_fixes"].append(f"converted_{converted_from}_to_RGB")

        num_images, num_markers = len(out["images"]), out["question"].count(IMAGE_MARKER)
        if num_markers > num_images:
            has_image_column = self.columns.get("image") is not None
            no_image = has_image_column and self._get(row, "image") is None
            return MISSING_IMAGE if no_image else "more_image_markers_than_images"
        if 0 < num_markers < num_images:
            return "fewer_image_markers_than_images"
        if num_markers == 0 and num_images > 0:
            out["question"] = IMAGE_MARKER * num_images + out["question"]
            out["_fixes"].append("prepended_image_marker")

        if self.caption_in_prompt:
            caption = _text(self._get(row, "caption")).strip()
            if caption:
                out["question"] = _insert_caption(out["question"], caption)
            else:
                out["_fixes"].append("no_caption_for_prompt")
        return ""


def _insert_caption(question: str, caption: str) -> str:
    """Put the caption right after the leading `<image>` markers, before the question text."""
    head = 0
    while question.startswith(IMAGE_MARKER, head):
        head += len(IMAGE_MARKER)
    return question[:head] + CAPTION_TEMPLATE.format(caption=caption) + question[head:].lstrip()


def _as_list(value: Any) -> list[Any]:
    """An image cell as a list: None -> [], a list column (`images`) as is, a single image -> [it]."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def _to_float(value: Any) -> float | None:
    try:
        number = float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
    return None if number is None or math.isnan(number) else number


def _to_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in _TRUE_STRINGS
    return bool(value) if value is not None else False


__all__ = [
    "CAPTION_TEMPLATE",
    "DEFAULT_COLUMNS",
    "EXAMPLE_FEATURES",
    "RowNormaliser",
    "resolve_columns",
    "row_id",
    "row_features",
]
