"""Recipes: YAML -> typed dataclasses (``load_recipe``), the first stage of the flow; light imports only.

``sections`` holds the ``model`` / ``data`` / ``eval`` dataclasses, ``loader`` the YAML and override loader,
``train_args`` the trainers' configs (TRL's plus our fields; imported only when a recipe is built) and
``shipped`` finds the recipes that come with the package.
"""

from mmfinereason.recipe.loader import Recipe, RecipeError, apply_override, build, load_recipe, recipe_from_dict
from mmfinereason.recipe.sections import DataConfig, EvalConfig, LoraSettings, ModelConfig, SourceSpec
from mmfinereason.recipe.shipped import find_recipe

__all__ = [
    "DataConfig",
    "EvalConfig",
    "LoraSettings",
    "ModelConfig",
    "Recipe",
    "RecipeError",
    "SourceSpec",
    "apply_override",
    "build",
    "find_recipe",
    "load_recipe",
    "recipe_from_dict",
]
