r"""Agreement of `mmfinereason.rewards.is_correct`, and of math-verify alone, with hand-labelled grader test cases
that other projects published; prints one JSON line.

    python bench/rewards_agreement.py [--cache .cache/grader-suites] [--show-misses] [--timeout 10]

Where the cases come from, and why this way: the cases are the test suites of other projects' answer graders,
read at run time from their source distributions on PyPI (pinned versions, pinned sha256, fetched with
`pip download --no-deps --no-binary`, cached under the git-ignored `.cache/grader-suites/`). Nothing of them is
copied into this repository: the test files are parsed with `ast` (pytest `parametrize` tables, `assert` calls on
the grader, scorer calls on a completion and a target) into cases `(gold, prediction, label, source file,
licence)`. No case is written by us. The only things written here are *how* each suite's assertions become a
case (a gold, a prediction and a label) and a short list of published labels we consider debatable, each with
the reason; those cases are still run and reported, but apart.

Reported per suite, per answer kind (the gold's form) and per prediction form: the agreement of our verifier
(`ours`) and of math-verify 0.9 alone (`math_verify`: `verify(parse(gold), parse(pred))` with its default
extraction), and the wrong answers each accepted (`false_positives`: label 0, verdict 1). Options a suite passes
to its own grader (math-verify's `precision`, `strict`) are passed to both verifiers where an equivalent exists.
Goal (issue 13): ours >= 95% on every suite (debatable labels apart), above math-verify everywhere but on
math-verify's own suite, and no false positive anywhere.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import importlib.util
import inspect
import json
import math
import re
import subprocess
import sys
import tarfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Suite:
    """A grader test suite inside a PyPI source distribution."""

    name: str  # the project
    package: str
    version: str
    sha256: str
    files: tuple[str, ...]  # test files inside the sdist, relative to its top folder


SUITES = (
    Suite("math-verify", "math-verify", "0.9.0", "45ac6c61344ba056b9e99a660a4bc8d044ed408f730aed68c60435aa5eec4645",
          ("tests/test_all.py", "tests/test_numina_cases.py", "tests/test_open_thoughts.py", "tests/test_boxed.py",
           "tests/test_yujianll.py", "tests/test_string_extraction.py", "tests/test_strict.py")),
    Suite("lm-eval", "lm-eval", "0.4.13", "f592269f21a5e173d7993ae01267f61fc84be393cee1f51779e3e104a70c967e",
          ("tests/test_minerva_math.py",)),
    Suite("inspect-evals", "inspect-evals", "0.28.0",
          "e44e816d2b523faf6f81a7b32bef13ea5cfa2d1928416ef209a14b9f82c40486",
          ("tests/math/test_scorer.py", "tests/math/test_utils.py", "tests/math/test_strip_string.py",
           "tests/aime_common/test_aime_common.py", "tests/mathvista/test_scorer.py")),
    Suite("evalscope", "evalscope", "1.14.1", "843cf1e29bad09d4fa751c6b9001c69ddf90c7dc55cd9a4d86dc738db127583b",
          ("tests/test_multi_choices.py",)),
)

# Published labels we consider debatable: counted apart, never dropped. Keyed by the case id (sha1 of suite, gold,
# prediction, label and options; printed by --show-misses) with the gold/prediction for the reader.
DEBATABLE: dict[str, str] = {
    # math-verify 0.9.0, tests/test_all.py
    "4629f659ab": "gold $9$, pred 'Answer $ \\n 9 \\n $', label 0: the response states 9; the label tests "
                  "math-verify's rule that inline $…$ may not span lines, not the answer",
    "395c844816": "gold $9$, pred 'Answer \\( \\n 9 \\n \\)', label 0: as above, for \\( … \\)",
    "e23663cd32": "gold x∈[-2,7], pred -2≤x≤7, label 1 only under allow_set_relation_comp=True; the same pair is "
                  "labelled 0 under False (a244036c59): the label is an option of math-verify, not of the answer",
    "a244036c59": "the other half of e23663cd32 (same gold and prediction, label 0)",
    "3a70d9d87e": "gold f(x), pred f(y), label 1 only under math-verify's strict=False (0702b24ffa: 0 under strict)",
    # math-verify 0.9.0, tests/test_string_extraction.py
    "587ae1a0bd": "gold 1 - 1/e, pred 1 + 1/e, label 1: two different numbers; the label records math-verify "
                  "truncating \\frac{1}{\\mathrm{e}} at the nested brace",
    "be58bd3e02": "gold B, pred 'Because B is valid', label 1: a capital inside prose is not a committed choice "
                  "(the label tests StringExtractionConfig's any-letter fallback)",
    # evalscope 1.14.1, tests/test_multi_choices.py
    "0e689f85c9": "gold B, pred 'ANSWER: B</think>ANSWER: [LETTER]', label 1: the only text after </think> is the "
                  "template placeholder; B is said only inside the reasoning, which a reward must not read "
                  "when the model wrote an answer section",
}


# ------------------------------------------------------------------------------------------------ fetching suites
def fetch(suite: Suite, cache: Path) -> Path:
    """The sdist of `suite`, downloaded once with pip (hash-checked) into `cache`."""
    cache.mkdir(parents=True, exist_ok=True)
    stem = f"{suite.package.replace('-', '_')}-{suite.version}"
    sdist = cache / f"{stem}.tar.gz"
    if not sdist.exists() or hashlib.sha256(sdist.read_bytes()).hexdigest() != suite.sha256:
        req = cache / f"{stem}.requirements.txt"
        req.write_text(f"{suite.package}=={suite.version} --hash=sha256:{suite.sha256}\n")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", suite.package,
               "--require-hashes", "-r", str(req), "-d", str(cache), "--quiet"]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0 or not sdist.exists():
            raise SystemExit(f"could not download {suite.package}=={suite.version} from PyPI:\n{out.stderr[-2000:]}")
    return sdist


def read_sdist(sdist: Path, suite: Suite) -> tuple[dict[str, str], str]:
    """The suite's test files (path -> source) and the distribution's licence, from the archive."""
    top = sdist.name[: -len(".tar.gz")]
    files, licence = {}, "unknown"
    with tarfile.open(sdist) as tar:
        for rel in suite.files:
            member = tar.extractfile(f"{top}/{rel}")
            if member is None:
                raise SystemExit(f"{rel} not found in {sdist.name}")
            files[rel] = member.read().decode()
        info = tar.extractfile(f"{top}/PKG-INFO").read().decode(errors="replace")
    for line in info.splitlines():
        if line.startswith(("License-Expression:", "License:")) and line.split(":", 1)[1].strip():
            licence = line.split(":", 1)[1].strip()
            break
    return files, licence


# ------------------------------------------------------------------------------------- test files -> label cases
class Unknown(Exception):
    """An expression the small evaluator below does not handle: the assertion is skipped, never guessed."""


@dataclass
class Completion:
    text: str


@dataclass
class Score:
    completion: str
    target: str


@dataclass
class Case:
    suite: str
    file: str
    test: str
    gold: str
    pred: str
    label: bool
    licence: str
    options: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        key = json.dumps([self.suite, self.gold, self.pred, self.label, self.options], sort_keys=True)
        return hashlib.sha1(key.encode()).hexdigest()[:10]


_NORMALISERS = {"norm", "norm_leaderboard", "norm_putnam", "normalize", "normalize_final_answer", "strip_string"}
_CONSTANTS = {"CORRECT": "C", "INCORRECT": "I", "True": True, "False": False, "None": None}


def _name(node: ast.AST) -> str:
    """`pytest.param` -> `param`, `f` -> `f`: the called name, without its module."""
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""


def _eval(node: ast.AST, env: dict):
    """Evaluate the literal part of a test file: strings, f-strings, tables, `pytest.param`, `math.sqrt`."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(str(_eval(v, env)) for v in node.values)
    if isinstance(node, ast.FormattedValue):
        value = _eval(node.value, env)
        spec = _eval(node.format_spec, env) if node.format_spec else ""
        return format(value, spec)
    if isinstance(node, ast.Name):
        if node.id in env:
            return env[node.id]
        if node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        raise Unknown(node.id)
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_eval(e, env) for e in node.elts]
    if isinstance(node, ast.Set):
        return {_eval(e, env) for e in node.elts}
    if isinstance(node, ast.Dict):
        return {_eval(k, env): _eval(v, env) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
        left, right = _eval(node.left, env), _eval(node.right, env)
        return left + right if isinstance(node.op, ast.Add) else left * right
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_eval(node.operand, env)
    if isinstance(node, ast.Await):
        return _eval(node.value, env)
    if isinstance(node, ast.IfExp):
        return _eval(node.body if _eval(node.test, env) else node.orelse, env)
    if isinstance(node, ast.Subscript):
        return _eval(node.value, env)[_eval(node.slice, env)]
    if isinstance(node, ast.Call):
        name = _name(node.func)
        if name == "TaskState":  # only its output matters; the rest (model names, messages) is not evaluated
            out = next((k.value for k in node.keywords if k.arg == "output"), None)
            if out is None:
                raise Unknown(name)
            return _eval(out, env)
        args = [_eval(a, env) for a in node.args]
        kwargs = {k.arg: _eval(k.value, env) for k in node.keywords if k.arg}
        if name == "isinstance":
            return isinstance(args[0], (list, tuple)) if _name(node.args[1]) == "tuple" else isinstance(args[0], str)
        if name == "param":
            return list(args)
        if name == "set" and not args:
            return set()
        if name == "sqrt" and _name(node.func.value if isinstance(node.func, ast.Attribute) else node.func) == "math":
            return math.sqrt(*args)
        if name in ("_make_state", "_create_task_state"):
            return Completion(args[0])
        if name == "from_content":
            return Completion(args[1] if len(args) > 1 else kwargs["content"])
        if name == "Target":
            return ("target", args[0])
        if "scorer" in name and len(args) == 2 and isinstance(args[0], Completion) and args[1][0] == "target":
            return Score(args[0].text, args[1][1])
        if name.endswith("ExtractionConfig"):
            return ("config", name, kwargs)
        raise Unknown(name)
    raise Unknown(type(node).__name__)


def _rows(func: ast.FunctionDef, env: dict) -> list[dict]:
    """One environment per row of the function's `parametrize` tables (their product), or [{}]."""
    rows = [{}]
    for dec in func.decorator_list:
        if isinstance(dec, ast.Call) and _name(dec.func) == "parametrize":
            names = _eval(dec.args[0], env)
            names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
            values = _eval(dec.args[1], env)
            table = [dict(zip(names, v if len(names) > 1 else [v])) for v in values]
            rows = [{**r, **t} for r in rows for t in table]
        elif _name(dec.func if isinstance(dec, ast.Call) else dec) == "patch":
            return []  # the label depends on a mocked component (an LLM judge), not on the answer
    return rows


def _skip_function(func: ast.FunctionDef) -> bool:
    """Tests whose label is about timeouts, raising or mocked internals say nothing about answer equivalence."""
    for node in ast.walk(func):
        if isinstance(node, ast.Call) and _name(node.func) in ("raises", "setattr", "object", "patch"):
            return True
    return False


def _case_from_assert(test: ast.expr, env: dict) -> tuple | None:
    """(gold, pred, label, options) for one assertion, or None when it is not a judgement on an answer."""
    negate = False
    while isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        negate, test = not negate, test.operand
    if isinstance(test, ast.Call) and _name(test.func) == "is_equiv":  # lm-eval: is_equiv(pred, gold)
        pred, gold = (_unwrap_normaliser(a, env) for a in test.args)
        return gold, pred, not negate, {}
    if isinstance(test, ast.Call) and _name(test.func) == "isdisjoint":  # evalscope: no option chosen
        inner = test.func.value
        if isinstance(inner, ast.Call) and _name(inner.func).startswith("parse_answers"):
            return "B", _eval(inner.args[0], env).text, False, {}  # `_make_state` targets B
        return None
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], (ast.Eq, ast.Is))):
        return None
    left, right_node = test.left, test.comparators[0]
    if _is_normaliser_call(left, env) and _is_normaliser_call(right_node, env):  # norm(a) == norm(b)
        return _unwrap_normaliser(right_node, env), _unwrap_normaliser(left, env), True, {}
    right = _eval(right_node, env)
    if isinstance(left, ast.Await):
        left = left.value
    if isinstance(left, ast.Attribute) and left.attr == "value":  # inspect-evals: score.value == CORRECT
        score = _eval(left.value, env)
        if isinstance(score, Score) and right in ("C", "I"):
            return score.target, score.completion, right == "C", {}
        return None
    if not isinstance(left, ast.Call):
        return None
    name, args = _name(left.func), left.args
    kwargs = {k.arg: _eval(k.value, env) for k in left.keywords if k.arg}
    if name == "int" and args and isinstance(args[0], ast.Call) and _name(args[0].func) == "verify":
        gold, pred = (_eval(a.args[0], env) for a in args[0].args)
        return gold, pred, bool(right), {}
    if name == "compare_strings":  # math-verify: compare_strings(gold, pred, ...) == 0/1
        gold, pred = _eval(args[0], env), _eval(args[1], env)
        options = {k: v for k, v in kwargs.items() if k in ("precision", "strict", "allow_set_relation_comp")}
        return gold, pred, bool(right), options
    if name == "parse" and len(args) == 2:  # math-verify string extraction: parse(pred, [config]) == [x, X]
        return (right[-1], _eval(args[0], env), True, {}) if right else None
    if name.startswith("parse_answers"):  # evalscope: parse_answers(_make_state(text)) == {"B"}
        pred = kwargs["completion"] if "completion" in kwargs else _eval(args[0], env).text
        if not right:
            return "B", pred, False, {}
        return ", ".join(sorted(right)), pred, True, {}
    if name in ("extract_answer_line", "extract_answer") and isinstance(right, str):
        return (right, _eval(args[0], env), True, {}) if right.strip() else None
    if _is_normaliser_call(left, env):  # normalize(x) == y: the grader calls them equal
        return right, _unwrap_normaliser(left, env), True, {}
    return None


