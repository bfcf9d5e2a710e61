"""Load the backbone and its processor; apply freezing, LoRA and the attention implementation.

Qwen3-VL has three parts: the vision tower (``model.visual.blocks`` + patch embedding), the patch merger(s)
(``model.visual.merger`` and the deepstack mergers) and the language model (``model.language_model`` +
``lm_head``). The paper fine-tunes the language model with the tower and merger frozen; the flags here choose
any combination.
"""

from __future__ import annotations

import logging

import torch

from .config import ModelConfig
from .import_utils import require

logger = logging.getLogger(__name__)

TINY = "tiny"


def resolve_name(name_or_path: str) -> str:
    """``tiny`` -> the embedded model's directory (built offline on first use); anything else unchanged."""
    if name_or_path == TINY:
        from .toy import tiny_model_dir

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


def model_parts(model) -> dict[str, list[torch.nn.Parameter]]:
    """Parameters grouped as ``vision_tower``, ``merger`` and ``language_model``."""
    parts: dict[str, list[torch.nn.Parameter]] = {"vision_tower": [], "merger": [], "language_model": []}
    for name, param in model.named_parameters():
        parts[part_of(name)].append(param)
    return parts


def part_of(name: str) -> str:
    if ".visual." in f".{name}":
        return "merger" if "merger" in name else "vision_tower"
    return "language_model"


def apply_freezing(model, cfg: ModelConfig) -> None:
    frozen = {"vision_tower": cfg.freeze_vision_tower, "merger": cfg.freeze_merger, "language_model": cfg.freeze_language_model}
    for part, params in model_parts(model).items():
        for p in params:
            p.requires_grad_(not frozen[part])
    # Under ZeRO-3 parameters load sharded and report 0 elements: count their full size.
    trainable = sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters() if p.requires_grad)
    total = sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters())
    if trainable == 0 and not cfg.lora.enabled:
        raise ValueError("every part of the model is frozen: unfreeze one of vision tower, merger, language model")
    logger.info("trainable parameters: %s / %s (%.1f%%)", f"{trainable:,}", f"{total:,}", 100 * trainable / total)


def apply_lora(model, cfg: ModelConfig):
    from peft import LoraConfig, get_peft_model

    # Adapt only modules in parts that are meant to learn; a frozen vision tower stays untouched.
    frozen_parts = {p for p, f in (("vision_tower", cfg.freeze_vision_tower), ("merger", cfg.freeze_merger)) if f}
    targets = [
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
        and name.split(".")[-1] in cfg.lora.target_modules
        and part_of(name + ".weight") not in frozen_parts
    ]
    if not targets:
        raise ValueError(f"model.lora.target_modules {cfg.lora.target_modules} matched no linear layer")
    lora = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout, target_modules=targets)
    return get_peft_model(model, lora)
