"""GSPO step time with the loss forward padding-free (``train.padding_free``, the default) against TRL's padded one.

    python bench/gspo_padding_free.py --sft outputs/demo/sft        # CPU, the shipped tiny recipe, ~4 min

Both arms start from the same SFT model with the same recipe and seed and run ``--steps`` updates each, in the
order A B B A so machine noise hits both; the figures are ratios within this run. Generation is the same in both
arms; only the scoring of the rollouts differs (``mmfinereason/trainers/padding_free.py``), so the bench also
times that part alone (the policy's log-prob forward, and its backward inside the step). Both arms compute the
same log-probs (``tests/test_padding_free.py``): the logged entropies agree up to float summation order. Prints one
JSON line.
"""

from __future__ import annotations

import json
import statistics
import time


def one_arm(recipe_path: str, sft: str, steps: int, padding_free: bool, out: str) -> dict:
    """Seconds per update, seconds per update in the log-prob forward, and the share of padding avoided."""
    import torch

    from gspo_step import build_arm  # bench/ is on the path when a bench runs as a script

    trainer = build_arm(
        recipe_path, sft, steps, out, f"train.padding_free={str(padding_free).lower()}", "train.logging_steps=1"
    )
    scoring = [0.0]
    score = trainer._get_per_token_logps_and_entropies

    def timed(*args, **kwargs):
        start = time.perf_counter()
        result = score(*args, **kwargs)
        scoring[0] += time.perf_counter() - start
        return result

    trainer._get_per_token_logps_and_entropies = timed
    torch.manual_seed(0)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    logs = [h for h in trainer.state.log_history if "loss" in h]
    avoided = [h["padding_free/frac_padding_avoided"] for h in logs if "padding_free/frac_padding_avoided" in h]
    return {
        "seconds_per_step": seconds / steps,
        "scoring_forward_per_step": scoring[0] / steps,
        "frac_padding_avoided": statistics.mean(avoided) if avoided else 0.0,
        "last_entropy": logs[-1].get("entropy") if logs else None,
    }


def main() -> None:
    from gspo_step import abba, arm_parser

    a = arm_parser(8, "outputs/bench-gspo-padding-free", "padded/packed").parse_args()
    arms = abba(("padded", "packed"), a.rounds,
                lambda name, r: one_arm(a.recipe, a.sft, a.steps, name == "packed", f"{a.out}/{name}-{r}"))

    def mean(name: str, key: str) -> float:
        return statistics.mean(x[key] for x in arms[name])

    print(json.dumps({
        "bench": "gspo_padding_free", "sft": a.sft, "steps": a.steps, "rounds": a.rounds,
        "seconds_per_step_padded": round(mean("padded", "seconds_per_step"), 3),
        "seconds_per_step_packed": round(mean("packed", "seconds_per_step"), 3),
        "speedup": round(mean("padded", "seconds_per_step") / mean("packed", "seconds_per_step"), 3),
        "log_prob_forward_padded": round(mean("padded", "scoring_forward_per_step"), 3),
        "log_prob_forward_packed": round(mean("packed", "scoring_forward_per_step"), 3),
        "frac_padding_avoided": round(mean("packed", "frac_padding_avoided"), 3),
        "last_entropy": {k: [x["last_entropy"] for x in v] for k, v in arms.items()},
        "per_arm_seconds_per_step": {k: [round(x["seconds_per_step"], 3) for x in v] for k, v in arms.items()},
    }))


if __name__ == "__main__":
    main()
