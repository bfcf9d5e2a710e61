"""``UserError``: a mistake the user made and can fix (a bad recipe value, a missing file, a run that does not match).

Why a type of its own: the CLI turns these into one or two lines with exit code 2 (``cli/main.py``). Catching
every ``ValueError`` or ``OSError`` the same way would also hide real bugs deep in a library behind a one-liner;
raising ``UserError`` says "this message was written for the user: it names the thing and what to do".
It subclasses ``ValueError`` so code that caught ``ValueError`` before keeps working.
"""

from __future__ import annotations


class UserError(ValueError):
    """An error whose message names what is wrong and what to do; the CLI prints it without a traceback."""
