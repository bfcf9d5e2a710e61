"""``mmfinereason sft RECIPE [k=v …]`` and ``mmfinereason gspo RECIPE [k=v …]``."""

from __future__ import annotations

from mmfinereason.recipe.loader import RecipeError, load_recipe
from mmfinereason.recipe.shipped import resolve_recipe_arg


def _run(args) -> int:
    recipe = load_recipe(resolve_recipe_arg(args.recipe, args.command), args.overrides)
    if recipe.stage != args.command:
        raise RecipeError(f"{args.recipe} is a stage '{recipe.stage}' recipe; run it with `mmfinereason {recipe.stage}`")
    if args.command == "sft":
        from mmfinereason.pipelines.sft import run_sft

        run_sft(recipe)
    else:
        from mmfinereason.pipelines.gspo import run_gspo

        run_gspo(recipe)
    return 0


def register(subparsers) -> None:
    for name, text in (("sft", "stage 1: supervised fine-tuning"), ("gspo", "stage 2: GSPO reinforcement learning")):
        p = subparsers.add_parser(name, help=text, description=f"{text}; overrides look like train.learning_rate=2e-5")
        p.add_argument(
            "recipe", help=f"recipe YAML (e.g. recipes/tiny/{name}.yaml) or a shipped recipe's name (e.g. tiny)"
        )
        p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. train.num_train_epochs=1")
        p.set_defaults(func=_run)
