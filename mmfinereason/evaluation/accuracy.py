"""Held-out accuracy: generate an answer per example, score it with the verifier, report per group.

One implementation serves the SFT trainer (accuracy before / after / during training), the GSPO trainer, the
``demo``, ``mmfinereason eval`` and ``mmfinereason select``: prompts are built by :mod:`mmfinereason.data.chat`
exactly as in training, answers are scored by :func:`mmfinereason.rewards.is_correct`.

* :func:`~mmfinereason.evaluation.generation.generate_responses` — one batched HF ``generate`` call;
* :func:`score` — a response -> a :class:`Prediction` (extracted answer, correct or not);
* :func:`evaluate_accuracy` — generate + score a list of examples in memory (training-time evaluation);
* :func:`evaluate_benchmarks` — the resumable, file-backed version behind ``mmfinereason eval``: predictions
  are appended to one jsonl file per benchmark as batches finish, and a restarted run skips what is there.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from mmfinereason.evaluation.generation import generate_responses, homogeneous_batches

if TYPE_CHECKING:
    from mmfinereason.evaluation.benchmarks import Benchmark
    from mmfinereason.evaluation.generators import Generator

logger = logging.getLogger(__name__)

GROUP_KEYS = ("source", "category")


@dataclass
class Prediction:
    """One scored answer; ``benchmark`` and ``category`` are filled by ``mmfinereason eval``."""

    id: str
    source: str
    response: str
    extracted: str | None
    answer: str
    correct: bool
    benchmark: str = ""
    category: str | None = None

    def to_record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Prediction:
        """Back from a predictions-file line (extra keys are ignored, so old files stay readable)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in names})


@dataclass
class AccuracyReport:
    """Accuracy overall, per benchmark, per ``source`` and per ``category``, with counts."""

    predictions: list[Prediction] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return sum(p.correct for p in self.predictions) / max(len(self.predictions), 1)

    def per_group(self, key: str) -> dict[str, tuple[float, int]]:
        """``{value: (accuracy, count)}`` for a :class:`Prediction` field (rows without a value are left out)."""
        groups: dict[str, list[bool]] = defaultdict(list)
        for p in self.predictions:
            value = getattr(p, key)
            if value is not None and value != "":
                groups[str(value)].append(p.correct)
        return {g: (sum(v) / len(v), len(v)) for g, v in sorted(groups.items())}

    def per_source(self) -> dict[str, tuple[float, int]]:
        return self.per_group("source")

    def per_benchmark(self) -> dict[str, AccuracyReport]:
        by: dict[str, list[Prediction]] = defaultdict(list)
        for p in self.predictions:
            by[p.benchmark].append(p)
        return {name: AccuracyReport(preds) for name, preds in by.items()}

    def benchmark_mean(self) -> float:
        """The unweighted mean of the per-benchmark accuracies (the paper's "average" column)."""
        per = [r.accuracy for r in self.per_benchmark().values()]
        return sum(per) / max(len(per), 1)

    def metrics(self, prefix: str = "eval") -> dict[str, float]:
        """``eval_accuracy`` and ``eval_accuracy/<source>``: the Trainer's ``eval_`` prefix, so wandb and
        trackio file them under ``eval/`` like the during-training callback's metrics."""
        out = {f"{prefix}_accuracy": self.accuracy}
        out.update({f"{prefix}_accuracy/{s}": acc for s, (acc, _) in self.per_source().items()})
        return out

    def summary(self) -> dict[str, Any]:
        """Plain data for ``results.json``: overall and, per benchmark, per source and per category."""

        def block(report: AccuracyReport) -> dict[str, Any]:
            out: dict[str, Any] = {"accuracy": report.accuracy, "n": len(report.predictions)}
            for key in GROUP_KEYS:
                groups = report.per_group(key)
                if groups:
                    out[key] = {g: {"accuracy": a, "n": n} for g, (a, n) in groups.items()}
            return out

        return {
            "overall": {"accuracy": self.accuracy, "n": len(self.predictions)},
            "mean_of_benchmarks": self.benchmark_mean(),
            "benchmarks": {name or "data": block(r) for name, r in self.per_benchmark().items()},
        }

    def table(self) -> str:
        """A text table: each benchmark's total, then its sources and categories (when there are several)."""
        width = max([24] + [len(p.benchmark) + 2 for p in self.predictions])
        header = "benchmark / group" if any(p.benchmark for p in self.predictions) else "group"
        lines = [f"{header:<{width + 12}}{'n':>6}{'accuracy':>10}"]

        def row(label: str, n: int, acc: float) -> str:
            return f"{label:<{width + 12}}{n:>6}{100 * acc:>9.1f}%"

        benchmarks = self.per_benchmark()
        for name, report in sorted(benchmarks.items()):
            if name:
                lines.append(row(name, len(report.predictions), report.accuracy))
            for key in GROUP_KEYS:
                groups = report.per_group(key)
                if len(groups) > 1 or (not name and key == "source"):
                    lines += [row(f"  {key} {g}", n, acc) for g, (acc, n) in groups.items()]
        if len(benchmarks) > 1 or "" in benchmarks:
            lines.append(row("all", len(self.predictions), self.accuracy))
        if len(benchmarks) > 1:  # how the paper reports: the plain mean of the benchmark accuracies
            lines.append(row("mean of benchmarks", len(benchmarks), self.benchmark_mean()))
        return "\n".join(lines)


