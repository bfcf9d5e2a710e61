"""Reward functions by name, as a recipe's ``train.reward_funcs`` gives them: ``accuracy``, ``format`` or a dotted
import path to any function with TRL's reward signature (open-r1's plain-dict-plus-import-path style)."""

from __future__ import annotations

import importlib
from typing import Callable

from mmfinereason.errors import UserError

BUILTIN_REWARDS = {
    "accuracy": "mmfinereason.rewards:accuracy_reward",
    "format": "mmfinereason.rewards:format_reward",
}


def resolve_reward(name: str) -> Callable[..., list[float | None]]:
    """A reward function from ``accuracy`` / ``format`` or a dotted import path (``pkg.mod:fn`` or ``pkg.mod.fn``)."""
    target = BUILTIN_REWARDS.get(name, name)
    if ":" in target:
        module_name, _, attr = target.partition(":")
    elif "." in target:
        module_name, _, attr = target.rpartition(".")
    else:
        raise UserError(
            f"train.reward_funcs: unknown reward {name!r}; use one of {sorted(BUILTIN_REWARDS)} or a dotted import "
            "path such as my_package.rewards:my_reward"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise UserError(f"train.reward_funcs: cannot import module {module_name!r} for reward {name!r}: {e}") from e
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise UserError(f"train.reward_funcs: {module_name!r} has no callable {attr!r} (reward {name!r})")
    return fn
