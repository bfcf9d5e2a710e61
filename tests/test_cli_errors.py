"""Every mistake a user can make on the command line ends in one or two lines that name the thing and what to do,
exit code 2, no traceback (``--log-level DEBUG`` logs it). One test per kind; none of them trains."""

from __future__ import annotations

import json
import logging

import datasets
import pytest

from mmfinereason.cli.main import main
from mmfinereason.errors import UserError
from mmfinereason.recipe.loader import load_recipe

SFT = "recipes/tiny/sft.yaml"
SMALL = ["data.train.0.limit=8", "data.eval.0.limit=4", "eval.limit=4"]


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch, tiny_dir):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_datasets_cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _user_error(capsys, argv: list[str]) -> str:
    """Run the CLI, check the user-error contract, return the message."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert lines[-1].startswith("(run with --log-level DEBUG"), err
    start = max(i for i, line in enumerate(lines) if line.startswith("mmfinereason "))
    assert len(lines[start:-1]) <= 2, err  # the message: one or two lines (progress bars may come before it)
    return "\n".join(lines[start:-1])


@pytest.mark.parametrize(
    "override, expected",
    [
        ("data.train.0.path=missing.parquet", "missing.parquet"),  # a file that is not there
        ("data.train.0.path=nobody/no-such-dataset", "hf download nobody/no-such-dataset"),  # not cached, offline
    ],
)
def test_missing_data(tmp_path, capsys, override, expected):
    err = _user_error(capsys, ["sft", SFT, f"train.output_dir={tmp_path}/out", *SMALL, override])
    assert expected in err


def test_unreadable_data(tmp_path, capsys):
    bad = tmp_path / "rows.parquet"
    bad.write_bytes(b"not a parquet file")
    err = _user_error(capsys, ["sft", SFT, f"train.output_dir={tmp_path}/out", *SMALL, f"data.train.0.path={bad}"])
    assert "rows.parquet" in err and "valid" in err


@pytest.mark.parametrize("model", ["/no/such/dir", "./no-such-dir", "nobody/no-such-model"])
def test_model_that_is_neither_a_folder_nor_a_cached_hub_id(tmp_path, capsys, model):
    err = _user_error(capsys, ["sft", SFT, f"train.output_dir={tmp_path}/out", f"model.name_or_path={model}"])
    assert model in err and ("does not exist" in err or "not in the Hugging Face cache" in err)


def test_eval_of_a_missing_folder(tmp_path, capsys):
    err = _user_error(capsys, ["eval", "/no/such/dir", "--data", "toy", "--output", str(tmp_path / "eval")])
    assert "/no/such/dir" in err and "does not exist" in err


def test_recipe_for_the_wrong_stage(capsys):
    err = _user_error(capsys, ["gspo", SFT])
    assert "mmfinereason sft" in err and "stage 'sft'" in err


def test_missing_extra(tmp_path, capsys):
    pytest.importorskip("torch")
    from mmfinereason.import_utils import is_available

    if is_available("flash_attn"):
        pytest.skip("flash-attn is installed here")
    err = _user_error(
        capsys, ["sft", SFT, f"train.output_dir={tmp_path}/out", *SMALL, "model.attn_implementation=flash_attention_2"]
    )
    assert "pip install 'mmfinereason[flash]'" in err


def test_data_file_without_the_answer_column(tmp_path, capsys):
    rows = tmp_path / "bench.jsonl"
    rows.write_text(json.dumps({"id": "r1", "question": "How many?", "gold": "3"}) + "\n")
    err = _user_error(capsys, ["eval", "tiny", "--data", str(rows), "--output", str(tmp_path / "eval")])
    assert "no column for 'answer'" in err and "columns:" in err


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["select", "--data", "toy:rl", "--keep", "pass_rate >"], "--keep 'pass_rate >'"),  # a rule cut short
        (["eval", "tiny", "--data", "toy", "--column", "answer"], "expected OURS=THEIRS"),  # a malformed --column
        (["eval", "tiny", "--data", "toy:nosuchsplit"], "the toy task has splits"),
        (["eval", "tiny", "--data", "toy", "--top-p", "2"], "--top-p"),
    ],
)
def test_bad_command_line_arguments(tmp_path, capsys, argv, expected):
    err = _user_error(capsys, [*argv, "--output", str(tmp_path / "out")])
    assert expected in err


def test_what_trls_config_refuses_is_a_recipe_error(capsys):
    """GRPOConfig.__post_init__ raises a plain ValueError; built from a recipe it is the user's recipe error."""
    err = _user_error(capsys, ["gspo", "recipes/tiny/gspo.yaml", "train.num_generations=3"])
    assert err.startswith("mmfinereason recipe error:") and "divisible by num_generations (3)" in err


