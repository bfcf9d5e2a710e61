"""``mmfinereason select``: pass rates by sampling, and subsets by rule ("less is more").

    # sample 4 answers per question with a model, write every row + pass_rate and two subsets
    mmfinereason select --model outputs/tiny-sft --data toy:rl --k 4 \\
        --keep 'pass_rate == 0' --keep '0 < pass_rate < 1' --output outputs/select-toy
    # pass@1, maj@16 and pass@16 of a model on the held-out items (before and after RL: did it narrow?)
    mmfinereason select --model outputs/tiny-sft --data toy:test --limit 500 --k 16 --output outputs/votes
    # the data already has a pass rate (MMFineReason's qwen3vl_4b_pass_rate): filter only, no model
    mmfinereason select --data sft.parquet --keep 'pass_rate == 0' --output outputs/hard-123k

With ``--model`` the rows are sampled (temperature 1.0, seeded per question) and scored with
``mmfinereason.rewards``; a killed run picks up where it stopped (``OUTPUT/samples.jsonl``). Without it the
data's own ``pass_rate`` column is used. Output: ``rows.<fmt>`` (all original columns + ``pass_rate``; with
``--model``), ``keep-<rule>.<fmt>`` per ``--keep``, ``summary.json``. With ``--model`` it also prints, per
source, the accuracy of one draw (pass@1), of the majority vote over the k draws (maj@k) and of any of them
(pass@k) (``mmfinereason/evaluation/voting.py``).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from mmfinereason.cli.commands.eval import add_generation_flags, generation_settings, parse_pairs, resolve_target
from mmfinereason.errors import UserError

logger = logging.getLogger(__name__)


def run(args) -> int:
    from mmfinereason.evaluation.benchmarks import load_benchmark, parse_data_arg
    from mmfinereason.data.io.loading import open_source
    from mmfinereason.data.io.rows import resolve_columns, row_id
    from mmfinereason.evaluation.selection import (
        align, compute_pass_rates, parse_keep_rule, parse_pass_rates, write_selection,
    )
    from mmfinereason.evaluation.voting import format_sampled_accuracy, sampled_accuracy

    rules = [parse_keep_rule(text) for text in args.keep or []]
    sampled = None  # with --model: pass@1, maj@k and pass@k per source
    columns = dict(parse_pairs(args.column, "--column"))
    spec = parse_data_arg(args.data, columns)
    out = Path(args.output or f"outputs/select/{spec.name}")
    if spec.path == "toy":
        # The toy task is drawn, not read: materialise it once so rows and pass rates come from the same table.
        from mmfinereason.toy.splits import toy_split

        raw = toy_split(spec.split, args.limit or 1000)
    else:
        raw, _, _ = open_source(spec.path, split=spec.split)
        if args.limit is not None:
            raw = raw.select(range(min(args.limit, len(raw))))

    if args.model is None:
        if not rules:
            raise UserError("without --model there is nothing to compute: give --keep RULE to filter on pass_rate")
        loader_columns = {k: v for k, v in columns.items() if k not in ("category", "options")}
        column = resolve_columns(raw.column_names, loader_columns, {"pass_rate"})["pass_rate"]
        print(f"{spec.name}: filtering on the existing column {column!r} (no generation)")
        ids = raw["id"] if "id" in raw.column_names else None
        rates = parse_pass_rates(raw[column], column, ids)
        summary = write_selection(raw, rates, rules, out, fmt=args.format, column=column, write_rows=False)
    else:
        from mmfinereason.evaluation.generators import load_generator, pick_backend
        from mmfinereason.evaluation.store import JsonlStore, check_run_settings, unique_ids

        target = resolve_target(args.model, args.set)
        if args.temperature is None:
            args.temperature = 1.0
        if args.repetition_penalty is None:
            args.repetition_penalty = 1.0  # sampling for a pass rate, not the paper's greedy evaluation
        settings = generation_settings(args, target)
        backend = pick_backend(args.backend)
        if spec.path == "toy":
            from mmfinereason.evaluation.benchmarks import Benchmark
            from mmfinereason.data.io.loading import load_examples_with_report

            dataset, report = load_examples_with_report(raw, require_response=False, name=spec.name)
            bench = Benchmark(spec.name, dataset, report, {})
        else:
            bench = load_benchmark(spec, limit=args.limit, max_skip_rate=args.max_skip_rate)
        print(f"{spec.name}: {len(bench)} rows ({bench.report.summary()}); k={args.k}, seed={args.seed}, {settings.to_dict()}")
        check_run_settings(
            out / "run.json",
            # "sampling": the draws of the per-row seeded sampler; a store written by the older per-question global
            # seeding holds other draws, and a run resumed over it would not be the uninterrupted run
            {"model": target.model, "data": args.data, "backend": backend, "k": args.k, "seed": args.seed,
             "sampling": "row-seeded-gumbel", **settings.to_dict()},
            args.overwrite,
        )
        store = JsonlStore(out / "samples.jsonl", key="uid")
        if args.overwrite:
            store.reset()
        dtype = args.dtype or (target.recipe.model.dtype if target.recipe is not None else "auto")
        generator = load_generator(target.model, settings, backend=backend, dtype=dtype, seed=args.seed)
        records = compute_pass_rates(
            generator, bench, store, k=args.k, seed=args.seed, batch_size=args.batch_size or 16,
            save_responses=args.save_responses, progress=not args.no_progress,
        )
        id_column = columns.get("id", "id")
        given = raw[id_column] if id_column in raw.column_names else [None] * len(raw)
        raw_ids = [row_id(v, spec.name, i) for i, v in enumerate(given)]  # the loader's rule
        kept_uids, _ = unique_ids(bench.ids())
        rates: list[float | None] = [None] * len(raw)
        for index, uid in zip(align(bench.ids(), raw_ids), kept_uids):
            rates[index] = records[uid]["pass_rate"]
        summary = write_selection(raw, rates, rules, out, fmt=args.format)
        sampled = sampled_accuracy(records[uid] for uid in kept_uids)
        summary["sampled_accuracy"] = {name: s.to_dict() for name, s in sampled.items()}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k not in ("files", "sampled_accuracy")}, indent=2))
    if sampled is not None:
        print(format_sampled_accuracy(sampled))
        print(f"(maj@{args.k} above the greedy accuracy of `mmfinereason eval`: points greedy decoding leaves; "
              f"pass@{args.k} lower after RL than before: questions the policy no longer reaches)")
    print(f"written to {out}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "select",
        help="pass rates by sampling k answers, and subsets by rule",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", help="model that answers (tiny, trained output dir, hub id); omit to filter an existing pass_rate")
    p.add_argument("--data", required=True, metavar="PATH[:SPLIT]", help="rows to score: file/folder/hub id or toy[:split]")
    p.add_argument("--k", type=int, default=4, help="answers sampled per question (paper: 4)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (per question: resume gives the same draws)")
    p.add_argument("--temperature", type=float, help="sampling temperature (default 1.0)")
    p.add_argument("--keep", action="append", metavar="RULE", help="subset rule, e.g. 'pass_rate == 0' or '0 < pass_rate < 1'")
    p.add_argument("--output", help="output folder (default outputs/select/<data name>)")
    p.add_argument("--format", default="parquet", choices=["parquet", "jsonl"], help="file format of rows and subsets")
    p.add_argument("--save-responses", dest="save_responses", action="store_true", help="keep all k responses in samples.jsonl")
    add_generation_flags(p)
    p.set_defaults(func=run)
