"""Errors a user can act on.

Every problem with user input (a data file, a config, a command-line value) raises
:class:`InputError`. The CLI turns it into one readable line and exit status 2, without a
traceback; library users can catch it. The message always names *where* (file and line, or
field) and *what was expected*.
"""
from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Bad user input: names the file (and line) or field, and what was expected."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.path = None if path is None else str(path)
        self.line = line
        self.reason = message
        where = ""
        if self.path is not None:
            where = self.path if line is None else f"{self.path}:{line}"
            where += ": "
        super().__init__(where + message)
