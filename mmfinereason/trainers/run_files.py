"""The resolved recipe saved next to every checkpoint, for both stages.

Why: a checkpoint (or a model folder) is only reproducible and evaluable (``mmfinereason eval FOLDER`` reads its
settings from it) when the exact recipe that produced it sits beside it. transformers' ``Trainer`` saves the
weights, optimizer, scheduler, RNG states and processor; this mixin adds ``recipe.yaml``.
"""

from __future__ import annotations

from pathlib import Path


def checkpoint_dir(trainer) -> Path:
    """The folder ``Trainer._save_checkpoint`` writes for the current step (``OUTPUT_DIR/checkpoint-N``)."""
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    return Path(trainer.args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{trainer.state.global_step}"


class RecipeCheckpointMixin:
    """Put first in the bases of a ``transformers.Trainer`` subclass that has a ``recipe`` attribute (or None)."""

    recipe = None

    def save_recipe(self, folder: str | Path) -> None:
        """Write ``recipe.yaml`` into ``folder`` (main process only; no-op without a recipe)."""
        if self.recipe is not None and self.args.should_save:
            self.recipe.save(Path(folder) / "recipe.yaml")

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        folder = checkpoint_dir(self)
        if folder.is_dir():
            self.save_recipe(folder)
