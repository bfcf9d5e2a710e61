"""Pass-rate data selection ("less is more"): sample k answers per question, keep rows by how often they pass.

The paper's strongest data result comes from this step: Qwen3-VL-4B-Thinking answered every question 4 times,
``pass_rate`` is the fraction it got right, and training on the 7% it never solved (``pass_rate == 0``, the
123K set) comes close to training on everything. For RL the useful rows are the ones a policy sometimes
solves (``0 < pass_rate < 1``): a group of rollouts that all pass or all fail has zero advantage.

* :func:`parse_keep_rule` — a tiny, safe rule language: comparisons of ``pass_rate`` with numbers, chained
  (``0 < pass_rate < 1``) and joined with ``and`` / ``or``. It is parsed, never ``eval``-ed.
* :func:`compute_pass_rates` — ``k`` sampled answers per question (seeded per question), scored with
  :func:`mmfinereason.rewards.is_correct`, recorded in a resumable jsonl file.
* :func:`write_selection` — all original columns + ``pass_rate`` to one file, and one file per rule.
"""

from __future__ import annotations

import logging
import operator
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from mmfinereason.errors import UserError

if TYPE_CHECKING:
    import datasets

    from mmfinereason.evaluation.benchmarks import Benchmark
    from mmfinereason.evaluation.generators import Generator
    from mmfinereason.evaluation.store import JsonlStore

logger = logging.getLogger(__name__)

VARIABLE = "pass_rate"
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, ">=": operator.ge, "==": operator.eq, "!=": operator.ne, "<": operator.lt, ">": operator.gt,
}
_OP_NAMES = {"<=": "le", ">=": "ge", "==": "eq", "!=": "ne", "<": "lt", ">": "gt"}
_TOKEN_RE = re.compile(r"\s*(?:(<=|>=|==|!=|<|>)|(-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)|([A-Za-z_]+)|(\S))")
_EPS = 1e-9


@dataclass(frozen=True)
class KeepRule:
    """A parsed ``--keep`` rule: OR of ANDs of chained comparisons. Rows without a pass rate never match."""

    text: str
    alternatives: tuple[tuple[tuple[Any, ...], ...], ...]  # or -> and -> chain (operand, op, operand, ...)

    def __call__(self, pass_rate: float | None) -> bool:
        if pass_rate is None:
            return False
        return any(all(_chain_holds(chain, float(pass_rate)) for chain in conj) for conj in self.alternatives)

    @property
    def slug(self) -> str:
        """A file-name-safe form: ``0 < pass_rate < 1`` -> ``0_lt_pass_rate_lt_1``."""
        parts = []
        for token in _tokens(self.text):
            parts.append(_OP_NAMES.get(token, token))
        return re.sub(r"[^A-Za-z0-9_.]+", "_", "_".join(parts)).strip("_")


def _chain_holds(chain: tuple[Any, ...], value: float) -> bool:
    operands = [value if x == VARIABLE else x for x in chain[0::2]]
    for left, op, right in zip(operands, chain[1::2], operands[1:]):
        if op in ("==", "!="):  # pass rates are k-ths: equality within a tolerance, not to the last bit
            if (abs(left - right) <= _EPS) != (op == "=="):
                return False
        elif not _OPS[op](left, right):
            return False
    return True


def _tokens(text: str) -> list[str]:
    tokens = []
    for match in _TOKEN_RE.finditer(text):
        op, number, word, other = match.groups()
        if other is not None:
            raise UserError(
                f"--keep {text!r}: unexpected {other!r}; write rules like 'pass_rate == 0' or '0 < pass_rate < 1'"
            )
        tokens.append(op or number or word)
    return tokens


