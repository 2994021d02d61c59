"""The one base class of every refusal lesionlite raises, so a program (or the CLI) catches them once."""
from __future__ import annotations


class LesionliteError(Exception):
    """Something lesionlite refuses to do, or cannot read; ``str(error)`` is one line for the user."""
