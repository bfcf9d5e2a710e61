"""``mmfinereason plot RUN_DIR [RUN_DIR …]``: training curves as pictures, from the runs' log history.

Each run dir gets ``curves.png`` + ``curves.svg``; with several run dirs, one combined picture too (runs of the same
stage overlaid, one section per stage) at ``--output`` (default: ``curves.png`` in their common parent folder).
Works during a run as well: the log history is written as it is logged.
"""

from __future__ import annotations


def _run(args) -> int:
    from mmfinereason.monitoring.curves import plot_runs

    written = plot_runs(args.run_dirs, args.output, labels=args.label or None, each=not args.combined_only, dpi=args.dpi)
    for name, paths in written.items():
        print(f"{name}: " + "  ".join(str(p) for p in paths))
    return 0


def register(subparsers) -> None:
    text = "training curves (PNG + SVG) of one or several run dirs"
    p = subparsers.add_parser("plot", help=text, description=text + "; several run dirs are overlaid")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="a run's train.output_dir (e.g. outputs/demo/sft)")
    p.add_argument("--output", default=None, help="the combined picture (.png; an .svg is written beside it); "
                   "default: curves.png in the run dirs' common parent when several are given")
    p.add_argument("--label", action="append", default=[], metavar="NAME",
                   help="a legend name per run dir, in order (default: the last two path parts)")
    p.add_argument("--combined-only", action="store_true", help="skip each run's own curves.png")
    p.add_argument("--dpi", type=int, default=100, help="PNG resolution (default 100; 80 for a smaller file)")
    p.set_defaults(func=_run)
