"""`mmfinereason select`: keep rules, pass rates by sampling, resume, subsets — and, on the tiny model, that the
written pass rates are exactly what sampling the model directly (same per-question seed) gives.
"""

from __future__ import annotations

import json

import datasets
import pytest
import torch

from mmfinereason.evaluation.benchmarks import Benchmark
from mmfinereason.cli.main import main
from mmfinereason.data.io.loading import load_examples, load_examples_with_report
from mmfinereason.evaluation.generators import GenerationSettings, row_seed
from mmfinereason.evaluation.store import JsonlStore
from mmfinereason.evaluation.selection import align, compute_pass_rates, parse_keep_rule, write_selection
from mmfinereason.evaluation.voting import sampled_accuracy
from mmfinereason.toy import make_dataset


@pytest.fixture(autouse=True)
def _isolated_hf_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path_factory.mktemp("hf_datasets_cache"))


# --------------------------------------------------------------------------- rules
@pytest.mark.parametrize(
    "text, expected",
    [
        ("pass_rate == 0", [True, False, False, False, False]),
        ("0 < pass_rate < 1", [False, True, True, True, False]),
        ("0.25 <= pass_rate<=0.5", [False, True, True, False, False]),
        ("pass_rate == 0 or pass_rate == 1", [True, False, False, False, True]),
        ("pass_rate > 0 and pass_rate != 0.5", [False, True, False, True, True]),
        ("all", [True] * 5),
    ],
)
def test_keep_rules(text, expected):
    rule = parse_keep_rule(text)
    assert [rule(r) for r in (0.0, 0.25, 0.5, 0.75, 1.0)] == expected
    assert rule(None) is False  # a row without a pass rate is never selected


@pytest.mark.parametrize(
    "text", ["pass_rate", "pass_rate = 0", "__import__('os') == 0", "x < 1", "0 < 1", "pass_rate < < 1", "pass_rate <"]
)
def test_bad_keep_rules_are_errors(text):
    with pytest.raises(ValueError, match="--keep"):
        parse_keep_rule(text)


def test_rule_slugs_are_file_names():
    assert parse_keep_rule("pass_rate == 0").slug == "pass_rate_eq_0"
    assert parse_keep_rule("0 < pass_rate < 1").slug == "0_lt_pass_rate_lt_1"


def test_align_follows_dropped_rows():
    assert align(["a", "c", "d"], ["a", "b", "c", "d"]) == [0, 2, 3]
    with pytest.raises(ValueError, match="'x'"):
        align(["x"], ["a"])


# --------------------------------------------------------------------------- sampling bookkeeping
class Oracle:
    """A stand-in generator: row `toy-S-i` gets `i % 5` right answers out of 4 (capped), and counts its rows."""

    settings = GenerationSettings(temperature=1.0)

    def __init__(self) -> None:
        self.seen: list[str] = []

    def sample(self, examples, k, seed):
        self.seen += [ex["id"] for ex in examples]
        out = []
        for ex in examples:
            right = min(int(ex["id"].rsplit("-", 1)[1]) % 5, k)
            out.append([f"<answer>{ex['answer']}</answer>"] * right + ["<answer>@@</answer>"] * (k - right))
        return out


def _toy_bench(n: int, seed: int = 2):
    raw = make_dataset(n, seed=seed)
    dataset, report = load_examples_with_report(raw, require_response=False, name="toy")
    return raw, Benchmark("toy", dataset, report, {})


def test_pass_rates_resume_after_a_cut_off_write(tmp_path):
    _, bench = _toy_bench(12)
    store = JsonlStore(tmp_path / "samples.jsonl", key="uid")
    first = Oracle()
    records = compute_pass_rates(first, bench, store, k=4, batch_size=5, progress=False)
    assert len(first.seen) == 12
    assert [records[u]["pass_rate"] for u in bench.ids()] == [min(i % 5, 4) / 4 for i in range(12)]
    # each answer's score is kept, so the majority vote can be counted: 3-4 right of 4 win, 2 tie with "@@"
    assert [records[u]["passed"] for u in bench.ids()][2] == [True, True, False, False]
    majority = sampled_accuracy(records.values())["all"].majority
    assert majority == pytest.approx(sum({0: 0, 1: 0, 2: 0.5, 3: 1, 4: 1}[min(i % 5, 4)] for i in range(12)) / 12)

    lines = store.path.read_text().splitlines()
    store.path.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:15])  # killed mid-write
    again = Oracle()
    resumed = compute_pass_rates(again, bench, store, k=4, batch_size=5, progress=False)
    assert again.seen == [bench.ids()[-1]]
    assert resumed == records


