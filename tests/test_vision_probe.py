"""bench/vision_probe.py: its questions are read right from the shapes, and it runs end to end on the tiny model."""

from __future__ import annotations

import dataclasses
import json
import sys

from test_study_scripts import load_script

from mmfinereason.toy.task import COLORS, make_example, make_scene


def test_true_targets_answer_every_question_and_wrong_ones_do_not():
    probe = load_script("vision_probe")
    wrong = {"toy_count": 0, "toy_compare": 0}
    scenes = [make_scene(i, seed=1)[0] for i in range(400)]
    for scene in scenes:
        truth = probe.targets_of(scene)
        assert probe.question_answer(scene, truth) is True, scene.question
        if scene.source == "toy_count":  # one shape more of the asked kind
            kind = next(k for k in ("circle", "square", "triangle") if f"{k}s" in scene.question.split())
            more = truth | {f"count_{kind}": truth[f"count_{kind}"] + 1}
            wrong["toy_count"] += not probe.question_answer(scene, more)
        if scene.source == "toy_compare":  # the two colours' counts swapped: the answer flips unless they tie
            a, b = scene.question.split()[3], scene.question.split()[6]
            swapped = truth | {f"count_{a}": truth[f"count_{b}"], f"count_{b}": truth[f"count_{a}"]}
            flips = truth[f"count_{a}"] != truth[f"count_{b}"]
            wrong["toy_compare"] += (not probe.question_answer(scene, swapped)) == flips
    assert wrong == {"toy_count": 100, "toy_compare": 100}
    assert {s.source for s in scenes} == {"toy_color", "toy_count", "toy_shape", "toy_compare"}
    assert all(probe.targets_of(s)["largest_color"] < len(COLORS) for s in scenes)


def test_scene_is_what_the_row_draws():
    for i in range(12):
        scene, _ = make_scene(i, seed=3)
        row = make_example(i, seed=3)
        assert row["caption"] == "An image showing " + ", ".join(f"a {it.color} {it.kind}" for it in scene.items) + "."
        assert (row["answer"], row["source"], row["difficulty"], row["image"].size) == (
            scene.answer, scene.source, scene.difficulty, scene.size)
        assert row["question"] == "<image>\n" + scene.question
        assert dataclasses.replace(scene) == scene


def test_probe_runs_on_the_tiny_model(tiny_dir, monkeypatch, capsys):
    probe = load_script("vision_probe")
    monkeypatch.setattr(sys, "argv", ["vision_probe.py", "--model", tiny_dir, "--train-rows", "24", "--test-rows", "8",
                                      "--epochs", "1", "--compare-untrained"])
    probe.main()
    out = capsys.readouterr().out
    record = json.loads(out.strip().splitlines()[-1])
    for name in ("trained", "untrained"):
        assert set(record[name]["questions"]) == {"toy_color", "toy_compare", "toy_count", "toy_shape", "all"}
        assert all(0.0 <= v <= 1.0 for v in record[name]["targets"].values())
    assert "question toy_shape" in out
