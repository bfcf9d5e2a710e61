"""The recipes that come with the package (``recipes/<model>/<stage>.yaml``): where to find them.

Looked up in this order: ``$MMFINEREASON_RECIPES``, the ``recipes/`` folder next to the package (a source
checkout or an editable install), then ``mmfinereason/recipes`` shipped as package data.
"""

from __future__ import annotations

import os
from pathlib import Path

from mmfinereason.recipe.loader import RecipeError


def find_recipe(relative: str) -> Path:
    """A shipped recipe (e.g. ``tiny/sft.yaml``) from the environment, the source tree or the package data."""
    candidates = []
    if os.environ.get("MMFINEREASON_RECIPES"):
        candidates.append(Path(os.environ["MMFINEREASON_RECIPES"]) / relative)
    package = Path(__file__).resolve().parent.parent
    candidates += [package.parent / "recipes" / relative, package / "recipes" / relative]
    for path in candidates:
        if path.is_file():
            return path
    raise RecipeError(
        f"cannot find the shipped recipe {relative} (looked in {', '.join(str(c) for c in candidates)}); "
        "set MMFINEREASON_RECIPES to the repository's recipes/ folder or pass the recipe paths"
    )
