"""Questions about a (possibly wrapped) model that the data and training code ask: what is inside the wrappers,
where is its mRoPE index, which attention kernel does it use.

One place for the unwrapping rule (DDP ``module``, ``torch.compile``'s ``_orig_mod``, PEFT's ``base_model``), which
packing, generation and evaluation all need.
"""

from __future__ import annotations

from mmfinereason.modeling.attention import VARLEN_SDPA

DISTRIBUTED_WRAPPERS = ("module", "_orig_mod")  # DDP / FSDP / DeepSpeed, torch.compile
WRAPPER_ATTRIBUTES = (*DISTRIBUTED_WRAPPERS, "base_model")  # and PEFT


def unwrap_model(model, attributes: tuple[str, ...] = WRAPPER_ATTRIBUTES):
    """The innermost model under DDP / torch.compile / PEFT wrappers (at most 8 layers deep).

    ``attributes`` chooses which wrappers to look through; generation keeps PEFT's (its adapters must stay on)
    and passes ``DISTRIBUTED_WRAPPERS``.
    """
    for _ in range(8):
        inner = next((getattr(model, a) for a in attributes if hasattr(model, a)), None)
        if inner is None or inner is model:
            return model
        model = inner
    return model


def rope_index_fn(model):
    """Find ``get_rope_index`` on a (possibly DDP- / compile- / PEFT-wrapped) Qwen-VL model."""
    for _ in range(8):
        for candidate in (model, getattr(model, "model", None)):
            if hasattr(candidate, "get_rope_index"):
                return candidate.get_rope_index
        inner = next((getattr(model, a) for a in WRAPPER_ATTRIBUTES if hasattr(model, a)), None)
        if inner is None or inner is model:
            break
        model = inner
    raise TypeError(
        f"{type(model).__name__} has no get_rope_index; packing supports Qwen-VL style models with mRoPE "
        "(Qwen2-VL, Qwen2.5-VL, Qwen3-VL). Set data.packing=false for other models."
    )


def attention_implementation(model) -> str:
    """The decoder's attention implementation (``"sdpa"``, ``"eager"``, ``"flash_attention_2"``, …)."""
    config = getattr(unwrap_model(model), "config", None)
    for cfg in (getattr(config, "text_config", None), config):
        impl = getattr(cfg, "_attn_implementation", None)
        if impl:
            return str(impl)
    return "sdpa"


def uses_varlen_attention(model) -> bool:
    """True for flash-attn style kernels (and ``sdpa_varlen``): all packed examples go into one row."""
    impl = attention_implementation(model)
    return "flash" in impl or impl == VARLEN_SDPA
