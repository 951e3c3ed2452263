"""A test pipeline: transforms built from config dicts, applied in order."""
from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Sequence

from featx.registry import TRANSFORMS


class Pipeline:
    """Applies its transforms in order to a ``results`` dict."""

    def __init__(self, transforms: Sequence[Callable[[dict[str, Any]], dict[str, Any]]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        """Apply every transform; seconds spent in each add up in ``results['timings']`` by name."""
        timings = results.setdefault("timings", {})
        for transform in self.transforms:
            start = time.perf_counter()
            results = transform(results)
            name = type(transform).__name__
            timings[name] = timings.get(name, 0.0) + time.perf_counter() - start
        return results

    def split_before(self, name: str) -> tuple["Pipeline", "Pipeline"]:
        """(the transforms before the first one called ``name``, that one and the rest); all in the first when absent."""
        names = [type(t).__name__ for t in self.transforms]
        at = names.index(name) if name in names else len(names)
        return Pipeline(self.transforms[:at]), Pipeline(self.transforms[at:])

    def __repr__(self) -> str:
        return f"Pipeline({', '.join(type(t).__name__ for t in self.transforms)})"


def build_pipeline(cfgs: Sequence[Mapping[str, Any]]) -> Pipeline:
    """Build each ``{'type': name, **kwargs}`` with ``TRANSFORMS``; unknown names and bad kwargs are UserErrors."""
    return Pipeline([TRANSFORMS.build(cfg) for cfg in cfgs])


LAYOUT_ONLY = ("FormatShape", "Collect", "ToTensor")


def split_normalize(pipeline: Pipeline) -> tuple[Pipeline, Any | None]:
    """Take a ``Normalize`` followed only by layout steps out of ``pipeline``, for the device to apply.

    Workers then send uint8 frames (a quarter of the bytes) and the device normalises them
    (``Normalize.normalize_tensor``, same arithmetic). Returns ``(pipeline, None)`` when there is none.
    """
    names = [type(t).__name__ for t in pipeline.transforms]
    if "Normalize" not in names:
        return pipeline, None
    at = len(names) - 1 - names[::-1].index("Normalize")
    if any(name not in LAYOUT_ONLY for name in names[at + 1:]):
        return pipeline, None
    rest = pipeline.transforms[:at] + pipeline.transforms[at + 1:]
    return Pipeline(rest), pipeline.transforms[at]
