"""A run's log history on disk: written live as ``RUN_DIR/log_history.jsonl``, read back for the curves.

Why a file of our own next to ``trainer_state.json``: the Trainer writes its log history only into checkpoints
(``checkpoint-N/trainer_state.json``), so a run saved with ``save_strategy: "no"`` — the demo — leaves none, a
crashed run loses everything after its last checkpoint, and nothing can be plotted while the run is going.
:class:`~mmfinereason.monitoring.callbacks.LogHistoryCallback` appends every entry the trainer logs (the full dict, the same one the trackers
get) the moment it is logged, one JSON object per line.

A resumed run starts again from its checkpoint's step, so the entries the interrupted run logged after that
step are stale (they were trained again): each ``train_begin`` marker line tells the reader to drop them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable

LOG_HISTORY_FILE = "log_history.jsonl"
TRAIN_BEGIN = "train_begin"


def _jsonable(value: Any) -> Any:
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None  # JSON has no NaN / inf
    if hasattr(value, "item"):  # 0-d tensors / numpy scalars
        try:
            return _jsonable(value.item())
        except (TypeError, ValueError):
            pass
    return str(value)


def append_log_entry(run_dir: str | Path, entry: dict[str, Any]) -> None:
    """Append one entry (a flat dict with a ``step``) to ``RUN_DIR/log_history.jsonl``."""
    path = Path(run_dir) / LOG_HISTORY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({k: _jsonable(v) for k, v in entry.items()}, ensure_ascii=False)
    with path.open("a", encoding="utf-8") as f:
        f.write(line + "\n")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a kill: skip it
                continue
            if not isinstance(entry, dict):
                continue
            if entry.get("event") == TRAIN_BEGIN:
                # a (re)start at this step: what an interrupted run logged after it was trained again
                start = entry.get("step") or 0
                entries = [e for e in entries if (e.get("step") or 0) <= start]
                continue
            entries.append(entry)
    return entries


def _checkpoint_step(path: Path) -> int:
    try:
        return int(path.name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return -1


def trainer_state_files(run_dir: str | Path) -> list[Path]:
    """``RUN_DIR/trainer_state.json`` and ``RUN_DIR/checkpoint-N/trainer_state.json``, newest checkpoint last."""
    run_dir = Path(run_dir)
    found = sorted(run_dir.glob("checkpoint-*/trainer_state.json"), key=lambda p: _checkpoint_step(p.parent))
    if (run_dir / "trainer_state.json").is_file():
        found.append(run_dir / "trainer_state.json")
    return found


def _dedupe(entries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per (step, keys): the same measurement written twice (e.g. a resumed run's accuracy before
    training) keeps its last value; order by step, stable."""
    last: dict[tuple, dict[str, Any]] = {}
    for e in entries:
        last[(e.get("step"), frozenset(k for k in e if k not in ("time", "epoch")))] = e
    return sorted(last.values(), key=lambda e: (e.get("step") is None, e.get("step") or 0))


def read_log_history(run_dir: str | Path) -> list[dict[str, Any]]:
    """The run's logged entries in step order, each a flat dict with a ``step``.

    From ``RUN_DIR/log_history.jsonl`` when the run wrote one (live, complete up to the last logged step), else
    from the ``log_history`` of the newest ``trainer_state.json`` (the run dir's own, or its newest checkpoint's).
    Raises ``FileNotFoundError`` naming what it looked for when there is neither.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir} is not a directory (give the run's train.output_dir)")
    jsonl = run_dir / LOG_HISTORY_FILE
    if jsonl.is_file():
        entries = _read_jsonl(jsonl)
        if entries:
            return _dedupe(entries)
    states = trainer_state_files(run_dir)
    if states:
        # the newest by its own global_step (a resumed run dir may hold both)
        best = max(states, key=lambda p: json.loads(p.read_text()).get("global_step", -1))
        return _dedupe(json.loads(best.read_text()).get("log_history", []))
    raise FileNotFoundError(
        f"no log history in {run_dir}: neither {LOG_HISTORY_FILE} nor a trainer_state.json "
        "(in the run dir or a checkpoint-N folder)"
    )


def stage_of(run_dir: str | Path, history: list[dict[str, Any]] | None = None) -> str:
    """'sft' or 'gspo': from the saved ``recipe.yaml`` (the run dir's or a checkpoint's), else from the keys logged."""
    import yaml

    run_dir = Path(run_dir)
    candidates = [run_dir / "recipe.yaml"] + [p.parent / "recipe.yaml" for p in reversed(trainer_state_files(run_dir))]
    for path in candidates:
        if path.is_file():
            try:
                stage = (yaml.safe_load(path.read_text()) or {}).get("stage")
            except yaml.YAMLError:
                stage = None
            if stage in ("sft", "gspo"):
                return stage
    history = read_log_history(run_dir) if history is None else history
    return "gspo" if any("reward" in e for e in history) else "sft"
