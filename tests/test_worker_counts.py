"""Truncated / dropped samples are counted when the collator runs in DataLoader worker processes.

Before: each worker counted into its own copy of ``collator.stats`` and the trainer logged 0.
"""

from __future__ import annotations

from collections import Counter

import datasets
from torch.utils.data import DataLoader

from mmfinereason.data.batching.collator import MultimodalCollator
from mmfinereason.data.batching.worker_counts import WORKER_COUNTS_KEY, pop_counts
from tests.conftest import toy_examples

TIGHT = 100  # tokens: the toy samples are ~100-160, so some responses are cut


def test_counts_ride_in_the_batch_from_a_worker(tiny_processor):
    examples = toy_examples(8)
    in_main = MultimodalCollator(tiny_processor, TIGHT)
    for batch in DataLoader(examples, batch_size=4, collate_fn=in_main, num_workers=0):
        assert WORKER_COUNTS_KEY not in batch  # model(**collator(examples)) stays clean
    expected = in_main.stats["truncated"] + in_main.stats["dropped_overlong"]
    assert expected > 0

    in_worker = MultimodalCollator(tiny_processor, TIGHT)
    total: Counter = Counter()
    for batch in DataLoader(examples, batch_size=4, collate_fn=in_worker, num_workers=1):
        total.update(pop_counts(batch))
        assert WORKER_COUNTS_KEY not in batch
    assert in_worker.stats["truncated"] == 0  # the main process's copy never sees the worker's counting
    assert total["truncated"] == in_main.stats["truncated"]
    assert total["dropped_overlong"] == in_main.stats["dropped_overlong"]


def test_sft_logs_truncated_samples_with_one_worker(tmp_path, tiny_dir, monkeypatch):
    from mmfinereason.pipelines.sft import build_sft
    from mmfinereason.recipe.loader import load_recipe

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_datasets_cache"))
    recipe = load_recipe(
        "recipes/tiny/sft.yaml",
        [
            f"train.output_dir={tmp_path / 'out'}", "model.name_or_path=tiny", "data.train.0.limit=16",
            "data.eval.0.limit=4", f"data.max_length={TIGHT}", "data.packing=false", "train.max_steps=2",
            "train.per_device_train_batch_size=4", "train.logging_steps=1", "train.dataloader_num_workers=1",
            "eval.before_training=false", "eval.after_training=false",
        ],
    )
    trainer = build_sft(recipe)
    trainer.train()
    logged = [h for h in trainer.state.log_history if "samples_truncated" in h]
    assert logged and logged[-1]["samples_truncated"] + logged[-1]["samples_dropped_overlong"] > 0
    assert trainer.data_collator.stats["truncated"] == 0  # all of it came from the worker


def test_one_worker_trains_the_same_weights_as_the_main_process(tmp_path, tiny_dir, monkeypatch):
    """The tiny SFT recipe (packing on) with its collator in a worker: the same batches, bitwise the same weights
    (why recipes/tiny/sft.yaml may hide the collator's time behind training: bench/sft_loader_workers.py)."""
    import torch

    from mmfinereason.pipelines.sft import build_sft
    from mmfinereason.recipe.loader import load_recipe

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_datasets_cache"))
    trained = {}
    for workers in (0, 1):
        recipe = load_recipe("recipes/tiny/sft.yaml", [
            f"train.output_dir={tmp_path / f'w{workers}'}", "model.name_or_path=tiny", "data.train.0.limit=48",
            "train.max_steps=4", "train.per_device_train_batch_size=4", f"train.dataloader_num_workers={workers}",
            "eval.before_training=false", "eval.after_training=false",
        ])
        trainer = build_sft(recipe)
        start = [p.detach().clone() for p in trainer.model.parameters()]
        trainer.train()
        trained[workers] = [p.detach().clone() for p in trainer.model.parameters()]
        assert any(not torch.equal(a, b) for a, b in zip(start, trained[workers]))  # it trained
    assert all(torch.equal(a, b) for a, b in zip(trained[0], trained[1]))
