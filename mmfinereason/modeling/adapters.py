"""LoRA runs that end as ordinary model folders: the adapter merged into its base on the final save, and adapter
folders (a LoRA run's ``checkpoint-N``) merged into their base when loaded.

Why: peft saves a LoRA run as an adapter folder (``adapter_config.json`` and the adapter weights, no
``config.json``). Everything that reads a stage's output expects a full model: the GSPO recipe's
``model.name_or_path``, ``mmfinereason eval``, vLLM (TRL starts it from a folder), a user's ``from_pretrained``.
transformers can open adapter folders itself, but only with a peft its adapter code supports (transformers 5.25:
peft >= 0.22; with the older peft the project allows, a GSPO run started from a LoRA SFT output trained every weight,
adapter and base alike, then crashed in its final save), and vLLM starts only from a full model (adapters it takes
beside a base it serves). So a LoRA stage writes the merged model at OUTPUT_DIR and the adapter alone under
OUTPUT_DIR/adapter (:func:`export_merged`), and :func:`load_model <mmfinereason.modeling.loading.load_model>` merges
an adapter folder into its base with peft's own ``merge_and_unload``, so transformers never sees one.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_SUBDIR = "adapter"  # OUTPUT_DIR/adapter: the LoRA weights alone, next to the merged model


def is_adapter_dir(path: str | Path) -> bool:
    """A folder with an adapter and no model of its own (``config.json``): a LoRA checkpoint."""
    folder = Path(path)
    return (folder / ADAPTER_CONFIG).is_file() and not (folder / "config.json").is_file()


def adapter_to_merge(path: str | Path) -> Path | None:
    """The adapter that loading ``path`` must merge, or None for a plain model folder (or a hub id).

    Either ``path`` itself (a LoRA checkpoint: :func:`is_adapter_dir`) or, in a LoRA stage's output folder whose
    final merge did not finish (killed mid-export: the complete ``adapter/`` is there, ``config.json`` is not),
    ``path/adapter``: the trained run is not lost, it loads merged like a checkpoint.
    """
    folder = Path(path)
    if is_adapter_dir(folder):
        return folder
    if not (folder / "config.json").exists() and is_adapter_dir(folder / ADAPTER_SUBDIR):
        return folder / ADAPTER_SUBDIR
    return None


def adapter_base(path: str | Path) -> str:
    """The model the adapter at ``path`` was trained on (``base_model_name_or_path`` of its config)."""
    config = json.loads((Path(path) / ADAPTER_CONFIG).read_text())
    base = config.get("base_model_name_or_path")
    if not base:
        from mmfinereason.errors import UserError

        raise UserError(f"{path}/{ADAPTER_CONFIG} names no base model (base_model_name_or_path); cannot load it")
    return str(base)


def is_peft_model(model) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def merge_adapter(base_model, adapter_dir: str | Path):
    """``base_model`` with the adapter at ``adapter_dir`` added into its weights; a plain transformers model.

    The merged model remembers ``adapter_dir`` as where it came from, so that a new adapter trained on top of it
    names that folder as its base, not the base underneath (loading it again merges both, in order).
    """
    from peft import PeftModel

    merged = PeftModel.from_pretrained(base_model, str(adapter_dir)).merge_and_unload()
    _set_origin(merged, adapter_dir)
    return merged


def _set_origin(model, path: str | Path) -> None:
    """Where ``model`` says it was loaded from: its config's, and the attribute peft reads for an adapter's base."""
    model.config._name_or_path = str(path)
    model.name_or_path = str(path)


def export_merged(output_dir: str | Path, load_base: Callable[[], object]) -> Path:
    """Write the full model at ``output_dir``: ``load_base()`` (the model the run started from, in the recipe's
    inference dtype) with the adapter that the stage saved in ``output_dir/adapter`` merged in.

    The adapter never sits at the top of ``output_dir``: a folder with ``adapter_config.json`` there is read by
    transformers as an adapter, even beside a ``config.json``. The merged files go through a temporary folder,
    ``config.json`` last, so that a kill midway leaves the complete adapter and no half model (such a folder loads
    as its adapter merged: :func:`adapter_to_merge`). A rerun into a finished folder first removes the old
    ``config.json``, so that old and new weight shards are never read as one model. The processor and recipe that
    the stage saves there stay as they are. Returns the adapter folder.
    """
    out = Path(output_dir)
    adapter = out / ADAPTER_SUBDIR
    merged = merge_adapter(load_base(), adapter)
    _set_origin(merged, out)
    staging = out / ".merged-tmp"
    shutil.rmtree(staging, ignore_errors=True)
    merged.save_pretrained(str(staging))
    (out / "config.json").unlink(missing_ok=True)  # from here to the commit the folder reads as an unfinished merge
    for item in sorted(staging.iterdir(), key=lambda p: p.name == "config.json"):  # config.json last: the commit
        item.replace(out / item.name)
    staging.rmdir()
    logger.info("LoRA: merged model saved to %s, the adapter alone to %s", out, adapter)
    return adapter