def _is_normaliser_call(node: ast.expr, env: dict) -> bool:
    return isinstance(node, ast.Call) and (
        _name(node.func) in _NORMALISERS or env.get(_name(node.func)) == "<normaliser>")


def _unwrap_normaliser(node: ast.expr, env: dict):
    return _eval(node.args[0] if _is_normaliser_call(node, env) else node, env)


def _walk(stmts: list[ast.stmt], env: dict, out: list) -> None:
    for stmt in stmts:
        try:
            if isinstance(stmt, ast.For) and isinstance(stmt.target, ast.Name):
                iterable = stmt.iter
                if isinstance(iterable, ast.Name) and iterable.id == "NORMS":
                    items = ["<normaliser>"] * 3
                else:
                    items = _eval(iterable, env)
                for item in items:
                    _walk(stmt.body, {**env, stmt.target.id: item}, out)
            elif isinstance(stmt, ast.Assert):
                case = _case_from_assert(stmt.test, env)
                if case is not None:
                    out.append(case)
            elif isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
                env[stmt.targets[0].id] = _eval(stmt.value, env)
        except (Unknown, KeyError, IndexError, TypeError, ValueError):
            continue


def cases_from_file(source: str, suite: str, rel: str, licence: str) -> list[Case]:
    tree = ast.parse(source)
    env: dict = {}
    for node in tree.body:  # module-level tables (JUSTIFIED_ANSWERS, TRAILING_SENTENCE, ...)
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                env[node.targets[0].id] = _eval(node.value, env)
            except Unknown:
                pass
    cases = []
    for func in tree.body:
        if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)) or not func.name.startswith("test"):
            continue
        if _skip_function(func):
            continue
        try:
            rows = _rows(func, env)
        except (Unknown, TypeError, ValueError):
            continue
        for row in rows:
            found: list = []
            _walk(func.body, {**env, **row}, found)
            for gold, pred, label, options in found:
                if isinstance(gold, str) and isinstance(pred, str):
                    cases.append(Case(suite, rel, func.name, gold, pred, bool(label), licence, options))
    return cases


