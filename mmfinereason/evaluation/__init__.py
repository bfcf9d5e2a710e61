"""Evaluation: generation (HF / vLLM), accuracy reports, benchmark files, pass-rate selection, the resumable
predictions store. Used by training (accuracy before / during / after), ``eval``, ``select`` and the demo."""
