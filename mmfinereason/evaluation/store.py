"""An append-only JSON-lines file that a killed job can resume from: the bookkeeping of ``eval`` and ``select``.

Why by hand: ``datasets`` writes whole files, not records as they are made, and a job killed after six hours
of generation must keep its six hours. Each batch of records is appended and flushed (and fsynced) before
the next batch starts, so at most one batch is lost. A kill in the middle of a write leaves a last line without
its newline: :meth:`JsonlStore.load` ignores it and cuts it off the file, so the row is simply redone and the
next append does not glue a new record onto half an old one.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Iterable

from mmfinereason.errors import UserError

logger = logging.getLogger(__name__)


class JsonlStore:
    """Records keyed by ``key`` (default ``"id"``), appended in batches, read back on restart."""

    def __init__(self, path: str | os.PathLike, key: str = "id") -> None:
        self.path = Path(path)
        self.key = key
        self.dropped_lines = 0  # unreadable lines found by the last load (a cut-off tail or damage)

    def load(self, repair: bool = True) -> dict[str, dict[str, Any]]:
        """The records already written, by key (the last one wins); repairs a cut-off last line, or with
        ``repair=False`` only skips it (reading another run's file, which may still be writing)."""
        records: dict[str, dict[str, Any]] = {}
        self.dropped_lines = 0
        if not self.path.exists():
            return records
        data = self.path.read_bytes()
        complete = data.rfind(b"\n") + 1  # everything after the last newline is a write that never finished
        if complete < len(data):
            self.dropped_lines += 1
            logger.warning("%s: ignoring an unfinished last line (the previous run was cut off mid-write)", self.path)
            if repair:
                with open(self.path, "r+b") as f:
                    f.truncate(complete)
        for number, line in enumerate(data[:complete].splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                records[str(record[self.key])] = record
            except (ValueError, KeyError, TypeError):
                self.dropped_lines += 1
                logger.warning("%s:%d: unreadable record, it will be redone", self.path, number)
        return records

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        """Write ``records`` at the end of the file and make them durable before returning."""
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        if not text:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    def reset(self) -> None:
        """Start over (``--overwrite``)."""
        if self.path.exists():
            self.path.unlink()


def unique_ids(ids: Iterable[str]) -> tuple[list[str], int]:
    """Ids made unique for resume bookkeeping: a repeated ``x`` becomes ``x#2``, ``x#3``; returns (ids, repeats).

    A benchmark with repeated ids would otherwise have its second row skipped as "already done".
    """
    seen: dict[str, int] = {}
    out, repeats = [], 0
    for i in ids:
        seen[i] = seen.get(i, 0) + 1
        if seen[i] > 1:
            repeats += 1
            out.append(f"{i}#{seen[i]}")
        else:
            out.append(i)
    return out, repeats


def check_run_settings(path: str | os.PathLike, settings: dict[str, Any], overwrite: bool = False) -> None:
    """Refuse to resume into an output folder made with other settings (model, generation, data).

    Mixing predictions of two models in one results file would be a silent wrong answer; ``overwrite``
    starts the folder over instead.
    """
    path = Path(path)
    current = json.loads(json.dumps(settings, default=str))
    if path.exists() and not overwrite:
        try:
            previous = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            previous = e
        if not isinstance(previous, dict):
            raise UserError(
                f"{path} is not a readable settings file ({previous}), so the results beside it cannot be matched "
                "to a model and settings. Use another --output folder, or --overwrite to start over."
            )
        changed = sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))
        if changed:
            details = "; ".join(f"{k}: {previous.get(k)!r} -> {current.get(k)!r}" for k in changed)
            raise UserError(
                f"{path.parent} holds results made with other settings ({details}). Use another --output "
                "folder, or --overwrite to start over."
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")  # a kill mid-write leaves the old file whole
    tmp.write_text(json.dumps(current, indent=2) + "\n")
    os.replace(tmp, path)
