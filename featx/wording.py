"""Small helpers for the one-line messages."""
from __future__ import annotations


def count(n: float, noun: str, plural: str | None = None) -> str:
    """``1 video``, ``2 videos`` (``plural`` for nouns that do not just take an s: ``process``, ``processes``)."""
    return f"{n:g} {noun if n == 1 else plural or noun + 's'}"
