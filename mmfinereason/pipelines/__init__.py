"""Recipe -> running trainer, per stage (:mod:`.sft`, :mod:`.gspo`), the shared run (:mod:`.stage`), and the
two-stage demo (:mod:`.demo`). The CLI and notebooks call the same functions."""
