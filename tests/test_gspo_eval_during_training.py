"""Held-out accuracy during a GSPO run (``eval.every_n_steps``): wired by the recipe, and harmless to training.

Issue 17's study reads the accuracy along its runs from this callback; that is only a measurement of the run if
turning it on does not change the run.
"""

from __future__ import annotations

import torch

from mmfinereason.recipe.loader import recipe_from_dict
from tests.test_gspo import _isolated_hf_cache, _tiny, length_reward, make_trainer  # noqa: F401 (autouse fixtures)


def test_gspo_logs_held_out_accuracy_during_training(tmp_path):
    """`eval.every_n_steps` works for stage 2 as for stage 1: the recipe wires the accuracy callback."""
    from mmfinereason.trainers.eval_callback import AccuracyCallback
    from mmfinereason.pipelines.gspo import build_gspo

    recipe = recipe_from_dict({
        "stage": "gspo",
        "model": {"name_or_path": "tiny", "dtype": "float32"},
        "data": {"train": [{"path": "toy", "split": "rl", "limit": 8}],
                 "eval": [{"path": "toy", "split": "test", "limit": 4}]},
        "train": {"output_dir": str(tmp_path / "gspo"), "max_steps": 2, "num_generations": 2,
                  "per_device_train_batch_size": 4, "max_completion_length": 8, "save_strategy": "no",
                  "logging_steps": 1, "disable_tqdm": True},
        "eval": {"every_n_steps": 1, "max_new_tokens": 8, "batch_size": 4},
    })
    trainer = build_gspo(recipe)
    callback = next(c for c in trainer.callback_handler.callbacks if isinstance(c, AccuracyCallback))
    trainer.train()
    assert [step for step, _ in callback.history] == [1, 2]
    assert any("eval_accuracy" in h for h in trainer.state.log_history)


def test_evaluating_during_a_gspo_run_does_not_change_what_it_learns(tmp_path):
    """Held-out accuracy every update (greedy generation between updates) leaves the trajectory as it was: the same
    parameters after 2 updates as the run without it. Why it can break: an evaluation that samples consumes the
    RNG the next rollouts draw from, and one that forgets to put the model back in training mode or leaves its
    generation cache settings changed trains a different model. Issue 17's study relies on it: its held-out
    accuracy every 20 updates matched the saved checkpoints' and left the final accuracy to the digit."""
    from mmfinereason.pipelines.inputs import load_eval_examples
    from mmfinereason.trainers.eval_callback import AccuracyCallback

    examples = load_eval_examples(recipe_from_dict({
        "stage": "gspo", "model": {"name_or_path": "tiny"}, "train": {"output_dir": str(tmp_path / "r")},
        "data": {"train": [{"path": "toy", "split": "rl", "limit": 8}],
                 "eval": [{"path": "toy", "split": "test", "limit": 4}]},
    }))
    final = []
    for evaluate in (False, True):
        trainer = make_trainer(tmp_path / str(evaluate), reward_funcs=[length_reward], reward_weights=None,
                               overlong_completions="none", temperature=1.0)
        start = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
        if evaluate:
            callback = AccuracyCallback(trainer, examples, every_n_steps=1, batch_size=4, max_new_tokens=8,
                                        min_pixels=1024, max_pixels=25600)
            trainer.add_callback(callback)
        trainer.train()
        final.append({n: p.detach().clone() for n, p in trainer.model.named_parameters()})
        assert any(not torch.equal(start[n], p) for n, p in final[-1].items()), "no parameter moved"
    assert [step for step, _ in callback.history] == [1, 2]
    assert trainer.model.training
    different = [n for n in final[0] if not torch.equal(final[0][n], final[1][n])]
    assert not different, f"evaluating during training changed {len(different)} tensors, e.g. {different[:3]}"
