"""A test pipeline: steps built from config dicts, applied in order.

Every step declares its :class:`Role`, in the order a pipeline has them: ``open`` (a video reader),
``sample`` (which frames), ``decode``, ``spatial`` (resize, crops, flips), ``normalize``, ``layout``
(the model's input format); a transform without one cannot be registered. featx splits a pipeline by
role: decoding onwards runs once per chunk of clips, and a final ``normalize`` can move to the device.
The run's decoder choice (``--decoder``) and decode order (``--decode-order``) are handed to the steps
whose role takes them, through the methods that role requires.
"""
from __future__ import annotations

import enum
import math
import time
from typing import Any, Callable, ClassVar, Mapping, Protocol, Sequence

from featx.registry import TRANSFORMS, TRANSFORMS_1X, Registry
from featx.wording import count


class Role(str, enum.Enum):
    """What a pipeline step does; a role may require methods through which a run configures its steps."""

    OPEN = "open"
    SAMPLE = "sample"
    DECODE = "decode"
    SPATIAL = "spatial"
    NORMALIZE = "normalize"
    LAYOUT = "layout"

    @property
    def requires(self) -> tuple[str, ...]:
        """Methods a step of this role must have: ``use_decoder(name)`` to open with the run's decoder,
        ``decode_in_order()`` to ask for the frames in frame order."""
        return {Role.OPEN: ("use_decoder",), Role.DECODE: ("decode_in_order",)}.get(self, ())


class Step(Protocol):
    role: ClassVar[Role]

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        ...


def check_step(name: str, factory: Callable[..., Any]) -> None:
    """Refuse to register a transform without a :class:`Role` or without the methods its role requires
    (a programming error, raised when its module is imported)."""
    role = getattr(factory, "role", None)
    if not isinstance(role, Role):
        raise TypeError(f"transform {name}: its role {role!r} is not a featx.data.pipeline.Role")
    missing = [method for method in role.requires if not callable(getattr(factory, method, None))]
    if missing:
        raise TypeError(f"transform {name}: its role {role.value} needs {', '.join(missing)}()")


TRANSFORMS.check = TRANSFORMS_1X.check = check_step


class Pipeline:
    """Applies its steps in order to a ``results`` dict."""

    def __init__(self, steps: Sequence[Step]) -> None:
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

    def roles(self) -> list[Role]:
        return [step.role for step in self.steps]

    def split_at(self, role: Role) -> tuple["Pipeline", "Pipeline"]:
        """(the steps before the first one of ``role``, that one and the rest); all in the first when none."""
        roles = self.roles()
        at = roles.index(role) if role in roles else len(roles)
        return Pipeline(self.steps[:at]), Pipeline(self.steps[at:])

    def find(self, role: Role) -> list[Any]:
        """The steps of ``role``, in order."""
        return [step for step in self.steps if step.role == role]

    def __repr__(self) -> str:
        return f"Pipeline({', '.join(type(t).__name__ for t in self.steps)})"


def build_pipeline(cfgs: Sequence[Mapping[str, Any]], *, transforms: Registry = TRANSFORMS, decoder: str | None = None,
                   decode_order: str = "list", fps: float | None = None) -> Pipeline:
    """Build each ``{'type': name, **kwargs}`` with ``transforms`` (the config dialect's steps, 0.x's by
    default); unknown names and bad kwargs are UserErrors.

    ``decoder`` is handed to every step that opens a video (``--decoder``: it replaces the config's
    backend), and ``fps`` puts the video on that time grid (``--fps``); ``decode_order='sorted'`` lets every
    decoding step ask for the frames in frame order (``--decode-order``).
    """
    pipeline = Pipeline([transforms.build(cfg) for cfg in cfgs])
    for step in pipeline.find(Role.OPEN):
        if decoder is not None:
            step.use_decoder(decoder)
        if fps is not None:
            step.use_time_grid(fps)
    for step in pipeline.find(Role.DECODE):
        if decode_order == "sorted":
            step.decode_in_order()
    return pipeline


def describe_views(pipeline: Pipeline) -> str:
    """The views the pipeline makes of each video, for the start line: ``25 clips x 1 crop, 1 frame per clip``,
    ``clips every 16 frames x 3 crops, 4 frames per clip, 16 apart``; empty without a sampler."""
    samplers = pipeline.find(Role.SAMPLE)
    if not samplers:
        return ""
    sampler = samplers[0]
    crops = math.prod(getattr(step, "num_crops", 1) for step in pipeline.find(Role.SPATIAL))
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
    if Role.NORMALIZE not in roles:
        return pipeline, None
    at = len(roles) - 1 - roles[::-1].index(Role.NORMALIZE)
    if any(role is not Role.LAYOUT for role in roles[at + 1:]):
        return pipeline, None
    rest = pipeline.steps[:at] + pipeline.steps[at + 1:]
    return Pipeline(rest), pipeline.steps[at]
