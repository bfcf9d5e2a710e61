"""A KV cache for HF ``generate`` on CPU that grows into spare room instead of re-copying itself every token.

Why: transformers' default ``DynamicCache`` appends each new token's keys and values with ``torch.cat``, which
copies the whole cache, per layer, at every decoding step: for a batch of rollouts that is O(length²) memory
traffic: 3-7% of a GSPO rollout batch's generation time on the tiny recipe (~85 new tokens), a sixth at 384
(`bench/decode_speed.py`: 1.03-1.07x and 1.19x with this cache).
Its alternative, the static cache, attends over the full ``max_length`` at every step and was slower still.
``GrowingLayer`` keeps one buffer per layer with room to spare (it doubles when full), writes each token into it
and hands attention a view of the filled part: the same keys and values, the same attention call, the same
tokens to the bit (`tests/test_decode_speed.py`), with each stored entry copied O(log length) times instead of
once per step.

Installed on every model our loader builds (:func:`mmfinereason.modeling.loading.load_pretrained`) as a forward
pre-hook, so it reaches every ``generate`` (TRL's rollouts, evaluation, ``mmfinereason select``) without touching
their calls. Only on CPU: there memory is plentiful and the copy is the cost; on a GPU the doubling could hold up
to 3x a layer's cache for a moment, and rollouts at scale go through vLLM.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

_MIN_ROOM = 64  # tokens of room a buffer starts with beyond its prompt
_HOOK = "_mmfinereason_growing_kv_cache"  # the model attribute holding the pre-hook's handle


class GrowingLayer(DynamicLayer):
    """A :class:`~transformers.cache_utils.DynamicLayer` whose ``keys``/``values`` are views of a larger buffer.

    Everything that reads the layer (``get_seq_length``, masks, attention) sees exactly what ``DynamicLayer`` would
    hold; only ``update`` differs. Cropping and reordering rows fall back to plain tensors, which the next
    ``update`` moves into a fresh buffer.
    """

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        filled = self.get_seq_length()
        end = filled + key_states.shape[-2]
        buffers = getattr(self, "_storage", None)
        if buffers is None or buffers[0].data_ptr() != self.keys.data_ptr() or end > buffers[0].shape[-2]:
            buffers = tuple(
                _grown(old if filled else None, new, max(2 * end, end + _MIN_ROOM))
                for old, new in ((self.keys, key_states), (self.values, value_states))
            )
            self._storage = buffers
        for buffer, new in zip(buffers, (key_states, value_states)):
            buffer[..., filled:end, :] = new
        self.keys, self.values = (buffer[..., :end, :] for buffer in buffers)
        return self.keys, self.values


def _grown(old: torch.Tensor | None, new: torch.Tensor, room: int) -> torch.Tensor:
    """A buffer shaped like ``new`` with ``room`` positions, holding ``old`` (if any) at its start."""
    buffer = new.new_empty(*new.shape[:-2], room, new.shape[-1])
    if old is not None:
        buffer[..., : old.shape[-2], :] = old
    return buffer


def _grow_kv_cache(module: torch.nn.Module, args, kwargs):
    """Forward pre-hook: turn a fresh CPU ``DynamicCache``'s plain layers into :class:`GrowingLayer` ones."""
    cache = kwargs.get("cache", kwargs.get("past_key_values"))
    if not isinstance(cache, DynamicCache) or module.device.type != "cpu":
        return None
    for layer in cache.layers:
        # only exact DynamicLayers (not sliding-window or quantised ones), before they hold anything
        if type(layer) is DynamicLayer and not layer.is_initialized:
            layer.__class__ = GrowingLayer
    return None


def use_growing_kv_cache(model: torch.nn.Module, enabled: bool = True) -> None:
    """Make ``model.generate`` on CPU use :class:`GrowingLayer` caches, or (``enabled=False``) stop; idempotent."""
    handle = getattr(model, _HOOK, None)
    if enabled and handle is None:
        setattr(model, _HOOK, model.register_forward_pre_hook(_grow_kv_cache, with_kwargs=True))
    elif not enabled and handle is not None:
        handle.remove()
        delattr(model, _HOOK)

