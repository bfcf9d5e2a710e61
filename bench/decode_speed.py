"""HF ``generate`` on CPU: transformers' default KV cache against the growing one of
``mmfinereason/modeling/kv_cache.py``, which every model our loader builds uses.

    python bench/decode_speed.py --sft outputs/demo/sft        # ~2 min on 2 cores

Three workloads: one GSPO rollout batch of the tiny recipe (the 128 prompts and sampling settings TRL passes to
``generate``, captured from a real first step), one evaluation batch (50 held-out items, greedy, up to 96 new
tokens), and that batch forced to 384 new tokens (the copy the growing cache saves grows with the square of the
length). Arms run in
rotating order, the same seed in every arm of a round, so machine noise hits both alike; compare the ratios. Also
says whether the growing cache generated the stock arm's tokens (it must, to the bit). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

ARMS = {"stock": False, "growing": True}  # arm: use_growing_kv_cache


def rollout_inputs(recipe: str, sft: str, out: str) -> dict:
    """The keyword arguments TRL's first GSPO step passes to ``model.generate`` (the model is returned too)."""
    from gspo_step import build_arm  # bench/ is on the path when a bench runs as a script

    trainer = build_arm(recipe, sft, 1, out)
    captured: dict = {}
    generate = trainer.model.generate

    def capture(*args, **kwargs):
        captured.update(kwargs)
        return generate(*args, **kwargs)

    trainer.model.generate = capture
    trainer.train()
    del trainer.model.generate
    return captured | {"model": trainer.model}


def eval_inputs(processor, n: int) -> dict:
    """A left-padded greedy batch of ``n`` held-out toy items, as ``mmfinereason eval`` builds it."""
    from mmfinereason.data.chat import render_prompt
    from mmfinereason.toy import make_example

    rows = [make_example(i, 7) for i in range(n)]
    batch = processor(text=[render_prompt(processor, r["question"], 1) for r in rows], images=[[r["image"]] for r in rows],
                      padding=True, padding_side="left", return_tensors="pt",
                      size={"shortest_edge": 1024, "longest_edge": 25600})
    return dict(batch) | {"do_sample": False, "max_new_tokens": 96, "pad_token_id": processor.tokenizer.pad_token_id,
                          "temperature": None, "top_p": None, "top_k": None}


def main() -> None:
    import torch
    from transformers import AutoProcessor

    from mmfinereason.modeling.kv_cache import use_growing_kv_cache

    parser = argparse.ArgumentParser()
    parser.add_argument("--sft", required=True, help="an SFT model of the tiny recipe (e.g. outputs/demo/sft)")
    parser.add_argument("--recipe", default="recipes/tiny/gspo.yaml")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--eval-rows", type=int, default=50)
    parser.add_argument("--long-tokens", type=int, default=384, help="new tokens of the long workload")
    parser.add_argument("--out", default="outputs/bench-decode-speed")
    a = parser.parse_args()

    rollout = rollout_inputs(a.recipe, a.sft, a.out)
    model = rollout.pop("model").eval()
    evaluation = eval_inputs(AutoProcessor.from_pretrained(a.sft), a.eval_rows)
    workloads = {"rollouts": rollout, "eval": evaluation,
                 # the copy grows with the square of the length: a longer generation, forced past the end token
                 f"eval_{a.long_tokens}_tokens": evaluation | {"max_new_tokens": a.long_tokens, "min_new_tokens": a.long_tokens}}
    seconds = {w: {arm: [] for arm in ARMS} for w in workloads}
    same = {w: {arm: [] for arm in ARMS} for w in workloads}
    for r in range(a.rounds):
        order = list(ARMS)[r % len(ARMS):] + list(ARMS)[:r % len(ARMS)]
        for workload, inputs in workloads.items():
            tokens = {}
            for arm in order:
                use_growing_kv_cache(model, enabled=ARMS[arm])
                torch.manual_seed(r)
                start = time.perf_counter()
                with torch.no_grad():
                    tokens[arm] = model.generate(**inputs)
                seconds[workload][arm].append(time.perf_counter() - start)
            for arm in ARMS:
                a_, b_ = tokens[arm], tokens["stock"]
                same[workload][arm].append(a_.shape == b_.shape and bool(torch.equal(a_, b_)))
    report = {"bench": "decode_speed", "sft": a.sft, "rounds": a.rounds, "threads": torch.get_num_threads()}
    for workload in workloads:
        mean = {arm: statistics.mean(v) for arm, v in seconds[workload].items()}
        report[workload] = {
            "rows": int(workloads[workload]["input_ids"].shape[0]),
            "seconds": {arm: round(v, 3) for arm, v in mean.items()},
            "speedup_vs_stock": {arm: round(mean["stock"] / v, 3) for arm, v in mean.items() if arm != "stock"},
            "same_tokens_as_stock": {arm: f"{sum(v)}/{len(v)}" for arm, v in same[workload].items() if arm != "stock"},
        }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
