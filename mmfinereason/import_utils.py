"""Optional dependencies, checked in one place and imported lazily.

flash-attn, vLLM, DeepSpeed, Liger kernels, wandb, trackio and tensorboard are extras: the framework runs without them
(tests and the demo on CPU), and asking for a feature that needs one fails early with the pip command to run.
"""

from __future__ import annotations

import importlib
import importlib.util
from functools import lru_cache

EXTRAS = {
    "flash_attn": "flash",
    "vllm": "vllm",
    "deepspeed": "deepspeed",
    "liger_kernel": "liger",
    "wandb": "wandb",
    "trackio": "trackio",
    "tensorboard": "tensorboard",
}


@lru_cache(maxsize=None)
def is_available(module: str) -> bool:
    """Whether ``module`` can be imported (without importing it)."""
    return importlib.util.find_spec(module) is not None


def require(module: str, extra: str | None = None, feature: str | None = None):
    """Import and return ``module``, or raise an ImportError that says which extra to install."""
    if not is_available(module):
        extra = extra or EXTRAS.get(module, module)
        what = f" for {feature}" if feature else ""
        raise ImportError(f"{module} is needed{what} but is not installed: pip install 'mmfinereason[{extra}]'")
    return importlib.import_module(module)
