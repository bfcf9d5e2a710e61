"""The recipe's sections as plain dataclasses: what a recipe YAML may say, with a help text per field.

``model:`` is :class:`ModelConfig`, ``data:`` is :class:`DataConfig` (its ``train`` / ``eval`` lists hold
:class:`SourceSpec`), ``eval:`` is :class:`EvalConfig`. The ``train:`` section is the trainer's own config
(:mod:`mmfinereason.recipe.train_args`, TRL's configs plus our fields), loaded only when a recipe is built, so
that importing this module (and ``mmfinereason --help``) stays free of torch, datasets and transformers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class SourceSpec:
    """One data source of a mixture (one entry of the recipe's `data.train:` / `data.eval:` lists)."""

    path: Any = field(
        metadata={"help": "Hub id (e.g. OpenDataArena/MMFineReason-1.8M-Qwen3-VL-235B-Thinking), local parquet/jsonl/"
                  "json file or folder of shards, or (from Python) a datasets.Dataset."}
    )
    split: str | None = field(default=None, metadata={"help": "Split to read, e.g. 'sft' or 'rl'; None if only one."})
    subset: str | None = field(
        default=None, metadata={"help": "Hub config name (one source of the Full-2.3M pool) or a sub-folder."}
    )
    weight: float = field(
        default=1.0, metadata={"help": "Relative sampling weight; weights are normalised to probabilities."}
    )
    columns: dict[str, str] | None = field(
        default=None,
        metadata={"help": "Our field name -> this source's column name, e.g. {response: response, answer: gt}. "
                  "Unmapped fields use the MMFineReason release names."},
    )
    sources: list[str] | None = field(
        default=None, metadata={"help": "Keep only rows whose `source` column is one of these (e.g. [MMR1, WeMath])."}
    )
    pass_rate_range: tuple[float, float] | None = field(
        default=None,
        metadata={"help": "Keep only rows with low <= pass_rate <= high, e.g. [0.0, 0.0] for the hard 123K subset."},
    )
    require_consistent: bool = field(
        default=False, metadata={"help": "Keep only rows whose `is_consistent` judge verdict is true."}
    )
    caption_in_prompt: bool = field(
        default=False, metadata={"help": "Insert the dense caption after the <image> markers of the question."}
    )
    limit: int | None = field(default=None, metadata={"help": "Read at most this many rows of this source."})
    name: str | None = field(default=None, metadata={"help": "Name in logs and errors (default: path + split)."})

    def __post_init__(self) -> None:
        if not self.weight > 0:
            raise ValueError(f"data source {self.path!r}: weight must be > 0, got {self.weight!r}")
        if self.pass_rate_range is not None:
            if len(self.pass_rate_range) != 2 or self.pass_rate_range[0] > self.pass_rate_range[1]:
                raise ValueError(
                    f"data source {self.path!r}: pass_rate_range must be [low, high], got {self.pass_rate_range!r}"
                )
            self.pass_rate_range = (float(self.pass_rate_range[0]), float(self.pass_rate_range[1]))
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"data source {self.path!r}: limit must be >= 1, got {self.limit!r}")



@dataclass
class LoraSettings:
    """LoRA through peft. Off by default: the paper fully fine-tunes the language model."""

    enabled: bool = field(default=False, metadata={"help": "Train LoRA adapters instead of the full weights."})
    r: int = field(default=16, metadata={"help": "Adapter rank."})
    alpha: int = field(default=32, metadata={"help": "LoRA alpha (scaling = alpha / r)."})
    dropout: float = field(default=0.05, metadata={"help": "Dropout on the adapter input."})
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        metadata={"help": "Module names to adapt (the last part of the name, e.g. q_proj), or [all-linear] for every "
                  "linear layer but the output head; only in parts that learn (model.freeze_*: false)."},
    )


@dataclass
class ModelConfig:
    """Which backbone to train and which of its parts learn."""

    name_or_path: str = field(
        default="tiny",
        metadata={"help": "'tiny' (the embedded offline Qwen3-VL), a hub id such as Qwen/Qwen3-VL-8B-Instruct, or a local path."},
    )
    dtype: str = field(
        default="auto",
        metadata={"help": "'auto' (bf16 on GPUs that support it, else fp32), 'bfloat16', 'float16' or 'float32'."},
    )
    attn_implementation: str = field(
        default="sdpa", metadata={"help": "'sdpa', 'eager', 'flash_attention_2' (needs the `flash` extra; varlen for packing) or "
        "'sdpa_varlen' (pure-PyTorch per-example attention for packed rows, no extra needed)."}
    )
    freeze_vision_tower: bool = field(default=True, metadata={"help": "Freeze the ViT blocks (paper: frozen)."})
    freeze_merger: bool = field(default=True, metadata={"help": "Freeze the patch merger(s) (paper: frozen)."})
    freeze_language_model: bool = field(default=False, metadata={"help": "Freeze the text decoder and LM head."})
    lora: LoraSettings = field(default_factory=LoraSettings, metadata={"help": "LoRA adapters (peft)."})


