"""The recipes that come with the package (``recipes/<model>/<stage>.yaml``): where to find them.

Looked up in this order: ``$MMFINEREASON_RECIPES``, the ``recipes/`` folder next to the package (a source
checkout or an editable install), then ``mmfinereason/recipes`` shipped as package data (a wheel or
``pip install .``; see setup.py).

Short names on the command line (:func:`resolve_recipe_arg`): a file that exists is used as given; otherwise
``tiny`` means ``tiny/<stage>.yaml`` of the stage being run (``mmfinereason sft tiny`` -> ``tiny/sft.yaml``,
``mmfinereason gspo qwen3vl-8b`` -> ``qwen3vl-8b/gspo.yaml``), and ``tiny/sft.yaml`` or ``recipes/tiny/sft.yaml``
is the shipped file — so the README's commands work from any folder once the package is installed.
"""

from __future__ import annotations

import os
from pathlib import Path

from mmfinereason.recipe.loader import RecipeError


def find_recipe(relative: str) -> Path:
    """A shipped recipe (e.g. ``tiny/sft.yaml``) from the environment, the source tree or the package data."""
    candidates = [root / relative for root in _roots()]
    for path in candidates:
        if path.is_file():
            return path
    raise RecipeError(
        f"cannot find the shipped recipe {relative} (looked in {', '.join(str(c) for c in candidates)}); "
        "set MMFINEREASON_RECIPES to the repository's recipes/ folder or pass the recipe paths"
    )


def _roots() -> list[Path]:
    roots = [Path(os.environ["MMFINEREASON_RECIPES"])] if os.environ.get("MMFINEREASON_RECIPES") else []
    package = Path(__file__).resolve().parent.parent
    return roots + [package.parent / "recipes", package / "recipes"]


def shipped_recipes() -> list[str]:
    """Every shipped recipe as ``<model>/<stage>.yaml``, from all the places :func:`find_recipe` looks."""
    return sorted({f"{p.parent.name}/{p.name}" for root in _roots() if root.is_dir() for p in root.glob("*/*.yaml")})


def resolve_recipe_arg(arg: str | Path, stage: str | None = None) -> Path:
    """A recipe argument of the CLI -> the file: a path that exists, else a shipped recipe by short name."""
    path = Path(arg)
    if path.is_file():
        return path
    text = str(arg).replace("\\", "/")
    if text.startswith("recipes/"):
        text = text[len("recipes/"):]
    if stage is not None and "/" not in text and path.suffix not in (".yaml", ".yml"):
        text = f"{text}/{stage}.yaml"
    try:
        return find_recipe(text)
    except RecipeError:
        names = sorted({name.split("/")[0] for name in shipped_recipes()})
        raise RecipeError(
            f"recipe file not found: {arg}; give a recipe YAML, or the name of a shipped one: {', '.join(names)} "
            f"(e.g. `mmfinereason {stage or 'sft'} tiny`)"
        ) from None
