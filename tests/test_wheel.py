"""The wheel carries the shipped recipes, and a non-editable install finds them by short name.

Why: ``recipes/`` sits at the repository root (the README's commands use ``recipes/tiny/sft.yaml``); without the
``mmfinereason.recipes`` package mapping (pyproject.toml + setup.py) ``pip install .`` had no recipes and
``mmfinereason demo`` failed. Built offline (``--no-build-isolation``: setuptools from this environment).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out, src = tmp_path_factory.mktemp("wheel"), tmp_path_factory.mktemp("src")
    # a copy of the sources: no build/ left in the checkout, and no stale build/lib of an earlier build in the wheel
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for name in ("mmfinereason", "recipes"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    cmd = [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q", "-w", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (path,) = out.glob("mmfinereason-*.whl")
    return path


def test_wheel_contains_every_recipe_and_module(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {f"mmfinereason/recipes/{p.relative_to(ROOT / 'recipes').as_posix()}" for p in ROOT.glob("recipes/*/*.yaml")}
    assert shipped and shipped <= names, sorted(shipped - names)
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "mmfinereason").rglob("*.py")}
    assert modules <= names, f"packages missing from the wheel: {sorted(modules - names)}"


def test_installed_wheel_finds_shipped_recipes_by_short_name(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)  # what `pip install` unpacks; no source tree next to it
    code = (
        "import mmfinereason, sys\n"
        "from mmfinereason.recipe.shipped import resolve_recipe_arg\n"
        "from mmfinereason.recipe.loader import load_recipe\n"
        "assert mmfinereason.__file__.startswith(sys.argv[1]), mmfinereason.__file__\n"
        "for arg, stage in [('tiny', 'sft'), ('tiny', 'gspo'), ('recipes/tiny/sft.yaml', 'sft'), ('qwen3vl-8b', 'gspo')]:\n"
        "    path = resolve_recipe_arg(arg, stage)\n"
        "    assert str(path).startswith(sys.argv[1]), path\n"
        "    assert load_recipe(path).stage == stage\n"
        "print('ok')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("MMFINEREASON_RECIPES", None)
    done = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(site)!r}); exec({code!r})", str(site)],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
    )
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-3000:]