def load_cases(cache: Path) -> list[Case]:
    cases, seen = [], set()
    for suite in SUITES:
        files, licence = read_sdist(fetch(suite, cache), suite)
        for rel, source in files.items():
            for case in cases_from_file(source, suite.name, rel, licence):
                if case.id not in seen:  # the same table row repeated in two tests counts once
                    seen.add(case.id)
                    cases.append(case)
    return cases


# --------------------------------------------------------------------------------------------------- classification
def gold_kind(gold: str) -> str:
    """The form of the gold answer, for the per-kind table (a rough reading; the verifiers never see it)."""
    g = gold.strip().strip("$").strip()
    if re.fullmatch(r"\(?[A-Z]\)?(?:\s*,\s*\(?[A-Z]\)?)*|\\text\{\(?[A-Z]\)?\}", g):
        return "choice"
    if re.search(r"\\begin\{[pbvBV]?matrix\}|\\begin\{array\}", g):
        return "matrix"
    if len(g) > 120 or "\\boxed" in g:
        return "solution_text"
    if re.search(r"\\cup|\\cap|\\in\b|\\\{|\\infty|^[(\[].*,.*[)\]]$", g):
        return "set_interval_tuple"
    if re.search(r"=|<|>|\\le|\\ge|\\neq|\\lt|\\gt", g):
        return "equation_relation"
    if "%" in g or "percent" in g:
        return "percent"
    if re.fullmatch(r"-?[\d.,\s]+", g):
        return "number"
    if re.search(r"[A-Za-z]{3,}", re.sub(r"\\[a-zA-Z]+", "", g)):
        return "text_or_unit"
    return "expression"


