"""mmfinereason: train Qwen3-VL to reason over images — SFT on long chain-of-thought traces, then GSPO.

The public API (see README): recipes (`load_recipe`), data (`load_examples`, `MultimodalCollator`), rewards
(`accuracy_reward`, `format_reward`, `is_correct`, `extract_answer`), trainers (`SFTTrainer`, `GSPOTrainer`) and
the recipe pipelines (`build_sft`, `run_sft`, `build_gspo`, `run_gspo`). Heavy modules load on first use, so `import mmfinereason` is
cheap and the CLI starts fast.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "load_recipe": "mmfinereason.recipe",
    "Recipe": "mmfinereason.recipe",
    "RecipeError": "mmfinereason.recipe",
    "load_examples": "mmfinereason.data",
    "MultimodalCollator": "mmfinereason.data",
    "SFTTrainer": "mmfinereason.trainers.sft",
    "SFTConfig": "mmfinereason.recipe.train_args",
    "GSPOTrainer": "mmfinereason.trainers.gspo",
    "GSPOConfig": "mmfinereason.recipe.train_args",
    "build_sft": "mmfinereason.pipelines.sft",
    "run_sft": "mmfinereason.pipelines.sft",
    "build_gspo": "mmfinereason.pipelines.gspo",
    "run_gspo": "mmfinereason.pipelines.gspo",
    "run_demo": "mmfinereason.pipelines.demo",
    "evaluate_accuracy": "mmfinereason.evaluation.accuracy",
    "evaluate_benchmarks": "mmfinereason.evaluation.accuracy",
    "accuracy_reward": "mmfinereason.rewards",
    "format_reward": "mmfinereason.rewards",
    "is_correct": "mmfinereason.rewards",
    "extract_answer": "mmfinereason.rewards",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'mmfinereason' has no attribute {name!r}")
