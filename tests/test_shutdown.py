"""The process-exit path frees DDP modules before the process group goes (see :mod:`mmfinereason.runtime.shutdown`).

A DDP module that outlives ``destroy_process_group`` into interpreter finalization aborts the rank at exit,
intermittently; these tests check, deterministically, that nothing of the kind is left alive.
"""

from __future__ import annotations

import gc
import weakref
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from mmfinereason.runtime.shutdown import release_trainer, shutdown_distributed


@pytest.fixture
def one_rank_group(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    if dist.is_initialized():
        dist.destroy_process_group()


def _trained_ddp() -> DistributedDataParallel:
    model = DistributedDataParallel(torch.nn.Linear(4, 4))
    model(torch.randn(2, 4)).sum().backward()
    return model


def test_shutdown_frees_a_ddp_module_held_in_a_cycle_then_destroys_the_group(one_rank_group):
    gc.disable()  # the cyclic collector must not run by chance before shutdown does
    try:
        holder = {"model": _trained_ddp()}
        holder["self"] = holder  # like a trainer whose callbacks point back at it
        alive = weakref.ref(holder["model"])
        del holder
        assert alive() is not None  # only a collection frees a cycle
        shutdown_distributed(wait_for_peers=True)
    finally:
        gc.enable()
    assert alive() is None
    assert not dist.is_initialized()
    shutdown_distributed(wait_for_peers=True)  # a second call (no group any more) is a no-op


def test_release_trainer_frees_the_wrapper_of_a_trainer_that_stays_reachable(one_rank_group):
    model = _trained_ddp()
    trainer = SimpleNamespace(model=model.module, model_wrapped=model, accelerator=None, deepspeed=None)
    alive = weakref.ref(model)
    del model
    release_trainer(trainer)  # e.g. the preemption exit, whose traceback keeps the trainer reachable
    gc.collect()
    assert alive() is None
    assert trainer.model_wrapped is trainer.model
