"""The tiny SFT recipe with the collator in the main process against one DataLoader worker: time and exactness.

    python bench/sft_loader_workers.py                 # 60 steps per arm, A B B A, 2 threads (~6 min on 2 cores)

Why: profiled on 2 cores, the collator (processor call, image decode, mRoPE positions, packing) takes ~22% of a
tiny SFT step, and with ``dataloader_num_workers: 0`` the model waits for it every step. One worker prepares the
next batch while the model trains on this one. The batches are the same (the sampler runs in the main process and
the collator draws no random numbers), so the trained weights must come out bitwise equal: checked here, and in
``tests/test_worker_counts.py``. Arms run in the order A B B A so machine noise hits both; compare the ratio.
Prints one JSON line.

Measured (session 17, 2 idle cores of an AMD EPYC without AVX-512, 60 steps per arm run, weights equal in every
pair): at 2 threads one worker is *slower*, 0.490 s a step against 0.411 (x0.84: the worker takes a core from
the model's two threads); at 1 thread it is faster, 0.417 against 0.485 (x1.16), which only matches 2 threads in
the main process. On 2 cores there is nothing to gain, so recipes/tiny/sft.yaml keeps 0 workers; with more cores
than torch threads one worker hides the collator (the qwen3vl recipes use 4).
"""

from __future__ import annotations

import argparse
import json
import time


def one_arm(recipe: str, steps: int, workers: int, out: str):
    """Seconds per step and the trained weights of ``steps`` SFT steps with ``workers`` DataLoader workers."""
    from mmfinereason import load_recipe
    from mmfinereason.pipelines.sft import build_sft

    trainer = build_sft(load_recipe(recipe, [
        f"train.output_dir={out}", f"train.max_steps={steps}", f"train.dataloader_num_workers={workers}",
        "train.disable_tqdm=true", "train.logging_steps=1000", "eval.before_training=false",
        "eval.after_training=false",
    ]))
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    return seconds / steps, [p.detach().clone() for p in trainer.model.parameters()]


def main() -> None:
    import torch

    parser = argparse.ArgumentParser()
    parser.add_argument("--recipe", default="recipes/tiny/sft.yaml")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the demo: 2 on 2 cores)")
    parser.add_argument("--out", default="outputs/bench-sft-loader-workers")
    a = parser.parse_args()
    torch.set_num_threads(a.threads)
    times: dict[int, list[float]] = {0: [], 1: []}
    weights = {}
    for i, workers in enumerate((0, 1, 1, 0)):
        seconds, weights[workers] = one_arm(a.recipe, a.steps, workers, f"{a.out}/run{i}-w{workers}")
        times[workers].append(seconds)
    main_process, worker = (sum(times[w]) / 2 for w in (0, 1))
    print(json.dumps({
        "bench": "sft_loader_workers",
        "steps_per_arm_run": a.steps,
        "threads": a.threads,
        "seconds_per_step": {"main_process": round(main_process, 3), "one_worker": round(worker, 3)},
        "speedup": round(main_process / worker, 3),
        "same_weights": all(torch.equal(x, y) for x, y in zip(weights[0], weights[1])),
    }))


if __name__ == "__main__":
    main()
