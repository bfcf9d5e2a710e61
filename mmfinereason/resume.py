"""Preemption-safe checkpoints: completion markers, newest-complete resolution, stop-on-signal.

Why this exists: on shared clusters jobs are preempted and nodes die, and the transformers ``Trainer`` writes
``checkpoint-N`` in place (no temp dir, no marker, no barrier at the end), so a kill during a save leaves a
directory that *looks* like a checkpoint and ``get_last_checkpoint`` happily resumes from it. What the
Trainer already does right, and we keep: saving/restoring weights, optimizer, LR scheduler, RNG states (per
rank) and ``trainer_state.json``; skipping the already-trained batches of the current epoch on resume
(``ignore_data_skip=False``, through the sampler for map-style data and by iterating for streaming data).

What we add (the same protocol as Megatron's tracker file / torchtitan's ``.metadata``):

* **Completion marker.** After every save all ranks meet at a barrier; then rank 0 writes
  ``checkpoint_complete.json`` (a manifest of every file and its size, the step, the world size) through a
  temp file + ``os.replace``. A checkpoint counts only if its marker exists and every listed file is still
  there with its size — which also catches a rotation (``save_total_limit``) killed half-way.
* **Resolution.** ``resume_from_checkpoint: auto`` (the recipe default) picks the newest complete checkpoint
  in ``output_dir`` (fresh start when there is none); incomplete ones are reported and renamed to
  ``incomplete-checkpoint-N-<time>`` so neither resolution nor rotation ever sees them again.
* **Preemption.** SIGTERM / SIGUSR1 (or a ``STOP`` file in ``output_dir``, for schedulers that can only
  signal the batch shell) set a flag; at the next optimizer-step boundary the ranks all-reduce it, so every
  rank stops at the *same* step, saves a checkpoint and :func:`exit_if_preempted` exits with
  :data:`PREEMPTED_EXIT_CODE` after writing ``preempted.json`` (what the SLURM scripts requeue on).

Shared-filesystem assumption: every rank sees the same ``output_dir`` (true on every cluster that runs
multi-node ``accelerate launch`` with the HF Trainer; its checkpoints assume it too).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from .shutdown import release_trainer, shutdown_distributed

logger = logging.getLogger(__name__)

MARKER_NAME = "checkpoint_complete.json"
STOP_FILE_NAME = "STOP"
PREEMPTED_FILE_NAME = "preempted.json"
PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM: what schedulers and shells read as "terminated, not failed"
PREEMPT_SIGNALS = ("SIGTERM", "SIGUSR1")
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
_NO_RESUME = {"", "none", "no", "false", "never"}
TRACE_ENV = "MMFINEREASON_TRACE_IDS"  # a directory: log the example ids every micro-batch trained on


# --------------------------------------------------------------------------- distributed helpers
def _dist_ready() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _rank() -> int:
    return torch.distributed.get_rank() if _dist_ready() else 0


def _world_size() -> int:
    return torch.distributed.get_world_size() if _dist_ready() else 1


def _barrier() -> None:
    if _dist_ready():
        torch.distributed.barrier()


def _any_rank(flag: bool, device: Any) -> bool:
    """True on every rank when ``flag`` is true on at least one (a MAX all-reduce of one number)."""
    if not _dist_ready():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return bool(t.item() > 0)


# --------------------------------------------------------------------------- markers
def checkpoint_step(path: str | Path) -> int | None:
    """The step of a ``checkpoint-N`` directory name, None for anything else."""
    m = _CHECKPOINT_RE.match(Path(path).name)
    return int(m.group(1)) if m else None


def _atomic_write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_marker(checkpoint_dir: str | Path, step: int | None = None, world_size: int | None = None) -> Path:
    """Publish ``checkpoint_dir`` as complete: a manifest of its files, written atomically. Call on one rank,
    after every rank has finished writing (see :class:`CheckpointMarkerCallback`)."""
    root = Path(checkpoint_dir)
    files = {
        str(p.relative_to(root)): p.stat().st_size
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MARKER_NAME and not p.name.startswith(f".{MARKER_NAME}.tmp")
    }
    marker = root / MARKER_NAME
    _atomic_write_json(
        marker,
        {
            "step": checkpoint_step(root) if step is None else step,
            "world_size": world_size or _world_size(),
            "files": files,
            "time": time.time(),
        },
    )
    return marker


def verify_checkpoint(checkpoint_dir: str | Path) -> str | None:
    """None when ``checkpoint_dir`` is complete, else the reason it is not (for the report)."""
    root = Path(checkpoint_dir)
    marker = root / MARKER_NAME
    if not marker.is_file():
        return f"no {MARKER_NAME} (the save did not finish)"
    try:
        manifest = json.loads(marker.read_text())
        files = manifest["files"]
    except (ValueError, KeyError, TypeError) as e:
        return f"unreadable {MARKER_NAME}: {e}"
    if not files:
        return "empty manifest"
    for name, size in files.items():
        p = root / name
        if not p.is_file():
            return f"missing file {name}"
        if p.stat().st_size != size:
            return f"file {name} has {p.stat().st_size} bytes, the manifest says {size}"
    return None


@dataclass
class CheckpointScan:
    """Checkpoints found in an output dir: complete ones (oldest first) and incomplete ones with reasons."""

    complete: list[Path] = field(default_factory=list)
    incomplete: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def newest(self) -> Path | None:
        return self.complete[-1] if self.complete else None

    def summary(self) -> str:
        lines = [f"{len(self.complete)} complete checkpoint(s)" + (f", newest {self.newest}" if self.newest else "")]
        lines += [f"ignored incomplete checkpoint {p}: {why}" for p, why in self.incomplete]
        return "\n".join(lines)


def scan_checkpoints(output_dir: str | Path) -> CheckpointScan:
    """Classify every ``checkpoint-N`` directory of ``output_dir`` (a missing dir is an empty scan)."""
    scan = CheckpointScan()
    root = Path(output_dir)
    if not root.is_dir():
        return scan
    dirs = sorted((d for d in root.iterdir() if d.is_dir() and checkpoint_step(d) is not None), key=checkpoint_step)
    for d in dirs:
        why = verify_checkpoint(d)
        if why is None:
            scan.complete.append(d)
        else:
            scan.incomplete.append((d, why))
    return scan


def newest_complete_checkpoint(output_dir: str | Path) -> str | None:
    """The path of the highest-step complete checkpoint in ``output_dir``, or None."""
    newest = scan_checkpoints(output_dir).newest
    return str(newest) if newest else None


def quarantine(checkpoint_dir: str | Path) -> Path:
    """Rename an incomplete checkpoint out of the ``checkpoint-*`` namespace (resolution and the Trainer's
    rotation glob ignore it) instead of deleting it: the user may want to look at what was left."""
    src = Path(checkpoint_dir)
    dst = src.with_name(f"incomplete-{src.name}-{int(time.time())}")
    os.replace(src, dst)
    return dst


def resolve_resume(resume: str | bool | None, output_dir: str | Path) -> tuple[str | None, CheckpointScan]:
    """Turn the recipe's ``resume_from_checkpoint`` into a checkpoint path (or None for a fresh start).

    ``"auto"`` / ``True``: the newest complete checkpoint in ``output_dir``, None when there is none.
    ``None`` / ``"none"`` / ``False``: fresh start. A path: that checkpoint, which must be complete (a
    checkpoint written before markers existed is accepted with a warning if it holds ``trainer_state.json``).
    """
    scan = scan_checkpoints(output_dir)
    if resume is None or resume is False or (isinstance(resume, str) and resume.strip().lower() in _NO_RESUME):
        return None, scan
    if resume is True or (isinstance(resume, str) and resume.strip().lower() in ("auto", "latest", "true")):
        return (str(scan.newest) if scan.newest else None), scan
    path = Path(str(resume))
    if not path.is_dir():
        raise FileNotFoundError(f"resume_from_checkpoint: {path} is not a directory (use 'auto' to pick the newest)")
    why = verify_checkpoint(path)
    if why is not None:
        if (path / MARKER_NAME).exists() or not (path / "trainer_state.json").is_file():
            raise ValueError(f"resume_from_checkpoint: {path} is incomplete ({why}); use 'auto' or another checkpoint")
        logger.warning("resuming from %s, which has no completion marker (written by another tool?)", path)
    return str(path), scan


# --------------------------------------------------------------------------- callbacks
class CheckpointMarkerCallback(TrainerCallback):
    """Writes the completion marker once every rank has finished its part of a save.

    ``on_save`` runs right after ``Trainer._save_checkpoint`` (weights, optimizer, scheduler, RNG, state, and
    rotation) on every rank; the barrier makes sure ZeRO partitions and per-rank RNG files are on disk too.
    """

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        _barrier()
        if _rank() == 0 and folder.is_dir():
            write_marker(folder, state.global_step, _world_size())
            logger.info("checkpoint %s complete", folder)
        _barrier()


class PreemptionCallback(TrainerCallback):
    """Turns SIGTERM / SIGUSR1 (or a ``STOP`` file) into "save at the next step boundary, then stop".

    Signal handlers only set a flag (nothing else is safe inside one). At each ``on_step_end`` the ranks
    all-reduce the flag so they stop together — a rank that stopped alone would hang the others in their
    next collective.
    """

    def __init__(self, signals: tuple[str, ...] = PREEMPT_SIGNALS):
        self.signals = signals
        self.requested: str | None = None  # which signal / file asked, on this rank
        self.preempted_at: int | None = None  # the step all ranks stopped at
        self._previous: dict[int, Any] = {}

    def _handler(self, signum, frame) -> None:
        self.requested = signal.Signals(signum).name
        os.write(2, f"[mmfinereason] {self.requested}: saving a checkpoint at the next step boundary\n".encode())

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            logger.warning("not on the main thread: preemption signals are not handled (use the STOP file)")
            return
        for name in self.signals:
            sig = getattr(signal, name, None)
            if sig is not None and sig not in self._previous:
                self._previous[sig] = signal.signal(sig, self._handler)

    def uninstall(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    def on_train_begin(self, args, state, control, **kwargs):
        self.install()

    def on_step_end(self, args, state, control, **kwargs):
        local = self.requested is not None
        if not local and (Path(args.output_dir) / STOP_FILE_NAME).exists():
            self.requested = STOP_FILE_NAME
            local = True
        if _any_rank(local, args.device):
            self.requested = self.requested or "another rank"
            self.preempted_at = state.global_step
            control.should_save = True
            control.should_training_stop = True
            logger.warning("preemption (%s): saving checkpoint-%d and stopping", self.requested, state.global_step)
        return control

    def on_train_end(self, args, state, control, **kwargs):
        self.uninstall()


class SamplerEpochCallback(TrainerCallback):
    """Sets the epoch on every sampler under the train dataloader at each epoch start.

    Why: when resuming mid-epoch the Trainer wraps the loader's batch sampler in accelerate's
    ``SkipBatchSampler``, and its own ``set_epoch`` calls then stop one level short of a custom batch sampler
    (``BatchSamplerShard(TokenBudgetBatchSampler)``): the resumed epoch would replay epoch 0's order. Calling
    ``set_epoch`` on the same epoch the Trainer uses is harmless for the samplers it does reach.
    """

    def on_epoch_begin(self, args, state, control, train_dataloader=None, **kwargs):
        epoch = math.floor((state.epoch or 0.0) + 1e-6)
        todo, seen = [train_dataloader], set()
        while todo:
            node = todo.pop()
            if node is None or id(node) in seen:
                continue
            seen.add(id(node))
            if hasattr(node, "set_epoch") and not isinstance(node, torch.utils.data.DataLoader):
                node.set_epoch(epoch)
            todo += [getattr(node, a, None) for a in ("batch_sampler", "sampler", "base_dataloader")]


def _callback(trainer, cls: type) -> Any:
    for cb in trainer.callback_handler.callbacks:
        if isinstance(cb, cls):
            return cb
    return None


# --------------------------------------------------------------------------- pipeline entry points
def clear_honoured_stop(output_dir: str | Path) -> None:
    """Forget a stop request the previous run already obeyed (``STOP`` not newer than ``preempted.json``),
    and the ``preempted.json`` itself. A ``STOP`` written after it — e.g. by the SLURM script when the
    time-limit signal came during start-up — is a new request and stays."""
    out = Path(output_dir)
    stop, preempted = out / STOP_FILE_NAME, out / PREEMPTED_FILE_NAME
    if stop.exists() and preempted.exists() and stop.stat().st_mtime <= preempted.stat().st_mtime:
        stop.unlink(missing_ok=True)
    preempted.unlink(missing_ok=True)


def prepare_resume(trainer, resume: str | bool | None = "auto") -> str | None:
    """Install the marker + preemption callbacks on ``trainer`` and return the checkpoint to resume from.

    Call on every rank before ``trainer.train(resume_from_checkpoint=...)``. Incomplete checkpoints are
    reported and quarantined by rank 0; an obeyed ``STOP`` and the previous ``preempted.json`` are removed.
    """
    args = trainer.args
    if os.environ.get(TRACE_ENV):
        from .trained_ids import record_trained_ids

        record_trained_ids(trainer, os.environ[TRACE_ENV])
    if args.save_only_model:
        logger.warning("train.save_only_model=true: checkpoints lack optimizer/scheduler/RNG; resume will not be exact")
    for cls in (CheckpointMarkerCallback, PreemptionCallback, SamplerEpochCallback):
        if _callback(trainer, cls) is None:
            trainer.add_callback(cls())
    from .parallel import ParallelismLogCallback

    if _callback(trainer, ParallelismLogCallback) is None:
        trainer.add_callback(ParallelismLogCallback(trainer))
    checkpoint, scan = resolve_resume(resume, args.output_dir)
    _barrier()  # every rank has scanned before rank 0 renames anything
    if _rank() == 0:
        for path, why in scan.incomplete:
            moved = quarantine(path)
            logger.warning("ignored incomplete checkpoint %s (%s); moved to %s", path, why, moved)
        clear_honoured_stop(args.output_dir)
        if checkpoint:
            marker = Path(checkpoint) / MARKER_NAME
            saved_ws = json.loads(marker.read_text()).get("world_size") if marker.is_file() else None
            if saved_ws and saved_ws != _world_size():
                logger.warning(
                    "%s was written by %d processes, resuming on %d: the data position (batches to skip) is "
                    "only exact with the same world size and per-device batch", checkpoint, saved_ws, _world_size()
                )
            logger.info("resuming from %s", checkpoint)
        elif resume not in (None, False) and str(resume).lower() not in _NO_RESUME:
            logger.info("no complete checkpoint in %s: starting fresh", args.output_dir)
    _barrier()
    return checkpoint


def was_preempted(trainer) -> bool:
    cb = _callback(trainer, PreemptionCallback)
    return cb is not None and cb.preempted_at is not None


def exit_if_preempted(trainer) -> None:
    """After ``trainer.train()``: if a preemption stopped training, record it and exit with
    :data:`PREEMPTED_EXIT_CODE` (skipping the final save and evaluation, which the resumed run will do)."""
    cb = _callback(trainer, PreemptionCallback)
    if cb is None or cb.preempted_at is None:
        return
    out = Path(trainer.args.output_dir)
    if _rank() == 0:
        checkpoint = out / f"checkpoint-{cb.preempted_at}"
        _atomic_write_json(
            out / PREEMPTED_FILE_NAME,
            {"step": cb.preempted_at, "checkpoint": str(checkpoint), "reason": cb.requested, "time": time.time()},
        )
        print(f"\npreempted ({cb.requested}) at step {cb.preempted_at}; resume from {checkpoint} (resume_from_checkpoint: auto)")
    sys.stdout.flush()
    sys.stderr.flush()
    release_trainer(trainer)  # the SystemExit's traceback keeps the trainer reachable: free its DDP module now
    shutdown_distributed(wait_for_peers=True)
    sys.exit(PREEMPTED_EXIT_CODE)


def train_resumable(trainer, resume: str | bool | None = "auto"):
    """``trainer.train`` with resolution, completion markers and preemption handling: the one call the
    SFT and GSPO pipelines make. Returns the ``TrainOutput``; exits the process when preempted."""
    checkpoint = prepare_resume(trainer, resume)
    output = trainer.train(resume_from_checkpoint=checkpoint)
    exit_if_preempted(trainer)
    return output

