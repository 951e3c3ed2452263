"""Reading an MMAction2 config into what an extraction needs: :class:`ExtractionConfig`.

A config is read through mmengine (``_base_`` files, ``--cfg-options``), recognised by its shape as
one of the dialects in :mod:`featx.dialects` (MMAction2 0.x: ``data.test.pipeline``; 1.x:
``test_dataloader.dataset.pipeline``, ``model.data_preprocessor``) and read by that dialect's reader
into one typed description. The run layer, the fingerprint and the models consume only that
description; only a dialect's reader knows its key paths.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from mmengine.config import Config

from featx.errors import UserError
from featx.registry import DIALECTS, Registry

log = logging.getLogger(__name__)

VIEWS = ("all", "tool")  # --views: every test view of the config, or the 1.x tool's default reduction


@dataclass(frozen=True)
class LoaderSettings:
    """What the data loader takes from the config: samples per batch and decoding workers."""

    videos_per_gpu: int = 1
    workers_per_gpu: int = 1


@dataclass(frozen=True)
class ExtractionConfig:
    """One config, read: everything an extraction takes from it, whatever its dialect.

    ``model``: the recognizer's dict (``pretrained`` cleared, no normalisation in it), as the model
    layer builds it. ``pipeline``: the test pipeline's steps (the raw-frame rule applied), built with
    ``transforms``, the dialect's registry of steps. ``normalize``: a device-side normalisation the
    config asks for outside its pipeline (0.x's ``GPUNormalize`` hook, 1.x's data preprocessor), or
    None. ``pipeline_key``: where the pipeline is in the config, as ``--cfg-options`` names it.
    ``recorded``: further config values that decide the vectors (fingerprinted with model and
    pipeline). ``notes``: what the start line says about how the config was read.
    """

    path: str
    dialect: str
    model: dict[str, Any]
    pipeline: list[dict[str, Any]]
    pipeline_key: str
    transforms: Registry
    normalize: Any = None
    loader: LoaderSettings = LoaderSettings()
    fp16: bool = False  # the config asks for fp16 at test time (used on a GPU when --precision is not given)
    dist_backend: str | None = None
    cudnn_benchmark: bool = False
    raw_frames: bool = False  # read by featx's raw-frame rule
    recorded: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    source: Config | None = field(default=None, repr=False, compare=False)  # the config as read

    @property
    def text(self) -> str:
        """The whole config as mmengine prints it, its test pipeline as it runs (``--dense-stride``, ``--views``
        and the raw-frame rule applied): the meta sidecar keeps it."""
        if self.source is None:
            return ""
        ran = copy.deepcopy(self.source)
        ran.merge_from_dict({self.pipeline_key: self.pipeline})
        return ran.pretty_text

    def marks(self) -> dict[str, Any]:
        """The config values that decide the vectors, by their key path in the config."""
        return {"model": self.model, self.pipeline_key: self.pipeline, **self.recorded}

    def with_pipeline(self, pipeline: Sequence[Mapping[str, Any]], note: str | None = None) -> ExtractionConfig:
        """The same config with another test pipeline (and a note for the start line)."""
        notes = self.notes + ((note,) if note else ())
        return replace(self, pipeline=[dict(step) for step in pipeline], notes=notes)


class Dialect:
    """A config dialect's reader (one file each under :mod:`featx.dialects`, registered in ``DIALECTS``)."""

    name: str
    shape: str  # how a config of the dialect is recognised, for the error on one that is neither
    optional_sections: tuple[str, ...] = ()  # key paths --cfg-options may add although the config lacks them

    @staticmethod
    def recognizes(cfg: Config) -> bool:
        raise NotImplementedError

    def read(self, cfg: Config, path: str) -> ExtractionConfig:
        raise NotImplementedError


def read_config(path: str | Path, cfg_options: Mapping[str, Any] | None = None) -> ExtractionConfig:
    """Load ``path`` (with its ``_base_`` files), recognise its dialect, apply ``--cfg-options`` (in that
    dialect's key paths) and read it. Weights come from the checkpoint only: every ``pretrained`` key
    of the model is cleared."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        cfg = Config.fromfile(str(path))
    except Exception as exc:  # mmengine raises many types for a broken file (SyntaxError, KeyError, ...)
        raise UserError(f"cannot read config {path}: {type(exc).__name__}: {exc}") from exc
    dialect = dialect_of(cfg, path)
    if cfg_options:
        _check_option_paths(cfg, cfg_options, dialect.optional_sections)
        try:
            cfg.merge_from_dict(dict(cfg_options))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise UserError(f"cannot apply --cfg-options: {exc}") from exc
        if dialect_of(cfg, path).name != dialect.name:
            raise UserError(f"--cfg-options changed config {path} from MMAction2 {dialect.name} to another dialect")
    if not isinstance(cfg.get("model"), Mapping):
        raise UserError(f"config {path} has no 'model' dict")
    return dialect.read(cfg, str(path))


def dialect_of(cfg: Config, path: str | Path) -> Dialect:
    """The one dialect whose shape the config has."""
    found = [DIALECTS.get(name) for name in DIALECTS.names() if DIALECTS.get(name).recognizes(cfg)]
    if len(found) != 1:
        shapes = "; ".join(f"MMAction2 {DIALECTS.get(n).name}: {DIALECTS.get(n).shape}" for n in DIALECTS.names())
        what = "has the shape of several dialects" if found else "is not an MMAction2 test config"
        raise UserError(f"config {path} {what} ({shapes})")
    return found[0]()


def model_dict(model: Mapping[str, Any]) -> dict[str, Any]:
    """A config's ``model`` as a plain dict, every ``pretrained`` key set to None."""
    plain = Config(dict(model=model)).to_dict()["model"]
    _clear_pretrained(plain)
    return plain