def parse_keep_rule(text: str) -> KeepRule:
    """Parse ``pass_rate == 0``, ``0 < pass_rate < 1``, ``pass_rate <= 0.5 and pass_rate > 0``, ``all``."""
    tokens = _tokens(text)
    if tokens == ["all"]:
        every_row = (VARIABLE, ">=", float("-inf"))
        return KeepRule(text, ((every_row,),))
    alternatives, conj, chain = [], [], []
    for token in tokens + ["or"]:
        if token in ("and", "or"):
            conj.append(_check_chain(chain, text))
            chain = []
            if token == "or":
                alternatives.append(tuple(conj))
                conj = []
        elif token in _OPS:
            if not chain or chain[-1] in _OPS:
                raise UserError(f"--keep {text!r}: operator {token!r} needs a value on each side")
            chain.append(token)
        elif token == VARIABLE:
            if chain and chain[-1] not in _OPS:
                raise UserError(f"--keep {text!r}: missing operator before {token!r}")
            chain.append(VARIABLE)
        elif re.fullmatch(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?", token):
            if chain and chain[-1] not in _OPS:
                raise UserError(f"--keep {text!r}: missing operator before {token!r}")
            chain.append(float(token))
        else:
            raise UserError(f"--keep {text!r}: unknown name {token!r}; only {VARIABLE!r}, numbers, and / or are allowed")
    return KeepRule(text, tuple(alternatives))


def _check_chain(chain: list[Any], text: str) -> tuple[Any, ...]:
    if len(chain) < 3 or len(chain) % 2 == 0 or chain[-1] in _OPS:
        raise UserError(f"--keep {text!r}: incomplete comparison; e.g. 'pass_rate == 0' or '0 < pass_rate < 1'")
    if chain.count(VARIABLE) != 1:
        raise UserError(f"--keep {text!r}: each comparison must mention {VARIABLE} exactly once")
    return tuple(chain)


# --------------------------------------------------------------------------- sampling
def compute_pass_rates(
    generator: Generator,
    bench: Benchmark,
    store: JsonlStore,
    *,
    k: int = 4,
    seed: int = 0,
    batch_size: int = 16,
    save_responses: bool = False,
    progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """``{uid: record}`` with ``correct`` (of ``k``) and ``pass_rate`` for every row of ``bench``.

    Rows already in ``store`` (an earlier, interrupted run) are not sampled again; new records are appended
    batch by batch. Each record also keeps the ``k`` extracted answers and whether each passed (what the majority
    vote of ``mmfinereason.evaluation.voting`` needs) and, with ``save_responses``, the full responses, so that a
    surprising pass rate can be checked by eye.
    """
    from tqdm.auto import tqdm

    from mmfinereason.evaluation.accuracy import score
    from mmfinereason.evaluation.store import unique_ids

    if k < 1:
        raise UserError(f"k (--k, answers per question) must be >= 1, got {k}")
    done = store.load()
    uids, _ = unique_ids(bench.ids())
    todo = [i for i, uid in enumerate(uids) if uid not in done]
    with tqdm(total=len(uids), initial=len(uids) - len(todo), desc=f"sampling {k} per question", disable=not progress) as bar:
        for start in range(0, len(todo), batch_size):
            rows = todo[start : start + batch_size]
            examples = [bench.example(i) for i in rows]
            records = []
            for i, ex, responses in zip(rows, examples, generator.sample(examples, k, seed)):
                if len(responses) != k:
                    raise RuntimeError(f"row {ex['id']}: the generator returned {len(responses)} answers, expected {k}")
                scored = [score(ex, r) for r in responses]
                n = sum(p.correct for p in scored)
                record = {"uid": uids[i], "id": ex["id"], "source": ex["source"], "k": k, "correct": n, "pass_rate": n / k,
                          "extracted": [p.extracted for p in scored], "passed": [p.correct for p in scored]}
                if save_responses:
                    record["responses"] = list(responses)
                records.append(record)
            store.append(records)
            done.update((r["uid"], r) for r in records)
            bar.update(len(rows))
    return {uid: done[uid] for uid in uids}


# --------------------------------------------------------------------------- writing
def align(kept_ids: list[str], raw_ids: list[str]) -> list[int]:
    """The raw row index of each kept (normalised) row: the loader drops rows but never reorders them."""
    out, p = [], 0
    for row_id in kept_ids:
        while p < len(raw_ids) and raw_ids[p] != row_id:
            p += 1
        if p == len(raw_ids):
            raise ValueError(f"row {row_id!r} of the loaded data is not in the source file (ids changed?)")
        out.append(p)
        p += 1
    return out


def write_dataset(dataset: datasets.Dataset, path: Path) -> Path:
    """``.parquet`` keeps images as bytes (loadable by ``load_examples``); ``.jsonl`` suits path-only images."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        dataset.to_parquet(str(path))
    elif path.suffix == ".jsonl":
        import datasets as ds

        if any(isinstance(f, (ds.Image, ds.List)) and "Image" in repr(f) for f in dataset.features.values()):
            raise UserError(f"{path}: this data holds images; write parquet (--format parquet) to keep them")
        dataset.to_json(str(path), lines=True, force_ascii=False)
    else:
        raise UserError(f"{path}: write .parquet or .jsonl")
    return path


def parse_pass_rates(values: Iterable[Any], column: str, ids: list[Any] | None = None) -> list[float | None]:
    """A data file's own pass-rate column as floats in [0, 1]; missing values (None, '', NaN) become None.

    Why strict: a rule like ``pass_rate == 0`` on a column of percentages (0-100) or of strings would pick a
    silently wrong subset, and a bare ``float('n/a')`` is a traceback that names neither the column nor the row.
    Rows without a pass rate are kept out of every subset and counted in the summary (``with_pass_rate``).
    """
    rates: list[float | None] = []
    bad: list[str] = []
    for i, value in enumerate(values):
        if value is None or (isinstance(value, str) and not value.strip()):
            rates.append(None)
            continue
        try:
            rate = float(value)
        except (TypeError, ValueError):
            rate = -1.0
        if rate != rate:  # NaN: no pass rate
            rates.append(None)
            continue
        if not 0.0 <= rate <= 1.0:
            bad.append(f"row {ids[i] if ids is not None else i}: {value!r}")
        rates.append(rate)
    if bad:
        shown = "; ".join(bad[:5]) + (f"; ... {len(bad) - 5} more" if len(bad) > 5 else "")
        raise UserError(
            f"column {column!r} must hold pass rates between 0 and 1 (or be empty); {len(bad)} rows do not ({shown}). "
            "Map the right column with --column pass_rate=NAME, or rescale it first."
        )
    return rates


def write_selection(
    raw: datasets.Dataset,
    pass_rates: list[float | None],
    rules: list[KeepRule],
    output_dir: Path,
    *,
    fmt: str = "parquet",
    column: str = VARIABLE,
    write_rows: bool = True,
) -> dict[str, Any]:
    """Write ``rows.<fmt>`` (every original column, ``column`` set to the pass rate) and ``keep-<rule>.<fmt>``.

    Returns a summary: the pass-rate histogram, the mean per source (when the rows have one) and the row
    count of each subset.
    """
    if len(pass_rates) != len(raw):
        raise ValueError(f"{len(pass_rates)} pass rates for {len(raw)} rows")
    table = raw
    if write_rows:
        if column in table.column_names:
            table = table.remove_columns(column)
        table = table.add_column(column, [None if r is None else float(r) for r in pass_rates])
    summary: dict[str, Any] = {
        "rows": len(raw),
        "with_pass_rate": sum(r is not None for r in pass_rates),
        "histogram": {f"{v:g}": n for v, n in sorted(Counter(r for r in pass_rates if r is not None).items())},
        "files": {},
        "subsets": {},
    }
    if "source" in raw.column_names:
        by_source: dict[str, list[float]] = defaultdict(list)
        for source, r in zip(raw["source"], pass_rates):
            if r is not None:
                by_source[str(source)].append(r)
        summary["mean_pass_rate_by_source"] = {s: sum(v) / len(v) for s, v in sorted(by_source.items())}
    if write_rows:
        summary["files"]["rows"] = str(write_dataset(table, output_dir / f"rows.{fmt}"))
    for rule in rules:
        keep = [i for i, r in enumerate(pass_rates) if rule(r)]
        path = write_dataset(table.select(keep), output_dir / f"keep-{rule.slug}.{fmt}")
        summary["subsets"][rule.text] = {"rows": len(keep), "file": str(path)}
    return summary
