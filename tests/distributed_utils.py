"""Launch the real CLI under ``accelerate launch`` with 2 CPU processes (gloo DDP) for the distributed tests.

CPU DDP needs both ``--multi_gpu`` (so accelerate starts torchrun with 2 workers; ``--cpu`` alone runs one
process) and ``train.use_cpu=true`` (so each worker picks gloo instead of looking for CUDA).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]
ACCELERATE = Path(sys.executable).with_name("accelerate")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_sft_overrides(output_dir: Path, rows: int = 64, epochs: int = 3, save_steps: int = 4) -> list[str]:
    """The tiny SFT recipe shrunk to seconds: 64 rows, 4 per rank, 2 ranks -> 8 steps/epoch, 24 steps."""
    return [
        f"train.output_dir={output_dir}",
        f"data.train.0.limit={rows}",
        "train.per_device_train_batch_size=4",
        f"train.num_train_epochs={epochs}",
        "train.save_strategy=steps",
        f"train.save_steps={save_steps}",
        "train.logging_steps=4",
        "train.use_cpu=true",
        "eval.before_training=false",
        "eval.after_training=false",
        "data.eval=[]",
    ]


def launch(stage: str, recipe: str, overrides: list[str], trace_dir: Path, log: Path, nproc: int = 2) -> subprocess.Popen:
    """Start ``accelerate launch -m mmfinereason STAGE RECIPE OVERRIDES`` in its own process group."""
    log.parent.mkdir(parents=True, exist_ok=True)
    cache = os.environ.get("MMFINEREASON_CACHE") or str(Path(os.environ.get("TMPDIR", "/tmp")) / "mmfinereason-test-cache")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MMFINEREASON_CACHE": cache, "MMFINEREASON_TRACE_IDS": str(trace_dir)}
    cmd = [
        str(ACCELERATE), "launch", "--multi_gpu", "--num_processes", str(nproc), "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
        "-m", "mmfinereason", stage, recipe, *overrides,
    ]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)


def run(stage: str, recipe: str, overrides: list[str], trace_dir: Path, log: Path, timeout: float = 600) -> int:
    proc = launch(stage, recipe, overrides, trace_dir, log)
    try:
        return proc.wait(timeout=timeout)
    finally:
        kill_group(proc, trace_dir=trace_dir)


def worker_pids(trace_dir: Path) -> set[int]:
    """The worker processes seen in the id trace (torchrun starts each worker in its own session, so
    signalling the launcher's process group does not reach them)."""
    return {r["pid"] for rank in (0, 1) for r in trace_records(trace_dir, rank)}


def kill_group(proc: subprocess.Popen, sig: int = signal.SIGKILL, trace_dir: Path | None = None) -> None:
    """Signal the launcher's process group and the workers recorded in ``trace_dir`` (all started by the test)."""
    pids = worker_pids(trace_dir) if trace_dir is not None else set()
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    if proc.poll() is None:
        proc.wait(timeout=60)


def trace_records(trace_dir: Path, rank: int) -> list[dict]:
    path = trace_dir / f"trained_ids.rank{rank}.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def wait_for(predicate, proc: subprocess.Popen, log: Path, timeout: float = 300, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"run exited ({proc.returncode}) before {what}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)


def weights(path: Path) -> dict:
    return load_file(str(path / "model.safetensors"))


def max_abs_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
