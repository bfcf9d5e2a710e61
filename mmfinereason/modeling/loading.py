"""Load the backbone and its processor: ``tiny`` or a hub id or a folder, dtype, attention kernel, then freezing
and LoRA (:mod:`.parts`). ``sdpa_varlen`` is registered here, when a recipe asks for it (:mod:`.attention`)."""

from __future__ import annotations

import logging

import torch

from mmfinereason.modeling.attention import VARLEN_SDPA, register_varlen_sdpa
from mmfinereason.modeling.parts import apply_freezing, apply_lora
from mmfinereason.recipe.sections import ModelConfig
from mmfinereason.import_utils import require

logger = logging.getLogger(__name__)

TINY = "tiny"


def resolve_name(name_or_path: str) -> str:
    """``tiny`` -> the embedded model's directory (built offline on first use); anything else unchanged."""
    if name_or_path == TINY:
        from mmfinereason.toy import tiny_model_dir

        return tiny_model_dir()
    return name_or_path


def resolve_dtype(dtype: str) -> torch.dtype:
    if dtype == "auto":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    try:
        return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[dtype]
    except KeyError:
        raise ValueError(f"model.dtype must be auto, bfloat16, float16 or float32, got {dtype!r}") from None


def load_processor(name_or_path: str):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(resolve_name(name_or_path))


def load_model(cfg: ModelConfig):
    """The model, with freezing and (optionally) LoRA applied, ready for a trainer."""
    from transformers import AutoModelForImageTextToText

    if cfg.attn_implementation == "flash_attention_2":
        require("flash_attn", extra="flash", feature="model.attn_implementation=flash_attention_2")
    if cfg.attn_implementation == VARLEN_SDPA:
        register_varlen_sdpa()
    path = resolve_name(cfg.name_or_path)
    try:
        model = AutoModelForImageTextToText.from_pretrained(
            path, dtype=resolve_dtype(cfg.dtype), attn_implementation=cfg.attn_implementation
        )
    except OSError as e:
        raise OSError(
            f"could not load model '{cfg.name_or_path}': {e}\nOn a machine without internet, download it first "
            f"(`hf download {cfg.name_or_path}`) or set model.name_or_path to a local directory; "
            "`model.name_or_path: tiny` uses the embedded offline model."
        ) from e
    # A KV cache during training silently breaks packed attention masks (see data/packing.py).
    model.config.use_cache = False
    if hasattr(model.config, "text_config"):
        model.config.text_config.use_cache = False
    apply_freezing(model, cfg)
    if cfg.lora.enabled:
        model = apply_lora(model, cfg)
    return model
