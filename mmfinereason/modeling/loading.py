"""Load the backbone and its processor: ``tiny`` or a hub id or a folder, dtype, attention kernel, then freezing
and LoRA (:mod:`.parts`). ``sdpa_varlen`` is registered here, when a recipe asks for it (:mod:`.attention`)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from mmfinereason.errors import UserError
from mmfinereason.modeling.adapters import ADAPTER_CONFIG, adapter_base, adapter_to_merge, merge_adapter
from mmfinereason.modeling.attention import VARLEN_SDPA, register_varlen_sdpa
from mmfinereason.modeling.kv_cache import use_growing_kv_cache
from mmfinereason.modeling.parts import apply_freezing, apply_lora
from mmfinereason.modeling.source import ModelSourceError, check_model_source
from mmfinereason.recipe.sections import ModelConfig
from mmfinereason.import_utils import require

logger = logging.getLogger(__name__)

TINY = "tiny"


def resolve_name(name_or_path: str) -> str:
    """``tiny`` -> the embedded model's directory (built offline on first use); anything else unchanged."""
    if name_or_path == TINY:
        from mmfinereason.toy import tiny_model_dir

        return tiny_model_dir()
    check_model_source(name_or_path)  # a missing folder / an uncached hub id offline: one clear line
    return name_or_path


def resolve_dtype(dtype: str) -> torch.dtype:
    if dtype == "auto":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    try:
        return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[dtype]
    except KeyError:
        raise UserError(f"model.dtype must be auto, bfloat16, float16 or float32, got {dtype!r}") from None


def pixel_bounds(min_pixels: int, max_pixels: int) -> dict[str, int]:
    """The image processor's ``size`` for a pixel range: Qwen-VL reads ``shortest_edge`` / ``longest_edge`` as the
    minimum / maximum number of *pixels* (not edge lengths) an image is resized to, aspect ratio kept."""
    if not 0 < min_pixels <= max_pixels:
        raise UserError(
            f"need 0 < min_pixels <= max_pixels (data.min_pixels / data.max_pixels), got {min_pixels} / {max_pixels}"
        )
    return {"shortest_edge": int(min_pixels), "longest_edge": int(max_pixels)}


def set_pixel_bounds(processor, min_pixels: int, max_pixels: int):
    """Make ``[min_pixels, max_pixels]`` the processor's *own* image size, in memory and in what it saves.

    Why here and not only as a call argument: whatever loads a saved folder later (vLLM started by TRL from
    ``model.name_or_path``, ``mmfinereason eval``, a user's ``from_pretrained``) resizes with the saved
    ``size``. The real Qwen3-VL checkpoints ship 65,536 / 16,777,216; a recipe's narrower bounds must travel with
    every folder the trainer writes, or an image outside them gets two different image-token counts (trl#6401).
    """
    image_processor = getattr(processor, "image_processor", None)
    if image_processor is None:
        raise UserError(
            f"{type(processor).__name__} has no image processor; model.name_or_path must be a Qwen3-VL model"
        )
    image_processor.size = pixel_bounds(min_pixels, max_pixels)
    for key in ("min_pixels", "max_pixels"):  # older image processors also keep them as attributes
        if getattr(image_processor, key, None) is not None:
            setattr(image_processor, key, int(min_pixels if key == "min_pixels" else max_pixels))
    return processor


def load_processor(name_or_path: str, min_pixels: int | None = None, max_pixels: int | None = None):
    """The processor of ``name_or_path``; with ``min_pixels``/``max_pixels`` these become its saved image size.

    Both training pipelines load it this way with the recipe's bounds, so the processor the trainer saves into
    the output folder and every checkpoint reproduces how training resized images (:func:`set_pixel_bounds`).
    """
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(resolve_name(name_or_path))
    if min_pixels is not None or max_pixels is not None:
        size = getattr(getattr(processor, "image_processor", None), "size", None) or {}
        lo = min_pixels if min_pixels is not None else size.get("shortest_edge")
        hi = max_pixels if max_pixels is not None else size.get("longest_edge")
        set_pixel_bounds(processor, lo, hi)
    return processor


HALF_DTYPES = ("bfloat16", "float16")


def parameter_dtype(dtype: str, training: bool) -> torch.dtype:
    """The dtype the parameters are *loaded* in.

    For training, ``model.dtype: bfloat16`` (or ``float16``) means mixed precision: fp32 master weights, half
    compute through the trainer's autocast (``train.bf16``, on by default wherever the GPU supports it). Loading
    bf16 parameters instead would let AdamW under DDP or FSDP2 update bf16 weights directly, where most updates at
    lr 1e-5 / 1e-6 round away; DeepSpeed casts the module to bf16 itself and keeps its own fp32 copy, so fp32 here
    is right for every strategy (and is what ``mmfinereason plan`` assumes). For inference the dtype is as asked.
    """
    resolved = resolve_dtype(dtype)
    if training and resolved in (torch.bfloat16, torch.float16):  # also 'auto' on a bf16 GPU
        return torch.float32
    return resolved