def test_what_trls_trainer_would_refuse_after_loading_is_refused_at_the_recipe(capsys):
    """TRL checks sync_ref_model against beta in the trainer, once the model is loaded; we check the recipe."""
    err = _user_error(capsys, ["gspo", "recipes/tiny/gspo.yaml", "train.sync_ref_model=true"])
    assert err.startswith("mmfinereason recipe error:") and "train.beta > 0" in err


def test_a_hub_split_that_does_not_exist(monkeypatch):
    """Caught before ``load_dataset``, whose own ValueError would reach the user as a traceback."""
    from types import SimpleNamespace

    from mmfinereason.data.io import loading

    files = {"sft": ["sft.parquet"], "rl": ["rl.parquet"]}
    builder = SimpleNamespace(config=SimpleNamespace(data_files=files))
    monkeypatch.setattr(loading.datasets, "load_dataset_builder", lambda *args: builder)
    with pytest.raises(UserError, match=r"no split 'train'; its splits are \['rl', 'sft'\]"):
        loading._one_split("org/release", None, "train")
    assert loading._one_split("org/release", None, "rl") == ("rl", {"rl": ["rl.parquet"]})


@pytest.mark.parametrize("error", [ValueError("an internal check failed"), UserError("a mistake of the user")])
def test_only_user_errors_are_one_liners(monkeypatch, capsys, error):
    """A plain ValueError (a bug here or in a library) keeps its traceback; a UserError is the one-line report."""
    from mmfinereason.cli.commands import plot

    def fail(args):
        raise error

    monkeypatch.setattr(plot, "_run", fail)
    if isinstance(error, UserError):
        assert _user_error(capsys, ["plot", "run"]) == "mmfinereason plot: a mistake of the user"
    else:
        with pytest.raises(ValueError, match="an internal check failed"):
            main(["plot", "run"])


def test_traceback_at_debug_level(capsys, caplog):
    caplog.set_level(logging.DEBUG, logger="mmfinereason")
    assert main(["--log-level", "DEBUG", "gspo", SFT]) == 2
    assert any(r.exc_info for r in caplog.records), "the traceback is logged at DEBUG"


@pytest.mark.parametrize("word, value", [("no", "no"), ("yes", "yes"), ("on", "on"), ("off", "off")])
def test_yaml_11_boolean_words_given_to_a_string_field_stay_strings(tmp_path, word, value):
    recipe = load_recipe(SFT, [f"train.run_name={word}", f"train.resume_from_checkpoint={word}"])
    assert recipe.train.run_name == value and recipe.train.resume_from_checkpoint == value


def test_save_strategy_no_and_boolean_words_in_recipe_files(tmp_path):
    recipe = load_recipe(SFT, ["train.save_strategy=no", "model.freeze_merger=yes", "data.packing=off"])
    assert recipe.train.save_strategy.value == "no" and recipe.model.freeze_merger is True
    assert recipe.data.packing is False
    path = tmp_path / "r.yaml"
    path.write_text("stage: sft\ntrain:\n  save_strategy: no\n  bf16: off\n")
    reloaded = load_recipe(path)
    assert reloaded.train.save_strategy.value == "no" and reloaded.train.bf16 is False
    recipe.save(tmp_path / "saved.yaml")  # and the saved file reads back the same
    assert load_recipe(tmp_path / "saved.yaml").train.save_strategy.value == "no"