@dataclass
class DataConfig:
    """Where examples come from and how they become token batches."""

    train: list[SourceSpec] = field(
        default_factory=lambda: [SourceSpec(path="toy", split="train", limit=1024)],
        metadata={"help": "Training sources, mixed by their `weight`. `path: toy` is the bundled task."},
    )
    eval: list[SourceSpec] = field(
        default_factory=list, metadata={"help": "Held-out sources for accuracy (and eval loss)."}
    )
    max_length: int = field(default=4096, metadata={"help": "Token budget of one example (paper: 32768)."})
    packing: bool = field(
        default=False,
        metadata={"help": "Pack several examples per row with exact mRoPE positions (ours, not TRL's flag)."},
    )
    min_pixels: int = field(default=1024, metadata={"help": "Images are resized to at least this many pixels (32²)."})
    max_pixels: int = field(default=589824, metadata={"help": "… and at most this many (768², as in the paper)."})
    overlong_examples: str = field(
        default="truncate",
        metadata={"help": "SFT examples longer than max_length: 'truncate' cuts the response (never the prompt or an "
                  "image); 'drop' skips the example. (GSPO's over-long *completions*: train.overlong_completions.)"},
    )
    caption_in_prompt: bool = field(
        default=False,
        metadata={"help": "Insert each row's dense caption after the <image> markers of the question, for every source "
                  "of data.train and data.eval (a source's own caption_in_prompt turns it on for that source alone)."},
    )
    max_skip_rate: float = field(
        default=0.01, metadata={"help": "Stop with an error when more than this fraction of rows is unusable."}
    )
    streaming: bool = field(default=False, metadata={"help": "Stream sources instead of loading them (1.8M rows)."})
    system_prompt: str | None = field(default=None, metadata={"help": "Optional system turn (paper: none)."})
    seed: int = field(default=42, metadata={"help": "Seed for mixing and shuffling."})
    tokens_per_batch: int | None = field(
        default=None,
        metadata={
            "help": "Token budget of one micro-batch per device (needs packing: true): batches are built by tokens, "
            "not rows, so every step sees about the same number of tokens. Unset = per_device_train_batch_size rows."
        },
    )
    packing_buffer_size: int = field(
        default=1024,
        metadata={"help": "Examples whose lengths the token-budget sampler bin-packs together (first-fit-decreasing)."},
    )
    num_proc: int | None = field(
        default=None,
        metadata={"help": "Processes for the one-time preparation (row checks, token-length index); None = one. "
                  "Set it to the node's cores (e.g. 16): it runs once per node, the other ranks wait and read the "
                  "cache it writes (see mmfinereason.data.batching.length_index)."},
    )
    image_check: str = field(
        default="header",
        metadata={"help": "Up-front image check of SFT rows: 'header' (open the file header, check size; the full "
                  "decode happens in the collator, where a bad image is counted and replaced) or 'full' (decode "
                  "every image before training: exact counts, but minutes per 100K rows)."},
    )

    def __post_init__(self) -> None:
        # The data-level switch is the default of every source: sources are what the loader reads (SourceSpec).
        if self.caption_in_prompt:
            for spec in [*self.train, *self.eval]:
                if isinstance(spec, SourceSpec):
                    spec.caption_in_prompt = True


@dataclass
class EvalConfig:
    """Held-out accuracy of the final ``<answer>`` (greedy generation, scored by mmfinereason.rewards)."""

    before_training: bool = field(default=True, metadata={"help": "Measure accuracy before training starts."})
    after_training: bool = field(default=True, metadata={"help": "Measure accuracy when training ends."})
    limit: int | None = field(default=None, metadata={"help": "Evaluate at most this many held-out rows."})
    max_new_tokens: int = field(default=256, metadata={"help": "Generation budget per answer."})
    batch_size: int = field(default=16, metadata={"help": "Prompts generated together."})
    repetition_penalty: float = field(default=1.0, metadata={"help": "Paper's evaluation uses 1.05."})
    every_n_steps: int | None = field(
        default=None,
        metadata={"help": "Also measure held-out accuracy every N optimizer steps during training and log it "
                  "(eval/accuracy, eval/accuracy/<source>; to wandb/trackio when on). None: off."},
    )
    during_training_limit: int | None = field(
        default=None,
        metadata={"help": "Rows used by the every-N-steps evaluation (default: all `limit` rows); keep it small, "
                  "it runs many times."},
    )
