"""GSPO step time with the loss forward padding-free (``train.padding_free``, the default) against TRL's padded one.

    python bench/gspo_padding_free.py --sft outputs/demo/sft        # CPU, the shipped tiny recipe, ~3 min

Both arms start from the same SFT model with the same recipe and seed and run ``--steps`` updates each, in the
order A B B A so machine noise hits both; the figures are ratios within this run. Generation is the same in both
arms; only the scoring of the rollouts differs (``mmfinereason/trainers/padding_free.py``), so the bench also
times that part alone (the policy's log-prob forward, and its backward inside the step). Both arms compute the
same log-probs (``tests/test_padding_free.py``): the logged entropies agree up to float summation order.

A second part (``length_mix``) times the scoring forward + backward alone on rollouts of the paper's length mix
(MMFineReason's responses, scaled down 16x), several to a micro-batch: the case the tiny task's short completions
understate. Prints one JSON line.
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


def length_mix(recipe_path: str, rows: int, batches: int, scale: float, out: str) -> dict:
    """The scoring forward + backward alone on rollouts of the paper's length mix: completions log-normal with
    MMFineReason's mean response (2,910 tokens, sigma 0.8, cut at the 16,384-token budget), every length divided by
    ``scale``, ``rows`` rollouts a micro-batch, on toy prompts with their images; padded (TRL) and packed, ABBA.

    Why: the tiny task's completions are 40-90 tokens, so its 28% of padding understates what a micro-batch of
    several reasoning traces carries."""
    import numpy as np
    import torch
    from trl import GRPOTrainer

    from gspo_step import build_arm
    from sft_throughput import REAL_MEAN_RESPONSE

    trainer = build_arm(recipe_path, "tiny", 1, out, "train.max_completion_length=1", "train.num_generations=2",
                        f"train.per_device_train_batch_size={rows}")
    trainer.model.train()
    dataset = trainer.train_dataset
    rng = np.random.default_rng(0)
    mu = np.log(REAL_MEAN_RESPONSE / scale) - 0.8**2 / 2
    inputs = []
    for b in range(batches):
        prompts = [dict(dataset[(b * rows + i) // 2]) for i in range(rows)]
        batch = trainer._generate_and_score_completions(prompts)  # real prompts and images; completions replaced
        lengths = np.clip(rng.lognormal(mu, 0.8, rows).astype(int), 8, int(16384 / scale))
        width = int(lengths.max())
        completion = torch.randint(10, 400, (rows, width))
        completion_mask = (torch.arange(width)[None] < torch.tensor(lengths)[:, None]).long()
        prompt_width = batch["prompt_ids"].size(1)
        mm = batch["mm_token_type_ids"][:, :prompt_width]
        inputs.append(dict(
            input_ids=torch.cat([batch["prompt_ids"], completion], 1),
            attention_mask=torch.cat([batch["prompt_mask"], completion_mask], 1), logits_to_keep=width,
            pixel_values=batch["pixel_values"], image_grid_thw=batch["image_grid_thw"], num_images=batch["num_images"],
            mm_token_type_ids=torch.cat([mm, mm.new_zeros(rows, width)], 1), compute_entropy=True,
        ))
    scorers = {"padded": lambda **k: GRPOTrainer._get_per_token_logps_and_entropies(trainer, trainer.model, **k),
               "packed": lambda **k: trainer._get_per_token_logps_and_entropies(trainer.model, **k)}
    spent = {"padded": 0.0, "packed": 0.0}
    for r, batch in enumerate(inputs):  # ABBA over the batches
        for name in ("padded", "packed") if r % 2 == 0 else ("packed", "padded"):
            trainer.model.zero_grad()
            start = time.perf_counter()
            logps = scorers[name](**batch)[0]
            mask = batch["attention_mask"][:, -batch["logits_to_keep"]:]
            ((logps * mask).sum() / mask.sum()).backward()
            spent[name] += time.perf_counter() - start
    real = sum(int(b["attention_mask"].sum()) for b in inputs)
    padded = sum(b["attention_mask"].numel() for b in inputs)
    return {"rows_per_micro_batch": rows, "micro_batches": batches, "scale": scale,
            "real_token_fraction_padded": round(real / padded, 3),
            "seconds_per_micro_batch_padded": round(spent["padded"] / batches, 3),
            "seconds_per_micro_batch_packed": round(spent["packed"] / batches, 3),
            "speedup": round(spent["padded"] / spent["packed"], 3)}


def main() -> None:
    from gspo_step import abba, arm_parser

    parser = arm_parser(8, "outputs/bench-gspo-padding-free", "padded/packed")
    parser.add_argument("--mix-rows", type=int, default=8, help="rollouts per micro-batch in the length-mix part")
    parser.add_argument("--mix-batches", type=int, default=6, help="micro-batches in the length-mix part")
    parser.add_argument("--mix-scale", type=float, default=16.0, help="divide the paper's lengths by this")
    a = parser.parse_args()
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
        "length_mix": length_mix(a.recipe, a.mix_rows, a.mix_batches, a.mix_scale, f"{a.out}/length-mix"),
    }))


if __name__ == "__main__":
    main()
