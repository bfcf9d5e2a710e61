"""Command line: ``mmfinereason {sft,gspo,demo,eval,select,plan,plot} …`` (also ``python -m mmfinereason``).

Each sub-command lives in its own module under :mod:`mmfinereason.cli.commands` and is a thin wrapper over
functions a notebook can call too. Under ``accelerate launch -m mmfinereason sft RECIPE`` the same code runs
on every process.
"""

from __future__ import annotations

import argparse
import faulthandler
import importlib
import io
import logging
import sys

from mmfinereason.errors import UserError
from mmfinereason.recipe.loader import RecipeError
from mmfinereason.runtime.shutdown import shutdown_distributed

logger = logging.getLogger("mmfinereason")

# Errors a user causes and can fix; reported in one or two lines with exit code 2 instead of a traceback.
# UserError is raised with a message written for the user: RecipeError (a bad recipe or override, including what
# the TRL / transformers config classes refuse while recipe.loader.build makes them), a missing model folder or data
# file, bad data, a bad command-line argument, a resume of another run, … FileNotFoundError names a path the user
# gave; ImportError comes from `import_utils.require` ("pip install 'mmfinereason[x]'"). A plain ValueError is not
# here: raised deep in a library (or by an internal check of ours) it is a bug, and its traceback is what to report.
USER_ERRORS = (UserError, FileNotFoundError, ImportError)

# One line per sub-command module; each defines register(subparsers).
COMMAND_MODULES = [
    "mmfinereason.cli.commands.train",
    "mmfinereason.cli.commands.demo",
    "mmfinereason.cli.commands.eval",
    "mmfinereason.cli.commands.select",
    "mmfinereason.cli.commands.plan",
    "mmfinereason.cli.commands.plot",
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
    _enable_faulthandler()
    finished = False
    try:
        code = args.func(args)
        finished = True
    except USER_ERRORS as error:
        code = _report_user_error(args, error)
    except BaseException:
        # An error (or the preemption exit, which has already shut down): its traceback keeps the pipeline's
        # frames alive, so collecting here frees little; peers may be gone, so no barrier.
        shutdown_distributed(wait_for_peers=False)
        raise
    # Outside any handler, so the pipeline's frames are gone and the collection frees the trainer's DDP module.
    shutdown_distributed(wait_for_peers=finished)
    return code


def _report_user_error(args, error: BaseException) -> int:
    """A mistake the user can fix (a bad recipe, a missing file, a missing extra): one line, exit code 2.

    The traceback is logged at DEBUG (``mmfinereason --log-level DEBUG …``); every sub-command goes through here.
    """
    logger.debug("%s failed", args.command, exc_info=True)
    what = "recipe error" if isinstance(error, RecipeError) else args.command
    print(f"mmfinereason {what}: {error}", file=sys.stderr)
    print("(run with --log-level DEBUG for the traceback)", file=sys.stderr)
    shutdown_distributed(wait_for_peers=False)
    return 2


def _enable_faulthandler() -> None:
    """A rank that crashes in C++ (segfault, abort) prints where its Python threads were, instead of only
    torchrun's "exitcode -6". Skipped where stderr is no real file (captured by pytest, some notebooks)."""
    try:
        faulthandler.enable()
    except (AttributeError, ValueError, io.UnsupportedOperation):
        pass


if __name__ == "__main__":
    sys.exit(main())
