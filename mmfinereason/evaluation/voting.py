"""What k sampled answers per question say beyond their pass rate: the majority vote (maj@k) and pass@k.

Three numbers per source, from the records of ``mmfinereason select`` (``compute_pass_rates``): the accuracy of one
draw at the sampling temperature (pass@1), of the answer given most often (maj@k, self-consistency), and of any of
the k (pass@k). Why they are worth reporting, measured on the embedded task (``docs/gspo-study-task-v9.md``,
session 21): maj@k against the greedy accuracy of ``mmfinereason eval`` says whether greedy decoding leaves points
on the table; pass@k before and after RL says whether RL narrowed what the policy can reach (GSPO took the demo's
SFT model from pass@16 98.6% to 96.6%, shape 99.2% to 94.4%, while its greedy accuracy rose 70.0% to 73.4%). What
they do not do: predict RL's gain. The hypothesis that GSPO sharpens the SFT model onto its own majority vote held
for one SFT model (maj@16 73.8%, its 25 GSPO runs 71.2-75.0%) and failed for three others (maj@16 69.0-71.2%,
GSPO 71.4-75.6%): GSPO also teaches the model to read the frozen vision tower's tokens, which no vote of the SFT
model shows.

The vote: answers are grouped by their extracted text after light normalisation (case, surrounding space and
``$``, a trailing full stop); an answer that could not be extracted does not vote; a tie counts as the chance that
a random pick among the tied answers is right. Two spellings of one value (``1/2`` and ``0.5``) split their votes:
the vote is a lower bound where answers are free-form, exact on choice and number answers.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any, Iterable

ALL = "all"


def normalise(answer: Any) -> str | None:
    """The key an answer votes under; None when nothing was extracted."""
    if answer is None:
        return None
    text = " ".join(str(answer).split()).strip("$ ").rstrip(".").strip().casefold()
    return text or None


def vote(extracted: list[Any], passed: list[bool]) -> float:
    """1.0 when the answer given most often is right, 0.0 when wrong, the right share of the tied answers on a tie.

    ``passed[i]`` says whether sample ``i`` was scored right; an answer's group is right when most of its samples
    were (they differ only where the grader looked beyond the extracted text, e.g. at the question's options).
    """
    if len(extracted) != len(passed):
        raise ValueError(f"{len(extracted)} answers for {len(passed)} scores")
    groups: dict[str, list[bool]] = defaultdict(list)
    for answer, ok in zip(extracted, passed):
        key = normalise(answer)
        if key is not None:
            groups[key].append(bool(ok))
    if not groups:
        return 0.0
    most = max(len(v) for v in groups.values())
    tied = [v for v in groups.values() if len(v) == most]
    return sum(sum(v) * 2 > len(v) for v in tied) / len(tied)


@dataclass(frozen=True)
class SampledAccuracy:
    """Accuracies of one group of questions from their k sampled answers (fractions in [0, 1])."""

    questions: int
    k: int
    mean_pass_rate: float  # pass@1 at the sampling temperature: the accuracy of one draw
    majority: float | None  # maj@k; None when a record has no per-answer scores (a store from before session 21)
    pass_at_k: float  # at least one of the k right: the most sharpening alone can reach

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sampled_accuracy(records: Iterable[dict[str, Any]]) -> dict[str, SampledAccuracy]:
    """Per ``source`` and over ``all`` questions, from ``compute_pass_rates``' records."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        groups[str(record.get("source") or "unknown")].append(record)
        groups[ALL].append(record)
    out = {}
    for name in sorted(groups, key=lambda g: (g == ALL, g)):
        rows = groups[name]
        votes = [vote(r["extracted"], r["passed"]) if "passed" in r else None for r in rows]
        out[name] = SampledAccuracy(
            questions=len(rows),
            k=max(int(r["k"]) for r in rows),
            mean_pass_rate=sum(float(r["pass_rate"]) for r in rows) / len(rows),
            majority=None if None in votes else sum(votes) / len(rows),
            pass_at_k=sum(int(r["correct"]) > 0 for r in rows) / len(rows),
        )
    return out


def format_sampled_accuracy(table: dict[str, SampledAccuracy]) -> str:
    """The console table ``mmfinereason select`` prints."""
    k = max((s.k for s in table.values()), default=0)

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.1f}%"

    lines = [f"{'sampled answers':28s} {'n':>6s} {'pass@1':>8s} {f'maj@{k}':>8s} {f'pass@{k}':>8s}"]
    for name, s in table.items():
        label = name if name == ALL else f"  {name}"
        lines.append(f"{label:28s} {s.questions:6d} {pct(s.mean_pass_rate):>8s} {pct(s.majority):>8s} {pct(s.pass_at_k):>8s}")
    if any(s.majority is None for s in table.values()):
        lines.append("(maj@k needs each answer's score: rerun with --overwrite; this store predates it)")
    return "\n".join(lines)