def test_write_selection_rows_and_subsets_load_back(tmp_path):
    raw, _ = _toy_bench(8)
    rates = [0.0, 0.25, None, 1.0, 0.0, 0.5, 0.75, 0.0]
    rules = [parse_keep_rule("pass_rate == 0"), parse_keep_rule("0 < pass_rate < 1")]
    summary = write_selection(raw, rates, rules, tmp_path)
    assert summary["histogram"] == {"0": 3, "0.25": 1, "0.5": 1, "0.75": 1, "1": 1}
    assert summary["subsets"]["pass_rate == 0"]["rows"] == 3
    rows = load_examples(str(tmp_path / "rows.parquet"), require_response=True)
    assert [r["pass_rate"] for r in rows] == rates  # every row, original columns + our pass rate
    hard = datasets.Dataset.from_parquet(str(tmp_path / "keep-pass_rate_eq_0.parquet"))
    assert hard["id"] == [raw["id"][i] for i in (0, 4, 7)] and set(raw.column_names) <= set(hard.column_names)
    mid = load_examples(str(tmp_path / "keep-0_lt_pass_rate_lt_1.parquet"), pass_rate_range=(0.01, 0.99))
    assert len(mid) == 3


def test_select_filters_an_existing_pass_rate_without_a_model(tmp_path, capsys):
    out = tmp_path / "sel"
    assert main(["select", "--data", "toy:rl", "--limit", "40", "--keep", "pass_rate == 0", "--output", str(out)]) == 0
    raw = make_dataset(40, seed=2)
    subset = datasets.Dataset.from_parquet(str(out / "keep-pass_rate_eq_0.parquet"))
    assert subset["id"] == [i for i, r in zip(raw["id"], raw["pass_rate"]) if r == 0]
    assert len(subset) > 0 and not (out / "samples.jsonl").exists()
    assert main(["select", "--data", "toy:rl", "--output", str(out)]) == 2  # no model and no rule: nothing to do
    assert "--keep" in capsys.readouterr().err  # user errors go to stderr, one line


