"""Where a GSPO update's time goes: generation, the old-policy log-probs forward, and the rest (loss forward and
backward, rewards, optimizer), on-policy against several updates per rollout batch.

    python bench/gspo_step_parts.py --sft outputs/demo/sft                 # CPU, the shipped tiny recipe, ~3 min
    python bench/gspo_step_parts.py --sft outputs/demo/sft --updates-per-batch 4 --steps 16

Why: several updates per rollout batch (``train.steps_per_generation`` = k x gradient accumulation) look like a way
to learn more per generated token, but each update still trains on rows of its own, and TRL adds a forward over
every generated row for the old-policy log-probs (an on-policy update takes them from its own forward). This
bench measures that trade on this machine (issue 17: on CPU, 200 updates at 2 per batch beat 160 on-policy ones
but lost at equal time). Arms run in the order A B B A so machine noise hits both; compare the ratio. Prints one
JSON line.
"""

from __future__ import annotations

import argparse
import json
import time


def one_arm(recipe_path: str, sft: str, steps: int, updates_per_batch: int, out: str) -> dict:
    """Seconds per optimizer update and the share spent generating and in the old-policy log-probs forward."""
    import torch

    from gspo_step import build_arm  # bench/ is on the path when a bench runs as a script

    trainer = build_arm(
        recipe_path, sft, steps, out, f"train.steps_per_generation={updates_per_batch}", "train.logging_steps=1000"
    )
    spent = {"generation": 0.0, "old_logps": 0.0}

    def timed(part, fn, when=lambda: True):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            result = fn(*args, **kwargs)
            if when():
                spent[part] += time.perf_counter() - start
            return result
        return wrapper

    trainer._generate = timed("generation", trainer._generate)
    # outside the loss, the trainer calls the policy's log-prob forward only for the old-policy log-probs (beta 0)
    trainer._get_per_token_logps_and_entropies = timed(
        "old_logps", trainer._get_per_token_logps_and_entropies, when=lambda: not torch.is_grad_enabled()
    )
    start = time.perf_counter()
    trainer.train()
    total = time.perf_counter() - start
    return {
        "seconds_per_update": round(total / steps, 3),
        "generation_per_update": round(spent["generation"] / steps, 3),
        "old_logps_per_update": round(spent["old_logps"] / steps, 3),
        "rest_per_update": round((total - spent["generation"] - spent["old_logps"]) / steps, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipe", default="recipes/tiny/gspo.yaml")
    parser.add_argument("--sft", required=True, help="the SFT model both arms start from")
    parser.add_argument("--steps", type=int, default=16, help="optimizer updates per arm run (a multiple of k)")
    parser.add_argument("--updates-per-batch", type=int, default=2, help="k of the second arm")
    parser.add_argument("--out", default="outputs/bench-gspo-step-parts")
    a = parser.parse_args()
    if a.steps % a.updates_per_batch:
        parser.error("--steps must be a multiple of --updates-per-batch")
    runs = {1: [], a.updates_per_batch: []}
    for i, k in enumerate((1, a.updates_per_batch, a.updates_per_batch, 1)):
        runs[k].append(one_arm(a.recipe, a.sft, a.steps, k, f"{a.out}/run{i}-k{k}"))
    arms = {k: {key: round(sum(r[key] for r in rs) / len(rs), 3) for key in rs[0]} for k, rs in runs.items()}
    on_policy, several = arms[1], arms[a.updates_per_batch]
    print(json.dumps({
        "bench": "gspo_step_parts",
        "steps_per_arm_run": a.steps,
        "on_policy": on_policy,
        f"updates_per_batch_{a.updates_per_batch}": several,
        "time_per_update_ratio": round(several["seconds_per_update"] / on_policy["seconds_per_update"], 3),
    }))


if __name__ == "__main__":
    main()