def pred_form(pred: str) -> str:
    if "\\boxed" in pred or "\\fbox" in pred:
        return "boxed"
    if re.search(r"(?i)answer|答案", pred):
        return "answer_phrase"
    return "short" if len(pred) <= 60 else "free_text"


# ------------------------------------------------------------------------------------------------------- verifiers
def ours(case: Case, timeout: float) -> bool:
    from mmfinereason.rewards import is_correct

    accepted = inspect.signature(is_correct).parameters
    options = {k: v for k, v in case.options.items() if k in accepted}  # the suite's own grader options
    return is_correct(case.pred, case.gold, timeout=timeout, **options)


def math_verify_alone(case: Case) -> bool:
    """math-verify's documented default use: parse both with the default extraction, then verify."""
    from math_verify import parse, verify

    try:
        gold, pred = parse(case.gold), parse(case.pred)
        return bool(verify(gold, pred, float_rounding=case.options.get("precision", 6),
                           strict=case.options.get("strict", True)))
    except Exception:  # noqa: BLE001 — a grader that raises has not accepted the answer
        return False


def _table(rows: list[tuple[Case, bool, bool]]) -> dict:
    n = len(rows)
    return {
        "cases": n,
        "ours": round(sum(o == c.label for c, o, _ in rows) / n, 4) if n else None,
        "math_verify": round(sum(m == c.label for c, _, m in rows) / n, 4) if n else None,
        "ours_false_positives": sum(o and not c.label for c, o, _ in rows),
        "math_verify_false_positives": sum(m and not c.label for c, _, m in rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path, default=ROOT / ".cache" / "grader-suites")
    parser.add_argument("--show-misses", action="store_true", help="print every disagreement to stderr")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="our hard limit per check: this measures verdicts, not speed (bench/rewards.py does), "
                             "so a loaded machine must not turn them into timeouts")
    args = parser.parse_args()
    if importlib.util.find_spec("mmfinereason") is None:  # run from a checkout without `pip install -e .`
        sys.path.insert(0, str(ROOT))
    import logging

    logging.disable(logging.WARNING)  # math-verify logs every parse failure
    t0 = time.perf_counter()
    cases = load_cases(args.cache)
    from mmfinereason.rewards import verification_stats

    verification_stats(reset=True)
    results = [(c, ours(c, args.timeout), math_verify_alone(c)) for c in cases]
    our_stats = verification_stats()
    counted = [r for r in results if r[0].id not in DEBATABLE]
    debatable = [r for r in results if r[0].id in DEBATABLE]

    by_suite, by_kind, by_form = defaultdict(list), defaultdict(list), defaultdict(list)
    for row in counted:
        by_suite[row[0].suite].append(row)
        by_kind[gold_kind(row[0].gold)].append(row)
        by_form[pred_form(row[0].pred)].append(row)
    suites = {}
    for suite in SUITES:
        rows = by_suite[suite.name]
        licence = next((c.licence for c, _, _ in rows), "unknown")
        suites[suite.name] = {
            "sdist": f"{suite.package}=={suite.version}", "licence": licence, **_table(rows),
            "debatable": _table([r for r in debatable if r[0].suite == suite.name]),
        }
    if args.show_misses:
        for case, o, m in results:
            if o != case.label:
                tag = "DEBATABLE " if case.id in DEBATABLE else ""
                print(f"{tag}{case.id} {case.suite}:{case.test} label={int(case.label)} ours={int(o)} mv={int(m)} "
                      f"gold={case.gold[-80:]!r} pred={case.pred[-120:]!r} {case.options or ''}", file=sys.stderr)
    overall = _table(counted)
    others = [s for s in suites if s != "math-verify"]
    goal = (
        all(suites[s]["ours"] >= 0.95 for s in suites)
        and all(suites[s]["ours"] > suites[s]["math_verify"] for s in others)
        and overall["ours_false_positives"] == 0  # debatable labels are reported apart, under "debatable"
    )
    print(json.dumps({
        "bench": "rewards_agreement",
        "projects": len(suites),
        "cases": len(results),
        "debatable_apart": len(debatable),
        "overall": overall,
        "suites": suites,
        "by_gold_kind": {k: _table(v) for k, v in sorted(by_kind.items())},
        "by_prediction_form": {k: _table(v) for k, v in sorted(by_form.items())},
        "debatable": _table(debatable),
        "ours_timeout_s": args.timeout,
        "ours_timeouts": our_stats["timeouts"],
        "seconds": round(time.perf_counter() - t0, 1),
        "goal_met": goal,
    }))


if __name__ == "__main__":
    main()
