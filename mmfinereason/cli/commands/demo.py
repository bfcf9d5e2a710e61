"""``mmfinereason demo``: the tiny model on the embedded task, SFT then GSPO, held-out accuracy at each stage."""

from __future__ import annotations


def _run(args) -> int:
    from mmfinereason.pipelines.demo import run_demo

    run_demo(
        args.output_dir,
        sft_recipe=args.sft_recipe,
        gspo_recipe=args.gspo_recipe,
        sft_overrides=args.sft,
        gspo_overrides=args.gspo,
    )
    return 0


def register(subparsers) -> None:
    text = "tiny SFT -> GSPO on CPU; prints held-out accuracy untrained, after SFT and after GSPO"
    p = subparsers.add_parser("demo", help=text, description=text)
    p.add_argument("--output-dir", default="outputs/demo", help="where the SFT and GSPO models go (default: outputs/demo)")
    p.add_argument("--sft-recipe", default=None, help="stage-1 recipe (default: the shipped recipes/tiny/sft.yaml)")
    p.add_argument("--gspo-recipe", default=None, help="stage-2 recipe (default: the shipped recipes/tiny/gspo.yaml)")
    p.add_argument("--sft", nargs="*", default=[], metavar="KEY=VALUE", help="overrides for the SFT recipe")
    p.add_argument("--gspo", nargs="*", default=[], metavar="KEY=VALUE", help="overrides for the GSPO recipe")
    p.set_defaults(func=_run)
