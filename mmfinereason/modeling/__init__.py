"""The model: loading (:mod:`.loading`), which parts learn (:mod:`.parts`), the ``sdpa_varlen`` kernel
(:mod:`.attention`) and what the data code asks of a wrapped model (:mod:`.introspect`)."""
