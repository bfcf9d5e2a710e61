"""What TRL's colocated vLLM engine is started with, beyond TRL's own arguments.

TRL 1.16 builds ``vllm.LLM(model=model.name_or_path, ...)`` itself (``trl/generation/vllm_generation.py``) and
passes neither ``limit_mm_per_prompt`` nor ``dtype``. Two things follow for a VLM trained from a recipe:

* **images per prompt**: vLLM accepts only a fixed number of images per prompt; MMFineReason's RL split has one,
  other data (MMMU-style rows) several. The limit is counted from the data (:func:`mmfinereason.data.prompt_images.images_per_prompt`), so a
  multi-image prompt does not fail mid-run, and videos (never in the data) get no memory reserved;
* **dtype**: the trainer keeps fp32 master weights (``modeling.loading.parameter_dtype``), so a folder saved
  under DDP / FSDP2 has an fp32 ``config.json``; vLLM should still generate in the compute dtype.

:func:`colocated_llm_kwargs` wraps TRL's ``LLM`` symbol for the duration of the trainer's ``__init__`` only.
Server mode (``trl vllm-serve``) is started by the user, who passes the same limit there.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from typing import Any

from mmfinereason.data.prompt_images import images_per_prompt

logger = logging.getLogger(__name__)


def engine_kwargs(max_images: int, bf16: bool) -> dict[str, Any]:
    """Extra ``vllm.LLM`` keyword arguments: the data's images per prompt, no video, the compute dtype."""
    kwargs: dict[str, Any] = {"limit_mm_per_prompt": {"image": max(int(max_images), 1), "video": 0}}
    if bf16:
        kwargs["dtype"] = "bfloat16"
    return kwargs


@contextlib.contextmanager
def colocated_llm_kwargs(extra: dict[str, Any]):
    """Within the block, TRL's colocated ``LLM(...)`` also receives ``extra`` (TRL's own arguments win)."""
    from trl.generation import vllm_generation

    original = getattr(vllm_generation, "LLM", None)
    if original is None:  # vllm not importable: TRL fails with its own message when it needs the engine
        yield
        return

    @functools.wraps(original)
    def build(*args, **kwargs):
        return original(*args, **{**extra, **kwargs})

    vllm_generation.LLM = build
    try:
        yield
    finally:
        vllm_generation.LLM = original


def vllm_context(args, train_dataset):
    """The context the GSPO trainer's ``__init__`` runs in: the wrapped engine for colocate, nothing otherwise."""
    if not getattr(args, "use_vllm", False):
        return contextlib.nullcontext()
    n = images_per_prompt(train_dataset)
    if args.vllm_mode != "colocate":
        if n > 1:
            logger.warning(
                "RL prompts hold up to %d images: start `trl vllm-serve` with --limit-mm-per-prompt '{\"image\": %d}'",
                n, n,
            )
        return contextlib.nullcontext()
    extra = engine_kwargs(n, bool(getattr(args, "bf16", False)))
    logger.info("vLLM colocate: %s", extra)
    return colocated_llm_kwargs(extra)
