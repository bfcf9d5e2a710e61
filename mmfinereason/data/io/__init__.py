"""Rows -> normalised examples: sources (``path: toy`` or files / hub ids), loading with checks, row repair,
images, weighted mixing, and the skip report."""
