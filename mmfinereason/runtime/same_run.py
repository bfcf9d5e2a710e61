"""``resume_from_checkpoint: auto`` continues only the *same* run: the checkpoint's ``recipe.yaml`` must agree with
the current recipe on every training-relevant key.

Why: ``auto`` picks the newest checkpoint in ``output_dir`` without looking at what produced it. Re-running a
recipe with a new learning rate into the same folder used to continue the old run silently, with the old
optimizer state and the new settings mixed. Every checkpoint carries the recipe that wrote it
(:mod:`mmfinereason.trainers.run_files`), so the two can be compared before training starts.

What may differ (a requeue legitimately changes it, and it does not change what the weights become):

* output and bookkeeping: ``train.output_dir``, logging, saving and evaluation frequency, ``report_to``,
  ``run_name``, progress bars, hub pushing, ``resume_from_checkpoint`` itself;
* throughput-only knobs: data-loader workers, ``gradient_checkpointing`` (same numbers, less memory),
  ``padding_free`` (the same log-probs, packed);
* held-out evaluation: the whole ``eval:`` section and ``data.eval`` (measured, never trained on);
* the run's length: ``train.max_steps`` and ``train.num_train_epochs`` may grow to extend a finished run
  (allowed with a warning: the learning-rate schedule is recomputed for the new length).

Everything else in ``model:``, ``data:`` and ``train:`` must be equal. Only train keys that either recipe sets
are compared (a key neither sets has the code's default in both). An explicit checkpoint path is the user's
deliberate choice: differences are logged as a warning, not refused.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import logging
from pathlib import Path
from typing import Any

import yaml

from mmfinereason.errors import UserError
from mmfinereason.recipe.loader import Recipe, RecipeError, _apply_renames, _plain, read_yaml

logger = logging.getLogger(__name__)

RECIPE_FILE = "recipe.yaml"

# Dotted keys (fnmatch patterns) that may change between a run and its resume; see the module docstring.
MAY_DIFFER = (
    "train.output_dir", "train.logging_*", "train.save_*", "train.eval_*", "train.report_to", "train.run_name",
    "train.disable_tqdm", "train.resume_from_checkpoint", "train.dataloader_*", "train.push_to_hub", "train.hub_*",
    "train.gradient_checkpointing", "train.gradient_checkpointing_kwargs", "train.padding_free", "train.trackio_*",
    "train.project",
    "data.eval", "data.eval.*", "data.num_proc", "eval", "eval.*",
)
EXTENDS_THE_RUN = ("train.max_steps", "train.num_train_epochs")


class ResumeMismatchError(UserError):
    """The checkpoint ``auto`` would resume was written with other training settings."""


def _flatten(value: Any, prefix: str) -> dict[str, Any]:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}"))
        return out or {prefix: {}}
    if isinstance(value, (list, tuple)) and any(isinstance(v, dict) or dataclasses.is_dataclass(v) for v in value):
        out = {f"{prefix}.#": len(value)}
        for i, v in enumerate(value):
            out.update(_flatten(v, f"{prefix}.{i}"))
        return out
    return {prefix: _plain(value)}


def _field_default(config: Any, key: str) -> Any:
    for f in dataclasses.fields(config):
        if f.name == key:
            if f.default is not dataclasses.MISSING:
                return _plain(f.default)
            if f.default_factory is not dataclasses.MISSING:
                return _plain(f.default_factory())
    return None


def _settings(saved: dict[str, Any], current: Recipe) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both recipes as flat ``{dotted key: plain value}``, from what :meth:`Recipe.to_dict` writes.

    Why plain data and not a rebuilt :class:`Recipe`: building a TRL config sets up transformers' process state
    (``TrainingArguments._setup_devices``), which would reset the trainer that is about to train.
    """
    now = current.to_dict()
    a, b = {"stage": saved.get("stage", "sft")}, {"stage": now["stage"]}
    for section in ("model", "data", "eval"):
        there, here = _flatten(saved.get(section) or {}, section), _flatten(now[section], section)
        common = set(there) & set(here)  # a field added since the checkpoint was written has its default there
        a.update({k: there[k] for k in common})
        b.update({k: here[k] for k in common})
    saved_train, now_train = saved.get("train") or {}, now.get("train") or {}
    for key in set(saved_train) | set(now_train):
        a[f"train.{key}"] = saved_train[key] if key in saved_train else _field_default(current.train, key)
        b[f"train.{key}"] = now_train[key] if key in now_train else _plain(getattr(current.train, key, None))
    return a, b


def recipe_differences(saved: dict[str, Any], current: Recipe) -> tuple[list[str], list[str]]:
    """(keys that make it another run, keys that only extend it): dotted keys whose values differ.

    ``saved`` is the checkpoint's ``recipe.yaml`` as read (old key names are renamed first).
    """
    saved = dict(saved)
    _apply_renames(saved)
    a, b = _settings(saved, current)
    differ = sorted(k.replace(".#", "") for k in set(a) | set(b) if a.get(k) != b.get(k))
    differ = [k for k in dict.fromkeys(differ) if not any(fnmatch.fnmatchcase(k, p) for p in MAY_DIFFER)]
    extend = [k for k in differ if k in EXTENDS_THE_RUN]
    return [k for k in differ if k not in EXTENDS_THE_RUN], extend


def _describe(keys: list[str], saved: dict[str, Any], current: Recipe) -> str:
    a, b = _settings(saved, current)
    parts = []
    for key in keys:
        there, now = a.get(key, a.get(f"{key}.#", "unset")), b.get(key, b.get(f"{key}.#", "unset"))
        short = len(repr(there)) + len(repr(now)) < 120
        parts.append(f"{key} ({there!r} there, {now!r} now)" if short else key)
    return ", ".join(parts)


def check_same_run(checkpoint: str | Path, current: Recipe | None, *, explicit: bool = False) -> None:
    """Raise :class:`ResumeMismatchError` when ``checkpoint`` was written by a run with other training settings.

    No-op without a current recipe (a trainer built by hand) or without a saved one (a checkpoint written by
    another tool or an older version; logged). With ``explicit=True`` (a path the user named) differences
    are only logged.
    """
    if current is None:
        return
    path = Path(checkpoint) / RECIPE_FILE
    if not path.is_file():
        logger.warning("%s has no %s: cannot check that it comes from the same settings", checkpoint, RECIPE_FILE)
        return
    ways_out = (
        f"to start a new run, give it a new train.output_dir (now {current.train.output_dir}), or pass "
        "train.resume_from_checkpoint=null to start fresh in this one"
    )
    try:
        saved = read_yaml(path.read_text()) or {}
        if not isinstance(saved, dict):
            raise RecipeError(f"expected a mapping, got {type(saved).__name__}")
    except (RecipeError, yaml.YAMLError) as e:
        raise ResumeMismatchError(f"cannot read {path} to check it is the same run ({e});\n{ways_out}") from e
    differ, extend = recipe_differences(saved, current)
    if extend:
        logger.warning(
            "resuming %s with a new run length (%s): the learning-rate schedule follows the new length",
            checkpoint, _describe(extend, saved, current),
        )
    if not differ:
        return
    what = _describe(differ, saved, current)
    if explicit:
        logger.warning("resuming %s, which was written with other settings: %s", checkpoint, what)
        return
    raise ResumeMismatchError(
        f"resume_from_checkpoint=auto found {checkpoint}, written by a run with other settings: {what};\n{ways_out}"
    )
