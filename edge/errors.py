"""The one base class of every refusal lesionlite raises, so a program (or the CLI) catches them once."""
from __future__ import annotations


class LesionliteError(Exception):
    """Something lesionlite refuses to do, or cannot read; ``str(error)`` is one line for the user."""


class CommandError(LesionliteError):
    """A command cannot run as asked: options that do not go together, nothing to work on, an output
    it may not write. The CLI prints ``error: MESSAGE`` and exits 2."""
