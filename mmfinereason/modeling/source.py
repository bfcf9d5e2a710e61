"""Where a model comes from: a local folder or a Hugging Face hub id, checked before transformers sees it.

Why: given a folder that does not exist, ``from_pretrained`` treats the text as a hub id and fails 12 frames deep
with "Repo id must use alphanumeric chars…", which never says the folder is missing; offline, an uncached hub id
fails with a network error. Both are mistakes the user fixes in one step, so they get one message saying which.
"""

from __future__ import annotations

import os
from pathlib import Path

from mmfinereason.errors import UserError

_LOCAL_PREFIXES = ("/", "./", "../", "~", ".\\", "..\\")
_OFFLINE_VALUES = {"1", "true", "yes", "on"}
_WHAT_WORKS = (
    "model.name_or_path takes a folder with config.json, a Hugging Face hub id (e.g. Qwen/Qwen3-VL-8B-Instruct) "
    "or `tiny`"
)


class ModelSourceError(UserError):
    """The model to load is neither a folder nor a hub id that can be reached (or is cached, offline)."""


def check_model_source(name_or_path: str) -> None:
    """Raise :class:`ModelSourceError` for a missing folder, or an uncached hub id with ``HF_HUB_OFFLINE`` set."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.is_dir():
        return
    if path.exists():
        raise ModelSourceError(f"model {text!r} is a file, not a folder; {_WHAT_WORKS}")
    if text.startswith(_LOCAL_PREFIXES) or text.count("/") > 1 or not text.strip():
        raise ModelSourceError(f"model folder {text!r} does not exist ({path.resolve()}); {_WHAT_WORKS}")
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _OFFLINE_VALUES:
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(text, "config.json"), str):
            raise ModelSourceError(
                f"model {text!r} is not a local folder and not in the Hugging Face cache (HF_HUB_OFFLINE is set);\n"
                f"download it on a machine with internet (`hf download {text}`), or point model.name_or_path at a folder"
            )
