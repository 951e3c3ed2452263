"""A test pipeline: transforms built from config dicts, applied in order."""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from featx.registry import TRANSFORMS


class Pipeline:
    """Applies its transforms in order to a ``results`` dict."""

    def __init__(self, transforms: Sequence[Callable[[dict[str, Any]], dict[str, Any]]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        for transform in self.transforms:
            results = transform(results)
        return results

    def __repr__(self) -> str:
        return f"Pipeline({', '.join(type(t).__name__ for t in self.transforms)})"


def build_pipeline(cfgs: Sequence[Mapping[str, Any]]) -> Pipeline:
    """Build each ``{'type': name, **kwargs}`` with ``TRANSFORMS``; unknown names and bad kwargs are UserErrors."""
    return Pipeline([TRANSFORMS.build(cfg) for cfg in cfgs])
