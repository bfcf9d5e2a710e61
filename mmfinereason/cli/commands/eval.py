"""``mmfinereason eval RECIPE_OR_MODEL [--data …]``: accuracy of a checkpoint on benchmark files.

    mmfinereason eval outputs/tiny-sft                      # a trained run: its recipe's eval data + settings
    mmfinereason eval tiny --data toy --limit 100           # the untrained embedded model, for comparison
    mmfinereason eval Qwen/Qwen3-VL-8B-Instruct --data mathvista=MathVista_mini.parquet --data mmmu=MMMU_val.jsonl

RECIPE_OR_MODEL is a recipe YAML (the model it trains: ``train.output_dir`` once it holds a saved model,
else ``model.name_or_path``; its ``data.eval`` sources and ``eval:`` settings), a directory written by
``mmfinereason sft`` (it carries its ``recipe.yaml``), a hub id / model directory, or ``tiny``. Without a
recipe the paper's evaluation settings apply (greedy, top_p 1, repetition penalty 1.05, images up to
2048x2048, no system prompt, 32,768 new tokens). Everything is written under ``--output``: predictions per
benchmark (resumed on restart), ``results.json`` and ``results.txt``.

    mmfinereason eval outputs/tiny-gspo --compare-to outputs/tiny-sft/eval   # paired: did GSPO change anything?

``--compare-to DIR`` pairs this run's answers with an earlier run's (its ``--output``) item by item and prints, per
benchmark and source, the items fixed and broken, the change with its 95% interval over the items, and an exact
sign test (:mod:`mmfinereason.evaluation.paired`); also written to ``comparison.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmfinereason.errors import UserError

logger = logging.getLogger(__name__)

PAPER_MAX_NEW_TOKENS = 32768
VLLM_BATCH = 512  # prompts per vLLM call (and per flushed write of predictions)
# The untrained embedded model never stops by itself: keep its budget at the tiny recipe's (recipes/tiny/sft.yaml).
TINY_SETTINGS = {"max_new_tokens": 96, "max_pixels": 25600}


@dataclass
class EvalTarget:
    """What to evaluate and with which defaults, resolved from RECIPE_OR_MODEL."""

    model: str
    recipe: Any = None  # mmfinereason.recipe.loader.Recipe or None
    default_output: str = "outputs/eval"
    notes: list[str] = field(default_factory=list)


def resolve_target(target: str, overrides: list[str] | None = None) -> EvalTarget:
    from mmfinereason.recipe.loader import load_recipe

    path = Path(target)
    if path.suffix in (".yaml", ".yml"):
        recipe = load_recipe(path, overrides or [])
        out = Path(recipe.train.output_dir)
        if (out / "config.json").exists():
            return EvalTarget(str(out), recipe, str(out / "eval"), [f"model: {out} (the recipe's trained output)"])
        note = f"model: {recipe.model.name_or_path} (the recipe's base model; {out} holds no trained model yet)"
        return EvalTarget(recipe.model.name_or_path, recipe, str(out / "eval-base"), [note])
    if path.is_dir() and (path / "recipe.yaml").exists():
        recipe = load_recipe(path / "recipe.yaml", overrides or [])
        return EvalTarget(str(path), recipe, str(path / "eval"), [f"model: {path} (settings from its recipe.yaml)"])
    if overrides:
        raise UserError(f"--set needs a recipe; {target!r} is a model")
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", target.strip("/")).strip("_") or "model"
    return EvalTarget(target, None, f"outputs/eval/{slug}", [f"model: {target}"])


def generation_settings(args, target: EvalTarget):
    """Command-line flags over the recipe's settings over the paper's (or, for ``tiny``, the tiny recipe's).

    Images: a trained folder is evaluated as the paper evaluates (up to 2048², ``--max-pixels`` to change it),
    not at the recipe's training ``max_pixels``; the recipe's ``min_pixels`` is kept (it is the resize training
    used for small images, e.g. geometry diagrams).
    """
    from mmfinereason.evaluation.generators import PAPER_MAX_PIXELS, PAPER_REPETITION_PENALTY, GenerationSettings

    base: dict[str, Any] = {
        "max_new_tokens": PAPER_MAX_NEW_TOKENS,
        "repetition_penalty": PAPER_REPETITION_PENALTY,
        "max_pixels": PAPER_MAX_PIXELS,
    }
    if target.model == "tiny":
        base.update(TINY_SETTINGS)
    if target.recipe is not None:
        r = target.recipe
        base.update(
            max_new_tokens=r.eval.max_new_tokens,
            repetition_penalty=r.eval.repetition_penalty,
            min_pixels=r.data.min_pixels,
            system_prompt=r.data.system_prompt,
        )
    for key in ("max_new_tokens", "repetition_penalty", "temperature", "top_p", "min_pixels", "max_pixels", "system_prompt"):
        value = getattr(args, key, None)
        if value is not None:
            base[key] = value
    return GenerationSettings(**base)


def vllm_args(args, benchmarks) -> dict[str, Any]:
    """vLLM engine sizes from the command line and the data: images per prompt counted over every benchmark."""
    from mmfinereason.data.prompt_images import images_per_prompt

    n = max((images_per_prompt(b.dataset) for b in benchmarks), default=1)
    return {"tensor_parallel_size": args.tensor_parallel_size, "max_images_per_prompt": n}


def benchmark_specs(args, target: EvalTarget) -> list:
    """``--data`` arguments, else the recipe's ``data.eval`` sources, else the toy task for ``tiny``."""
    from mmfinereason.evaluation.benchmarks import BenchmarkSpec, parse_data_arg

    columns = dict(parse_pairs(args.column, "--column"))
    if args.data:
        return [parse_data_arg(text, columns) for text in args.data]
    if target.recipe is not None and target.recipe.data.eval:
        specs = []
        for s in target.recipe.data.eval:
            name = s.name or ("toy" if s.path == "toy" else Path(str(s.path)).stem)
            specs.append(
                BenchmarkSpec(name=name, path=str(s.path), split=s.split, columns={**(s.columns or {}), **columns}, limit=s.limit)
            )
        return specs
    if target.model == "tiny":
        return [parse_data_arg("toy", columns)]
    raise UserError("nothing to evaluate on: give --data FILE (several times for several benchmarks)")


def parse_pairs(items: list[str] | None, flag: str) -> list[tuple[str, str]]:
    """``["a=b", …]`` -> ``[("a", "b"), …]``; a malformed item is an error naming the flag."""
    pairs = []
    for item in items or []:
        key, eq, value = item.partition("=")
        if not eq or not key or not value:
            raise UserError(f"{flag} {item!r}: expected OURS=THEIRS, e.g. {flag} answer=gt_answer")
        pairs.append((key.strip(), value.strip()))
    return pairs


def run(args) -> int:
    from mmfinereason.evaluation.benchmarks import load_benchmark
    from mmfinereason.evaluation.accuracy import evaluate_benchmarks
    from mmfinereason.evaluation.generators import load_generator, pick_backend
    from mmfinereason.evaluation.paired import read_predictions
    from mmfinereason.evaluation.store import check_run_settings

    target = resolve_target(args.target, args.set)
    settings = generation_settings(args, target)
    recipe = target.recipe
    limit = args.limit if args.limit is not None else (recipe.eval.limit if recipe is not None else None)
    specs = benchmark_specs(args, target)
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise UserError(f"two benchmarks share a name ({names}); name them with --data NAME=PATH")
    out = Path(args.output or target.default_output)
    # read before generating: a wrong folder fails now, not after the whole evaluation
    baseline = read_predictions(args.compare_to, names) if args.compare_to else None
    backend = pick_backend(args.backend)
    # vLLM batches continuously: hand it many prompts per call (each call still ends with a flushed write).
    batch_size = args.batch_size or (VLLM_BATCH if backend == "vllm" else recipe.eval.batch_size if recipe else 16)
    for note in target.notes:
        print(note)
    print(f"generation: {settings.to_dict()} backend={backend}\nwriting to {out}")

    benchmarks = [load_benchmark(s, limit=limit, max_skip_rate=args.max_skip_rate) for s in specs]
    for bench in benchmarks:
        print(f"{bench.name}: {len(bench)} rows ({bench.report.summary()})")
    check_run_settings(out / "run.json", {"model": target.model, "backend": backend, **settings.to_dict()}, args.overwrite)
    if args.overwrite:
        for bench in benchmarks:
            (out / "predictions" / f"{bench.name}.jsonl").unlink(missing_ok=True)
    dtype = args.dtype or (recipe.model.dtype if recipe is not None else "auto")
    attn = recipe.model.attn_implementation if recipe is not None else "sdpa"
    generator = load_generator(
        target.model, settings, backend=backend, dtype=dtype, attn_implementation=attn,
        **(vllm_args(args, benchmarks) if backend == "vllm" else {}),
    )
    report = evaluate_benchmarks(generator, benchmarks, out, batch_size=batch_size, progress=not args.no_progress)

    table = report.table()
    print("\n" + table)
    results = {
        "model": target.model,
        "generation": settings.to_dict(),
        "backend": backend,
        "limit": limit,
        **report.summary(),
        "skipped_rows": {b.name: dict(b.report.skipped) for b in benchmarks},
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.txt").write_text(table + "\n")
    print(f"\npredictions in {out / 'predictions'}, table in {out / 'results.txt'}")
    if baseline is not None:
        compare_runs(args.compare_to, baseline, report, names, out)
    return 0


def compare_runs(baseline_dir: str, before: list, report, names: list[str], out: Path) -> None:
    """Print and write (``out/comparison.json``) this run against ``baseline_dir``'s, paired item by item."""
    from mmfinereason.evaluation.paired import paired_by_group, paired_table

    key = "benchmark" if len(names) > 1 else "source"
    groups = paired_by_group(before, report.predictions, key)
    print("\n" + paired_table(groups, f"this run vs {baseline_dir}"))
    print("(the interval covers which items were drawn, not another training run: mmfinereason.evaluation.paired)")
    comparison = {"baseline": baseline_dir, "by": key, **{g: d.to_dict() for g, d in groups.items()}}
    (out / "comparison.json").write_text(json.dumps(comparison, indent=2) + "\n")


def add_generation_flags(p: argparse.ArgumentParser) -> None:
    """Flags shared by ``eval`` and ``select``."""
    p.add_argument("--max-new-tokens", dest="max_new_tokens", type=int, help="generation budget per answer")
    p.add_argument("--repetition-penalty", dest="repetition_penalty", type=float)
    p.add_argument("--top-p", dest="top_p", type=float)
    p.add_argument("--min-pixels", dest="min_pixels", type=int)
    p.add_argument("--max-pixels", dest="max_pixels", type=int, help="image budget (paper's evaluation: 4194304)")
    p.add_argument("--system-prompt", dest="system_prompt", help="a system turn (paper: none)")
    p.add_argument("--backend", default="auto", choices=["auto", "hf", "vllm"], help="auto: vLLM when installed and a GPU is present")
    p.add_argument("--tensor-parallel-size", dest="tensor_parallel_size", type=int, default=1, help="vLLM only")
    p.add_argument("--dtype", help="auto, bfloat16, float16 or float32 (default: the recipe's, else auto)")
    p.add_argument("--batch-size", dest="batch_size", type=int, help="prompts per generate call (HF backend)")
    p.add_argument("--limit", type=int, help="at most this many rows per benchmark")
    p.add_argument("--column", action="append", metavar="OURS=THEIRS", help="column mapping, e.g. answer=gt_answer")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="recipe override, e.g. eval.max_new_tokens=512")
    p.add_argument("--max-skip-rate", dest="max_skip_rate", type=float, default=0.05, help="unusable-row budget")
    p.add_argument("--overwrite", action="store_true", help="start over instead of resuming --output")
    p.add_argument("--no-progress", dest="no_progress", action="store_true", help="no progress bar")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval",
        help="accuracy of a model on benchmark files (resumable)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("target", metavar="RECIPE_OR_MODEL", help="recipe YAML, trained output dir, hub id / model dir, or tiny")
    p.add_argument("--data", action="append", metavar="[NAME=]PATH[:SPLIT]", help="benchmark file/folder/hub id or toy; repeatable")
    p.add_argument("--output", help="results folder (default: next to the model, or outputs/eval/<model>)")
    p.add_argument("--temperature", type=float, help="0 = greedy (paper)")
    p.add_argument("--compare-to", dest="compare_to", metavar="DIR",
                   help="an earlier eval's --output folder: pair its answers with this run's, item by item")
    add_generation_flags(p)
    p.set_defaults(func=run)
