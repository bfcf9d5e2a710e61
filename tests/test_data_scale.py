"""Issue 15, data at scale: the length index is built once and shared, images are checked cheaply up front and
decoded late (counted and replaced), streamed rows get token budgets and resume exactly."""

from __future__ import annotations

import io
import json
import random
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
from PIL import Image

from mmfinereason.data.batching import collator as collator_module
from mmfinereason.data.batching.collator import MultimodalCollator
from mmfinereason.data.batching.length_index import load_or_build
from mmfinereason.data.batching.lengths import example_lengths
from mmfinereason.data.batching.streaming import StreamingTokenBudget
from mmfinereason.data.io.loading import load_examples, load_examples_with_report
from mmfinereason.data.io.report import DataQualityError

MAX_PIXELS = 16384
WORDS = "the angle of the triangle is equal to the sum of two opposite interior angles therefore".split()


def jpeg(seed: int, size: int = 48) -> bytes:
    rng = random.Random(seed)
    image = Image.new("RGB", (size + seed % 17, size), tuple(rng.randrange(256) for _ in range(3)))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def write_rows(path: Path, n: int, truncated: tuple[int, ...] = (), garbage: tuple[int, ...] = ()) -> Path:
    """``n`` MMFineReason-shaped rows (one JPEG each, varied trace lengths) as a parquet file."""
    rng = random.Random(0)
    rows = []
    for i in range(n):
        data = jpeg(i)
        if i in truncated:  # a noisy picture whose header survives and whose body is cut
            noise = Image.frombytes("RGB", (96, 96), random.Random(i).randbytes(96 * 96 * 3))
            buffer = io.BytesIO()
            noise.save(buffer, format="JPEG")
            data = buffer.getvalue()[: buffer.tell() * 2 // 3]
        if i in garbage:
            data = b"not an image at all"
        response = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(5, 120)))
        rows.append({"id": f"r{i}", "image": {"bytes": data, "path": None}, "question": f"<image>Question {i}?",
                     "answer": str(i), "qwen3vl_235b_thinking_response": response})
    features = datasets.Features({"id": datasets.Value("string"), "image": datasets.Image(),
                                  "question": datasets.Value("string"), "answer": datasets.Value("string"),
                                  "qwen3vl_235b_thinking_response": datasets.Value("string")})
    datasets.Dataset.from_list(rows, features=features).to_parquet(str(path))
    return path


@pytest.fixture(scope="module")
def rows_file(tmp_path_factory) -> Path:
    return write_rows(tmp_path_factory.mktemp("rows") / "rows.parquet", 48)


def collator_for(processor, max_length: int = 512) -> MultimodalCollator:
    return MultimodalCollator(processor, max_length, max_pixels=MAX_PIXELS)


_WORKER = """
import json, sys
from transformers import AutoProcessor
from mmfinereason.data.batching.collator import MultimodalCollator
from mmfinereason.data.batching.length_index import load_or_build
from mmfinereason.data.io.loading import load_examples
rows, tiny, cache = sys.argv[1:4]
dataset = load_examples(rows, image_check="header")
collator = MultimodalCollator(AutoProcessor.from_pretrained(tiny), 512, max_pixels=%d)
lengths, built = load_or_build(dataset, collator, cache_dir=cache)
print("RESULT " + json.dumps({"built": built, "lengths": lengths}))
""" % MAX_PIXELS


