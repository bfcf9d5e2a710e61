"""Per-part learning rates (vision tower / merger / language model) for both stages' trainers.

Why by hand: transformers' ``create_optimizer`` builds one learning rate for every parameter (split only by
weight decay). A randomly initialised vision tower must learn to see at another rate than a language model
that is being fine-tuned, and in GSPO an unfrozen tower needs a far smaller step than the text side (noisy
rewards unlearn what SFT taught it to see). The groups transformers builds are split once more by model part;
everything else about them (weight decay, betas) is kept.

The logged ``learning_rate`` is the language model's: transformers logs the first param group's rate, which after
the split can be the tower's (a 3e-5 tower beside a 1e-4 text model printed ``lr 2.7e-05``). Each part with a rate
of its own is logged beside it as ``learning_rate/<part>``.
"""

from __future__ import annotations

from collections import defaultdict

from mmfinereason.modeling.parts import part_of


class PartLearningRatesMixin:
    """Put before the transformers trainer in the bases; reads ``args.vision_tower_learning_rate`` and
    ``args.merger_learning_rate`` (None: the part trains at ``learning_rate``)."""

    def create_optimizer(self, model=None):
        """The trainer's optimizer, with each param group split by model part when part LRs are set."""
        optimizer = super().create_optimizer(model) if model is not None else super().create_optimizer()
        lrs = {
            part: lr
            for part, lr in (
                ("vision_tower", self.args.vision_tower_learning_rate),
                ("merger", self.args.merger_learning_rate),
            )
            if lr is not None
        }
        if not lrs:
            return optimizer
        names = {id(p): n for n, p in (model or self.model).named_parameters()}
        groups, parts = [], []
        for group in optimizer.param_groups:
            by_part: dict[str, list] = defaultdict(list)
            for p in group["params"]:
                by_part[part_of(names.get(id(p), ""))].append(p)
            for part, params in by_part.items():
                groups.append({**group, "params": params, "lr": lrs.get(part, group["lr"])})
                parts.append(part)
        optimizer.param_groups = groups
        self._group_parts = parts
        return optimizer

    def part_learning_rates(self) -> dict[str, float]:
        """The current rate of each model part, read from the optimizer (the scheduler updates it in place)."""
        parts = getattr(self, "_group_parts", None)
        optimizer = getattr(self, "optimizer", None)
        if not parts or optimizer is None:
            return {}
        groups = getattr(optimizer, "param_groups", [])
        if len(groups) != len(parts):  # an optimizer built elsewhere (DeepSpeed's): its groups are not ours
            return {}
        rates: dict[str, float] = {}
        for part, group in zip(parts, groups):
            rates.setdefault(part, float(group["lr"]))
        return rates

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        rates = self.part_learning_rates()
        if rates and "learning_rate" in logs:
            if "language_model" in rates:
                logs["learning_rate"] = rates.pop("language_model")
            for part, lr in rates.items():
                logs[f"learning_rate/{part}"] = lr
        super().log(logs, *args, **kwargs)
