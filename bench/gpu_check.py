"""What the CPU test suite cannot check, in one command on one GPU (<= 10 minutes), as one JSON line.

    python bench/gpu_check.py                 # every part its packages and the GPU allow
    python bench/gpu_check.py --parts varlen,zero
    python bench/gpu_check.py --dry-run       # no GPU work: which parts would run, and why the others skip

Parts (each skipped with a reason when its GPU / package is missing, each bounded by its own timeout):

* ``varlen``: flash-attn varlen on packed rows == the padded batch (loss, bf16) on a random-init 2B-shape
  Qwen3-VL — the GPU twin of tests/test_packing.py — and GSPO's padding-free scoring of rollouts against the padded
  forward (per-token log-probs, checked against a known-wrong positions control), the twin of
  tests/test_padding_free.py (needs ``flash_attn``);
* ``sft_throughput``: SFT tokens/s and MFU at 2B shape with packing (bench/sft_throughput.py at real lengths);
* ``gspo_vllm``: a random-init 2B-shape model saved by our SFT (2 steps, pixel bounds 65,536 .. 589,824), then
  3 GSPO steps with vLLM colocate on prompts whose images sit below, at and above the bounds — the image-token
  agreement of trl#6401 on a real engine, the loss forward padding-free under ``sdpa_varlen`` in bf16 (needs
  ``vllm``);
* ``zero``: ZeRO-2 and ZeRO-3 engaged under ``accelerate launch`` (launch/accelerate/zero{2,3}.yaml, 1 process):
  DeepSpeed engine, stage, fp32 master weights, partitioned parameters for stage 3, a finite loss (``deepspeed``).

Workers run in subprocesses (``--worker PART``), so one part's crash or GPU memory does not spoil the next.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("varlen", "sft_throughput", "gspo_vllm", "zero")
TIMEOUTS = {"varlen": 80, "sft_throughput": 140, "gspo_vllm": 260, "zero": 110}  # seconds; sum 590 < 10 min
NEEDS = {"varlen": ["flash_attn"], "sft_throughput": [], "gspo_vllm": ["vllm"], "zero": ["deepspeed"]}
MIN_PIXELS, MAX_PIXELS = 65536, 589824  # the qwen3vl recipes' bounds
BOUND_SIZES = [(64, 64), (256, 256), (512, 384), (768, 768), (1024, 900)]  # below, at min, inside, at max, above


def skip_reason(part: str) -> str | None:
    """Why ``part`` cannot run here, or None."""
    import torch

    if not torch.cuda.is_available():
        return "no CUDA device"
    missing = [m for m in NEEDS[part] if importlib.util.find_spec(m) is None]
    if missing:
        extra = {"flash_attn": "flash", "vllm": "vllm", "deepspeed": "deepspeed"}[missing[0]]
        return f"{missing[0]} not installed (pip install 'mmfinereason[{extra}]')"
    return None


def _last_json(text: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError("no JSON line in the worker's output:\n" + text[-2000:])


def run_part(part: str, work: Path) -> dict:
    """One part in a subprocess, under its timeout; its JSON line, or the failure."""
    python = [sys.executable, str(Path(__file__).resolve())]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": f"{ROOT}:{ROOT / 'bench'}"}
    if part == "sft_throughput":
        cmds = [[sys.executable, str(ROOT / "bench" / "sft_throughput.py"), "--device", "cuda", "--shape", "2b",
                 "--attn", "flash_attention_2" if importlib.util.find_spec("flash_attn") else "sdpa",
                 "--dtype", "bfloat16", "--scale", "1", "--examples", "48", "--batch-size", "4",
                 "--tokens-per-batch", "32768", "--collator-samples", "8"]]
    elif part == "zero":
        cmds = [["accelerate", "launch", "--config_file", str(ROOT / "launch" / "accelerate" / f"zero{s}.yaml"),
                 "--num_processes", "1", *python, "--worker", "zero", "--work", str(work / f"zero{s}")] for s in (2, 3)]
    else:
        cmds = [[*python, "--worker", part, "--work", str(work / part)]]
    results, start = [], time.time()
    for cmd in cmds:
        left = TIMEOUTS[part] - (time.time() - start)
        try:
            done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=max(left, 1))
        except subprocess.TimeoutExpired:
            return {"status": "failed", "reason": f"timed out after {TIMEOUTS[part]} s"}
        if done.returncode != 0:
            return {"status": "failed", "reason": (done.stderr or done.stdout)[-1500:]}
        results.append(_last_json(done.stdout))
    out = results[0] if len(results) == 1 else {"zero2": results[0], "zero3": results[1]}
    if part == "sft_throughput":
        out = {k: out[k] for k in ("packed", "padded", "speedup_tokens_per_s", "attn", "mean_tokens") if k in out}
    ok = all(r.get("ok", True) for r in results)
    return {"status": "ok" if ok else "failed", "seconds": round(time.time() - start, 1), **out}


# ------------------------------------------------------------------------------------------------ workers
def worker_varlen(work: Path) -> dict:
    import torch
    from transformers import AutoProcessor

    from mmfinereason.data.batching.collator import MultimodalCollator
    from mmfinereason.toy import tiny_model_dir
    from sft_throughput import build_model, make_examples

    tiny = tiny_model_dir()
    processor = AutoProcessor.from_pretrained(tiny)
    model = build_model("2b", tiny, "flash_attention_2", torch.bfloat16, "cuda")
    model.config.use_cache = False
    examples = make_examples(8, 8.0, processor.tokenizer, seed=1)
    bounds = dict(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    padded = MultimodalCollator(processor, 8192, **bounds)(examples)
    packed = MultimodalCollator(processor, 8192, packing=True, model=model, **bounds)(examples)
    with torch.no_grad():
        loss_padded = float(model(**{k: v.cuda() for k, v in padded.items()}).loss)
        loss_packed = float(model(**{k: v.cuda() for k, v in packed.items()}).loss)
    diff = abs(loss_padded - loss_packed)
    scoring = rollout_scoring(model, padded, rows=4)
    return {"ok": diff < 2e-2 * abs(loss_padded) and scoring["ok"], "loss_padded": loss_padded,
            "loss_packed": loss_packed, "abs_diff": diff, "packed_rows": int(packed["input_ids"].shape[0]),
            "gspo_scoring": scoring}


def rollout_scoring(model, padded: dict, rows: int) -> dict:
    """GSPO's padding-free scoring (``mmfinereason.trainers.padding_free.pack_rollouts``) against the padded forward
    under the model's own attention (flash-attn varlen here): per-token log-probs of ``rows`` right-padded rows of
    different lengths, compared where the mask is 1. Runs on CPU too (``sdpa_varlen``)."""
    import torch

    from mmfinereason.trainers.padding_free import pack_rollouts, row_images, unpack_scores

    device = next(model.parameters()).device
    ids, mask = padded["input_ids"][:rows], padded["attention_mask"][:rows]
    # the batch's images are in row order; a row holds as many as cover its image tokens (0-2 here)
    merge = model.config.vision_config.spatial_merge_size ** 2
    tokens_per_image = (padded["image_grid_thw"].prod(-1) // merge).tolist()
    counts, taken = [], 0
    for row_tokens in (ids == model.config.image_token_id).sum(1).tolist():
        count = 0
        while row_tokens > 0:
            row_tokens -= tokens_per_image[taken + count]
            count += 1
        counts.append(count)
        taken += count
    grid = padded["image_grid_thw"][:taken]
    pixels = padded["pixel_values"][: int(grid.prod(-1).sum())]
    width = ids.shape[1] - 1  # every token but the first is scored
    packed = pack_rollouts(model, ids, mask, width, padded["mm_token_type_ids"][:rows], row_images(pixels, grid, counts))

    def logps(logits, labels):
        return torch.log_softmax(logits.float(), -1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)

    with torch.no_grad():
        out = model(input_ids=ids.to(device), attention_mask=mask.to(device), pixel_values=pixels.to(device),
                    image_grid_thw=grid.to(device), mm_token_type_ids=padded["mm_token_type_ids"][:rows].to(device))
        reference = logps(out.logits[:, :-1], ids[:, 1:].to(device))
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in packed.batch.items() if k != "labels"}
        row = batch["input_ids"]
        packed_logps = logps(model(**batch).logits[:, :-1], row[:, 1:])
        # a control that is known wrong: the image tokens' 3-D positions replaced by text positions
        batch["position_ids"] = batch["position_ids"][:1].expand_as(batch["position_ids"]).clone()
        control_logps = logps(model(**batch).logits[:, :-1], row[:, 1:])
    real = mask[:, 1:].bool().to(device)
    diff = (unpack_scores(packed, packed_logps, rows, width) - reference).abs()[real]
    control = (unpack_scores(packed, control_logps, rows, width) - reference).abs()[real]
    # self-calibrating: random weights barely depend on positions, and bf16 noise is of the same order, so a fixed
    # tolerance would pass wrong positions too; packed must sit much closer to padded than the wrong control does
    return {"ok": bool(diff.mean() < 0.5 * control.mean()), "rows": rows,
            "real_token_fraction": round(float(mask.float().mean()), 3),
            "mean_abs_diff": float(diff.mean()), "max_abs_diff": float(diff.max()),
            "control_mean_abs_diff": float(control.mean()), "mean_abs_logp": float(reference[real].abs().mean())}


def _bounds_dataset(n: int):
    import datasets
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        w, h = BOUND_SIZES[i % len(BOUND_SIZES)]
        image = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        rows.append({"id": i, "image": image, "question": "<image>\nHow many shapes?", "answer": "2",
                     "qwen3vl_235b_thinking_response": "<think>two</think>The final answer is <answer>2</answer>.",
                     "source": f"{w}x{h}"})
    return datasets.Dataset.from_list(rows)


def worker_gspo_vllm(work: Path) -> dict:
    import torch
    from transformers import AutoProcessor

    from mmfinereason.pipelines.gspo import run_gspo
    from mmfinereason.pipelines.sft import run_sft
    from mmfinereason.recipe.loader import recipe_from_dict
    from mmfinereason.toy import tiny_model_dir
    from sft_throughput import build_model

    tiny, base = tiny_model_dir(), work / "base"
    model = build_model("2b", tiny, "sdpa", torch.bfloat16, "cuda")
    model.save_pretrained(base)
    del model
    torch.cuda.empty_cache()
    AutoProcessor.from_pretrained(tiny).save_pretrained(base)  # real Qwen3-VL defaults: 65,536 .. 16,777,216
    data = {"min_pixels": MIN_PIXELS, "max_pixels": MAX_PIXELS, "max_length": 2048,
            "train": [{"path": _bounds_dataset(20)}]}
    quiet = {"report_to": "none", "logging_steps": 1, "save_strategy": "no", "seed": 0}
    off = {"before_training": False, "after_training": False}
    run_sft(recipe_from_dict({"stage": "sft", "model": {"name_or_path": str(base), "dtype": "bfloat16"}, "data": data,
                              "train": {"output_dir": str(work / "sft"), "max_steps": 2, "per_device_train_batch_size": 2,
                                        **quiet}, "eval": off}))
    saved = AutoProcessor.from_pretrained(work / "sft").image_processor.size
    result = run_gspo(recipe_from_dict({
        "stage": "gspo", "model": {"name_or_path": str(work / "sft"), "dtype": "bfloat16"}, "data": data, "eval": off,
        "train": {"output_dir": str(work / "gspo"), "max_steps": 3, "num_generations": 4,
                  "per_device_train_batch_size": 8, "max_completion_length": 32, "max_prompt_length": 2048,
                  "use_vllm": True, "vllm_mode": "colocate", "vllm_gpu_memory_utilization": 0.3,
                  "vllm_enable_sleep_mode": False, "vllm_max_model_length": 4096, "dynamic_sampling": False,
                  "learning_rate": 1e-6, "warmup_steps": 0, **quiet},
    }))
    losses = [h["loss"] for h in result.log_history if "loss" in h]
    avoided = [h.get("padding_free/frac_padding_avoided") for h in result.log_history if "loss" in h]
    bounds_saved = (saved["shortest_edge"], saved["longest_edge"]) == (MIN_PIXELS, MAX_PIXELS)
    return {"ok": bounds_saved and len(losses) == 3, "saved_size": dict(saved), "gspo_steps": len(losses),
            "losses": losses, "image_sizes": [f"{w}x{h}" for w, h in BOUND_SIZES],
            "padding_free_frac_avoided": avoided}  # the loss forward packed (sdpa_varlen, bf16) on a GPU


def worker_zero(work: Path) -> dict:
    import torch

    from mmfinereason.pipelines.sft import build_sft
    from mmfinereason.recipe.loader import load_recipe

    recipe = load_recipe(ROOT / "recipes" / "tiny" / "sft.yaml", [
        f"train.output_dir={work}", "model.dtype=bfloat16", "data.train.0.limit=32", "data.eval.0.limit=1",
        "train.max_steps=2", "train.logging_steps=1", "train.warmup_steps=0", "eval.before_training=false",
        "eval.after_training=false",
    ])
    trainer = build_sft(recipe)
    trainer.train()
    plugin = trainer.accelerator.state.deepspeed_plugin
    params = list(trainer.model_wrapped.parameters())
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    stage = plugin.zero_stage if plugin is not None else None
    partitioned = all(hasattr(p, "ds_id") for p in params) if stage == 3 else None
    master = trainer.optimizer.optimizer if hasattr(trainer.optimizer, "optimizer") else trainer.optimizer
    master_dtypes = sorted({str(p.dtype) for g in master.param_groups for p in g["params"]})
    # DeepSpeed's ZeRO optimizer holds the fp32 master partitions in its param groups (read, not yet run here)
    ok = bool(trainer.is_deepspeed_enabled and losses and bool(torch.isfinite(torch.tensor(losses)).all())
              and master_dtypes == ["torch.float32"])
    return {"ok": ok and (partitioned is not False), "deepspeed": trainer.is_deepspeed_enabled, "zero_stage": stage,
            "module_dtype": str(params[0].dtype), "optimizer_dtypes": master_dtypes, "partitioned": partitioned,
            "losses": losses}


WORKERS = {"varlen": worker_varlen, "gspo_vllm": worker_gspo_vllm, "zero": worker_zero}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    parser.add_argument("--dry-run", action="store_true", help="no GPU work: report what would run or skip")
    parser.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:  # inside a subprocess: one part, one JSON line
        work = Path(args.work)
        work.mkdir(parents=True, exist_ok=True)
        out = WORKERS[args.worker](work)
        print(json.dumps(out, default=str))
        return out
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown parts {unknown}; choose from {PARTS}")
    work = Path(args.work or tempfile.mkdtemp(prefix="gpu-check-"))
    report: dict = {"bench": "gpu_check", "parts": {}}
    start = time.time()
    for part in parts:
        reason = skip_reason(part)
        if reason is not None:
            report["parts"][part] = {"status": "skipped", "reason": reason}
        elif args.dry_run:
            report["parts"][part] = {"status": "skipped", "reason": "dry run (would run)"}
        else:
            report["parts"][part] = run_part(part, work)
    report["seconds"] = round(time.time() - start, 1)
    report["ok"] = all(p["status"] != "failed" for p in report["parts"].values())
    print(json.dumps(report, default=str))
    return report


if __name__ == "__main__":
    sys.exit(0 if main()["ok"] else 1)
