"""Sub-commands of the ``mmfinereason`` CLI, one module each.

Every module defines ``register(subparsers)``, which adds its parser and sets ``func`` to a handler taking the
parsed arguments and returning an exit code. Handlers are thin: they call the same functions a notebook would.
"""
