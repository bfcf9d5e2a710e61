"""The model: loading (:mod:`.loading`), which parts learn (:mod:`.parts`), LoRA adapters merged on save and on
load (:mod:`.adapters`), the ``sdpa_varlen`` kernel (:mod:`.attention`), what the data code asks of a wrapped model
(:mod:`.introspect`) and its config and parameter counts without weights (:mod:`.backbone`, for ``mmfinereason
plan``)."""
