"""Recipes: YAML -> typed dataclasses, with dotted ``key=value`` overrides and errors that name the key.

A recipe has one section per concern::

    stage: sft            # or gspo
    model: {...}          # ModelConfig: backbone, freezing, LoRA, attention
    data:  {...}          # DataConfig: sources, lengths, packing, image pixels
    train: {...}          # the trainer's config: mmfinereason SFTConfig / GSPOConfig (TRL configs + our fields)
    eval:  {...}          # EvalConfig: held-out accuracy before / after / during training

YAML is data, not code: it is read with a ``yaml.SafeLoader`` (:func:`read_yaml`) and every key is checked
against the dataclass it fills. An unknown key is an error naming it and the closest valid key; a value of the wrong type is an error
naming the key, the expected type and the value. Numbers written like ``1e-5`` (a *string* to YAML 1.1) are
accepted where a float is expected. Only ``true``/``false`` are booleans (YAML 1.2): YAML 1.1 also reads ``yes``,
``no``, ``on`` and ``off`` as booleans, which turned ``train.save_strategy=no`` — a string the field documents —
into ``False``; they stay strings here, and a boolean field accepts them as well.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import importlib
import logging
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mmfinereason.errors import UserError
from mmfinereason.recipe.sections import DataConfig, EvalConfig, ModelConfig

logger = logging.getLogger(__name__)

TRAIN_CONFIGS = {"sft": "mmfinereason.recipe.train_args:SFTConfig", "gspo": "mmfinereason.recipe.train_args:GSPOConfig"}


class RecipeYamlLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` where only true/false (any case) are booleans, not yes/no/on/off (see the docstring)."""


RecipeYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
RecipeYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_WORD_BOOLS = {"yes": True, "on": True, "no": False, "off": False}


def read_yaml(text: str) -> Any:
    """Parse recipe YAML (a file or one override's value) with :class:`RecipeYamlLoader`."""
    return yaml.load(text, Loader=RecipeYamlLoader)  # noqa: S506 - a SafeLoader subclass


class RecipeError(UserError):
    """A recipe or override that cannot be turned into a valid configuration."""


@dataclass
class Recipe:
    """A whole run: what ``mmfinereason sft|gspo RECIPE.yaml`` executes and notebooks build trainers from."""

    stage: str = "sft"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: Any = None  # SFTConfig / GSPOConfig, chosen by `stage`
    eval: EvalConfig = field(default_factory=EvalConfig)
    source_path: str | None = None  # the YAML this came from, for the record
    train_keys: list[str] = field(default_factory=list)  # the train keys the recipe set (saved with checkpoints)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for saving the resolved recipe next to every checkpoint)."""
        out = {
            "stage": self.stage,
            "model": dataclasses.asdict(self.model),
            "data": dataclasses.asdict(self.data),
            "eval": dataclasses.asdict(self.eval),
        }
        if self.train is not None:
            keys = dict.fromkeys(["output_dir", *self.train_keys])
            out["train"] = {k: _plain(getattr(self.train, k)) for k in keys}
        return out

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def train_config_class(stage: str) -> type:
    if stage not in TRAIN_CONFIGS:
        raise RecipeError(f"stage must be one of {sorted(TRAIN_CONFIGS)}, got {stage!r}")
    module, name = TRAIN_CONFIGS[stage].split(":")
    return getattr(importlib.import_module(module), name)


# --------------------------------------------------------------------------- typed construction
def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # unresolvable forward references in a third-party class: check what we can
        return {f.name: f.type for f in dataclasses.fields(cls)}


