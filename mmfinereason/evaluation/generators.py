"""Answer generation for ``mmfinereason eval`` and ``select``: HF ``generate`` or vLLM, one interface.

Both backends take normalised examples (``question`` with ``<image>`` markers, PIL ``images``) and render the
prompt with :func:`mmfinereason.data.chat.render_prompt`, the function training uses, so a checkpoint is
evaluated on exactly the prompt format it was trained on (no system prompt unless the recipe sets one; the
chat template's default thinking mode).

Sampling is seeded *per question*: the ``k`` draws for a row depend only on ``(seed, row id)``, never on the
batch it landed in. That is what lets ``select`` resume after a crash, or change batch size, and still write
the pass rates an uninterrupted run would. HF ``generate`` has one RNG per call, so it samples one question
(``k`` sequences) per call; vLLM takes a seed per request and batches freely — use it for real runs.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import torch

from mmfinereason.errors import UserError
from mmfinereason.import_utils import is_available, require

logger = logging.getLogger(__name__)

PAPER_REPETITION_PENALTY = 1.05  # paper B.2: temperature 0, top_p 1, repetition penalty 1.05
PAPER_MAX_PIXELS = 2048 * 2048  # paper B.2: images up to 2048x2048 at evaluation


@dataclass
class GenerationSettings:
    """How answers are generated. Defaults are the paper's evaluation (greedy, no system prompt)."""

    max_new_tokens: int = 256
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    repetition_penalty: float = PAPER_REPETITION_PENALTY
    min_pixels: int = 1024
    max_pixels: int = PAPER_MAX_PIXELS
    system_prompt: str | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise UserError(
                f"max_new_tokens (--max-new-tokens, eval.max_new_tokens) must be >= 1, got {self.max_new_tokens}"
            )
        if self.temperature < 0:
            raise UserError(f"temperature (--temperature) must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise UserError(f"top_p (--top-p) must be in (0, 1], got {self.top_p}")
        if self.repetition_penalty <= 0:
            raise UserError(
                "repetition_penalty (--repetition-penalty, eval.repetition_penalty) must be > 0, "
                f"got {self.repetition_penalty}"
            )

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def row_seed(seed: int, row_id: str) -> int:
    """A stable 31-bit seed for one question (Python's ``hash`` is salted per process; crc32 is not)."""
    return zlib.crc32(f"{seed}:{row_id}".encode()) & 0x7FFFFFFF


class Generator(Protocol):
    settings: GenerationSettings

    def generate(self, examples: list[dict[str, Any]]) -> list[str]:
        """One completion per example (greedy when ``settings.temperature == 0``)."""

    def sample(self, examples: list[dict[str, Any]], k: int, seed: int) -> list[list[str]]:
        """``k`` completions per example, seeded per example by :func:`row_seed`."""


class HFGenerator:
    """``transformers`` generate on one device; batched greedy, per-question seeded sampling."""

    def __init__(self, model, processor, settings: GenerationSettings) -> None:
        self.model, self.processor, self.settings = model, processor, settings

    def _kwargs(self) -> dict[str, Any]:
        s = self.settings
        return dict(
            min_pixels=s.min_pixels,
            max_pixels=s.max_pixels,
            system_prompt=s.system_prompt,
            repetition_penalty=s.repetition_penalty,
            do_sample=not s.greedy,
            temperature=s.temperature if not s.greedy else 1.0,
            top_p=s.top_p,
        )

    def generate(self, examples: list[dict[str, Any]]) -> list[str]:
        from mmfinereason.evaluation.generation import generate_responses

        if not examples:
            return []
        return generate_responses(self.model, self.processor, examples, self.settings.max_new_tokens, **self._kwargs())

    def sample(self, examples: list[dict[str, Any]], k: int, seed: int) -> list[list[str]]:
        """One ``generate`` call per kind of row (with images / text only) for the whole batch of questions;
        each completion draws from its own stream, seeded by :func:`row_seed` of its question and its index."""
        from mmfinereason.evaluation.generation import generate_responses, homogeneous_batches

        if self.settings.greedy:
            raise UserError(
                "sampling k answers needs temperature > 0 (greedy draws would all be the same); drop --temperature 0"
            )
        out: list[list[str]] = [[] for _ in examples]
        for rows in homogeneous_batches(examples, max(len(examples), 1)):
            batch = [examples[i] for i in rows]
            seeds = [row_seed(seed, f"{ex['id']}#{j}") for ex in batch for j in range(k)]
            texts = generate_responses(
                self.model, self.processor, batch, self.settings.max_new_tokens, **self._kwargs(),
                num_return_sequences=k, row_seeds=seeds,
            )
            for n, i in enumerate(rows):
                out[i] = texts[n * k : (n + 1) * k]
        return out


class VLLMGenerator:
    """vLLM offline engine: continuous batching, per-request seeds. Needs ``pip install 'mmfinereason[vllm]'``.

    Not exercised by the CPU test suite (vLLM needs a GPU); the prompt is the same rendered chat text, with
    the images passed as ``multi_modal_data``.
    """

    def __init__(
        self,
        model_path: str,
        processor,
        settings: GenerationSettings,
        *,
        tensor_parallel_size: int = 1,
        max_images_per_prompt: int = 1,
        seed: int = 0,
        dtype: str = "auto",
    ) -> None:
        vllm = require("vllm", feature="--backend vllm")
        self.processor, self.settings = processor, settings
        self._vllm = vllm
        self.llm = vllm.LLM(
            model=model_path,
            tensor_parallel_size=tensor_parallel_size,
            **vllm_engine_args(settings, max_images_per_prompt, dtype),
            seed=seed,
        )

    def _request(self, ex: dict[str, Any]) -> dict[str, Any]:
        from mmfinereason.data.chat import render_prompt

        images = list(ex.get("images") or [])
        request: dict[str, Any] = {
            "prompt": render_prompt(self.processor, ex["question"], len(images), self.settings.system_prompt)
        }
        if images:
            request["multi_modal_data"] = {"image": images if len(images) > 1 else images[0]}
        return request

    def _params(self, n: int, seed: int | None):
        s = self.settings
        return self._vllm.SamplingParams(
            n=n,
            temperature=s.temperature,
            top_p=s.top_p,
            top_k=-1,  # no top-k cut: the checkpoint's chat defaults (top_k 20) are not evaluation settings
            repetition_penalty=s.repetition_penalty,
            max_tokens=s.max_new_tokens,
            seed=seed,
        )

    def generate(self, examples: list[dict[str, Any]]) -> list[str]:
        if not examples:
            return []
        outputs = self.llm.generate([self._request(ex) for ex in examples], self._params(1, None), use_tqdm=False)
        return [o.outputs[0].text for o in outputs]

    def sample(self, examples: list[dict[str, Any]], k: int, seed: int) -> list[list[str]]:
        if not examples:
            return []
        params = [self._params(k, row_seed(seed, str(ex["id"]))) for ex in examples]
        outputs = self.llm.generate([self._request(ex) for ex in examples], params, use_tqdm=False)
        return [[c.text for c in o.outputs] for o in outputs]


def vllm_engine_args(settings: GenerationSettings, max_images_per_prompt: int, dtype: str = "auto") -> dict[str, Any]:
    """``vllm.LLM`` arguments that follow the data and settings, not vLLM's defaults: images per prompt (from
    :func:`mmfinereason.data.prompt_images.images_per_prompt`; no video), the pixel bounds, the dtype."""
    return dict(
        dtype=dtype,
        limit_mm_per_prompt={"image": max(int(max_images_per_prompt), 1), "video": 0},
        mm_processor_kwargs={"min_pixels": settings.min_pixels, "max_pixels": settings.max_pixels},
    )


def pick_backend(backend: str) -> str:
    """``auto`` -> ``vllm`` when it is installed and a GPU is visible, else ``hf``."""
    if backend not in ("auto", "hf", "vllm"):
        raise UserError(f"backend must be auto, hf or vllm, got {backend!r}")
    if backend == "auto":
        return "vllm" if is_available("vllm") and torch.cuda.is_available() else "hf"
    return backend


def load_generator(
    model_name: str,
    settings: GenerationSettings,
    *,
    backend: str = "auto",
    dtype: str = "auto",
    attn_implementation: str = "sdpa",
    seed: int = 0,
    **vllm_kwargs: Any,
) -> Generator:
    """A ready generator for ``model_name`` (``tiny``, a hub id or a local directory)."""
    from mmfinereason.recipe.loader import ModelConfig
    from mmfinereason.modeling.adapters import adapter_to_merge
    from mmfinereason.modeling.loading import load_model, load_processor, resolve_name

    asked, backend = backend, pick_backend(backend)
    if backend == "vllm" and adapter_to_merge(resolve_name(model_name)) is not None:
        if asked == "vllm":
            raise UserError(
                f"{model_name} holds a LoRA adapter and no merged model (a checkpoint of a LoRA run, or a LoRA run "
                "stopped while merging), which vLLM cannot load; use the run's finished output folder (the adapter "
                "merged in) or --backend hf (merges it in memory)"
            )
        logger.info("%s is a LoRA adapter: generating with transformers (the adapter merged in memory)", model_name)
        backend = "hf"
    processor = load_processor(model_name)
    if backend == "vllm":
        return VLLMGenerator(resolve_name(model_name), processor, settings, seed=seed, dtype=dtype, **vllm_kwargs)
    model = load_model(ModelConfig(name_or_path=model_name, dtype=dtype, attn_implementation=attn_implementation))
    if torch.cuda.is_available():
        model = model.to("cuda")
    model.eval()
    logger.info("generating with transformers on %s", model.device)
    return HFGenerator(model, processor, settings)
