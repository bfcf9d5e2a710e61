"""Which examples changed the weights, step by step: the evidence that a resumed run continued exactly.

Set ``MMFINEREASON_TRACE_IDS=DIR`` (any run, any launcher) and every rank appends one JSON line per trained
micro-batch to ``DIR/trained_ids.rank{R}.jsonl``: ``{"session", "pid", "step", "ids"}``. The resume tests
compare these sequences between an interrupted-and-resumed run and an uninterrupted one; on a cluster the same
log answers "did the restart repeat or skip data?" (EasyR1#57) without trusting anyone's word.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

TRACE_KEY = "_trained_ids"


def record_trained_ids(trainer, directory: str | Path) -> None:
    """Log, per rank, the example ids of every micro-batch that reaches ``training_step``.

    This is how resume is *proved* (tests, or ``MMFINEREASON_TRACE_IDS=dir`` on a cluster): batches the
    resumed run skips are never collated, and batches prefetched but not trained before a kill are never
    logged, so the log is exactly what changed the weights. The collator adds the ids under a private key
    that ``training_step`` removes before the model sees the batch. Works for map-style and streaming data.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"trained_ids.rank{trainer.args.process_index}.jsonl"
    session = f"{os.getpid()}-{time.time()}"
    collate, step_fn = trainer.data_collator, trainer.training_step

    def traced_collate(examples):
        batch = collate(examples)
        if isinstance(batch, dict):  # a model batch (SFT): carry the ids to training_step
            batch[TRACE_KEY] = [str(e.get("id", "")) for e in examples]
        return batch

    def traced_step(model, inputs, *args, **kwargs):
        if isinstance(inputs, dict):
            ids = inputs.pop(TRACE_KEY, None)
        else:  # GRPO/GSPO: training_step receives the raw prompt rows and generates from them
            ids = [str(row.get("id", "")) for row in inputs]
        record = {"session": session, "pid": os.getpid(), "step": trainer.state.global_step, "ids": ids}
        with open(path, "a") as f:  # one write() per line: survives SIGKILL of this process
            f.write(json.dumps(record) + "\n")
        return step_fn(model, inputs, *args, **kwargs)

    trainer.data_collator = traced_collate
    trainer.training_step = traced_step


def read_trained_ids(path: str | Path) -> list[tuple[int, list[str]]]:
    """The effective ``(step, ids)`` sequence of one rank's log: when a new session (a resumed run) starts at
    step ``s``, what earlier sessions trained at steps >= ``s`` was lost with the kill and is dropped."""
    out: list[tuple[int, list[str]]] = []
    session = None
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        if rec["session"] != session:
            session = rec["session"]
            out = [(s, ids) for s, ids in out if s < rec["step"]]
        out.append((rec["step"], rec["ids"]))
    return out
