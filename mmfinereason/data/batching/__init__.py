"""Normalised examples -> batches for ``model(**batch)``: the collator, exact multimodal packing, token lengths
and the token-budget batch sampler."""