def raw_frame_pipeline(dataset: Mapping[str, Any], pipeline: Sequence[Mapping[str, Any]],
                       where: str) -> list[dict[str, Any]] | None:
    """featx's one rule for a raw-frame test set (``RawframeDataset``, or a ``RawFrameDecode`` step): the
    same model input read from the video. ``DecordInit`` is inserted first, each ``RawFrameDecode``
    becomes ``DecordDecode``, every other step stays as written; frames are indexed from 0, as for any
    video. None for a video test set. An optical flow set has no video equivalent and is refused."""
    steps = [dict(step) for step in pipeline]
    if dataset.get("type") != "RawframeDataset" and not any(s.get("type") == "RawFrameDecode" for s in steps):
        return None
    modality = dataset.get("modality", "RGB")
    if modality != "RGB":
        raise UserError(f"the config reads {modality} frames ({where}.modality={modality!r}): featx extracts "
                        "from RGB video only; optical flow is not supported")
    return [dict(type="DecordInit"), *(dict(type="DecordDecode") if s.get("type") == "RawFrameDecode" else s
                                      for s in steps)]


def _check_option_paths(cfg: Config, options: Mapping[str, Any], optional: Sequence[str]) -> None:
    """Refuse an option whose parent does not exist (a typo), unless it is a section extraction reads
    that configs often leave out (``optional``); warn when it adds a new leaf."""
    tree = cfg.to_dict()
    for dotted in options:
        node: Any = tree
        parts = dotted.split(".")
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            if isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            elif isinstance(node, Mapping) and part in node:
                node = node[part]
            elif isinstance(node, Mapping) and (last or ".".join(parts[:depth + 1]) in optional):
                log.warning("--cfg-options %s: not in the config, adding it", dotted)
                break
            else:
                where = ".".join(parts[:depth]) or "the config"
                raise UserError(f"--cfg-options {dotted}: {where} has no key {part!r}")


def _clear_pretrained(node: Any) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pretrained":
                node[key] = None
            else:
                _clear_pretrained(value)
    elif isinstance(node, list):
        for value in node:
            _clear_pretrained(value)


def use_dense_sampling(config: ExtractionConfig, stride: str, window: int = 1, pad: str = "none") -> ExtractionConfig:
    """``--dense-stride``: the test pipeline's ``SampleFrames`` becomes a ``StrideSampleFrames`` with the
    same clip length, frame interval and out-of-bound rule, one clip every ``16`` frames or ``0.5s``; for a
    backbone that mixes groups of ``window`` views (its ``view_group``), one window of that many segments;
    ``pad`` (``--pad``) puts the windows on the padded localisation grid."""
    text = stride.strip().lower()
    try:
        option = {"stride_seconds": float(text[:-1])} if text.endswith("s") else {"stride": int(text)}
    except ValueError:
        raise UserError(f"--dense-stride {stride}: give frames (16) or seconds (0.5s)") from None
    if not next(iter(option.values())) > 0:
        raise UserError(f"--dense-stride {stride}: must be more than 0")
    pipeline = [dict(step) for step in config.pipeline]
    at = [i for i, step in enumerate(pipeline) if step.get("type") == "SampleFrames"]
    if not at:
        raise UserError(f"--dense-stride: the config's {config.pipeline_key} has no SampleFrames to replace")
    old = pipeline[at[0]]
    pipeline[at[0]] = dict(type="StrideSampleFrames", clip_len=old.get("clip_len"),
                           frame_interval=old.get("frame_interval", 1),
                           out_of_bound_opt=old.get("out_of_bound_opt", "loop"), window=window,
                           **({"pad": pad} if pad != "none" else {}), **option)
    return config.with_pipeline(pipeline)


def use_tool_views(config: ExtractionConfig) -> ExtractionConfig:
    """``--views tool``: the view reduction MMAction2 1.x's ``clip_feature_extraction.py`` makes without
    ``--multi-view``: one clip for a 3D recognizer's ``SampleFrames`` (the centre one), ``twice_sample``
    off, ``TenCrop`` -> ``CenterCrop`` of the same size (``ThreeCrop`` kept); the views are then averaged."""
    three_d = config.model.get("type") == "Recognizer3D"
    pipeline = []
    for step in config.pipeline:
        step = dict(step)
        if step.get("type") == "SampleFrames":
            step["twice_sample"] = False
            if three_d:
                step["num_clips"] = 1
        elif step.get("type") == "TenCrop":
            step["type"] = "CenterCrop"
        pipeline.append(step)
    return config.with_pipeline(pipeline, "the 1.x tool's default views (--views tool)")