def score(example: dict[str, Any], response: str, *, benchmark: str = "") -> Prediction:
    """Score one response against the example's ``answer`` (the question is passed so options can match)."""
    from mmfinereason.rewards import extract_answer, is_correct

    answer = str(example["answer"])
    return Prediction(
        id=str(example.get("id", "")),
        source=str(example.get("source") or "unknown"),
        response=response,
        extracted=extract_answer(response),
        answer=answer,
        correct=bool(is_correct(response, answer, question=example.get("question"))),
        benchmark=benchmark,
        category=None if example.get("category") in (None, "") else str(example["category"]),
    )


def evaluate_accuracy(
    model,
    processor,
    examples: Iterable[dict[str, Any]],
    *,
    batch_size: int = 16,
    max_new_tokens: int = 256,
    progress: bool = True,
    desc: str = "eval",
    **generate_kwargs,
) -> AccuracyReport:
    """Generate (greedy unless told otherwise) for every example and score the final answer against ``answer``.

    ``generate_kwargs`` go to :func:`generate_responses` (``min_pixels``, ``max_pixels``, ``system_prompt``,
    ``repetition_penalty``, ...). Predictions come back in the order of ``examples``.
    """
    from tqdm.auto import tqdm

    examples = list(examples)
    scored: dict[int, Prediction] = {}
    with tqdm(total=len(examples), desc=desc, disable=not progress, leave=False) as bar:
        for idx in homogeneous_batches(examples, batch_size):
            group = [examples[i] for i in idx]
            responses = generate_responses(model, processor, group, max_new_tokens, **generate_kwargs)
            for i, ex, response in zip(idx, group, responses):
                scored[i] = score(ex, response)
            bar.update(len(group))
    return AccuracyReport([scored[i] for i in range(len(examples))])


def evaluate_benchmarks(
    generator: Generator,
    benchmarks: list[Benchmark],
    output_dir: str | Path,
    *,
    batch_size: int = 16,
    progress: bool = True,
) -> AccuracyReport:
    """Generate, score and record every example of ``benchmarks``; resume what an earlier run left.

    Writes ``output_dir/predictions/<benchmark>.jsonl`` (one line per example: benchmark, id, source, category,
    answer, response, extracted, correct), appended and flushed batch by batch. Rows already in those files
    are not generated again. The report covers exactly the examples of ``benchmarks`` (a smaller ``--limit``
    than last time reports on fewer rows; the file keeps them all).
    """
    from tqdm.auto import tqdm

    from mmfinereason.evaluation.store import JsonlStore, unique_ids

    report = AccuracyReport()
    for bench in benchmarks:
        store = JsonlStore(Path(output_dir) / "predictions" / f"{bench.name}.jsonl", key="uid")
        done = store.load()
        uids, repeats = unique_ids(bench.ids())
        if repeats:
            logger.warning("%s: %d repeated ids; repeats are recorded as id#2, id#3, ...", bench.name, repeats)
        todo = [i for i, uid in enumerate(uids) if uid not in done]
        if len(todo) < len(uids):
            logger.info("%s: %d of %d rows already done, generating %d", bench.name, len(uids) - len(todo), len(uids), len(todo))
        with tqdm(total=len(uids), initial=len(uids) - len(todo), desc=bench.name, disable=not progress) as bar:
            for start in range(0, len(todo), batch_size):
                rows = todo[start : start + batch_size]
                chunk = [bench.example(i) for i in rows]
                records = []
                for idx in homogeneous_batches(chunk, batch_size):
                    group = [chunk[j] for j in idx]
                    for j, ex, response in zip(idx, group, generator.generate(group)):
                        records.append({"uid": uids[rows[j]], **score(ex, response, benchmark=bench.name).to_record()})
                store.append(records)
                done.update((r["uid"], r) for r in records)
                bar.update(len(chunk))
        report.predictions.extend(Prediction.from_record(done[uid]) for uid in uids)
    return report
