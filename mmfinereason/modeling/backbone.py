"""The backbone known from its config alone: which config a model name means, and its exact parameter counts.

Why a module of its own: ``mmfinereason plan`` (:mod:`mmfinereason.plan`) sizes a run before any GPU hour, and all
it needs of the model is its shape. Finding that shape without weights or network (a local folder, the HF cache,
or the public Qwen3-VL 2B/4B/8B values shipped below) and counting parameters per part with the recipe's freezing
and LoRA (the model built on the ``meta`` device) is a question about the model, not about memory arithmetic:
it lives with the rest of the model code, and ``plan`` keeps the formulas.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from mmfinereason.errors import UserError

# Values of the public config.json of each model on the Hugging Face hub (Qwen/Qwen3-VL-{2B,4B,8B}-Instruct;
# the -Thinking variants share the architecture), trimmed to what the estimate needs.
QWEN3_VL_CONFIGS: dict[str, dict[str, Any]] = {
    "Qwen/Qwen3-VL-2B-Instruct": {
        "text_config": {"hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": 28,
                        "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936},
        "vision_config": {"depth": 24, "hidden_size": 1024, "intermediate_size": 4096, "num_heads": 16,
                          "out_hidden_size": 2048, "patch_size": 16, "spatial_merge_size": 2,
                          "temporal_patch_size": 2, "deepstack_visual_indexes": [5, 11, 17]},
        "tie_word_embeddings": True,
    },
    "Qwen/Qwen3-VL-4B-Instruct": {
        "text_config": {"hidden_size": 2560, "intermediate_size": 9728, "num_hidden_layers": 36,
                        "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936},
        "vision_config": {"depth": 24, "hidden_size": 1024, "intermediate_size": 4096, "num_heads": 16,
                          "out_hidden_size": 2560, "patch_size": 16, "spatial_merge_size": 2,
                          "temporal_patch_size": 2, "deepstack_visual_indexes": [5, 11, 17]},
        "tie_word_embeddings": True,
    },
    "Qwen/Qwen3-VL-8B-Instruct": {
        "text_config": {"hidden_size": 4096, "intermediate_size": 12288, "num_hidden_layers": 36,
                        "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936},
        "vision_config": {"depth": 27, "hidden_size": 1152, "intermediate_size": 4304, "num_heads": 16,
                          "out_hidden_size": 4096, "patch_size": 16, "spatial_merge_size": 2,
                          "temporal_patch_size": 2, "deepstack_visual_indexes": [8, 16, 24]},
        "tie_word_embeddings": False,
    },
}


def shipped_config(name: str) -> tuple[str, dict[str, Any]] | None:
    """``(model id, values)`` of the shipped Qwen3-VL 2B/4B/8B config a name refers to (Instruct or Thinking,
    any org or local prefix, e.g. ``outputs/qwen3vl-8b-sft``), else None."""
    low = re.sub(r"[-_./]", " ", name.lower())
    if "qwen3 vl" not in low and "qwen3vl" not in low:
        return None
    for key, values in QWEN3_VL_CONFIGS.items():
        size = key.split("-")[2].lower()  # "2b" / "4b" / "8b"
        if re.search(rf"\b{size}\b", low):
            return key, values
    return None


def backbone_config(name_or_path: str):
    """``(Qwen3VLConfig, where it came from)`` for the recipe's backbone: a local dir, the embedded tiny
    model, the HF cache (offline), or the shipped public values. Never touches weights or the network."""
    from transformers import AutoConfig, Qwen3VLConfig

    if name_or_path == "tiny":
        from mmfinereason.toy import tiny_model_dir

        return AutoConfig.from_pretrained(tiny_model_dir()), "the embedded tiny model"
    if Path(name_or_path, "config.json").is_file():
        return AutoConfig.from_pretrained(name_or_path), f"{name_or_path}/config.json"
    try:
        return AutoConfig.from_pretrained(name_or_path, local_files_only=True), "the Hugging Face cache"
    except Exception:
        pass
    shipped = shipped_config(name_or_path)
    if shipped is None:
        raise UserError(
            f"no config for {name_or_path!r}: not a local dir, not in the HF cache, and not one of the shipped "
            f"{sorted(QWEN3_VL_CONFIGS)}; pass --backbone with one of those or a dir holding its config.json"
        )
    key, values = shipped
    return Qwen3VLConfig(**json.loads(json.dumps(values))), f"shipped public config of {key}"


def count_parameters(config, model_cfg=None) -> dict[str, dict[str, int]]:
    """Exact parameter counts ``{part: {"total": n, "trainable": n}}`` of the model built on the meta device,
    with the recipe's freezing (``model_cfg``: a :class:`~mmfinereason.recipe.loader.ModelConfig`)."""
    import torch
    from transformers import AutoModelForImageTextToText

    from mmfinereason.modeling.parts import part_of

    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
    frozen = {
        "vision_tower": getattr(model_cfg, "freeze_vision_tower", True),
        "merger": getattr(model_cfg, "freeze_merger", True),
        "language_model": getattr(model_cfg, "freeze_language_model", False),
    }
    counts = {part: {"total": 0, "trainable": 0} for part in frozen}
    for name, p in model.named_parameters():  # tied weights appear once
        part = part_of(name)
        counts[part]["total"] += p.numel()
        if not frozen[part]:
            counts[part]["trainable"] += p.numel()
    lora = getattr(model_cfg, "lora", None)
    if lora is not None and lora.enabled:  # adapters train, the base stays frozen: r x (in + out) per adapted layer
        from mmfinereason.modeling.parts import lora_targets

        layers = dict(model.named_modules())
        adapters = sum(lora.r * (layers[n].in_features + layers[n].out_features) for n in lora_targets(model, model_cfg))
        for c in counts.values():
            c["trainable"] = 0
        counts["lora_adapters"] = {"total": adapters, "trainable": adapters}
    return counts
