"""vLLM engines get the number of images per prompt from the data (issue 16, item 5). vLLM is not installed
here: the computed arguments are checked, and TRL's ``LLM`` symbol is replaced by a recorder."""

from __future__ import annotations

from types import SimpleNamespace

import datasets

from mmfinereason.data.prompt_images import images_per_prompt


def _rows(*counts):
    return [{"question": "<image>" * n + "q", "answer": "1"} for n in counts]


def test_images_per_prompt_counts_markers_in_memory_and_streaming():
    assert images_per_prompt(datasets.Dataset.from_list(_rows(1, 3, 2))) == 3
    assert images_per_prompt(datasets.Dataset.from_list(_rows(1, 3, 2)).to_iterable_dataset()) == 3
    assert images_per_prompt(_rows(0, 0)) == 1  # text-only data still allows one (vLLM's minimum)
    assert images_per_prompt(None) == 1


def test_gspo_colocate_engine_gets_the_data_limit_and_dtype(monkeypatch):
    from trl.generation import vllm_generation

    from mmfinereason.trainers.vllm_engine import vllm_context

    calls = []
    monkeypatch.setattr(vllm_generation, "LLM", lambda **kw: calls.append(kw), raising=False)
    args = SimpleNamespace(use_vllm=True, vllm_mode="colocate", bf16=True)
    with vllm_context(args, datasets.Dataset.from_list(_rows(1, 4))):
        vllm_generation.LLM(model="m", max_model_len=10)
    vllm_generation.LLM(model="after")  # restored outside the trainer's __init__
    assert calls[0] == {"model": "m", "max_model_len": 10, "limit_mm_per_prompt": {"image": 4, "video": 0},
                        "dtype": "bfloat16"}
    assert calls[1] == {"model": "after"}
    off = SimpleNamespace(use_vllm=False, vllm_mode="colocate", bf16=True)
    with vllm_context(off, datasets.Dataset.from_list(_rows(4))):
        vllm_generation.LLM(model="hf")
    assert calls[2] == {"model": "hf"}


def test_eval_vllm_engine_args_follow_the_benchmarks():
    from mmfinereason.cli.commands.eval import vllm_args
    from mmfinereason.evaluation.generators import GenerationSettings, vllm_engine_args

    benchmarks = [SimpleNamespace(dataset=datasets.Dataset.from_list(_rows(1))),
                  SimpleNamespace(dataset=datasets.Dataset.from_list(_rows(2, 5)))]
    kw = vllm_args(SimpleNamespace(tensor_parallel_size=2), benchmarks)
    assert kw == {"tensor_parallel_size": 2, "max_images_per_prompt": 5}
    engine = vllm_engine_args(GenerationSettings(), kw["max_images_per_prompt"], "bfloat16")
    assert engine["limit_mm_per_prompt"] == {"image": 5, "video": 0} and engine["dtype"] == "bfloat16"
