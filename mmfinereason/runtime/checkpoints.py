"""Checkpoints that are known complete: a marker written after every rank finished its save, and resolution of
``resume_from_checkpoint: auto`` to the newest complete one.

Why: the transformers ``Trainer`` writes ``checkpoint-N`` in place (no temp dir, no marker, no barrier at the
end), so a kill during a save leaves a directory that *looks* like a checkpoint and ``get_last_checkpoint``
happily resumes from it. The protocol here is Megatron's tracker file / torchtitan's ``.metadata``:

* **Completion marker.** After every save all ranks meet at a barrier; then rank 0 writes
  ``checkpoint_complete.json`` (a manifest of every file and its size, the step, the world size) through a
  temp file + ``os.replace``. A checkpoint counts only if its marker exists and every listed file is still
  there with its size — which also catches a rotation (``save_total_limit``) killed half-way.
* **Resolution.** ``auto`` picks the newest complete checkpoint in ``output_dir`` (fresh start when there is
  none); incomplete ones are reported and renamed to ``incomplete-checkpoint-N-<time>`` so neither resolution
  nor rotation ever sees them again.

Shared-filesystem assumption: every rank sees the same ``output_dir`` (true on every cluster that runs
multi-node ``accelerate launch`` with the HF Trainer; its checkpoints assume it too).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from mmfinereason.errors import UserError

logger = logging.getLogger(__name__)

MARKER_NAME = "checkpoint_complete.json"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
_NO_RESUME = {"", "none", "no", "false", "never"}


# --------------------------------------------------------------------------- distributed helpers
def dist_ready() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def rank() -> int:
    return torch.distributed.get_rank() if dist_ready() else 0


def num_processes() -> int:
    return torch.distributed.get_world_size() if dist_ready() else 1


def barrier() -> None:
    if dist_ready():
        torch.distributed.barrier()


def any_rank(flag: bool, device: Any) -> bool:
    """True on every rank when ``flag`` is true on at least one (a MAX all-reduce of one number)."""
    if not dist_ready():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return bool(t.item() > 0)


# --------------------------------------------------------------------------- markers
def checkpoint_step(path: str | Path) -> int | None:
    """The step of a ``checkpoint-N`` directory name, None for anything else."""
    m = _CHECKPOINT_RE.match(Path(path).name)
    return int(m.group(1)) if m else None


def atomic_write_json(path: Path, data: dict) -> None:
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
    atomic_write_json(
        marker,
        {
            "step": checkpoint_step(root) if step is None else step,
            "world_size": world_size or num_processes(),
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
            raise UserError(f"resume_from_checkpoint: {path} is incomplete ({why}); use 'auto' or another checkpoint")
        logger.warning("resuming from %s, which has no completion marker (written by another tool?)", path)
    return str(path), scan


class CheckpointMarkerCallback(TrainerCallback):
    """Writes the completion marker once every rank has finished its part of a save.

    ``on_save`` runs right after ``Trainer._save_checkpoint`` (weights, optimizer, scheduler, RNG, state, and
    rotation) on every rank; the barrier makes sure ZeRO partitions and per-rank RNG files are on disk too.
    """

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        barrier()
        if rank() == 0 and folder.is_dir():
            write_marker(folder, state.global_step, num_processes())
            logger.info("checkpoint %s complete", folder)
        barrier()
