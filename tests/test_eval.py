"""`mmfinereason eval`: benchmark loading, scoring, the resumable predictions file, accuracy during training,
and — on the tiny model — that a briefly trained model beats the untrained one on the embedded task.

The tiny model is trained once per session (60 optimizer steps, high learning rate) through the real
`build_sft` pipeline with `eval.every_n_steps` on, which also exercises the training-time callback.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import datasets
import pytest
from PIL import Image

from mmfinereason.evaluation.benchmarks import load_benchmark, parse_data_arg, parse_options, with_options
from mmfinereason.cli.main import main
from mmfinereason.evaluation.accuracy import AccuracyReport, Prediction, evaluate_benchmarks
from mmfinereason.evaluation.generators import GenerationSettings
from mmfinereason.evaluation.store import JsonlStore, check_run_settings, unique_ids

TRAIN_STEPS = 60


@pytest.fixture(autouse=True)
def _isolated_hf_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path_factory.mktemp("hf_datasets_cache"))


def png(color=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 12), color).save(buffer, format="PNG")
    return buffer.getvalue()


class AnswerGold:
    """A stand-in generator: answers right on even-numbered rows, wrong on odd ones, and counts its calls."""

    settings = GenerationSettings(max_new_tokens=8)

    def __init__(self) -> None:
        self.seen: list[str] = []

    def generate(self, examples):
        self.seen += [ex["id"] for ex in examples]
        return [
            f"<think>ok</think>Therefore, the final answer is <answer>{ex['answer'] if i % 2 == 0 else 'zzz'}</answer>."
            for ex in examples
            for i in [int(ex["id"][1:])]
        ]


# --------------------------------------------------------------------------- data
def test_parse_data_arg_forms(tmp_path):
    f = tmp_path / "mathvista_mini.jsonl"
    f.write_text("")
    assert parse_data_arg(str(f)).name == "mathvista_mini"
    spec = parse_data_arg(f"mv={f}")
    assert (spec.name, spec.path, spec.split) == ("mv", str(f), None)
    spec = parse_data_arg("toy")
    assert (spec.name, spec.path, spec.split) == ("toy", "toy", "test")
    assert parse_data_arg("toy:rl").split == "rl"
    spec = parse_data_arg("org/bench:validation")
    assert (spec.name, spec.path, spec.split) == ("bench-validation", "org/bench", "validation")


def test_options_are_written_into_the_question_once():
    assert with_options("<image>Which?", ["3", "4"]) == "<image>Which?\nOptions:\nA. 3\nB. 4"
    assert with_options("Which?", {"A": "red", "B": "blue"}).endswith("A. red\nB. blue")
    assert with_options("Which?", '["x", "y", "z"]').endswith("C. z")
    already = "Which?\nA. 3\nB. 4"
    assert with_options(already, ["3", "4"]) == already
    assert parse_options("{'A': 1, 'B': 2}") == {"A": "1", "B": "2"}
    with pytest.raises(ValueError, match="row r7"):
        parse_options("not a list", "r7")


def test_benchmark_file_with_options_category_and_no_id(tmp_path):
    rows = [
        {"image": {"bytes": png(), "path": None}, "question": "What colour?", "options": ["red", "blue"], "answer": "A", "category": "color"},
        {"image": {"bytes": png((0, 0, 200)), "path": None}, "question": "<image>What colour?\n(A) red (B) blue", "answer": "B", "category": "color"},
        {"image": None, "question": "What is 2+2?", "answer": "4", "category": "math"},
    ]
    path = tmp_path / "bench.parquet"
    datasets.Dataset.from_list(rows).to_parquet(str(path))
    bench = load_benchmark(parse_data_arg(f"b={path}"))
    assert len(bench) == 3 and bench.ids() == ["b-0", "b-1", "b-2"]
    first = bench.example(0)
    assert first["question"] == "<image>What colour?\nOptions:\nA. red\nB. blue" and len(first["images"]) == 1
    assert bench.example(1)["question"].endswith("(A) red (B) blue")  # already listed: left alone
    assert [bench.example(i)["category"] for i in range(3)] == ["color", "color", "math"]
    assert bench.example(2)["images"] == []


# --------------------------------------------------------------------------- resumable predictions
def test_jsonl_store_drops_and_repairs_a_cut_off_last_line(tmp_path):
    store = JsonlStore(tmp_path / "p.jsonl")
    store.append([{"id": "a", "v": 1}, {"id": "b", "v": 2}])
    with open(store.path, "a") as f:
        f.write('{"id": "c", "v"')  # killed mid-write
    assert set(store.load()) == {"a", "b"} and store.dropped_lines == 1
    store.append([{"id": "c", "v": 3}])
    assert store.load()["c"] == {"id": "c", "v": 3} and store.dropped_lines == 0


def test_unique_ids_and_settings_guard(tmp_path):
    assert unique_ids(["a", "b", "a", "a"]) == (["a", "b", "a#2", "a#3"], 2)
    check_run_settings(tmp_path / "run.json", {"model": "m1", "temperature": 0.0})
    check_run_settings(tmp_path / "run.json", {"model": "m1", "temperature": 0.0})
    with pytest.raises(ValueError, match="model"):
        check_run_settings(tmp_path / "run.json", {"model": "m2", "temperature": 0.0})
    check_run_settings(tmp_path / "run.json", {"model": "m2", "temperature": 0.0}, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]  # written through a temp file, nothing left


@pytest.mark.parametrize("damage", ['{"model": "m1", "tempera', "[1, 2]", "\xff\xfe"])
def test_a_damaged_settings_file_is_a_user_error_not_a_traceback(tmp_path, damage):
    from mmfinereason.errors import UserError

    (tmp_path / "run.json").write_bytes(damage.encode("latin-1"))
    with pytest.raises(UserError, match=r"run\.json is not a readable settings file.*--overwrite"):
        check_run_settings(tmp_path / "run.json", {"model": "m1"})
    check_run_settings(tmp_path / "run.json", {"model": "m1"}, overwrite=True)  # the way out the message names
    assert json.loads((tmp_path / "run.json").read_text()) == {"model": "m1"}


def _text_bench(tmp_path, n: int):
    rows = [{"id": f"q{i}", "question": f"What is {i}+0?", "answer": str(i), "source": "s" + str(i % 2)} for i in range(n)]
    path = tmp_path / "text.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return load_benchmark(parse_data_arg(f"text={path}"))


def test_evaluate_benchmarks_scores_and_resumes_without_redoing(tmp_path):
    bench = _text_bench(tmp_path, 10)
    out = tmp_path / "out"
    gen = AnswerGold()
    report = evaluate_benchmarks(gen, [bench], out, batch_size=3, progress=False)
    assert len(gen.seen) == 10 and report.accuracy == 0.5
    assert report.per_group("source") == {"s0": (1.0, 5), "s1": (0.0, 5)}
    lines = (out / "predictions" / "text.jsonl").read_text().splitlines()
    record = json.loads(lines[0])
    assert {"id", "response", "extracted", "correct", "answer", "source", "benchmark"} <= set(record)
    assert record["extracted"] == "0" and record["correct"] is True

    # Kill mid-write: the last record is cut in half. A restart redoes exactly that one row.
    (out / "predictions" / "text.jsonl").write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:20])
    again = AnswerGold()
    report2 = evaluate_benchmarks(again, [bench], out, batch_size=3, progress=False)
    assert again.seen == [json.loads(lines[-1])["id"]]
    assert [p.to_record() for p in report2.predictions] == [p.to_record() for p in report.predictions]


def test_report_table_and_summary_group_by_benchmark_source_category():
    preds = [
        Prediction("1", "s", "", "A", "A", True, benchmark="b1", category="c1"),
        Prediction("2", "s", "", "B", "A", False, benchmark="b1", category="c2"),
        Prediction("3", "t", "", "1", "1", True, benchmark="b2"),
    ]
    report = AccuracyReport(preds)
    summary = report.summary()
    assert summary["overall"] == {"accuracy": 2 / 3, "n": 3}
    assert summary["benchmarks"]["b1"]["category"] == {"c1": {"accuracy": 1.0, "n": 1}, "c2": {"accuracy": 0.0, "n": 1}}
    table = report.table()
    assert "b1" in table and "category c2" in table and table.splitlines()[-2].startswith("all")
    assert table.splitlines()[-1].split()[-1] == "75.0%"  # the paper's average: the mean of benchmark accuracies
    assert summary["mean_of_benchmarks"] == 0.75


# --------------------------------------------------------------------------- the tiny model
def trained_tiny_dir(tmp_path_factory) -> Path:
    """The tiny model after a short SFT through `build_sft` (with `eval.every_n_steps` on), saved like
    `mmfinereason sft` saves it, plus the trainer's `log_history.json`. Trained once per pytest session:
    `test_select.py` reuses it."""
    from mmfinereason.recipe.loader import recipe_from_dict
    from mmfinereason.pipelines.sft import build_sft

    out = tmp_path_factory.getbasetemp() / f"tiny-sft-{TRAIN_STEPS}-steps"
    if (out / "log_history.json").exists():
        return out
    recipe = recipe_from_dict(
        {
            "stage": "sft",
            "model": {"name_or_path": "tiny", "dtype": "float32", "freeze_vision_tower": False, "freeze_merger": False},
            "data": {
                "train": [{"path": "toy", "split": "train", "limit": TRAIN_STEPS * 16}],
                "eval": [{"path": "toy", "split": "test", "limit": 24}],
                "max_length": 512,
                "packing": True,
                "max_pixels": 25600,
            },
            "train": {
                "output_dir": str(out),
                "max_steps": TRAIN_STEPS,
                "per_device_train_batch_size": 16,
                "learning_rate": 3e-3,
                "lr_scheduler_type": "constant",
                "logging_steps": 10,
                "save_strategy": "no",
                "report_to": "none",
                "seed": 0,
                "dataloader_num_workers": 0,
            },
            "eval": {"max_new_tokens": 48, "batch_size": 24, "every_n_steps": TRAIN_STEPS // 2, "during_training_limit": 4},
        }
    )
    trainer = build_sft(recipe)
    trainer.train()
    trainer.save_model(str(out))
    trainer.processing_class.save_pretrained(str(out))
    recipe.save(out / "recipe.yaml")
    (out / "log_history.json").write_text(json.dumps(trainer.state.log_history))
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    return trained_tiny_dir(tmp_path_factory)


@pytest.mark.slow  # trains the tiny model once per session (60 steps): minutes on 2 busy cores
def test_accuracy_is_logged_during_training(trained):
    history = json.loads((trained / "log_history.json").read_text())
    logged = [h for h in history if "eval_accuracy" in h]
    assert [h["step"] for h in logged] == [TRAIN_STEPS // 2, TRAIN_STEPS]
    assert all(0.0 <= h["eval_accuracy"] <= 1.0 for h in logged)
    assert any(key.startswith("eval_accuracy/toy_") for key in logged[-1])
    assert any("loss" in h and "mean_token_accuracy" in h for h in history)  # train metrics were not swallowed


@pytest.mark.slow
def test_eval_command_trained_beats_untrained_and_resumes(trained, tmp_path, capsys):
    model_dir = trained
    common = ["--data", "toy", "--limit", "24", "--no-progress", "--max-new-tokens", "64"]
    assert main(["eval", str(model_dir), "--output", str(tmp_path / "trained"), *common]) == 0
    assert main(["eval", "tiny", "--output", str(tmp_path / "untrained"), "--repetition-penalty", "1.0", *common]) == 0
    trained_acc = json.loads((tmp_path / "trained" / "results.json").read_text())
    untrained_acc = json.loads((tmp_path / "untrained" / "results.json").read_text())
    assert trained_acc["overall"]["n"] == untrained_acc["overall"]["n"] == 24
    assert trained_acc["overall"]["accuracy"] > untrained_acc["overall"]["accuracy"]
    assert set(trained_acc["benchmarks"]["toy"]["source"]) == {"toy_color", "toy_count", "toy_shape", "toy_compare"}
    assert "category" in trained_acc["benchmarks"]["toy"]
    assert "toy" in capsys.readouterr().out

    # A second run finds every row done: same numbers, no generation (a settings change is refused).
    predictions = tmp_path / "trained" / "predictions" / "toy.jsonl"
    before = predictions.read_text()
    assert main(["eval", str(model_dir), "--output", str(tmp_path / "trained"), *common]) == 0
    assert predictions.read_text() == before
    assert json.loads((tmp_path / "trained" / "results.json").read_text())["overall"] == trained_acc["overall"]
    assert main(["eval", str(model_dir), "--output", str(tmp_path / "trained"), *common[:-1], "32"]) == 2

    # Paired against the untrained run (no generation: every row is done): the change is the accuracies'
    # difference, split into items fixed and broken; a folder without predictions fails before generating.
    assert main(["eval", str(model_dir), "--output", str(tmp_path / "trained"), *common,
                 "--compare-to", str(tmp_path / "untrained")]) == 0
    assert predictions.read_text() == before
    assert "this run vs" in capsys.readouterr().out
    comparison = json.loads((tmp_path / "trained" / "comparison.json").read_text())
    paired = comparison["all"]
    assert comparison["by"] == "source" and paired["n"] == 24
    assert paired["fixed"] - paired["broken"] == round(24 * (trained_acc["overall"]["accuracy"] - untrained_acc["overall"]["accuracy"]))
    assert sum(comparison[s]["n"] for s in trained_acc["benchmarks"]["toy"]["source"]) == 24
    assert main(["eval", str(model_dir), "--output", str(tmp_path / "fresh"), *common, "--compare-to", str(tmp_path)]) == 2
    assert "holds no predictions" in capsys.readouterr().err
    assert not (tmp_path / "fresh" / "predictions").exists()
