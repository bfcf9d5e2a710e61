"""Which parts of Qwen3-VL learn: freezing by part, LoRA on the parts that are meant to learn.

Qwen3-VL has three parts: the vision tower (``model.visual.blocks`` + patch embedding), the patch merger(s)
(``model.visual.merger`` and the deepstack mergers) and the language model (``model.language_model`` +
``lm_head``). The paper fine-tunes the language model with the tower and merger frozen; the flags of
:class:`~mmfinereason.recipe.sections.ModelConfig` choose any combination.
"""

from __future__ import annotations

import logging

import torch

from mmfinereason.errors import UserError
from mmfinereason.recipe.sections import ModelConfig

logger = logging.getLogger(__name__)

ALL_LINEAR = "all-linear"  # model.lora.target_modules: [all-linear] adapts every linear layer of the learning parts


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
        raise UserError(
            "every part of the model is frozen: set one of model.freeze_vision_tower, model.freeze_merger, "
            "model.freeze_language_model to false (or model.lora.enabled: true)"
        )
    logger.info("trainable parameters: %s / %s (%.1f%%)", f"{trainable:,}", f"{total:,}", 100 * trainable / total)


def lora_targets(model, cfg: ModelConfig) -> list[str]:
    """The names of the linear layers LoRA adapts: ``target_modules`` (or all of them, ``[all-linear]``, the output
    head aside) within the parts that learn. Refuses a learning part it would leave frozen (see :func:`apply_lora`).
    Also what ``mmfinereason plan`` counts, on a model built on the ``meta`` device."""
    frozen = {"vision_tower": cfg.freeze_vision_tower, "merger": cfg.freeze_merger, "language_model": cfg.freeze_language_model}
    linear = [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]
    wanted = set(cfg.lora.target_modules)
    every = ALL_LINEAR in wanted  # peft's shorthand; the output head stays out, as in peft
    targets = [n for n in linear if (every and n.split(".")[-1] != "lm_head" or n.split(".")[-1] in wanted)
               and not frozen[part_of(n + ".weight")]]
    adapted = {part_of(n + ".weight") for n in targets}
    for part in (p for p, is_frozen in frozen.items() if not is_frozen and p not in adapted):
        names = sorted({n.split(".")[-1] for n in linear if part_of(n + ".weight") == part})
        raise UserError(
            f"model.lora.enabled: the {part} is set to learn, but model.lora.target_modules "
            f"{cfg.lora.target_modules} names none of its linear layers ({', '.join(names) or 'none'}), and LoRA "
            f"freezes every weight it does not adapt. Add some of those names to model.lora.target_modules (or use "
            f"[{ALL_LINEAR}]), or freeze the {part} (model.freeze_{part}: true)"
        )
    if not targets:
        raise UserError("model.lora.enabled: LoRA adapts the parts that learn, and every part is frozen; set one of "
                        "model.freeze_vision_tower, model.freeze_merger, model.freeze_language_model to false")
    return targets


def apply_lora(model, cfg: ModelConfig):
    """``model`` wrapped by peft with LoRA adapters on the linear layers of every part that learns.

    Under LoRA a part learns only through its adapters: peft freezes every base weight. A part the recipe leaves
    trainable but whose layers ``target_modules`` does not name would be frozen without a word (the tiny recipe's
    vision tower has ``qkv``, ``proj``, ``linear_fc1``, ``linear_fc2``, not the decoder's names), so that is refused.
    """
    from peft import LoraConfig, get_peft_model

    targets = lora_targets(model, cfg)
    lora = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout, target_modules=targets)
    model = get_peft_model(model, lora)
    trainable, total = model.get_nb_trainable_parameters()
    logger.info("LoRA r=%d on %d layers: %s / %s parameters train (%.2f%%)", cfg.lora.r, len(targets),
                f"{trainable:,}", f"{total:,}", 100 * trainable / total)
    return model
