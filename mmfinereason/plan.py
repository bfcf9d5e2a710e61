"""Per-GPU memory and tokens per step of a recipe, before a single GPU hour is spent.

``mmfinereason plan RECIPE [LAUNCH.yaml] [--gpus N]`` reads the backbone's *config* (local path, the HF cache,
or the public Qwen3-VL 2B/4B/8B values), builds the model on the ``meta`` device to count parameters exactly (no
weights are read or allocated), applies the recipe's freezing (all of which :mod:`mmfinereason.modeling.backbone`
does), and prints the memory of weights / gradients / optimizer states under DDP, ZeRO-1/2/3 and FSDP2, plus
activations at the recipe's micro-batch with and without activation checkpointing.

Accounting (mixed precision, the ZeRO paper's, Rajbhandari et al. 2020): every parameter is held in the
compute dtype (2 bytes in bf16); every *trainable* one also has a gradient in the compute dtype and 12 bytes of
AdamW state (fp32 master copy + two fp32 moments). DDP replicates all three; ZeRO-1 shards the optimizer
states over the N ranks, ZeRO-2 also the gradients, ZeRO-3 / FSDP2 (full shard) also the weights. CPU offload
(``offload_optimizer``) moves the optimizer states off the GPU.

Activations (Korthikanti et al. 2022, adapted to Qwen3's decoder): per token and decoder layer, in the
compute dtype, a layer keeps its two RMSNorm inputs and outputs (4h), q/k/v (q + 2kv), the attention output
(h) and the SwiGLU MLP's gate, up, silu(gate) and product (4·I): ``bytes = dtype · (5h + q + 2kv + 4I)``. It
assumes FlashAttention / SDPA (no s² score matrix), no dropout, a frozen vision tower (its forward keeps no
activations; an unfrozen one is added per image token). With activation checkpointing only each layer's input
(h per token) is kept, plus one layer recomputed at a time. The LM head's fp32 logits (``4·V`` bytes per
token, twice with their gradient) are listed apart: fused cross-entropy kernels (Liger) avoid them. Estimates
are lower bounds: allocator fragmentation, CUDA context (~0.5-1 GiB) and communication buffers come on top;
:func:`fits` adds :data:`MARGIN_GIB` for them.

Precision: ``model.dtype: bfloat16`` trains fp32 master weights (``modeling.loading.parameter_dtype``): DeepSpeed
casts the module to bf16 and keeps the fp32 copy (2 + 12 B/param); DDP / FSDP2 keep fp32 parameters and
gradients under bf16 autocast (4 + 4 + 8 = the same 16 B per trainable parameter).

GSPO (what TRL 1.16's GRPOTrainer materialises, read from ``grpo_trainer.py``): one micro-batch is
``per_device_train_batch_size`` completions of up to prompt + completion tokens, through the policy with
activations as above. The LM head is TRL's fused, chunked log-prob kernel (``add_fused_lm_head``): no
``[tokens, vocab]`` logits, only [4,096 x 32,768] tiles plus fp32 gradients of the hidden states and the head
(:func:`chunked_logprob_bytes`). The old-policy log-probs (vLLM importance-sampling correction, or more updates
per generation) are one no-grad pass in chunks of the micro-batch: transient, below the training pass. The
rollout buffer (``per_device_train_batch_size x steps_per_generation`` rows of ids, masks, log-probs and each
row's pixel values) stays on the GPU between optimizer steps; a reference model is added only when ``beta > 0``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The backbone's config and parameter counts live in modeling/; re-exported here, where they were first defined.
from mmfinereason.modeling.backbone import (  # noqa: F401
    QWEN3_VL_CONFIGS,
    backbone_config,
    count_parameters,
    shipped_config,
)

GIB = 1024**3
MARGIN_GIB = 2.0  # CUDA context, NCCL buffers, fragmentation: what fits() adds to the estimates
# TRL 1.16's chunked log-prob kernel (trl/kernels/chunked_logprob.py): token tile x vocabulary chunk
LOGPROB_TOKEN_CHUNK, LOGPROB_VOCAB_CHUNK = 4096, 32768
PATCH_VALUES = 3 * 2 * 16 * 16  # values of one Qwen3-VL pixel patch (channels x temporal 2 x 16 x 16)

STRATEGIES = ("ddp", "zero1", "zero2", "zero3", "fsdp2")


# --------------------------------------------------------------------------- the estimate
@dataclass
class Plan:
    """Bytes per GPU by component for one strategy, plus the inputs that produced them."""

    strategy: str
    gpus: int
    weights: float
    gradients: float
    optimizer: float
    activations: float
    activations_checkpointed: float
    logits: float
    rollout_buffer: float = 0.0  # GSPO: generated rows kept on the GPU between optimizer steps
    reference: float = 0.0  # GSPO with beta > 0: the reference model's weights
    anchor: float = 0.0  # GSPO with weight_anchor > 0: the start copy of the trainable weights
    refused: str = ""  # why the trainer would refuse this strategy for this recipe ("" = it runs)

    def states(self) -> float:
        """What stays resident for the whole run: weights, gradients, optimizer, rollouts, reference, anchor."""
        return self.weights + self.gradients + self.optimizer + self.rollout_buffer + self.reference + self.anchor

    def total(self, checkpointing: bool, fused_loss: bool = False) -> float:
        act = self.activations_checkpointed if checkpointing else self.activations
        return self.states() + act + (0.0 if fused_loss else self.logits)


def activation_bytes_per_token(config, dtype_bytes: int = 2) -> dict[str, float]:
    """Per-token activation bytes of one decoder layer (full and checkpointed) and of the fp32 logits."""
    t = config.text_config
    h, i = t.hidden_size, t.intermediate_size
    q = t.num_attention_heads * getattr(t, "head_dim", h // t.num_attention_heads)
    kv = t.num_key_value_heads * getattr(t, "head_dim", h // t.num_attention_heads)
    return {
        "layer": dtype_bytes * (5 * h + q + 2 * kv + 4 * i),
        "layer_input": dtype_bytes * h,
        "logits": 2 * 4 * t.vocab_size,  # fp32 logits and their gradient
        "layers": t.num_hidden_layers,
    }


def chunked_logprob_bytes(config, micro_batch_tokens: int, dtype_bytes: int = 2) -> float:
    """Peak of TRL's fused LM head (``add_fused_lm_head``) on one micro-batch: a forward and a backward tile
    (counted in fp32, the kernel's upcast on non-Triton paths), and the fp32 gradients it accumulates for the
    hidden states and the head weight. No ``[tokens, vocab]`` logits."""
    t = config.text_config
    tiles = 2 * LOGPROB_TOKEN_CHUNK * LOGPROB_VOCAB_CHUNK * 4
    return tiles + 4 * micro_batch_tokens * t.hidden_size + 4 * t.vocab_size * t.hidden_size


def vision_activation_bytes_per_patch(config, dtype_bytes: int = 2) -> float:
    """Per-patch bytes of the whole vision tower when it trains (same layer formula, GELU MLP: 2·I)."""
    v = config.vision_config
    return dtype_bytes * (4 * v.hidden_size + 3 * v.hidden_size + 2 * v.intermediate_size) * v.depth


def estimate(
    config,
    counts: dict[str, dict[str, int]],
    *,
    gpus: int,
    micro_batch_tokens: int,
    strategy: str,
    dtype_bytes: int = 2,
    offload_optimizer: bool = False,
    image_patches: int = 0,
    chunked_logprobs: bool = False,
    rollout_buffer: float = 0.0,
    reference_model: bool = False,
    weight_anchor: bool = False,
    deepspeed_engine: bool = False,
) -> Plan:
    """Bytes per GPU for ``strategy`` (one of :data:`STRATEGIES`) on ``gpus`` data-parallel ranks.

    GSPO (see the module docstring): ``chunked_logprobs`` replaces the fp32 logits by TRL's chunked kernel,
    ``rollout_buffer`` is added as given (bytes), ``reference_model`` adds a frozen copy of the weights,
    ``weight_anchor`` an unsharded copy of the trainable ones (trainers/weight_anchor.py). The trainer refuses
    the anchor under DeepSpeed and FSDP, so there the plan counts no copy and says why in ``refused`` instead.
    ``deepspeed_engine``: the ``ddp`` row stands for a DeepSpeed ZeRO stage 0 launch (nothing sharded, so DDP's
    memory), where the trainer refuses the anchor all the same.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    total = sum(c["total"] for c in counts.values())
    trainable = sum(c["trainable"] for c in counts.values())
    weights = dtype_bytes * total
    grads = dtype_bytes * trainable
    optim = 12.0 * trainable
    shard_optim = strategy in ("zero1", "zero2", "zero3", "fsdp2")
    shard_grads = strategy in ("zero2", "zero3", "fsdp2")
    shard_weights = strategy in ("zero3", "fsdp2")
    per_tok = activation_bytes_per_token(config, dtype_bytes)
    layers = per_tok["layers"]
    act = micro_batch_tokens * per_tok["layer"] * layers
    act_ckpt = micro_batch_tokens * (per_tok["layer_input"] * layers + per_tok["layer"])
    if counts.get("vision_tower", {}).get("trainable") and image_patches:
        vision = image_patches * vision_activation_bytes_per_patch(config, dtype_bytes)
        act += vision
        act_ckpt += vision / config.vision_config.depth
    anchor_refused = weight_anchor and (strategy != "ddp" or deepspeed_engine)
    return Plan(
        strategy=strategy,
        gpus=gpus,
        weights=weights / (gpus if shard_weights else 1),
        gradients=grads / (gpus if shard_grads else 1),
        optimizer=0.0 if offload_optimizer else optim / (gpus if shard_optim else 1),
        activations=act,
        activations_checkpointed=act_ckpt,
        logits=chunked_logprob_bytes(config, micro_batch_tokens, dtype_bytes) if chunked_logprobs
        else micro_batch_tokens * per_tok["logits"],
        rollout_buffer=rollout_buffer,
        reference=(dtype_bytes * total / (gpus if shard_weights else 1)) if reference_model else 0.0,
        anchor=dtype_bytes * trainable if weight_anchor and not anchor_refused else 0.0,
        refused="" if not anchor_refused else "train.weight_anchor runs under DDP only"
        + (" (this is DeepSpeed ZeRO stage 0)" if strategy == "ddp" else ""),
    )


def read_launch_config(path: str | Path) -> dict[str, Any]:
    """The strategy, process count and offload of an accelerate config YAML (ours in launch/accelerate/).

    DeepSpeed ZeRO stage 0 shards nothing, so its memory is the ``ddp`` row's; ``deepspeed`` says the engine is
    DeepSpeed all the same, which matters for what the trainer accepts (``train.weight_anchor``)."""
    import yaml

    raw = yaml.safe_load(Path(path).read_text()) or {}
    kind = str(raw.get("distributed_type", "MULTI_GPU")).upper()
    strategy, offload = "ddp", False
    deepspeed = kind == "DEEPSPEED"
    if deepspeed:
        ds = raw.get("deepspeed_config") or {}
        if ds.get("deepspeed_config_file"):
            cfg = json.loads(Path(path).parent.joinpath(ds["deepspeed_config_file"]).read_text())
            stage = cfg.get("zero_optimization", {}).get("stage", 0)
            offload = cfg.get("zero_optimization", {}).get("offload_optimizer", {}).get("device", "none") != "none"
        else:
            stage = ds.get("zero_stage", 0)
            offload = str(ds.get("offload_optimizer_device", "none")).lower() != "none"
        strategy = {0: "ddp", 1: "zero1", 2: "zero2", 3: "zero3"}[int(stage)]
    elif kind == "FSDP":
        fsdp = raw.get("fsdp_config") or {}
        strategy = "fsdp2"
        offload = bool(fsdp.get("fsdp_offload_params", False))
    return {"strategy": strategy, "gpus": int(raw.get("num_processes", 8)), "offload_optimizer": offload,
            "deepspeed": deepspeed}


# --------------------------------------------------------------------------- recipe -> report
def recipe_shapes(recipe) -> dict[str, Any]:
    """Micro-batch tokens, tokens per optimizer step (per GPU) and dtype size implied by the recipe."""
    t, d = recipe.train, recipe.data
    if recipe.stage == "gspo":
        seq = int(getattr(t, "max_prompt_length", 0) or 0) + int(getattr(t, "max_completion_length", 0) or 0)
        seq = seq or d.max_length
    else:
        seq = d.max_length
    rows = int(t.per_device_train_batch_size)
    budget = getattr(d, "tokens_per_batch", None)
    micro = int(budget) if budget else rows * seq  # packed rows are at most max_length long
    checkpointing = bool(getattr(t, "activation_checkpointing", False) or getattr(t, "gradient_checkpointing", False))
    dtype = str(recipe.model.dtype)
    gspo = recipe.stage == "gspo"
    kl = gspo and float(getattr(t, "beta", 0.0) or 0.0) > 0  # a KL term: TRL keeps a reference to score against
    # GSPO: rows generated at once per GPU and kept until consumed; each row carries its own pixel values
    rollout_rows = rows * int(getattr(t, "steps_per_generation", None) or t.gradient_accumulation_steps) if gspo else 0
    patches = max(1, int(d.max_pixels) // 256)
    return {
        "stage": recipe.stage,
        "chunked_logprobs": gspo,  # TRL's GRPOTrainer always scores through its fused, chunked LM head
        "rollout_rows_per_gpu": rollout_rows,
        # ids + attention/completion masks (int64) + old/sampling log-probs (fp32) per token, fp32 pixel patches
        "rollout_buffer": rollout_rows * (seq * (8 + 8 + 8 + 4 + 4) + patches * PATCH_VALUES * 4),
        # with LoRA, TRL's reference is a copy of the adapter ("ref"), not a model: nothing worth counting
        "reference_model": kl and not recipe.model.lora.enabled,
        "reference_adapter": kl and recipe.model.lora.enabled,
        "weight_anchor": gspo and float(getattr(t, "weight_anchor", 0.0) or 0.0) > 0,
        "vllm_sleep": bool(getattr(t, "vllm_enable_sleep_mode", False)),
        "micro_batch_tokens": micro,
        "tokens_per_step_per_gpu": micro * int(t.gradient_accumulation_steps),
        "sequence_length": seq,
        "checkpointing": checkpointing,
        # GSPO's head is TRL's chunked kernel whatever Liger says: its memory is the 'logits' column there
        "fused_loss": bool(getattr(t, "use_liger_kernel", False)) and not gspo,
        "vllm_colocate": float(getattr(t, "vllm_gpu_memory_utilization", 0.0))
        if getattr(t, "use_vllm", False) and getattr(t, "vllm_mode", "") == "colocate" else 0.0,
        "dtype_bytes": 4 if dtype in ("float32", "fp32") else 2,
        "image_patches": rows * max(1, int(d.max_pixels) // 256),  # >= one image per row, 16x16 patches
    }


def plan_recipe(recipe, launch: str | Path | None = None, gpus: int | None = None, backbone: str | None = None) -> dict[str, Any]:
    """Everything :func:`format_plan` prints, as data: config source, parameter counts, shapes, plans."""
    launch_cfg = read_launch_config(launch) if launch else {"strategy": None, "gpus": 8, "offload_optimizer": False,
                                                               "deepspeed": False}
    n = int(gpus or launch_cfg["gpus"])
    name = backbone or recipe.model.name_or_path
    config, source = backbone_config(name)
    counts = count_parameters(config, recipe.model)
    shapes = recipe_shapes(recipe)
    plans = {
        s: estimate(
            config, counts, gpus=n, micro_batch_tokens=shapes["micro_batch_tokens"], strategy=s,
            dtype_bytes=shapes["dtype_bytes"], offload_optimizer=launch_cfg["offload_optimizer"] and s == launch_cfg["strategy"],
            image_patches=shapes["image_patches"], chunked_logprobs=shapes["chunked_logprobs"],
            rollout_buffer=shapes["rollout_buffer"], reference_model=shapes["reference_model"],
            weight_anchor=shapes["weight_anchor"],
            deepspeed_engine=launch_cfg["deepspeed"] and launch_cfg["strategy"] == "ddp",
        )
        for s in STRATEGIES
    }
    return {"backbone": name, "config_source": source, "gpus": n, "launch": launch_cfg, "counts": counts,
            "shapes": shapes, "plans": plans}


def peak_bytes(report: dict[str, Any], strategy: str | None = None, gpu_memory_gib: float = 80.0) -> float:
    """Per-GPU peak under ``strategy`` (default: the launch config's), margin not included: the training pass;
    with vLLM colocate its GPU share comes on top of the resident states while generating, and on top of the
    training pass too unless ``vllm_enable_sleep_mode`` frees it (TRL sleeps the engine at level 2)."""
    s = report["shapes"]
    plan = report["plans"][strategy or report["launch"]["strategy"] or "ddp"]
    training = plan.total(s["checkpointing"], s["fused_loss"])
    vllm = s.get("vllm_colocate", 0.0) * gpu_memory_gib * GIB
    if not vllm:
        return training
    generation = plan.states() + vllm
    return max(generation, training if s.get("vllm_sleep") else training + vllm)


def fits(report: dict[str, Any], gpu_memory_gib: float = 80.0, strategy: str | None = None) -> bool:
    """Whether :func:`peak_bytes` plus :data:`MARGIN_GIB` fits a GPU of ``gpu_memory_gib``; never for a strategy
    the trainer refuses (``Plan.refused``)."""
    if report["plans"][strategy or report["launch"]["strategy"] or "ddp"].refused:
        return False
    return peak_bytes(report, strategy, gpu_memory_gib) + MARGIN_GIB * GIB <= gpu_memory_gib * GIB


def _gib(x: float) -> str:
    return f"{x / GIB:8.2f}"


def format_plan(report: dict[str, Any], gpu_memory_gib: float = 80.0) -> str:
    """A readable table: one row per strategy, the launch config's row marked with ``*``."""
    c, s, n = report["counts"], report["shapes"], report["gpus"]
    total = sum(v["total"] for v in c.values())
    trainable = sum(v["trainable"] for v in c.values())
    lines = [
        f"backbone {report['backbone']} ({report['config_source']}): {total / 1e9:.3f}B parameters, "
        f"{trainable / 1e9:.3f}B trainable",
        "  " + ", ".join(f"{k} {v['total'] / 1e6:,.1f}M ({v['trainable'] / 1e6:,.1f}M trainable)" for k, v in c.items()),
        f"micro-batch: {s['micro_batch_tokens']:,} tokens per GPU (sequence {s['sequence_length']:,}); "
        f"tokens per optimizer step: {s['tokens_per_step_per_gpu']:,} per GPU, "
        f"{s['tokens_per_step_per_gpu'] * n:,} on {n} GPUs (upper bound: full packed rows)",
        f"recipe: activation checkpointing {'on' if s['checkpointing'] else 'off'}, "
        f"fused cross-entropy (Liger) {'on' if s['fused_loss'] else 'off'} -> the 'recipe' column",
        "",
        f"estimated GiB per GPU on {n} GPUs (weights {s['dtype_bytes']} B/param, AdamW 12 B/trainable param)",
        f"  {'strategy':<9}{'weights':>9}{'grads':>9}{'optim':>9}{'act':>9}{'act+ckpt':>9}{'logits':>9}"
        f"{'total':>9}{'+ckpt':>9}{'+ckpt+fused':>12}{'recipe':>9}",
    ]
    chosen = report["launch"]["strategy"]
    for name, p in report["plans"].items():
        best = p.total(True, True)
        mine = peak_bytes(report, name, gpu_memory_gib)
        ok = fits(report, gpu_memory_gib, name)
        verdict = f"  refused: {p.refused}" if p.refused else "  fits" if ok else f"  > {gpu_memory_gib:g} GiB"
        lines.append(
            f"{'*' if name == chosen else ' '} {name:<9}{_gib(p.weights)} {_gib(p.gradients)} {_gib(p.optimizer)} "
            f"{_gib(p.activations)} {_gib(p.activations_checkpointed)} {_gib(p.logits)} {_gib(p.total(False))} "
            f"{_gib(p.total(True))} {_gib(best):>11} {_gib(mine)}{verdict}"
        )
    if s.get("stage") == "gspo":
        p = report["plans"][chosen or "ddp"]
        lines.append(
            f"GSPO: logits = TRL's chunked log-prob kernel (no [tokens, vocab] logits); rollout buffer "
            f"{s['rollout_rows_per_gpu']:,} rows per GPU = {p.rollout_buffer / GIB:.2f} GiB (in every total); "
            "reference model " + ("on (beta > 0)" if s["reference_model"] else "a copy of the LoRA adapter (beta > 0)"
                                  if s.get("reference_adapter") else "off (beta = 0)")
            + (f"; weight anchor: {p.refused}" if p.refused else
               f"; weight anchor {p.anchor / GIB:.2f} GiB" if s.get("weight_anchor") else "")
        )
    if s.get("vllm_colocate"):
        lines.append(
            f"vLLM colocate reserves {s['vllm_colocate']:.0%} of each GPU while generating (in 'recipe': on top of the "
            f"resident states; {'freed by sleep mode during training' if s.get('vllm_sleep') else 'also during training'})"
        )
    lines += [
        "",
        "act: activations without checkpointing; act+ckpt: with train.activation_checkpointing; logits: fp32 LM-head",
        "logits + grad (0 with a fused cross-entropy such as Liger). Lower bounds: add ~1-2 GiB for the CUDA",
        f"context, NCCL buffers and fragmentation ('fits' adds {MARGIN_GIB:g} GiB). Formulas: mmfinereason/plan.py.",
    ]
    return "\n".join(lines)
