"""Command line: ``mmfinereason {sft,gspo,demo,eval,select,plan} …`` (also ``python -m mmfinereason``).

Each sub-command lives in its own module under :mod:`mmfinereason.commands` and is a thin wrapper over
functions a notebook can call too. Under ``accelerate launch -m mmfinereason sft RECIPE`` the same code runs
on every process.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .config import RecipeError

# One line per sub-command module; each defines register(subparsers).
COMMAND_MODULES = [
    "mmfinereason.commands.train",
    "mmfinereason.commands.demo",
    "mmfinereason.commands.eval",
    "mmfinereason.commands.select",
    "mmfinereason.commands.plan",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmfinereason",
        description="Train Qwen3-VL to reason over images: SFT on chain-of-thought traces, then GSPO.",
    )
    parser.add_argument("--log-level", default="INFO", help="Python logging level (default: INFO)")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = getattr(logging, str(args.log_level).upper(), logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    finished = False
    try:
        code = args.func(args)
        finished = True
        return code
    except RecipeError as e:
        print(f"mmfinereason: recipe error: {e}", file=sys.stderr)
        return 2
    finally:
        _shutdown_distributed(wait_for_peers=finished)


def _shutdown_distributed(wait_for_peers: bool) -> None:
    """Tear the process group down before interpreter exit.

    Left to the interpreter, gloo/NCCL's background threads can be destroyed while joinable and abort a rank
    ("terminate called without an active exception", exit -6) after all work was saved — a failed job to
    the scheduler. After a normal finish every rank first waits for the others (rank 0 may still be writing
    the final model while a peer that saves nothing is already done): a rank that tears its process group
    down while a peer still talks to it aborted the same way, intermittently. Not on an error or the
    preemption exit (SystemExit 143), where peers may be gone and a barrier would hang.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if wait_for_peers:
            dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