def test_two_processes_build_the_length_index_once_and_read_the_same(rows_file, tiny_dir, tiny_processor, tmp_path):
    cache = tmp_path / "cache"
    procs = [
        subprocess.Popen([sys.executable, "-c", _WORKER, str(rows_file), tiny_dir, str(cache)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]
        results.append(json.loads(out.split("RESULT ", 1)[1]))
    assert sorted(r["built"] for r in results) == [False, True]  # one did the work, the other read it
    assert results[0]["lengths"] == results[1]["lengths"]
    dataset = load_examples(str(rows_file), image_check="header")
    assert results[0]["lengths"] == example_lengths(dataset, collator_for(tiny_processor))
    assert len(list(cache.glob("*.npy"))) == 1


def test_length_index_is_reused_keyed_and_parallel(rows_file, tiny_processor, tmp_path):
    dataset = load_examples(str(rows_file), image_check="header")
    collator = collator_for(tiny_processor)
    want = example_lengths(dataset, collator)
    lengths, built = load_or_build(dataset, collator, num_proc=2, cache_dir=tmp_path)
    assert built and lengths == want
    assert load_or_build(dataset, collator, cache_dir=tmp_path) == (want, False)  # a resume reads it
    # A different max_length, or different rows, is a different index.
    assert load_or_build(dataset, collator_for(tiny_processor, 256), cache_dir=tmp_path)[1]
    assert load_or_build(dataset.select(range(10)), collator, cache_dir=tmp_path)[1]


def test_header_check_defers_a_truncated_image_to_the_collator_which_counts_and_replaces_it(
    tmp_path, tiny_processor, monkeypatch
):
    path = write_rows(tmp_path / "bad.parquet", 12, truncated=(3,), garbage=(5,))
    full, full_report = load_examples_with_report(str(path), max_skip_rate=1.0)
    assert full_report.num_skipped == 2 and full_report.examples  # the full decode catches both up front
    cheap, report = load_examples_with_report(str(path), max_skip_rate=1.0, image_check="header")
    assert dict(report.skipped) == {"undecodable_image": 1}  # caught by the header; the truncated body is not
    rows = {row["id"]: row for row in cheap}
    assert isinstance(rows["r3"]["images"][0], dict)  # still encoded: the collator decodes

    collator = collator_for(tiny_processor)
    good = collator([rows["r0"], rows["r1"]])
    assert good["input_ids"].shape[0] == 2
    replaced = collator([rows["r3"]])  # every example of the batch failed: the last good one stands in
    assert replaced["input_ids"].shape[0] == 1 and collator.stats["replaced"] == 1
    (reason, ids), = collator.late_report.examples.items()
    assert ids == ["r3"] and collator.stats[f"skipped_{reason}"] == 1 and collator.late_report.num_skipped == 1

    monkeypatch.setattr(collator_module, "LATE_CHECK_AFTER", 3)
    with pytest.raises(DataQualityError, match=rf"{reason}.*'r3'"):
        collator_for(tiny_processor)([rows["r0"], rows["r3"], rows["r3"]])


def test_a_first_batch_of_only_bad_rows_trains_a_replacement_from_the_training_set(tmp_path, tiny_processor):
    """A rank's very first batch has no spare yet: it takes the first usable training row (found by the benchmark:
    with one long example per token budget, a rank whose first row was a truncated JPEG crashed the launch)."""
    path = write_rows(tmp_path / "bad.parquet", 6, truncated=(0, 1))
    dataset = load_examples(str(path), max_skip_rate=1.0, image_check="header")
    first_two = [dataset[0], dataset[1]]  # r0 and r1: their bodies are cut
    collator = collator_for(tiny_processor)
    with pytest.raises(ValueError, match="2 with an image that does not decode, 0 exceeded max_length"):
        collator(first_two)
    collator = collator_for(tiny_processor)
    collator.replacements = dataset
    batch = collator(first_two)
    assert batch["input_ids"].shape[0] == 1 and collator.stats["replaced"] == 1
    skipped = sum(v for k, v in collator.stats.items() if k.startswith("skipped_"))
    assert skipped == 4  # the batch's two, then r0 and r1 again as candidates
    tokens = batch["input_ids"][0][batch["labels"][0] != -100]
    assert tiny_processor.tokenizer.decode(tokens).startswith(dataset[2]["response"][:20])  # r2 stood in


def batch_ids(batcher, n: int) -> list[list[str]]:
    out = []
    for batch in batcher:
        out.append([row["id"] for row in batch])
        if len(out) == n:
            return out
    return out


def test_streamed_token_budget_batches_are_deterministic_and_resume_exactly(rows_file, tiny_processor):
    def batcher():
        stream = load_examples(str(rows_file), streaming=True, image_check="header")
        return StreamingTokenBudget(stream, collator_for(tiny_processor), 1024, row_length=512, buffer_size=16,
                                    seed=7, rank=0, world_size=1)

    whole = batch_ids(batcher(), 30)  # 48 rows -> about 10 batches an epoch: this crosses epoch boundaries
    assert whole == batch_ids(batcher(), 30)
    assert {i for b in whole[:8] for i in b} <= {f"r{i}" for i in range(48)}
    first = batcher()
    head = batch_ids(first, 13)
    state = json.loads(json.dumps(first.state_dict()))  # what a checkpoint stores
    resumed = batcher()
    resumed.load_state_dict(state)
    assert head + batch_ids(resumed, 17) == whole
    # The position of an earlier step (a checkpoint saved while the iterator ran ahead) resumes as exactly.
    again = batcher()
    again.load_state_dict(json.loads(json.dumps(first.state_at(6))))
    assert batch_ids(again, 10) == whole[6:16]
    # Every batch keeps the budget: at most 2 rows of 512 tokens.
    by_id = {r["id"]: r for r in load_examples(str(rows_file), image_check="header")}
    for ids in whole:
        rows = [by_id[i] for i in ids]
        assert sum(first.spec({k: [r[k] for r in rows] for k in ("question", "response", "images")})["_length"]) <= 1024


def _sft(out: Path, trace: Path, max_steps: int, resume: bool = False) -> str:
    import os

    from distributed_utils import REPO

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MMFINEREASON_TRACE_IDS": str(trace)}
    cmd = [sys.executable, "-m", "mmfinereason", "sft", "recipes/tiny/sft.yaml", f"train.output_dir={out}",
           "data.train.0.limit=120", "data.streaming=true", "data.tokens_per_batch=1024", "data.packing_buffer_size=32",
           f"train.max_steps={max_steps}", "train.save_strategy=steps", "train.save_steps=2", "train.use_cpu=true",
           "eval.before_training=false", "eval.after_training=false", "data.eval=[]"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_a_streamed_token_budget_sft_run_resumes_at_the_same_batches(tmp_path):
    from mmfinereason.runtime.trained_ids import read_trained_ids

    _sft(tmp_path / "whole", tmp_path / "trace_whole", 6)
    whole = read_trained_ids(tmp_path / "trace_whole" / "trained_ids.rank0.jsonl")
    assert len(whole) == 6
    # Preempted after step 2: a run dir that holds only checkpoint-2, resumed to step 6.
    import shutil

    (tmp_path / "cut").mkdir()
    shutil.copytree(tmp_path / "whole" / "checkpoint-2", tmp_path / "cut" / "checkpoint-2")
    log = _sft(tmp_path / "cut", tmp_path / "trace_cut", 6)
    assert "no re-reading" in log
    resumed = read_trained_ids(tmp_path / "trace_cut" / "trained_ids.rank0.jsonl")
    assert [ids for _, ids in resumed] == [ids for _, ids in whole[2:]]


def test_a_hub_split_downloads_only_its_files_and_a_one_split_release_serves_any_split(monkeypatch):
    from types import SimpleNamespace

    from mmfinereason.data.io import loading

    calls = []
    releases = {"full": {"sft": ["hf://d/sft-0.parquet"], "rl": ["hf://d/rl-0.parquet"]},
                "123k": {"train": ["hf://s/train-0.parquet"]}}
    monkeypatch.setattr(loading.datasets, "load_dataset_builder",
                        lambda hub_id, subset: SimpleNamespace(config=SimpleNamespace(data_files=releases[hub_id])))

    def fake_load(hub_id, subset, split=None, streaming=False, data_files=None):
        calls.append((hub_id, split, data_files))
        return datasets.Dataset.from_dict({"question": ["q"]})

    monkeypatch.setattr(loading.datasets, "load_dataset", fake_load)
    loading._open_hub("full", "rl", None, False)
    loading._open_hub("123k", "sft", None, False)
    assert calls == [("full", "rl", {"rl": ["hf://d/rl-0.parquet"]}), ("123k", "train", None)]


_STEP = """
import resource, sys, torch
from transformers import AutoModelForImageTextToText
from mmfinereason.data.batching.collator import MultimodalCollator
from mmfinereason.modeling.attention import register_varlen_sdpa
from mmfinereason.modeling.introspect import uses_varlen_attention
from mmfinereason.modeling.loading import load_processor, resolve_name
from mmfinereason.pipelines.inputs import attention_for_packing
from mmfinereason.recipe.loader import load_recipe
torch.set_num_threads(1)
recipe = load_recipe("recipes/tiny/sft.yaml")  # attn_implementation: sdpa, packing: true
cfg = attention_for_packing(recipe)
register_varlen_sdpa()
model = AutoModelForImageTextToText.from_pretrained(resolve_name("tiny"), dtype=torch.float32,
                                                    attn_implementation=cfg.attn_implementation)
model.config.use_cache = False
assert uses_varlen_attention(model), cfg.attn_implementation
collator = MultimodalCollator(load_processor("tiny"), 32768, packing=True, model=model)
words = "alpha beta gamma delta epsilon zeta eta theta".split()
tokenizer = collator.tokenizer
text = lambda i: tokenizer.decode(tokenizer(" ".join(words[(i + j) % 8] for j in range(400)))["input_ids"][:490])
rows = [{"id": str(i), "question": "q", "images": [], "response": text(i)} for i in range(64)]  # 64 x ~512 tokens
batch = collator(rows)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
model(**batch).loss.backward()
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("RESULT", batch["input_ids"].shape[-1], int((batch["input_ids"] != collator.pad_token_id).sum()), after - before)
"""


@pytest.mark.slow
def test_a_32k_packed_step_of_the_tiny_model_never_builds_a_dense_mask(tmp_path):
    """One 32,768-token packed row, forward + backward: the recipe's `sdpa` becomes `sdpa_varlen` and the step's
    extra memory stays far below one dense 32K x 32K fp32 mask (4 GiB; the attention weights: 16 GiB a layer)."""
    from distributed_utils import REPO

    proc = subprocess.run([sys.executable, "-c", _STEP], cwd=REPO, capture_output=True, text=True, timeout=900,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    row, real, extra_mb = proc.stdout.split("RESULT", 1)[1].split()
    assert 32000 <= int(real) <= int(row) <= 34000  # one packed row of ~32K tokens (varlen: one row)
    assert float(extra_mb) < 3072, f"one packed 32K step took {extra_mb} MB more"