def _suggest(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    return f"; did you mean '{close[0]}'?" if close else ""


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check ``value`` against a type annotation, converting the safe cases (int->float, '1e-5'->float)."""
    if annotation is Any or isinstance(annotation, (str, typing.ForwardRef)):
        return value
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except RecipeError:
                pass
        raise RecipeError(f"{where}: expected {annotation}, got {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise RecipeError(f"{where}: expected one of {list(args)}, got {value!r}")
        return value
    if origin in (list, tuple) or annotation in (list, tuple):
        if isinstance(value, (str, int, float)) and not isinstance(value, bool) and origin is not None:
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise RecipeError(f"{where}: expected a list, got {value!r}")
        item = args[0] if args else Any
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise RecipeError(f"{where}: expected a mapping, got {value!r}")
        return value
    if dataclasses.is_dataclass(annotation):
        if isinstance(value, annotation):
            return value
        if not isinstance(value, dict):
            raise RecipeError(f"{where}: expected a mapping of {annotation.__name__} fields, got {value!r}")
        return build(annotation, value, where)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _WORD_BOOLS:
            return _WORD_BOOLS[value.lower()]
        raise RecipeError(f"{where}: expected true or false, got {value!r}")
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise RecipeError(f"{where}: expected a number, got {value!r}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise RecipeError(f"{where}: expected an integer, got {value!r}")
    if annotation is str:
        if isinstance(value, str):
            return value
        raise RecipeError(f"{where}: expected a string, got {value!r}")
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        try:
            return annotation(value)
        except ValueError:
            raise RecipeError(f"{where}: expected one of {[e.value for e in annotation]}, got {value!r}") from None
    return value


def build(cls: type, values: dict[str, Any], where: str = "") -> Any:
    """Instantiate dataclass ``cls`` from a mapping, checking keys and types; errors name the dotted key."""
    if not isinstance(values, dict):
        raise RecipeError(f"{where or cls.__name__}: expected a mapping, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = _hints(cls)
    kwargs = {}
    for key, value in values.items():
        dotted = f"{where}.{key}" if where else key
        if key not in fields:
            raise RecipeError(f"unknown key '{dotted}'{_suggest(key, list(fields))}")
        kwargs[key] = _coerce(value, hints.get(key, Any), dotted)
    try:
        return cls(**kwargs)
    except RecipeError:
        raise
    except (ValueError, TypeError) as e:
        raise RecipeError(f"{where or cls.__name__}: {e}") from e


# --------------------------------------------------------------------------- overrides
def apply_override(raw: dict[str, Any], override: str) -> None:
    """Apply one ``dotted.key=value`` (value parsed as YAML) to the raw recipe mapping in place."""
    if "=" not in override:
        raise RecipeError(f"override {override!r} must look like key=value, e.g. train.learning_rate=2e-5")
    key, _, text = override.partition("=")
    parts = key.strip().split(".")
    if not all(parts):
        raise RecipeError(f"override {override!r} has an empty key part")
    value = read_yaml(text) if text.strip() else ""
    node: Any = raw
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise RecipeError(f"override {key!r}: '{part}' is not an index of the list at '{'.'.join(parts[:i])}'")
            node = node[int(part)]
        elif isinstance(node, dict):
            if node.get(part) is None:
                if parts[i + 1].isdigit():
                    raise RecipeError(f"override {key!r}: the recipe sets no list at '{'.'.join(parts[: i + 1])}'")
                node[part] = {}
            node = node[part]
        else:
            raise RecipeError(f"override {key!r}: '{'.'.join(parts[:i])}' is not a mapping")
    last = parts[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            raise RecipeError(f"override {key!r}: '{last}' is not an index of that list")
        node[int(last)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise RecipeError(f"override {key!r}: '{'.'.join(parts[:-1])}' is not a mapping")


# Keys that were renamed: the old name still works (with a warning) so that older recipes keep loading.
RENAMED_KEYS = {
    ("data", "overlong"): "overlong_examples",  # it shared a name with GSPO's train.overlong
    ("train", "overlong"): "overlong_completions",
}


def _apply_renames(raw: dict[str, Any]) -> None:
    for (section, old), new in RENAMED_KEYS.items():
        values = raw.get(section)
        if isinstance(values, dict) and old in values:
            if new in values:
                raise RecipeError(f"'{section}.{old}' is the old name of '{section}.{new}': give only one of them")
            logger.warning("recipe key '%s.%s' is now '%s.%s'; please rename it", section, old, section, new)
            raw[section] = {(new if k == old else k): v for k, v in values.items()}


def recipe_from_dict(raw: dict[str, Any], source_path: str | None = None) -> Recipe:
    """Build and validate a :class:`Recipe` from a plain mapping (what the YAML holds)."""
    raw = dict(raw or {})
    _apply_renames(raw)
    valid = ["stage", "model", "data", "train", "eval"]
    for key in raw:
        if key not in valid:
            raise RecipeError(f"unknown key '{key}'{_suggest(key, valid)}")
    stage = raw.get("stage", "sft")
    train_cls = train_config_class(stage)
    train_raw = dict(raw.get("train") or {})
    train_raw.setdefault("output_dir", f"outputs/{stage}")
    return Recipe(
        stage=stage,
        model=build(ModelConfig, raw.get("model") or {}, "model"),
        data=build(DataConfig, raw.get("data") or {}, "data"),
        train=build(train_cls, train_raw, "train"),
        eval=build(EvalConfig, raw.get("eval") or {}, "eval"),
        source_path=source_path,
        train_keys=list(train_raw),
    )


def load_recipe(path: str | Path, overrides: typing.Iterable[str] = ()) -> Recipe:
    """Read a recipe YAML, apply ``key=value`` overrides, validate, and return the typed :class:`Recipe`."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe file not found: {path} (shipped recipes live in recipes/<model>/<stage>.yaml)")
    try:
        raw = read_yaml(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise RecipeError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe must be a mapping of sections, got {type(raw).__name__}")
    for override in overrides:
        apply_override(raw, override)
    try:
        return recipe_from_dict(raw, source_path=str(path))
    except RecipeError as e:
        raise RecipeError(f"{path}: {e}") from None
