"""``mmfinereason plan RECIPE [LAUNCH.yaml] [--gpus N]``: per-GPU memory and tokens per step, no GPU needed."""

from __future__ import annotations

import json

from mmfinereason.recipe.loader import load_recipe


def _run(args) -> int:
    from mmfinereason.plan import format_plan, plan_recipe

    launch, overrides = args.launch, list(args.overrides)
    if launch is not None and "=" in launch and not launch.endswith((".yaml", ".yml")):
        launch, overrides = None, [launch, *overrides]  # no launch config, only overrides
    recipe = load_recipe(args.recipe, overrides)
    # An unknown backbone or a missing launch file is reported in one line by cli/main.py.
    report = plan_recipe(recipe, launch, args.gpus, args.backbone)
    if args.json:
        plans = {k: {**vars(p), "total": p.total(False), "total_checkpointed": p.total(True)} for k, p in report["plans"].items()}
        print(json.dumps({**report, "plans": plans}, default=str))
    else:
        print(format_plan(report, args.gpu_memory))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "plan",
        help="estimate per-GPU memory (ZeRO-2 vs ZeRO-3 vs FSDP2) and tokens per step of a recipe",
        description="Reads the backbone's config (never its weights) and prints weights / gradients / optimizer / "
        "activation memory per GPU for DDP, ZeRO-1/2/3 and FSDP2, with and without activation checkpointing.",
    )
    p.add_argument("recipe", help="recipe YAML, e.g. recipes/qwen3vl-8b/sft.yaml")
    p.add_argument("launch", nargs="?", default=None, help="accelerate config, e.g. launch/accelerate/zero2.yaml")
    p.add_argument("overrides", nargs="*", help="dotted key=value recipe overrides")
    p.add_argument("--backbone", default=None, help="config source instead of model.name_or_path, e.g. Qwen/Qwen3-VL-8B-Instruct")
    p.add_argument("--gpus", type=int, default=None, help="data-parallel GPUs (default: the launch config's, else 8)")
    p.add_argument("--gpu-memory", type=float, default=80.0, help="GiB per GPU to compare against (default 80)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.set_defaults(func=_run)
