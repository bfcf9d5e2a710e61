"""Kept for compatibility: the recipe API moved to :mod:`mmfinereason.recipe` (``mmfinereason.config.load_recipe``
is part of the public contract and keeps working)."""

from mmfinereason.recipe import *  # noqa: F401,F403
from mmfinereason.recipe import __all__  # noqa: F401
