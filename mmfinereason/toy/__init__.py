"""The embedded default: a tiny offline Qwen3-VL and a bundled verifiable visual task.

Everything in the framework runs, is tested and is demonstrated on CPU with these two; real runs swap them
for a Hugging Face checkpoint and MMFineReason data by changing the recipe only.
"""

from mmfinereason.toy.model import build_tiny_model, tiny_model_dir
from mmfinereason.toy.task import SOURCES, make_dataset, make_example

__all__ = ["SOURCES", "build_tiny_model", "make_dataset", "make_example", "tiny_model_dir"]
