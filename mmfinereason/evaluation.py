"""Held-out accuracy: generate an answer per example, score it with the verifier, report per source.

One implementation serves the SFT trainer (accuracy before / after training), the GSPO trainer, the ``demo``
and ``mmfinereason eval``: prompts are built by :mod:`mmfinereason.data.chat` exactly as in training, answers
are scored by :func:`mmfinereason.rewards.is_correct`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable

import torch

from .data.chat import render_prompt


@dataclass
class Prediction:
    id: str
    source: str
    response: str
    extracted: str | None
    answer: str
    correct: bool


@dataclass
class AccuracyReport:
    """Accuracy overall and per ``source``, with counts."""

    predictions: list[Prediction] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return sum(p.correct for p in self.predictions) / max(len(self.predictions), 1)

    def per_source(self) -> dict[str, tuple[float, int]]:
        groups: dict[str, list[bool]] = defaultdict(list)
        for p in self.predictions:
            groups[p.source].append(p.correct)
        return {s: (sum(v) / len(v), len(v)) for s, v in sorted(groups.items())}

    def metrics(self, prefix: str = "eval") -> dict[str, float]:
        out = {f"{prefix}/accuracy": self.accuracy}
        out.update({f"{prefix}/accuracy/{s}": acc for s, (acc, _) in self.per_source().items()})
        return out

    def table(self) -> str:
        lines = [f"{'source':<24}{'n':>6}{'accuracy':>10}"]
        for source, (acc, n) in self.per_source().items():
            lines.append(f"{source:<24}{n:>6}{100 * acc:>9.1f}%")
        lines.append(f"{'all':<24}{len(self.predictions):>6}{100 * self.accuracy:>9.1f}%")
        return "\n".join(lines)


def _unwrap(model):
    return getattr(model, "module", model)


@torch.no_grad()
def generate_responses(
    model,
    processor,
    examples: list[dict[str, Any]],
    max_new_tokens: int = 256,
    *,
    min_pixels: int = 1024,
    max_pixels: int = 589824,
    system_prompt: str | None = None,
    do_sample: bool = False,
    temperature: float = 1.0,
    repetition_penalty: float = 1.0,
) -> list[str]:
    """Greedy (or sampled) completions for a batch of normalised examples, left-padded, one ``generate`` call."""
    model = _unwrap(model)
    prompts = [render_prompt(processor, ex["question"], len(ex.get("images") or []), system_prompt) for ex in examples]
    images = [list(ex.get("images") or []) for ex in examples]
    kwargs: dict[str, Any] = dict(text=prompts, padding=True, padding_side="left", return_tensors="pt")
    if any(images):
        if not all(images):
            raise ValueError("generate_responses needs every example of a batch to have images, or none to")
        kwargs.update(images=images, size={"shortest_edge": min_pixels, "longest_edge": max_pixels})
    batch = processor(**kwargs).to(model.device)
    was_training = model.training
    model.eval()
    tokenizer = processor.tokenizer
    gen = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, repetition_penalty=repetition_penalty)
    if do_sample:
        gen["temperature"] = temperature
    else:
        gen.update(temperature=None, top_p=None, top_k=None)
    try:
        out = model.generate(**batch, **gen, pad_token_id=tokenizer.pad_token_id, use_cache=True)
    finally:
        model.train(was_training)
    completions = out[:, batch["input_ids"].shape[1] :]
    return tokenizer.batch_decode(completions, skip_special_tokens=True)


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
    """Generate for every example and score the final answer against ``answer``."""
    from tqdm.auto import tqdm

    from .rewards import extract_answer, is_correct

    examples = list(examples)
    report = AccuracyReport()
    bar = tqdm(total=len(examples), desc=desc, disable=not progress, leave=False)
    # Batch text-only and image examples separately (a processor call takes all-or-none images).
    order = sorted(range(len(examples)), key=lambda i: bool(examples[i].get("images")))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        chunk = [examples[i] for i in idx]
        groups = [[e for e in chunk if e.get("images")], [e for e in chunk if not e.get("images")]]
        for group in groups:
            if not group:
                continue
            responses = generate_responses(model, processor, group, max_new_tokens, **generate_kwargs)
            for ex, response in zip(group, responses):
                report.predictions.append(
                    Prediction(
                        id=str(ex.get("id", "")),
                        source=str(ex.get("source") or "unknown"),
                        response=response,
                        extracted=extract_answer(response),
                        answer=str(ex["answer"]),
                        correct=bool(is_correct(response, str(ex["answer"]), question=ex.get("question"))),
                    )
                )
        bar.update(len(chunk))
    bar.close()
    return report
