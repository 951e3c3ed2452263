"""A test pipeline: steps built from config dicts, applied in order.

Every step declares its role, one of :data:`ROLES`, in the order a pipeline has them: ``open``
(a video reader), ``sample`` (which frames), ``decode``, ``spatial`` (resize, crops, flips),
``normalize``, ``layout`` (the model's input format). featx splits a pipeline by role: decoding
onwards runs once per chunk of clips, and a final ``normalize`` can move to the device.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable, Mapping, Protocol, Sequence

from featx.registry import TRANSFORMS, Registry
from featx.wording import count

ROLES = ("open", "sample", "decode", "spatial", "normalize", "layout")


class Step(Protocol):
    role: str

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        ...


class Pipeline:
    """Applies its steps in order to a ``results`` dict."""

    def __init__(self, steps: Sequence[Callable[[dict[str, Any]], dict[str, Any]]]) -> None:
        self.steps = list(steps)

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        """Apply every step; seconds spent in each add up in ``results['timings']`` by name."""
        timings = results.setdefault("timings", {})
        for step in self.steps:
            start = time.perf_counter()
            results = step(results)
            name = type(step).__name__
            timings[name] = timings.get(name, 0.0) + time.perf_counter() - start
        return results

    def roles(self) -> list[str]:
        return [getattr(step, "role", "") for step in self.steps]

    def split_at(self, role: str) -> tuple["Pipeline", "Pipeline"]:
        """(the steps before the first one of ``role``, that one and the rest); all in the first when none."""
        roles = self.roles()
        at = roles.index(role) if role in roles else len(roles)
        return Pipeline(self.steps[:at]), Pipeline(self.steps[at:])

    def find(self, role: str) -> list[Any]:
        """The steps of ``role``, in order."""
        return [step for step, r in zip(self.steps, self.roles()) if r == role]

    def __repr__(self) -> str:
        return f"Pipeline({', '.join(type(t).__name__ for t in self.steps)})"


def build_pipeline(cfgs: Sequence[Mapping[str, Any]], *, transforms: Registry = TRANSFORMS, decoder: str | None = None,
                   decode_order: str = "list") -> Pipeline:
    """Build each ``{'type': name, **kwargs}`` with ``transforms`` (the config dialect's steps, 0.x's by
    default); unknown names and bad kwargs are UserErrors.

    ``decoder`` replaces the backend of the step that opens the video (``--decoder``); ``decode_order
    ='sorted'`` lets the decoding step ask for the frames in frame order (``--decode-order``).
    """
    steps = []
    for cfg in cfgs:
        known = isinstance(cfg, Mapping) and "type" in cfg
        role = getattr(transforms.get(cfg["type"]), "role", None) if known else None
        extra: dict[str, Any] = {}
        if role == "open" and decoder is not None:
            extra["backend"] = decoder
        elif role == "decode" and decode_order == "sorted":
            extra["in_order"] = True
        steps.append(transforms.build(cfg, **extra))
    return Pipeline(steps)


def describe_views(pipeline: Pipeline) -> str:
    """The views the pipeline makes of each video, for the start line: ``25 clips x 1 crop, 1 frame per clip``,
    ``clips every 16 frames x 3 crops, 4 frames per clip, 16 apart``; empty without a sampler."""
    samplers = pipeline.find("sample")
    if not samplers:
        return ""
    sampler = samplers[0]
    crops = math.prod(getattr(step, "num_crops", 1) for step in pipeline.find("spatial"))
    apart = f", {sampler.frame_interval} apart" if sampler.clip_len > 1 and sampler.frame_interval > 1 else ""
    return (f"{sampler.describe_clips()} x {count(crops, 'crop')}, {count(sampler.clip_len, 'frame')} per clip"
            f"{apart}")


def split_normalize(pipeline: Pipeline) -> tuple[Pipeline, Any | None]:
    """Take a ``normalize`` step followed only by ``layout`` steps out of ``pipeline``, for the device
    to apply.

    Workers then send uint8 frames (a quarter of the bytes) and the device normalises them
    (``Normalize.normalize_tensor``, same arithmetic). Returns ``(pipeline, None)`` when there is none.
    """
    roles = pipeline.roles()
    if "normalize" not in roles:
        return pipeline, None
    at = len(roles) - 1 - roles[::-1].index("normalize")
    if any(role != "layout" for role in roles[at + 1:]):
        return pipeline, None
    rest = pipeline.steps[:at] + pipeline.steps[at + 1:]
    return Pipeline(rest), pipeline.steps[at]
