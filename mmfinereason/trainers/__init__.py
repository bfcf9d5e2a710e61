"""Trainers: thin subclasses of TRL's, one per stage (sft.py, gspo.py)."""
