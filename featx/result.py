"""What one video (or one chunk of it) gave: its features, or the reason it has none. The model's
output, the partial store's records and a run's results are all this one shape."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class VideoResult:
    """Video ``key`` (``index`` in the list; -1 when read back from a store), or chunk ``chunk`` of its
    ``num_chunks``: ``feature`` (its array), or ``error`` (why there is none); ``info`` its frames and timing."""

    index: int
    key: str
    feature: np.ndarray | None = None
    error: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    chunk: int = 0
    num_chunks: int = 1
