"""Preemption-safe resume, proved: killed / stopped and resumed runs end where an uninterrupted run ends.

Unit tests cover the marker protocol and the resolution rules; the slow tests run the tiny SFT recipe as 2-process
CPU DDP under ``accelerate launch`` (the real CLI path) and compare, against an uninterrupted run, the final
weights (max abs diff <= 1e-6) and the per-rank sequence of example ids every optimizer step trained on
(recorded by ``MMFINEREASON_TRACE_IDS``, see :func:`mmfinereason.runtime.resume.record_trained_ids`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
from distributed_utils import kill_group, launch, max_abs_diff, run, tiny_sft_overrides, trace_records, wait_for, weights
from transformers import TrainerControl, TrainerState, TrainingArguments

from mmfinereason.runtime.checkpoints import (
    MARKER_NAME,
    newest_complete_checkpoint,
    resolve_resume,
    scan_checkpoints,
    verify_checkpoint,
    write_marker,
)
from mmfinereason.runtime.preemption import PREEMPTED_FILE_NAME, STOP_FILE_NAME, PreemptionCallback, clear_honoured_stop
from mmfinereason.runtime.resume import SamplerEpochCallback
from mmfinereason.runtime.trained_ids import read_trained_ids

SFT = "recipes/tiny/sft.yaml"
GSPO = "recipes/tiny/gspo.yaml"


# --------------------------------------------------------------------------- unit: markers and resolution
def _fake_checkpoint(root: Path, step: int, complete: bool = True) -> Path:
    d = root / f"checkpoint-{step}"
    d.mkdir(parents=True)
    (d / "model.safetensors").write_bytes(b"x" * 100)
    (d / "trainer_state.json").write_text("{}")
    if complete:
        write_marker(d, step, world_size=2)
    return d


def test_newest_complete_checkpoint_skips_unmarked_and_damaged(tmp_path):
    _fake_checkpoint(tmp_path, 4)
    _fake_checkpoint(tmp_path, 8)
    _fake_checkpoint(tmp_path, 12, complete=False)  # killed mid-save
    damaged = _fake_checkpoint(tmp_path, 10)
    (damaged / "model.safetensors").write_bytes(b"x" * 10)  # truncated after the marker (e.g. half-rotated)
    (tmp_path / "incomplete-checkpoint-16-1").mkdir()  # quarantined earlier: not a checkpoint any more
    scan = scan_checkpoints(tmp_path)
    assert [p.name for p in scan.complete] == ["checkpoint-4", "checkpoint-8"]
    assert {p.name: why.split()[0] for p, why in scan.incomplete} == {"checkpoint-10": "file", "checkpoint-12": "no"}
    assert newest_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-8")
    assert "checkpoint-12" in scan.summary()


def test_resolve_resume_modes(tmp_path):
    assert resolve_resume("auto", tmp_path / "missing")[0] is None  # fresh start
    _fake_checkpoint(tmp_path, 4)
    _fake_checkpoint(tmp_path, 8, complete=False)
    assert resolve_resume("auto", tmp_path)[0] == str(tmp_path / "checkpoint-4")
    assert resolve_resume(True, tmp_path)[0] == str(tmp_path / "checkpoint-4")
    assert resolve_resume(None, tmp_path)[0] is None
    assert resolve_resume("none", tmp_path)[0] is None
    assert resolve_resume(str(tmp_path / "checkpoint-4"), tmp_path)[0] == str(tmp_path / "checkpoint-4")
    with pytest.raises(FileNotFoundError, match="not a directory"):
        resolve_resume(str(tmp_path / "checkpoint-99"), tmp_path)
    (tmp_path / "checkpoint-8" / MARKER_NAME).write_text("{not json")
    with pytest.raises(ValueError, match="incomplete"):
        resolve_resume(str(tmp_path / "checkpoint-8"), tmp_path)


def test_marker_lists_every_file_and_verifies(tmp_path):
    d = _fake_checkpoint(tmp_path, 3)
    manifest = json.loads((d / MARKER_NAME).read_text())
    assert manifest["step"] == 3 and manifest["world_size"] == 2
    assert manifest["files"] == {"model.safetensors": 100, "trainer_state.json": 2}
    assert verify_checkpoint(d) is None
    (d / "trainer_state.json").unlink()
    assert "missing file trainer_state.json" in verify_checkpoint(d)


@pytest.mark.parametrize("how", ["SIGTERM", "SIGUSR1", "file"])
def test_preemption_callback_saves_and_stops_at_the_step_boundary(tmp_path, how):
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    state, control = TrainerState(global_step=7), TrainerControl()
    cb = PreemptionCallback()
    cb.on_train_begin(args, state, control)
    try:
        assert cb.on_step_end(args, state, control) is control and not control.should_save
        if how == "file":
            (tmp_path / STOP_FILE_NAME).touch()
        else:
            os.kill(os.getpid(), getattr(signal, how))  # handled: the test process keeps running
        cb.on_step_end(args, state, control)
    finally:
        cb.on_train_end(args, state, control)
    assert control.should_save and control.should_training_stop
    assert cb.preempted_at == 7 and cb.requested == (STOP_FILE_NAME if how == "file" else how)
    assert signal.getsignal(signal.SIGTERM) is not cb._handler  # previous handlers restored


def test_an_obeyed_stop_request_is_cleared_a_new_one_kept(tmp_path):
    stop, preempted = tmp_path / STOP_FILE_NAME, tmp_path / PREEMPTED_FILE_NAME
    stop.touch()
    preempted.write_text("{}")
    os.utime(stop, (1000, 1000))  # the stop came first and was obeyed
    clear_honoured_stop(tmp_path)
    assert not stop.exists() and not preempted.exists()
    preempted.write_text("{}")
    os.utime(preempted, (1000, 1000))
    stop.touch()  # asked again after that preemption: keep it
    clear_honoured_stop(tmp_path)
    assert stop.exists() and not preempted.exists()


def test_sampler_epoch_reaches_a_batch_sampler_hidden_by_skip_first_batches():
    from accelerate.data_loader import SkipBatchSampler
    from torch.utils.data import DataLoader

    class Budget:  # a custom batch sampler, as deep as BatchSamplerShard(TokenBudgetBatchSampler) puts it
        epoch = 0

        def set_epoch(self, epoch):
            self.epoch = epoch

        def __iter__(self):
            return iter([[0], [1]])

        def __len__(self):
            return 2

    class Shard:  # stands for accelerate's BatchSamplerShard, which has no set_epoch of its own
        def __init__(self, inner):
            self.batch_sampler = inner

        def __iter__(self):
            return iter(self.batch_sampler)

        def __len__(self):
            return 2

    inner = Budget()
    loader = DataLoader(list(range(2)), batch_sampler=SkipBatchSampler(Shard(inner), skip_batches=1))
    SamplerEpochCallback().on_epoch_begin(None, TrainerState(epoch=2.5), TrainerControl(), train_dataloader=loader)
    assert inner.epoch == 2  # resumed half-way through epoch index 2


def test_read_trained_ids_drops_what_a_kill_lost(tmp_path):
    log = tmp_path / "trained_ids.rank0.jsonl"
    recs = [("a", 0, ["1"]), ("a", 1, ["2"]), ("a", 2, ["3"]), ("a", 3, ["4"]), ("b", 2, ["3"]), ("b", 3, ["4"])]
    log.write_text("".join(json.dumps({"session": s, "pid": 1, "step": k, "ids": i}) + "\n" for s, k, i in recs))
    assert read_trained_ids(log) == [(0, ["1"]), (1, ["2"]), (2, ["3"]), (3, ["4"])]


# --------------------------------------------------------------------------- end to end: 2-process DDP
def _latest_step(trace: Path, rank: int) -> int:
    recs = trace_records(trace, rank)
    return recs[-1]["step"] if recs else -1


def _interrupt_and_resume(stage: str, recipe: str, overrides: list[str], root: Path, *, term_at: int,
                          kill_checkpoint: int, kill_at: int, total: int) -> None:
    """Run 1 gets SIGTERM on rank 1 only at step ``term_at``; run 2 resumes and is SIGKILLed (launcher and
    both workers, like a node failure) at step ``kill_at``, after ``checkpoint-{kill_checkpoint}``; a
    half-written newer checkpoint is left behind; run 3 resumes and finishes."""
    out, trace = root / "out", root / "trace"

    # 1. SIGTERM to one rank: every rank stops at the same step, checkpoints it and exits "preempted".
    proc = launch(stage, recipe, overrides, trace, root / "log1.txt")
    try:
        wait_for(lambda: _latest_step(trace, 1) >= term_at, proc, root / "log1.txt", what=f"step {term_at}")
        os.kill(trace_records(trace, 1)[-1]["pid"], signal.SIGTERM)
        rc = proc.wait(timeout=180)
    finally:
        kill_group(proc, trace_dir=trace)
    text = (root / "log1.txt").read_text()
    assert rc != 0, "a preempted run must not look finished to the scheduler"
    assert "exitcode  : 143" in text, text[-3000:]
    preempted = json.loads((out / PREEMPTED_FILE_NAME).read_text())
    step = preempted["step"]
    assert term_at < step < kill_checkpoint and preempted["reason"] in ("SIGTERM", "another rank")
    assert verify_checkpoint(out / f"checkpoint-{step}") is None
    assert not (out / "model.safetensors").exists()  # no final save after a preemption
    for rank in (0, 1):  # both ranks stopped after the same number of steps
        assert max(k for k, _ in read_trained_ids(trace / f"trained_ids.rank{rank}.jsonl")) == step - 1

    # 2. Resume, then SIGKILL everything mid-training.
    proc = launch(stage, recipe, overrides, trace, root / "log2.txt")
    try:
        wait_for(lambda: (out / f"checkpoint-{kill_checkpoint}" / MARKER_NAME).is_file() and _latest_step(trace, 0) >= kill_at,
                 proc, root / "log2.txt", what=f"checkpoint-{kill_checkpoint} and step {kill_at}")
    finally:
        kill_group(proc, signal.SIGKILL, trace)
    time.sleep(1)
    text = (root / "log2.txt").read_text()
    assert f"resuming from {out / f'checkpoint-{step}'}" in text and not (out / PREEMPTED_FILE_NAME).exists()
    assert not (out / "model.safetensors").exists(), "the run finished before the kill: nothing was tested"
    half = out / f"checkpoint-{kill_checkpoint + 2}"  # what a kill during a save leaves: newer but unmarked
    if not half.exists():
        shutil.copytree(out / f"checkpoint-{kill_checkpoint}", half)
        (half / MARKER_NAME).unlink()
        next(p for p in half.iterdir() if p.suffix in (".pt", ".safetensors")).write_bytes(b"truncated")

    # 3. Resume from the newest *complete* checkpoint and finish.
    rc = run(stage, recipe, overrides, trace, root / "log3.txt")
    text = (root / "log3.txt").read_text()
    assert rc == 0, text[-3000:]
    assert "ignored incomplete checkpoint" in text and f"resuming from {out / f'checkpoint-{kill_checkpoint}'}" in text
    assert list(out.glob(f"incomplete-checkpoint-{kill_checkpoint + 2}-*"))
    assert len({r["session"] for r in trace_records(trace, 0)}) == 3  # really three runs


def _assert_same_as_reference(reference: Path, root: Path, total: int) -> None:
    for rank in (0, 1):
        want = read_trained_ids(reference / "trace" / f"trained_ids.rank{rank}.jsonl")
        got = read_trained_ids(root / "trace" / f"trained_ids.rank{rank}.jsonl")
        assert [k for k, _ in want] == list(range(total))
        assert got == want, f"rank {rank}: the resumed runs trained other examples than the uninterrupted one"
    diff = max_abs_diff(weights(reference / "out"), weights(root / "out"))
    assert diff <= 1e-6, f"final weights differ by {diff}"


SFT_CASES = {
    # the default sampler (tiny recipe): 24 steps over 3 epochs, so resume crosses epoch boundaries
    "default-sampler": (dict(epochs=3, save_steps=4), [], dict(term_at=4, kill_checkpoint=12, kill_at=14, total=24)),
    # the token-budget batch sampler of the shipped 2B/4B/8B recipes: 4 steps per epoch, 4 epochs
    "token-budget": (dict(epochs=4, save_steps=2), ["data.tokens_per_batch=1024"],
                     dict(term_at=2, kill_checkpoint=8, kill_at=9, total=16)),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(SFT_CASES))
def test_sft_sigterm_and_sigkill_then_resume_match_an_uninterrupted_run(tmp_path, case):
    shape, extra, steps = SFT_CASES[case]

    def overrides(out: Path) -> list[str]:
        return tiny_sft_overrides(out, **shape) + extra

    rc = run("sft", SFT, overrides(tmp_path / "ref" / "out"), tmp_path / "ref" / "trace", tmp_path / "ref.txt")
    assert rc == 0, (tmp_path / "ref.txt").read_text()[-3000:]
    _interrupt_and_resume("sft", SFT, overrides(tmp_path / "run" / "out"), tmp_path / "run", **steps)
    _assert_same_as_reference(tmp_path / "ref", tmp_path / "run", steps["total"])


def _tiny_gspo_overrides(output_dir: Path, init: Path) -> list[str]:
    """10 GSPO steps: 2 ranks x 8 completions = 4 prompts x 4 rollouts per step, a checkpoint every 2."""
    return [
        f"model.name_or_path={init}", f"train.output_dir={output_dir}", "train.use_cpu=true", "train.max_steps=10",
        "train.save_strategy=steps", "train.save_steps=2", "train.per_device_train_batch_size=8",
        "train.num_generations=4", "train.max_completion_length=32", "train.logging_steps=1",
        "data.train=[{path: toy, split: rl, limit: 64}]", "eval.before_training=false", "eval.after_training=false",
        "data.eval=[]",
        "train.dynamic_sampling=true", "train.dynamic_sampling_max_retries=2",  # refill draws must resume exactly too
        "train.weight_anchor=300",  # the pull must aim at the SFT weights after a resume too, not the checkpoint's
    ]


@pytest.mark.slow
def test_gspo_sigterm_and_sigkill_then_resume_match_an_uninterrupted_run(tmp_path):
    # GSPO starts from an SFT model (a few steps of tiny SFT, so rollouts sometimes earn a reward).
    sft = tmp_path / "sft"
    rc = run("sft", SFT, tiny_sft_overrides(sft, epochs=1, save_steps=100), tmp_path / "sft-trace", tmp_path / "sft.txt")
    assert rc == 0, (tmp_path / "sft.txt").read_text()[-3000:]
    rc = run("gspo", GSPO, _tiny_gspo_overrides(tmp_path / "ref" / "out", sft), tmp_path / "ref" / "trace", tmp_path / "ref.txt")
    assert rc == 0, (tmp_path / "ref.txt").read_text()[-3000:]
    _interrupt_and_resume("gspo", GSPO, _tiny_gspo_overrides(tmp_path / "run" / "out", sft), tmp_path / "run",
                          term_at=1, kill_checkpoint=6, kill_at=7, total=10)
    _assert_same_as_reference(tmp_path / "ref", tmp_path / "run", 10)