def test_select_refuses_a_pass_rate_column_that_is_not_a_fraction_and_skips_empty_ones(tmp_path, capsys):
    def write(rates):
        path = tmp_path / "rows.jsonl"
        path.write_text("".join(json.dumps({"id": f"r{i}", "question": "q", "answer": "1", "pass_rate": r}) + "\n"
                                for i, r in enumerate(rates)))
        return str(path)

    for damaged, named in ((["0.25", "n/a", 0], "'n/a'"), ([0, 75, 0.5], "75")):  # a string; percentages
        assert main(["select", "--data", write(damaged), "--keep", "pass_rate == 0", "--output", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert "'pass_rate'" in err and f"row r1: {named}" in err and "--column" in err
    out = tmp_path / "ok"
    assert main(["select", "--data", write([0, None, "", 0.5, 0]), "--keep", "pass_rate == 0", "--format", "jsonl",
                 "--output", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["with_pass_rate"] == 3 and summary["subsets"]["pass_rate == 0"]["rows"] == 2
    kept = [json.loads(line)["id"] for line in (out / "keep-pass_rate_eq_0.jsonl").read_text().splitlines()]
    assert kept == ["r0", "r4"]


# --------------------------------------------------------------------------- the tiny model
# The toy responses are 35-74 tokens: 72 new tokens lets all but the longest count answers finish. The model
# trained for 40 steps keeps its answer format at temperature 0.5 (at 1.0 it mostly loses it), so draws are
# sometimes right and the comparison with direct sampling is not a comparison of zeros.
@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory):
    from test_eval import trained_tiny_dir

    return trained_tiny_dir(tmp_path_factory)


def _direct_correct(model, processor, example, k: int, seed: int, max_new_tokens: int, temperature: float) -> int:
    """Sample `k` answers by hand (no mmfinereason generation code), one `model.generate` per answer, and count the
    right ones. Each answer is the Gumbel-max sample of its own stream, seeded by `row_seed(seed, "<id>#<j>")`:
    greedy over logits / T plus Gumbel noise is a sample of softmax(logits / T)."""
    from transformers import LogitsProcessor

    from mmfinereason.data.chat import render_prompt
    from mmfinereason.rewards import is_correct

    class Gumbel(LogitsProcessor):
        def __init__(self, stream_seed):
            self.g = torch.Generator().manual_seed(stream_seed)

        def __call__(self, input_ids, scores):
            u = torch.rand(scores.shape[-1], generator=self.g).clamp(torch.finfo(torch.float32).tiny, 1 - 1e-7)
            return scores.float() / temperature - torch.log(-torch.log(u))

    prompt = render_prompt(processor, example["question"], 1)
    batch = processor(text=[prompt], images=[example["images"]], size={"shortest_edge": 1024, "longest_edge": 25600}, return_tensors="pt")
    texts = []
    for j in range(k):
        out = model.generate(
            **batch, do_sample=False, temperature=None, top_p=None, top_k=None, repetition_penalty=1.0,
            logits_processor=[Gumbel(row_seed(seed, f"{example['id']}#{j}"))],
            max_new_tokens=max_new_tokens, pad_token_id=processor.tokenizer.pad_token_id, use_cache=True,
        )
        texts += processor.tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    return sum(is_correct(t, example["answer"], question=example["question"]) for t in texts)


@pytest.mark.slow  # trains the tiny model (shared with test_eval.py within one session): minutes on 2 busy cores
def test_select_pass_rates_agree_with_direct_sampling_and_resume(trained_dir, tmp_path, capsys):
    from mmfinereason.recipe.loader import ModelConfig
    from mmfinereason.modeling.loading import load_model, load_processor

    out, k, seed = tmp_path / "sel", 4, 3
    args = ["select", "--model", str(trained_dir), "--data", "toy:rl", "--k", str(k), "--seed", str(seed),
            "--max-new-tokens", "72", "--temperature", "0.5", "--keep", "0 < pass_rate < 1", "--output", str(out), "--no-progress"]
    assert main([*args, "--limit", "3"]) == 0
    first = (out / "samples.jsonl").read_text()
    capsys.readouterr()
    assert main([*args, "--limit", "8", "--batch-size", "2"]) == 0  # resumes: the first 3 are not redone
    printed = capsys.readouterr().out
    assert "maj@4" in printed and "pass@4" in printed and "toy_color" in printed
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert (out / "samples.jsonl").read_text().startswith(first) and len(samples) == 8

    rows = datasets.Dataset.from_parquet(str(out / "rows.parquet"))
    model = load_model(ModelConfig(name_or_path=str(trained_dir), dtype="float32")).eval()
    processor = load_processor(str(trained_dir))
    examples = list(load_examples(make_dataset(8, seed=2), require_response=False))
    direct = [_direct_correct(model, processor, ex, k, seed, 72, 0.5) / k for ex in examples]
    assert any(r > 0 for r in direct)  # the comparison means something: the model does solve some draws
    assert rows["pass_rate"] == direct
    assert [s["pass_rate"] for s in samples] == direct
    subset = datasets.Dataset.from_parquet(str(out / "keep-0_lt_pass_rate_lt_1.parquet"))
    assert subset["id"] == [ex["id"] for ex, r in zip(examples, direct) if 0 < r < 1]
    sampled = json.loads((out / "summary.json").read_text())["sampled_accuracy"]["all"]
    assert sampled["questions"] == 8 and sampled["mean_pass_rate"] == pytest.approx(sum(direct) / 8)
    assert sampled["pass_at_k"] == sum(r > 0 for r in direct) / 8 and sampled["majority"] is not None
