"""The package list, the one thing pyproject.toml cannot say: every ``mmfinereason*`` package *and*
``mmfinereason.recipes``, which lives at the repository root as ``recipes/`` (mapped in pyproject.toml's
``package-dir``). Why: a wheel or ``pip install .`` must carry the shipped recipes (``mmfinereason demo``,
``mmfinereason sft tiny``), while ``recipes/tiny/sft.yaml`` stays where the README's commands expect it.
``packages.find`` cannot add a package mapped from another folder, hence these lines.
"""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["mmfinereason*"]), "mmfinereason.recipes"])
