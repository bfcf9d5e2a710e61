"""The study's scripts: bench/compare_recipes.py (two settings over matched cells, the decision rule) and
bench/gspo_study_grid.py (the grid's order and resume), on fake cells: no model is trained here."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from mmfinereason.evaluation.accuracy import Prediction

REPO = Path(__file__).resolve().parent.parent


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the script is executed
    spec.loader.exec_module(module)
    return module


def run_of(correct: list[bool]) -> list[Prediction]:
    return [Prediction(id=str(i), source="s", response="", extracted=None, answer="A", correct=c)
            for i, c in enumerate(correct)]


def write_cell(folder: Path, sft: str, overrides: list[str], correct: list[bool], trained: bool = True) -> None:
    folder.mkdir(parents=True)
    summary = {"sft": sft, "overrides": overrides, "accuracy": sum(correct) / len(correct)}
    if trained:
        summary["optimizer_steps"] = 10
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "predictions.jsonl").write_text("".join(json.dumps(p.to_record()) + "\n" for p in run_of(correct)))


def run_script(args: list[str], monkeypatch, capsys) -> tuple[dict, str]:
    """bench/compare_recipes.py in this process (a subprocess would import torch again): its JSON line, stderr."""
    script = load_script("compare_recipes")
    monkeypatch.setattr(sys, "argv", ["compare_recipes.py", *args])
    script.main()
    out = capsys.readouterr()
    return json.loads(out.out.strip().splitlines()[-1]), out.err


def test_bench_script_matches_cells_gives_gains_and_checks_the_rule(tmp_path, monkeypatch, capsys):
    n = 100
    for m in ("m1", "m2"):
        write_cell(tmp_path / f"{m}-base", f"out/{m}", [], [True] * 60 + [False] * 40, trained=False)
        for seed, (ref, cand) in {"42": (62, 65), "1": (64, 63)}.items():
            write_cell(tmp_path / f"{m}-ref-s{seed}", f"out/{m}", [f"train.seed={seed}"],
                       [True] * ref + [False] * (n - ref))
            write_cell(tmp_path / f"{m}-cand-s{seed}", f"out/{m}", [f"train.seed={seed}", "train.learning_rate=1"],
                       [True] * cand + [False] * (n - cand))
    write_cell(tmp_path / "m3-ref-s2", "out/m3", ["train.seed=2"], [True] * 50 + [False] * 50)  # no match
    args = ["--reference", str(tmp_path / "*-ref-*"), "--candidate", str(tmp_path / "*-cand-*"),
            "--baselines", str(tmp_path / "*-base"), "--margin", "0.3"]
    result, stderr = run_script(args, monkeypatch, capsys)
    assert "unmatched" in stderr and "m3-ref-s2" in stderr  # named, not dropped silently
    assert result["pairs"] == 4
    assert result["comparison"]["mean"] == pytest.approx(0.01)  # +3, -1, +3, -1 points
    # the two seeds of one SFT model are averaged first: +1 point on each model, one group per SFT model
    assert result["comparison"]["group_means"] == pytest.approx({"out/m1": 0.01, "out/m2": 0.01})
    assert result["comparison"]["pairs"]["out/m1 seed 42"]["group"] == "out/m1"
    assert result["reference_gain"]["worst"] == pytest.approx(0.02) and result["candidate_gain"]["worst"] == pytest.approx(0.03)
    assert result["candidate_gain"]["mean"] == pytest.approx(0.04) and result["reference_gain"]["mean"] == pytest.approx(0.03)
    assert result["rule"]["holds"] is True
    # the same cells with the settings swapped: both clauses fail
    swapped = [args[0], args[3], args[2], args[1], *args[4:]]
    rule = run_script(swapped, monkeypatch, capsys)[0]["rule"]
    assert rule == {"margin_points": 0.3, "worst_no_lower": False, "mean_within_margin": False, "holds": False}


def test_study_grid_plans_sft_then_baseline_then_cells_and_skips_finished_pieces(tmp_path):
    grid = load_script("gspo_study_grid")
    settings = [("shipped", []), ("lr15", ["train.learning_rate=1.5e-4"])]
    stages = grid.plan(tmp_path, ["2", "3"], settings, ["42", "1"], "recipes/tiny/sft.yaml")
    assert [title for title, _ in stages] == [
        "SFT model train.seed=2", "baseline of sft2", "GSPO cells from sft2",
        "SFT model train.seed=3", "baseline of sft3", "GSPO cells from sft3"]
    cells = [job.command for job in stages[2][1]]
    assert len(cells) == 4 and all(["--baseline", str(tmp_path / "sft2-base")] == c[c.index("--baseline"):c.index("--baseline") + 2]
                                   for c in cells)
    assert cells[1][-2:] == ["train.seed=42", "train.learning_rate=1.5e-4"]
    sft_run, cell_run = stages[0][1][0], stages[2][1][1]
    assert sft_run.log == Path(f"{tmp_path / 'sft2'}.log") and sft_run.env() is None  # SFT: every thread
    assert cell_run.log == Path(f"{tmp_path / 'sft2-lr15-s42'}.log") and cell_run.env()["OMP_NUM_THREADS"] == "1"
    # sft2 trained, its baseline and one cell done: only sft2's other three cells and sft3's pieces are left
    (tmp_path / "sft2").mkdir()
    (tmp_path / "sft2" / "model.safetensors").write_bytes(b"")
    for done in ("sft2-base", "sft2-shipped-s42"):
        (tmp_path / done).mkdir()
        (tmp_path / done / "summary.json").write_text("{}")
    stages = grid.plan(tmp_path, ["2", "3"], settings, ["42", "1"], "recipes/tiny/sft.yaml")
    assert [title for title, _ in stages][0] == "GSPO cells from sft2" and len(stages[0][1]) == 3
    assert tmp_path / "sft2-shipped-s42" not in {job.folder for job in stages[0][1]}
