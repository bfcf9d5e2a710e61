"""GSPO step time with and without zero-advantage rows in the loss (``train.skip_zero_advantage_rows``).

    python bench/gspo_step.py --sft outputs/demo/sft            # CPU, the shipped tiny recipe, ~4 min

Both arms start from the same SFT model with the same recipe and seed, ``--steps`` optimizer steps each, run
alternately (full, skip, skip, full, ...) so machine noise hits both; the figure is the ratio of seconds per step
within this run. What is skipped depends on the model: an SFT model that solves some prompts every time (or
none) gives groups whose rollouts all earn the same reward — those rows are left out of the forward/backward.
The loss and gradient are the same either way (``tests/test_zero_advantage.py``); trajectories differ only by
float summation order. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def build_arm(recipe_path: str, sft: str, steps: int, out: str, *overrides: str):
    """A GSPO trainer of ``recipe_path`` from ``sft`` for ``steps`` updates, no evaluation, no progress bar
    (also used by ``bench/gspo_step_parts.py``)."""
    from mmfinereason import load_recipe
    from mmfinereason.pipelines.gspo import build_gspo

    return build_gspo(load_recipe(recipe_path, [
        f"model.name_or_path={sft}", f"train.output_dir={out}", f"train.max_steps={steps}", *overrides,
        "eval.before_training=false", "eval.after_training=false", "train.disable_tqdm=true",
    ]))


def arm_parser(steps: int, out: str, pair: str) -> argparse.ArgumentParser:
    """The arguments every two-arm GSPO bench takes (also used by ``bench/gspo_padding_free.py``)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--sft", required=True, help="an SFT model of the tiny recipe (e.g. outputs/demo/sft)")
    parser.add_argument("--recipe", default="recipes/tiny/gspo.yaml")
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--rounds", type=int, default=2, help=f"{pair} pairs")
    parser.add_argument("--out", default=out)
    return parser


def abba(names: tuple[str, str], rounds: int, run) -> dict[str, list[dict]]:
    """``run(name, round)`` for both arms ``rounds`` times, in the order A B B A …, so that a drift in machine speed
    hits both arms alike."""
    arms: dict[str, list[dict]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            arms[name].append(run(name, r))
    return arms


def one_arm(recipe_path: str, sft: str, steps: int, skip: bool, out: str) -> dict:
    trainer = build_arm(
        recipe_path, sft, steps, out, f"train.skip_zero_advantage_rows={str(skip).lower()}", "train.logging_steps=1"
    )
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    logs = [h for h in trainer.state.log_history if "loss" in h]
    skipped = [h["zero_advantage/frac_rows_skipped"] for h in logs if "zero_advantage/frac_rows_skipped" in h]
    return {"seconds_per_step": seconds / steps, "frac_rows_skipped": statistics.mean(skipped) if skipped else 0.0}


def main() -> None:
    a = arm_parser(10, "outputs/bench-gspo-step", "full/skip").parse_args()
    arms = abba(("full", "skip"), a.rounds,
                lambda name, r: one_arm(a.recipe, a.sft, a.steps, name == "skip", f"{a.out}/{name}-{r}"))
    full = statistics.mean(x["seconds_per_step"] for x in arms["full"])
    skip = statistics.mean(x["seconds_per_step"] for x in arms["skip"])
    print(json.dumps({
        "bench": "gspo_step", "sft": a.sft, "steps": a.steps, "rounds": a.rounds,
        "seconds_per_step_full": round(full, 3), "seconds_per_step_skip": round(skip, 3),
        "speedup": round(full / skip, 3),
        "frac_rows_skipped": round(statistics.mean(x["frac_rows_skipped"] for x in arms["skip"]), 3),
        "per_arm_seconds_per_step": {k: [round(x["seconds_per_step"], 3) for x in v] for k, v in arms.items()},
    }))


if __name__ == "__main__":
    main()
