"""`load_examples` / `load_mixture`: every source kind, bad-row accounting, filters and mixing.

All data is built here from a few PIL-drawn images, so the module runs offline in seconds.
"""

from __future__ import annotations

import io
import json
from collections import Counter

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mmfinereason.data.io.loading import DataSourceError, load_examples, load_examples_with_report
from mmfinereason.data.io.mixing import SourceSpec, load_mixture, load_mixture_with_report
from mmfinereason.data.io.report import DataQualityError, DataReport

RESPONSE = "qwen3vl_235b_thinking_response"
EXAMPLE_KEYS = ["id", "images", "question", "answer", "response", "source", "pass_rate"]


@pytest.fixture(autouse=True)
def _isolated_hf_cache(tmp_path_factory, monkeypatch):
    """Keep `datasets`' Arrow cache out of the user's home."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path_factory.mktemp("hf_datasets_cache"))


def png(mode: str = "RGB", color: object = (200, 30, 30), size: tuple[int, int] = (12, 10), fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, format=fmt)
    return buffer.getvalue()


def truncated_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise((64, 64), 60).convert("RGB").save(buffer, format="JPEG")
    return buffer.getvalue()[: len(buffer.getvalue()) // 2]


def release_row(i: int, **overrides: object) -> dict:
    """A row in the MMFineReason release schema."""
    row = {
        "id": f"r{i}",
        "image": {"bytes": png(), "path": None},
        "question": f"<image>What is {i} + 0?",
        "answer": str(i),
        RESPONSE: f"<think>{i} + 0 = {i}</think>Therefore, the final answer is <answer>{i}</answer>.",
        "caption": "A red square.",
        "source": "MMR1",
        "pass_rate": 0.5,
        "is_consistent": True,
    }
    row.update(overrides)
    return row


RELEASE_FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "image": datasets.Image(),
        "question": datasets.Value("string"),
        "answer": datasets.Value("string"),
        RESPONSE: datasets.Value("string"),
        "caption": datasets.Value("string"),
        "source": datasets.Value("string"),
        "pass_rate": datasets.Value("float64"),
        "is_consistent": datasets.Value("bool"),
    }
)


def release_dataset(rows: list[dict]) -> datasets.Dataset:
    return datasets.Dataset.from_list(rows, features=RELEASE_FEATURES)


def assert_normalised(example: dict) -> None:
    assert list(example) == EXAMPLE_KEYS
    assert all(image.mode == "RGB" for image in example["images"])
    assert example["question"].count("<image>") == len(example["images"])


# --------------------------------------------------------------------------------------------- source kinds


def test_in_memory_dataset_schema_and_features() -> None:
    ds = load_examples(release_dataset([release_row(i) for i in range(3)]))
    assert isinstance(ds, datasets.Dataset) and ds.column_names == EXAMPLE_KEYS
    assert ds.features["images"] == datasets.List(datasets.Image())
    example = ds[1]
    assert_normalised(example)
    assert example["id"] == "r1" and example["answer"] == "1" and example["response"].startswith("<think>")
    assert example["source"] == "MMR1" and example["pass_rate"] == 0.5 and example["images"][0].size == (12, 10)


def test_dataset_dict_needs_a_split() -> None:
    dd = datasets.DatasetDict({"sft": release_dataset([release_row(0)]), "rl": release_dataset([release_row(1)])})
    assert load_examples(dd, split="rl")["id"] == ["r1"]
    with pytest.raises(ValueError, match="splits"):
        load_examples(dd)


def test_parquet_file(tmp_path) -> None:
    release_dataset([release_row(i) for i in range(4)]).to_parquet(tmp_path / "train.parquet")
    ds = load_examples(str(tmp_path / "train.parquet"))
    assert ds["id"] == ["r0", "r1", "r2", "r3"]
    assert_normalised(ds[3])


def test_folder_of_parquet_shards_next_to_images(tmp_path) -> None:
    (tmp_path / "sub").mkdir()
    release_dataset([release_row(i) for i in range(2)]).to_parquet(tmp_path / "shard-0.parquet")
    release_dataset([release_row(i) for i in range(2, 5)]).to_parquet(tmp_path / "sub" / "shard-1.parquet")
    (tmp_path / "preview.png").write_bytes(png())  # must not turn the folder into an `imagefolder`
    ds = load_examples(tmp_path)
    assert sorted(ds["id"]) == [f"r{i}" for i in range(5)]


def test_folder_with_hub_split_names(tmp_path) -> None:
    (tmp_path / "data").mkdir()
    release_dataset([release_row(i) for i in range(3)]).to_parquet(tmp_path / "data" / "sft-00000-of-00001.parquet")
    release_dataset([release_row(9)]).to_parquet(tmp_path / "data" / "rl-00000-of-00001.parquet")
    assert load_examples(tmp_path, split="rl")["id"] == ["r9"]
    assert len(load_examples(tmp_path, split="sft")) == 3
    with pytest.raises(ValueError, match="splits"):
        load_examples(tmp_path)


def test_jsonl_with_image_paths_relative_to_the_file(tmp_path, monkeypatch) -> None:
    data_dir = tmp_path / "data"
    (data_dir / "images").mkdir(parents=True)
    rows = []
    for i in range(3):
        (data_dir / "images" / f"{i}.png").write_bytes(png(color=(i, 0, 0)))
        rows.append({**release_row(i), "image": f"images/{i}.png"})
    (data_dir / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    monkeypatch.chdir(tmp_path)  # the paths must resolve against the jsonl file, not the working directory
    ds = load_examples(str(data_dir / "train.jsonl"))
    assert [example["images"][0].getpixel((0, 0)) for example in ds] == [(0, 0, 0), (1, 0, 0), (2, 0, 0)]


def test_json_file_with_image_list_and_hf_dicts(tmp_path) -> None:
    (tmp_path / "a.png").write_bytes(png())
    rows = [
        {**release_row(0), "image": None, "images": [{"bytes": None, "path": "a.png"}, "a.png"],
         "question": "<image>Compare with <image>."},
    ]
    for row in rows:
        del row["image"]
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    ds = load_examples(str(tmp_path / "rows.json"))
    assert len(ds[0]["images"]) == 2
    assert_normalised(ds[0])


def test_parquet_with_raw_bytes_column(tmp_path) -> None:
    rows = [release_row(i) for i in range(3)]
    table = pa.table({key: [row[key] for row in rows] for key in rows[0] if key != "image"})
    table = table.append_column("image", pa.array([png() for _ in rows], type=pa.binary()))
    pq.write_table(table, tmp_path / "bytes.parquet")
    ds = load_examples(str(tmp_path / "bytes.parquet"))
    assert len(ds) == 3
    assert_normalised(ds[0])


def test_hf_image_dicts_as_plain_structs() -> None:
    rows = [release_row(i) for i in range(2)]
    ds = load_examples(datasets.Dataset.from_list(rows))  # `image` is a {bytes, path} struct, not an Image()
    assert ds.features["images"] == datasets.List(datasets.Image())
    assert_normalised(ds[1])


def test_streaming_parquet(tmp_path) -> None:
    release_dataset([release_row(i) for i in range(5)] + [release_row(5, answer="")]).to_parquet(tmp_path / "s.parquet")
    ds, report = load_examples_with_report(str(tmp_path / "s.parquet"), streaming=True, max_skip_rate=0.5)
    assert isinstance(ds, datasets.IterableDataset)
    assert report.seen == 0  # lazy: nothing has been read yet
    examples = list(ds)
    assert [example["id"] for example in examples] == [f"r{i}" for i in range(5)]
    assert_normalised(examples[0])
    assert (report.seen, report.kept, dict(report.skipped)) == (6, 5, {"empty_answer": 1})


def test_limit_and_generated_ids() -> None:
    rows = [release_row(i) for i in range(5)]
    for row in rows:
        del row["id"]
    ds = load_examples(datasets.Dataset.from_list(rows), limit=2, name="toy")
    assert ds["id"] == ["toy-0", "toy-1"]


def test_missing_local_path_and_offline_hub_id(tmp_path, monkeypatch) -> None:
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_examples(str(tmp_path / "nope.parquet"))
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DataSourceError) as info:
        load_examples("no-such-org/no-such-dataset-xyz", split="sft")
    assert "no-such-org/no-such-dataset-xyz" in str(info.value) and "hf download" in str(info.value)


# --------------------------------------------------------------------------------------------- bad rows

BAD_ROWS = [  # (row overrides, expected skip reason or fix)
    ({"answer": None}, "skip", "missing_answer"),
    ({RESPONSE: None}, "skip", "missing_response"),
    ({"question": None}, "skip", "missing_question"),
    ({"answer": "  "}, "skip", "empty_answer"),
    ({RESPONSE: ""}, "skip", "empty_response"),
    ({"image": {"bytes": b"not an image", "path": None}}, "skip", "undecodable_image"),
    ({"image": {"bytes": truncated_jpeg(), "path": None}}, "skip", "truncated_image"),
    ({"image": {"bytes": b"", "path": None}}, "skip", "zero_size_image"),
    ({"image": None}, "skip", "missing_image"),
    ({"question": "<image>Left <image> or right?"}, "skip", "more_image_markers_than_images"),
    ({"image": {"bytes": png("CMYK", (0, 255, 0, 0), fmt="JPEG"), "path": None}}, "fix", "converted_CMYK_to_RGB"),
    ({"image": {"bytes": png("LA", (100, 50)), "path": None}}, "fix", "converted_LA_to_RGB"),
    ({"image": {"bytes": png("P", 7), "path": None}}, "fix", "converted_P_to_RGB"),
    ({"image": {"bytes": png("I;16", 40000), "path": None}}, "fix", "converted_I;16_to_RGB"),
    ({"question": "What is shown?"}, "fix", "prepended_image_marker"),
]


@pytest.mark.parametrize(("overrides", "outcome", "cause"), BAD_ROWS, ids=[case[2] for case in BAD_ROWS])
def test_bad_row_is_fixed_or_skipped_and_counted(overrides: dict, outcome: str, cause: str) -> None:
    rows = [release_row(i) for i in range(3)] + [release_row(3, **overrides)]
    ds, report = load_examples_with_report(release_dataset(rows), max_skip_rate=1.0)
    assert report.seen == 4
    if outcome == "skip":
        assert ds["id"] == ["r0", "r1", "r2"]
        assert dict(report.skipped) == {cause: 1} and report.examples[cause] == ["r3"]
        assert cause in report.summary()
    else:
        assert ds["id"] == ["r0", "r1", "r2", "r3"] and not report.skipped
        assert report.fixed[cause] == 1
        assert_normalised(ds[3])
    if cause == "prepended_image_marker":
        assert ds[3]["question"] == "<image>What is shown?"


def test_key_absent_from_some_jsonl_lines_is_a_missing_value(tmp_path) -> None:
    rows = [{"id": i, "question": f"q{i}", "answer": str(i), "response": "r"} for i in range(4)]
    del rows[2]["answer"]
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    ds, report = load_examples_with_report(str(tmp_path / "t.jsonl"), max_skip_rate=1.0)
    assert ds["id"] == ["0", "1", "3"] and dict(report.skipped) == {"missing_answer": 1}
    assert ds[0]["images"] == [] and ds[0]["source"] == "unknown" and ds[0]["pass_rate"] is None


def test_absent_required_column_is_an_immediate_error() -> None:
    rows = [release_row(i) for i in range(2)]
    for row in rows:
        del row[RESPONSE]
    with pytest.raises(ValueError, match="no column for 'response'.*columns:"):
        load_examples(datasets.Dataset.from_list(rows))
    assert load_examples(datasets.Dataset.from_list(rows), require_response=False)["response"] == ["", ""]


def test_empty_response_allowed_when_not_required() -> None:
    ds = load_examples(release_dataset([release_row(0, **{RESPONSE: None})]), require_response=False)
    assert ds["response"] == [""]


def test_skip_rate_threshold_names_cause_and_id() -> None:
    rows = [release_row(i) for i in range(20)]
    rows[4]["image"] = {"bytes": truncated_jpeg(), "path": None}
    rows[7]["image"] = {"bytes": truncated_jpeg(), "path": None}
    rows[9]["answer"] = ""
    with pytest.raises(DataQualityError) as info:
        load_examples(release_dataset(rows))  # default max_skip_rate 1%
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "truncated_image" in message and "'r4'" in message and "3 of 20" in message
    assert len(load_examples(release_dataset(rows), max_skip_rate=0.2)) == 17


def test_counts_are_exact_with_worker_processes() -> None:
    rows = [release_row(i, answer="" if i % 5 == 0 else str(i)) for i in range(20)]
    ds, report = load_examples_with_report(release_dataset(rows), num_proc=2, max_skip_rate=0.5)
    assert len(ds) == 16 and report.skipped == Counter({"empty_answer": 4})


def test_streaming_threshold_stops_early() -> None:
    rows = [{"id": str(i), "question": "q", "answer": "" if i % 4 == 0 else "a", RESPONSE: "r"} for i in range(1000)]
    stream = load_examples(datasets.Dataset.from_list(rows), streaming=True)
    yielded = 0
    with pytest.raises(DataQualityError, match="empty_answer.*'0'"):
        for _ in stream:
            yielded += 1
    assert yielded < 300  # stopped soon after the first 200 rows, not at the end of the stream


# --------------------------------------------------------------------------------------------- mapping, filters


def test_column_mapping_and_fallback_names() -> None:
    rows = [
        {"uid": i, "img": png(), "prompt": "<image>How many?", "final_answer": i, "trace": "<think>t</think>x",
         "qwen3vl_4b_pass_rate": 0.25, "qwen3vl_235b_instruct_caption": "Dots."}
        for i in range(3)
    ]
    mapping = {"id": "uid", "image": "img", "question": "prompt", "answer": "final_answer", "response": "trace"}
    ds = load_examples(datasets.Dataset.from_list(rows), columns=mapping, caption_in_prompt=True)
    assert ds["id"] == ["0", "1", "2"] and ds["answer"] == ["0", "1", "2"] and ds["pass_rate"] == [0.25] * 3
    assert ds[0]["question"] == "<image>Image description: Dots.\n\nHow many?"
    with pytest.raises(ValueError, match="unknown key"):
        load_examples(datasets.Dataset.from_list(rows), columns={**mapping, "label": "x"})
    with pytest.raises(ValueError, match="'answer' to 'gold'"):
        load_examples(datasets.Dataset.from_list(rows), columns={**mapping, "answer": "gold"})


def test_caption_in_prompt() -> None:
    ds = load_examples(release_dataset([release_row(0)]), caption_in_prompt=True)
    assert ds[0]["question"] == "<image>Image description: A red square.\n\nWhat is 0 + 0?"
    assert load_examples(release_dataset([release_row(0)]))[0]["question"] == "<image>What is 0 + 0?"


def test_filters_are_counted_apart_from_skips() -> None:
    rows = [
        release_row(0, source="MMR1", pass_rate=0.0),
        release_row(1, source="MMR1", pass_rate=1.0),
        release_row(2, source="WeMath", pass_rate=0.25),
        release_row(3, source="MMR1", pass_rate=0.25, is_consistent=False),
        release_row(4, source="BMMR", pass_rate=0.5),
        release_row(5, source="MMR1", pass_rate=None),
    ]
    ds, report = load_examples_with_report(
        release_dataset(rows), sources=["MMR1", "WeMath"], pass_rate_range=(0.0, 0.25), require_consistent=True
    )
    assert ds["id"] == ["r0", "r2"]
    assert report.filtered == Counter(source_not_selected=1, pass_rate_out_of_range=2, not_consistent=1)
    assert report.num_skipped == 0 and report.skip_rate == 0.0
    assert load_examples(release_dataset(rows), pass_rate_range=(1.0, 1.0))["id"] == ["r1"]


def test_is_consistent_as_strings() -> None:
    rows = [{"id": i, "question": "q", "answer": "a", RESPONSE: "r", "is_consistent": v}
            for i, v in enumerate(["true", "False", "yes", None])]
    assert load_examples(datasets.Dataset.from_list(rows), require_consistent=True)["id"] == ["0", "2"]


# --------------------------------------------------------------------------------------------- mixing


def text_source(tag: str, n: int = 400) -> datasets.Dataset:
    return datasets.Dataset.from_list(
        [{"id": f"{tag}{i}", "question": "q", "answer": "a", RESPONSE: "r", "source": tag} for i in range(n)]
    )


def test_mixture_follows_weights_deterministically() -> None:
    specs = [SourceSpec(text_source("A"), weight=6), SourceSpec(text_source("B"), weight=3),
             SourceSpec(text_source("C"), weight=1)]
    first = load_mixture(specs, seed=7)
    again = load_mixture(specs, seed=7)
    other = load_mixture(specs, seed=8)
    assert first["id"] == again["id"] and first["id"] != other["id"]
    head = Counter(first["source"][:500])
    assert abs(head["A"] / 500 - 0.6) < 0.07 and abs(head["B"] / 500 - 0.3) < 0.07 and abs(head["C"] / 500 - 0.1) < 0.05


def test_streaming_mixture_counts_per_source() -> None:
    bad = datasets.Dataset.from_list([{"id": "x", "question": "q", "answer": "", RESPONSE: "r"}] * 2)
    specs = [SourceSpec(text_source("A", 50)), SourceSpec(datasets.concatenate_datasets([text_source("B", 50), bad]))]
    mixed, reports = load_mixture_with_report(specs, streaming=True, seed=0, max_skip_rate=0.1,
                                              stopping_strategy="all_exhausted_without_replacement")
    examples = list(mixed)
    assert len(examples) == 100 and {example["source"] for example in examples} == {"A", "B"}
    total = DataReport.combine(reports)
    assert (total.seen, total.kept, dict(total.skipped)) == (102, 100, {"empty_answer": 2})


def test_source_spec_validation() -> None:
    with pytest.raises(ValueError, match="weight"):
        SourceSpec("x", weight=0)
    with pytest.raises(ValueError, match="pass_rate_range"):
        SourceSpec("x", pass_rate_range=(1.0, 0.0))
    assert SourceSpec("x", pass_rate_range=[0, 0]).pass_rate_range == (0.0, 0.0)