def check_precision(cfg: ModelConfig, args) -> None:
    """Say how a half-precision recipe trains; refuse a combination that would silently compute in fp32 on a GPU."""
    if cfg.dtype not in HALF_DTYPES:
        return
    flag = "bf16" if cfg.dtype == "bfloat16" else "fp16"
    weights = f"a {cfg.dtype} frozen base with fp32 LoRA adapters" if cfg.lora.enabled else "fp32 master weights"
    if getattr(args, flag, False):
        logger.info("model.dtype %s: %s, %s autocast (train.%s)", cfg.dtype, weights, cfg.dtype, flag)
    elif torch.cuda.is_available() and not getattr(args, "use_cpu", False):
        raise UserError(
            f"model.dtype: {cfg.dtype} trains {weights} with {cfg.dtype} compute, which needs train.{flag}: "
            f"true; with train.{flag} off every step would run in fp32. Set train.{flag}=true, or model.dtype=float32 "
            "for fp32 compute on purpose"
        )
    else:
        logger.warning("model.dtype %s on CPU: %s, no %s autocast here", cfg.dtype,
                       weights if cfg.lora.enabled else "fp32 weights and fp32 compute", flag)


def load_model(cfg: ModelConfig, training: bool = False):
    """The model, with freezing and (optionally) LoRA applied, ready for a trainer.

    ``training=True`` (the pipelines) loads half-precision recipes as fp32 master weights
    (:func:`parameter_dtype`); inference loads the dtype as asked. With LoRA the frozen base stays in the recipe's
    dtype (nothing updates it, so nothing rounds away: 2 bytes a parameter, as ``mmfinereason plan`` counts) and
    the adapters train in fp32 (peft's ``autocast_adapter_dtype``). An adapter folder (a LoRA run's
    ``checkpoint-N``) is merged into its base first (:mod:`.adapters`).
    """
    model = load_pretrained(cfg, training and not cfg.lora.enabled)
    apply_freezing(model, cfg)
    if cfg.lora.enabled:
        model = apply_lora(model, cfg)
    return model


def load_pretrained(cfg: ModelConfig, training: bool = False):
    """``cfg.name_or_path`` as a plain transformers model: no freezing, no new adapter, no KV cache in training
    forwards (``generate`` keeps one, :mod:`.kv_cache`'s on CPU)."""
    if cfg.attn_implementation == "flash_attention_2":
        require("flash_attn", extra="flash", feature="model.attn_implementation=flash_attention_2")
    if cfg.attn_implementation == VARLEN_SDPA:
        register_varlen_sdpa()
    model = _from_pretrained(resolve_name(cfg.name_or_path), cfg, parameter_dtype(cfg.dtype, training))
    use_growing_kv_cache(model)  # generate on CPU without re-copying the cache every token (.kv_cache)
    # A KV cache during training silently breaks packed attention masks (see data/packing.py).
    model.config.use_cache = False
    if hasattr(model.config, "text_config"):
        model.config.text_config.use_cache = False
    return model


def _from_pretrained(path: str, cfg: ModelConfig, dtype: torch.dtype):
    from transformers import AutoModelForImageTextToText

    adapter = adapter_to_merge(path)
    if adapter is not None:  # never handed to transformers, whose adapter loading needs a newer peft
        base = adapter_base(adapter)
        if adapter != Path(path):
            logger.warning("%s has no merged model (its LoRA run was stopped while merging): merging %s into "
                           "its base %s in memory (vLLM needs the merged folder: rerun the stage, which resumes "
                           "from its last checkpoint)", path, adapter, base)
        else:
            logger.info("%s is a LoRA adapter: merging it into its base %s", path, base)
        try:
            base_path = resolve_name(base)
        except ModelSourceError as e:  # e.g. a checkpoint copied from a machine whose base folder is not here
            raise ModelSourceError(f"{adapter} is a LoRA adapter on the base {base!r} ({ADAPTER_CONFIG}: "
                                   f"base_model_name_or_path), which cannot be loaded here: {e}") from None
        return merge_adapter(_from_pretrained(base_path, cfg, dtype), adapter)
    if Path(path).is_dir() and not (Path(path) / "config.json").is_file():  # transformers: "Unrecognized model"
        raise ModelSourceError(f"could not load model '{cfg.name_or_path}': the folder has no config.json (nor a LoRA "
                               "adapter), so it holds no model; point model.name_or_path at a model folder")
    try:
        return AutoModelForImageTextToText.from_pretrained(path, dtype=dtype, attn_implementation=cfg.attn_implementation)
    except OSError as e:
        raise ModelSourceError(
            f"could not load model '{cfg.name_or_path}': {e}\nOn a machine without internet, download it first "
            f"(`hf download {cfg.name_or_path}`) or set model.name_or_path to a local directory; "
            "`model.name_or_path: tiny` uses the embedded offline model."
        ) from e
