"""Two-process CPU DDP (gloo) under ``accelerate launch`` of the tiny SFT recipe: the real multi-process path."""

from __future__ import annotations

import json

import pytest
from distributed_utils import REPO, run, tiny_sft_overrides, trace_records

from mmfinereason.runtime.checkpoints import MARKER_NAME, verify_checkpoint
from mmfinereason.runtime.trained_ids import read_trained_ids

pytestmark = pytest.mark.slow


def test_tiny_sft_trains_under_accelerate_launch_with_two_processes(tmp_path):
    out, trace = tmp_path / "run", tmp_path / "trace"
    rc = run("sft", "recipes/tiny/sft.yaml", tiny_sft_overrides(out, epochs=1), trace, tmp_path / "log.txt")
    log = (tmp_path / "log.txt").read_text()
    assert rc == 0, log[-3000:]
    assert (REPO / "recipes/tiny/sft.yaml").is_file()

    # Both ranks trained, on disjoint shards of each global batch: 64 rows / (2 ranks x 4) = 8 steps.
    ids = [read_trained_ids(trace / f"trained_ids.rank{r}.jsonl") for r in (0, 1)]
    assert [len(x) for x in ids] == [8, 8]
    seen0 = {i for _, batch in ids[0] for i in batch}
    seen1 = {i for _, batch in ids[1] for i in batch}
    assert not seen0 & seen1 and len(seen0 | seen1) == 64
    assert {r["pid"] for r in trace_records(trace, 0)} != {r["pid"] for r in trace_records(trace, 1)}

    # A real DDP checkpoint: one RNG state per rank, world size 2 in the completion marker, final model saved.
    ckpt = out / "checkpoint-8"
    assert verify_checkpoint(ckpt) is None
    assert (ckpt / "rng_state_0.pth").is_file() and (ckpt / "rng_state_1.pth").is_file()
    assert json.loads((ckpt / MARKER_NAME).read_text())["world_size"] == 2
    assert (out / "model.safetensors").is_file() and (out / "recipe.yaml").is_file()
