"""Pass-rate sampling (``mmfinereason select``, HF backend): one ``generate`` per question against one per batch.

    python bench/select_sampling.py --model outputs/demo/sft          # CPU, the tiny SFT model, ~2 min

Why: each question's ``k`` answers must depend only on ``(--seed, id)`` (resume writes what an uninterrupted run
would). With ``transformers``' one global generator that meant one call per question (``k`` rows); per-row
seeded sampling (``mmfinereason/evaluation/row_sampling.py``) gives the same guarantee to a batch of questions.
Both arms here run the same sampler on the same questions and differ only in how many questions share a call;
they run in the order A B B A so machine noise hits both. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    from mmfinereason.data.io.sources import load_sources
    from mmfinereason.data.io.mixing import SourceSpec
    from mmfinereason.evaluation.generators import GenerationSettings, HFGenerator
    from mmfinereason.modeling.loading import load_model, load_processor
    from mmfinereason.recipe.loader import ModelConfig

    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True, help="a tiny SFT model (e.g. outputs/demo/sft)")
    parser.add_argument("--questions", type=int, default=128)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32, help="questions per call in the batched arm")
    parser.add_argument("--max-new-tokens", type=int, default=96)
    a = parser.parse_args()
    model = load_model(ModelConfig(name_or_path=a.model, dtype="float32")).eval()
    processor = load_processor(a.model, min_pixels=1024, max_pixels=25600)
    settings = GenerationSettings(temperature=1.0, max_new_tokens=a.max_new_tokens, min_pixels=1024, max_pixels=25600)
    generator = HFGenerator(model, processor, settings)
    dataset, _ = load_sources([SourceSpec(path="toy", split="rl", limit=a.questions)], require_response=False)
    examples = list(dataset)

    def arm(per_call: int) -> tuple[float, list[list[str]]]:
        start, out = time.perf_counter(), []
        for i in range(0, len(examples), per_call):
            out += generator.sample(examples[i : i + per_call], a.k, seed=0)
        return time.perf_counter() - start, out

    seconds: dict[int, list[float]] = {1: [], a.batch_size: []}
    answers = {}
    for per_call in (1, a.batch_size, a.batch_size, 1):
        took, answers[per_call] = arm(per_call)
        seconds[per_call].append(took)
    one, batched = (sum(seconds[n]) / 2 for n in (1, a.batch_size))
    same = sum(x == y for x, y in zip(answers[1], answers[a.batch_size]))
    print(json.dumps({
        "bench": "select_sampling", "questions": len(examples), "k": a.k, "max_new_tokens": a.max_new_tokens,
        "seconds_one_question_per_call": round(one, 2), f"seconds_{a.batch_size}_questions_per_call": round(batched, 2),
        "speedup": round(one / batched, 2),
        "questions_with_the_same_k_answers": f"{same}/{len(examples)}",  # the seeding makes batching invisible
    }))


if __name__ == "__main__":
    main()
