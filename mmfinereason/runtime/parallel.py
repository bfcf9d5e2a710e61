"""One log line that says which data-parallel strategy is *really* running (not what was asked for).

Why: a missing ``--config_file``, a DeepSpeed that failed to import or a stage silently downgraded all still
"train", just with 8x the memory. The line is read from the live objects at the start of training — the
DeepSpeed engine's own ``zero_optimization_stage()``, accelerate's FSDP plugin — and is what the ZeRO / FSDP
tests assert on, next to the partitioned checkpoint files.
"""

from __future__ import annotations

import logging

from transformers import TrainerCallback

logger = logging.getLogger(__name__)


def describe_parallelism(trainer) -> str:
    """E.g. ``"DEEPSPEED ZeRO-3 on 16 processes (backend nccl)"`` or ``"MULTI_GPU (DDP) on 8 processes"``."""
    acc = trainer.accelerator
    kind = str(acc.distributed_type).split(".")[-1]
    n = acc.num_processes
    backend = getattr(acc.state, "backend", None)
    detail = kind
    if kind == "DEEPSPEED":
        engine = trainer.model_wrapped
        stage = engine.zero_optimization_stage() if hasattr(engine, "zero_optimization_stage") else None
        if stage is None:
            stage = acc.state.deepspeed_plugin.zero_stage
        offload = ""
        cfg = acc.state.deepspeed_plugin.deepspeed_config.get("zero_optimization", {})
        if str(cfg.get("offload_optimizer", {}).get("device", "none")) != "none":
            offload = ", optimizer offloaded to CPU"
        detail = f"DEEPSPEED ZeRO-{stage}{offload}"
    elif kind == "FSDP":
        plugin = acc.state.fsdp_plugin
        detail = f"FSDP{getattr(plugin, 'fsdp_version', 1)} (reshard_after_forward={getattr(plugin, 'reshard_after_forward', None)})"
    elif kind in ("MULTI_GPU", "MULTI_CPU"):
        detail = f"{kind} (DDP)"
    return f"{detail} on {n} process{'es' if n != 1 else ''}" + (f" (backend {backend})" if backend else "")


class ParallelismLogCallback(TrainerCallback):
    """Logs :func:`describe_parallelism` once, on the main process, when training begins."""

    def __init__(self, trainer):
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        if self.trainer.accelerator.is_main_process:
            logger.info("parallelism: %s", describe_parallelism(self.trainer))
