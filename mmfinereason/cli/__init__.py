"""The ``mmfinereason`` command line (:mod:`.main`) and its sub-commands (:mod:`.commands`)."""

from mmfinereason.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
