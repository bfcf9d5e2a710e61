"""The package's layout holds: no import cycles, dependencies run one way along the data flow, small files.

Imports are read from the source (every ``import`` / ``from … import``, at module level *and* inside functions,
except under ``if TYPE_CHECKING:``), plus strings that name a module for ``importlib`` (``"mmfinereason.x.y"`` or
``"mmfinereason.x.y:attr"``). Importing ``a.b.c`` runs the ``__init__`` of ``a`` and ``a.b`` first, so those count
as edges too — except the root package's, whose exports load lazily, and the importing module's own ancestors,
which are initialised before it runs.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "mmfinereason"
ROOT = "mmfinereason"
MODULE_STRING = re.compile(r"^mmfinereason(\.\w+)+(:\w+)?$")

# The flow, left to right: a module may import from its own room and rooms of a lower rank only.
# runtime/, monitoring/ and toy/ sit beside the flow (used by pipelines / cli; toy also by data and modeling).
RANK = {
    "recipe": 0,
    "import_utils": 0,
    "errors": 0,
    "toy": 1,
    "modeling": 2,
    "data": 3,
    "rewards": 3,
    "evaluation": 4,
    "monitoring": 4,
    "runtime": 4,
    "trainers": 5,
    "pipelines": 6,
    "plan": 6,
    "config": 7,
    "cli": 7,
    "__main__": 8,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(n) for child in node.body for n in ast.walk(child)}
    return skipped


def _resolve(name: str) -> str | None:
    """The package module a dotted name refers to (a module, or an attribute of one)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str) -> set[str]:
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    skipped = _type_checking_nodes(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            found |= {f"{base}.{alias.name}" for alias in node.names} | {base}
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and MODULE_STRING.match(node.value):
            if module != ROOT:  # the root's lazy export table is not an import
                found.add(node.value.partition(":")[0])
    edges = set()
    for name in found:
        if not name.startswith(ROOT):
            continue
        target = _resolve(name)
        if target is None:
            continue
        parts = target.split(".")
        # importing a.b.c runs a.b's __init__ first (the root's is lazy and does not count)
        edges |= {".".join(parts[:i]) for i in range(2, len(parts) + 1)}
    # a module's own ancestors are initialised before it runs: importing a sibling does not re-enter them
    ancestors = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
    return {e for e in edges if e in MODULES and e != module and e not in ancestors}


GRAPH = {m: imports_of(m) for m in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def room(module: str) -> str:
    return module.split(".")[1] if "." in module else "__init__"


def test_the_import_graph_is_read():
    """Guards the test itself: known edges must be found, including function-level and importlib-string ones."""
    assert "mmfinereason.data.batching.collator" in GRAPH["mmfinereason.pipelines.inputs"]
    assert "mmfinereason.recipe.train_args" in GRAPH["mmfinereason.recipe.loader"]  # an importlib string
    assert "mmfinereason.trainers.sft" in GRAPH["mmfinereason.pipelines.sft"]  # a function-level import
    assert "mmfinereason.data.batching" in GRAPH["mmfinereason.pipelines.inputs"]  # a parent package's __init__


def test_no_import_cycles():
    cycles = _cycles(GRAPH)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_dependencies_run_one_way_along_the_flow():
    backwards = sorted(
        f"{m} -> {t}"
        for m, targets in GRAPH.items()
        if m != ROOT
        for t in targets
        if t != ROOT and RANK[room(t)] > RANK[room(m)]
    )
    assert not backwards, "imports against the flow (recipe -> data/modeling/rewards -> evaluation -> trainers -> " \
        "pipelines -> cli):\n" + "\n".join(backwards)


def test_every_room_has_a_rank():
    assert {room(m) for m in MODULES if m != ROOT} <= set(RANK)


def test_few_loose_modules_and_small_files():
    loose = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(loose) <= 6, loose
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 420}
    assert not long, f"files over ~400 lines: {long}"


@pytest.mark.parametrize("command", [["--help"], ["sft", "--help"]])
def test_the_cli_help_does_not_import_torch(command):
    import subprocess
    import sys

    code = (
        "import sys\nfrom mmfinereason.cli import main\n"
        f"try:\n    main({command!r})\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'transformers', 'datasets', 'trl') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_the_public_contract_imports_under_its_documented_names():
    """DESIGN.md's public contract: these names must keep working whatever moves inside the package."""
    import importlib

    import mmfinereason

    for name in mmfinereason.__all__:
        assert getattr(mmfinereason, name) is not None, name
    assert mmfinereason.build_sft.__module__ == "mmfinereason.pipelines.sft"
    names = {
        "mmfinereason": ["SFTTrainer", "GSPOTrainer", "SFTConfig", "GSPOConfig", "load_recipe", "build_sft", "run_sft",
                         "build_gspo", "run_gspo", "run_demo"],
        "mmfinereason.config": ["load_recipe", "Recipe", "RecipeError"],
        "mmfinereason.toy": ["tiny_model_dir", "make_dataset"],
        "mmfinereason.data": ["load_examples", "MultimodalCollator"],
        "mmfinereason.rewards": ["extract_answer", "is_correct", "accuracy_reward", "format_reward"],
        "mmfinereason.trainers.sft": ["SFTTrainer", "SFTConfig"],
        "mmfinereason.trainers.gspo": ["GSPOTrainer", "GSPOConfig"],
        "mmfinereason.cli": ["main"],
    }
    for module, attrs in names.items():
        loaded = importlib.import_module(module)
        missing = [a for a in attrs if not hasattr(loaded, a)]
        assert not missing, f"{module} lost {missing}"
