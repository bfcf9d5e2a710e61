"""The multimodal collator: normalised examples -> a batch that goes straight into ``model(**batch)``.

Why our own and not TRL's ``DataCollatorForVisionLanguageModeling``:

* **Overlong samples never cut through an image.** Truncating the rendered sequence at ``max_length`` (what
  TRL and verl do) can split an image's ``<|image_pad|>`` run and fails hours into a run with "Image features
  and image tokens do not match". Here the prompt (question + images) is never truncated: only the response
  tokens are, and a sample whose prompt alone does not fit is dropped and counted.
* **Labels by construction, not by search.** The prompt is rendered with the chat template and the
  generation prompt; the completion is ``response + <|im_end|>`` tokenised on its own and appended. Labels are
  -100 on the prompt and the completion ids elsewhere, so the closing ``<|im_end|>`` is trained and no
  template-specific token search is needed. A Thinking template whose generation prompt already opens
  ``<think>`` gets the response without its leading ``<think>`` (:func:`~mmfinereason.data.chat.response_after_prompt`):
  no doubled tag is trained.
* **Packing** (``packing=True``, see :mod:`.packing`) puts several examples in one row with per-example
  mRoPE positions; the loss then equals the unpacked loss.

Counters (``collator.stats``) record dropped / truncated samples and real vs padded tokens; they live in the
process that runs the collator (the main process when ``dataloader_num_workers=0``). In a worker process each
batch also carries its own dropped / truncated counts for the trainer to sum (:mod:`.worker_counts`).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch

from mmfinereason.data.chat import render_prompt, response_after_prompt
from mmfinereason.data.batching.packing import pack_examples
from mmfinereason.data.batching.worker_counts import COUNTED, attach_counts, snapshot
from mmfinereason.data.io.images import BadImageError, to_rgb_image
from mmfinereason.data.io.report import DataReport
from mmfinereason.data.schema import IGNORE_INDEX, EncodedExample, pad_examples
from mmfinereason.errors import UserError

OVERLONG_POLICIES = ("truncate", "drop")
LATE_CHECK_AFTER = 200  # examples decoded before the collator judges the late skip rate (less is noise)


REPLACEMENT_TRIES = 256  # rows of the training set tried for a replacement before giving up with an error


class MultimodalCollator:
    """Render, tokenise, label, truncate and batch (padded or packed) normalised examples.

    Args:
        processor: the model's processor (``AutoProcessor.from_pretrained``), with a chat template.
        max_length: token budget of one example (and of one packed row with ``packing=True``).
        packing: concatenate examples into rows up to ``max_length`` with per-example positions instead of
            padding each to the longest one. Needs ``model`` (for its mRoPE index).
        model: the Qwen3-VL model whose ``get_rope_index`` gives packed examples their 3-D positions.
        min_pixels / max_pixels: each image is resized (aspect kept) to a pixel count in this range by the
            processor; the paper uses 1,024 / 589,824 (32² / 768²).
        overlong: ``"truncate"`` cuts the response tokens to fit (never the prompt or an image), ``"drop"``
            skips the sample; either way it is counted in ``stats``.
        system_prompt: optional system turn (the paper trains and evaluates without one).
        pad_to_multiple_of: pad rows to a multiple of this (tensor-core friendly shapes on GPU).
        max_skip_rate: undecoded images (the loader's ``image_check: header``) are decoded here; an image that
            fails is counted in ``late_report`` and its example dropped (replaced, see ``__call__``); above this
            fraction of examples, after ``LATE_CHECK_AFTER`` examples, a ``DataQualityError`` names the commonest
            cause and a row id — the same guarantee as the loader's up-front check.

    >>> collator = MultimodalCollator(processor, max_length=1024)
    >>> batch = collator([example_a, example_b])
    >>> loss = model(**batch).loss
    """

    def __init__(
        self,
        processor,
        max_length: int = 4096,
        packing: bool = False,
        *,
        model=None,
        min_pixels: int = 1024,
        max_pixels: int = 589824,
        overlong: str = "truncate",
        system_prompt: str | None = None,
        pad_to_multiple_of: int | None = None,
        max_skip_rate: float = 0.01,
    ):
        if overlong not in OVERLONG_POLICIES:
            raise UserError(f"overlong (data.overlong_examples) must be one of {OVERLONG_POLICIES}, got {overlong!r}")
        if max_length < 16:
            raise UserError(f"max_length (data.max_length) must be at least 16 tokens, got {max_length}")
        if not 0 < min_pixels <= max_pixels:
            raise UserError(
                f"need 0 < min_pixels <= max_pixels (data.min_pixels / data.max_pixels), got {min_pixels} / {max_pixels}"
            )
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.max_length = max_length
        self.packing = packing
        self.model = model
        self.min_pixels = min_pixels
        self.max_pixels = max_pixels
        self.overlong = overlong
        self.system_prompt = system_prompt
        self.pad_to_multiple_of = pad_to_multiple_of
        self.pad_token_id = self.tokenizer.pad_token_id
        if self.pad_token_id is None:
            self.pad_token_id = self.tokenizer.eos_token_id
        self.end_of_turn = "<|im_end|>"
        self.stats: Counter = Counter()
        self.max_skip_rate = max_skip_rate
        self.late_report = DataReport(name="images decoded in the collator")
        self._spare: EncodedExample | None = None
        # Where a replacement comes from when a rank's *first* batch has no usable example (no spare yet): the
        # training set (map-style; the pipeline sets it). Its first usable row, found deterministically.
        self.replacements = None
        if packing and model is None:
            raise ValueError(
                "packing=True needs the model (MultimodalCollator(processor, max_length, packing=True, model=model)) "
                "to compute each packed example's mRoPE positions with model.model.get_rope_index"
            )

    # ------------------------------------------------------------------ encoding
    def encode(self, example: dict[str, Any]) -> EncodedExample | None:
        """Encode one example; ``None`` (and a counted reason) when it cannot fit ``max_length``."""
        images = self._decode_images(example)
        if images is None:
            return None
        prompt = render_prompt(self.processor, example["question"], len(images), self.system_prompt)
        size = {"shortest_edge": self.min_pixels, "longest_edge": self.max_pixels}
        if images:
            enc = self.processor(text=[prompt], images=images, size=size, return_tensors="pt")
        else:
            enc = self.processor(text=[prompt], return_tensors="pt")
        prompt_ids = enc["input_ids"][0]
        mm_types = enc.get("mm_token_type_ids")
        mm_types = mm_types[0] if mm_types is not None else torch.zeros_like(prompt_ids)
        # A Thinking template's generation prompt already opens <think>: never train a doubled tag.
        response = response_after_prompt(prompt, example.get("response") or "")
        completion = self.tokenizer(response + self.end_of_turn, add_special_tokens=False)["input_ids"]
        completion_ids = torch.tensor(completion, dtype=prompt_ids.dtype)

        room = self.max_length - len(prompt_ids)
        if len(completion_ids) > room:
            # The prompt holds the image tokens and is never cut; at least one response token must remain
            # for the sample to teach anything.
            if self.overlong == "drop" or room < 1:
                self.stats["dropped_overlong"] += 1
                return None
            completion_ids = completion_ids[:room]
            self.stats["truncated"] += 1

        input_ids = torch.cat([prompt_ids, completion_ids])
        labels = torch.cat([torch.full_like(prompt_ids, IGNORE_INDEX), completion_ids])
        mm_token_type_ids = torch.cat([mm_types, torch.zeros_like(completion_ids)])
        self.stats["examples"] += 1
        return EncodedExample(
            input_ids=input_ids,
            labels=labels,
            mm_token_type_ids=mm_token_type_ids,
            pixel_values=enc.get("pixel_values") if images else None,
            image_grid_thw=enc.get("image_grid_thw") if images else None,
            id=str(example.get("id", "")),
        )

    def _decode_images(self, example: dict[str, Any]) -> list | None:
        """The example's images as RGB PIL images; None (counted in ``late_report``) when one cannot be decoded.

        Images still encoded (``{"bytes", "path"}``, from the loader's header-only check) are fully decoded here,
        in the dataloader workers, instead of up front in one process before step 1.
        """
        images = list(example.get("images") or [])
        if not any(isinstance(image, (dict, bytes, str)) for image in images):
            return images
        row_id = str(example.get("id", ""))
        try:
            images = [to_rgb_image(image) for image in images]
        except BadImageError as error:
            self.stats[f"skipped_{error.reason}"] += 1
            self.late_report.record(row_id, error.reason)
            self._check_late_skips()
            return None
        self.late_report.record(row_id)
        return images

    def _check_late_skips(self) -> None:
        if self.late_report.seen >= LATE_CHECK_AFTER:
            self.late_report.check(self.max_skip_rate)

    def _first_usable_replacement(self) -> EncodedExample | None:
        """The first encodable row of ``replacements`` (at most ``REPLACEMENT_TRIES`` rows are tried), or None."""
        source = self.replacements
        if source is None:
            return None
        for index in range(min(len(source), REPLACEMENT_TRIES)):
            encoded = self.encode(source[index])
            if encoded is not None:
                return encoded
        return None

    def _why_nothing_usable(self, images: int, overlong: int, size: int) -> str:
        causes = f"{images} with an image that does not decode, {overlong} exceeded max_length={self.max_length} " \
                 f"under overlong_examples={self.overlong!r}"
        return (f"no example of this batch of {size} could be used ({causes}), and no usable replacement was found "
                "among the first rows of the training set; check the data (`mmfinereason plan` / the skip report) or "
                "raise data.max_length / lower data.max_pixels")

    # ------------------------------------------------------------------ batching
    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """The batch of ``examples``; those that cannot be used are dropped (and counted).

        A batch never disappears: when every example of it failed (bad images found late, or prompts too long),
        the last good example is trained again in its place (counted as ``stats["replaced"]``), so every rank
        still runs the same number of steps and no collective waits for a rank that skipped one.
        """
        before = snapshot(self.stats)
        bad_images_before = self.late_report.num_skipped
        encoded = [e for e in (self.encode(x) for x in examples) if e is not None]
        if not encoded:
            spare = self._spare if self._spare is not None else self._first_usable_replacement()
            if spare is None:
                overlong = self.stats["dropped_overlong"] - dict(zip(COUNTED, before))["dropped_overlong"]
                bad_images = self.late_report.num_skipped - bad_images_before
                raise UserError(self._why_nothing_usable(bad_images, overlong, len(examples)))
            encoded = [spare]
            self.stats["replaced"] += 1
        self._spare = encoded[0]
        if self.packing:
            batch = pack_examples(encoded, self.max_length, self.model, self.pad_token_id, self.pad_to_multiple_of)
        else:
            batch = pad_examples(encoded, self.pad_token_id, self.pad_to_multiple_of)
        real = sum(len(e) for e in encoded)
        self.stats["real_tokens"] += real
        self.stats["batch_tokens"] += batch["input_ids"].numel()
        attach_counts(batch, self.stats, before)  # in a DataLoader worker only: the trainer sums them
        return batch
