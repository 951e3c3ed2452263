"""Reading MMAction2-style Python configs (through mmengine) and the settings extraction takes from them."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from mmengine.config import Config

from featx.errors import UserError

log = logging.getLogger(__name__)


def load_config(path: str | Path, cfg_options: Mapping[str, Any] | None = None) -> Config:
    """Load ``path`` (with its ``_base_`` files), apply ``--cfg-options`` and prepare it for extraction.

    As the reference does, ``model.test_cfg.feature_extraction`` is forced on and every
    ``pretrained`` key inside ``model`` is set to None: weights come from the checkpoint only.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        cfg = Config.fromfile(str(path))
    except Exception as exc:  # mmengine raises many types for a broken file (SyntaxError, KeyError, ...)
        raise UserError(f"cannot read config {path}: {type(exc).__name__}: {exc}") from exc
    if cfg_options:
        _check_option_paths(cfg, cfg_options)
        try:
            cfg.merge_from_dict(dict(cfg_options))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise UserError(f"cannot apply --cfg-options: {exc}") from exc
    if not isinstance(cfg.get("model"), Mapping):
        raise UserError(f"config {path} has no 'model' dict")
    pipeline = cfg.get("data", {}).get("test", {}).get("pipeline")
    if not isinstance(pipeline, list) or not pipeline:
        raise UserError(f"config {path} has no 'data.test.pipeline' list")
    apply_raw_frame_rule(cfg)
    if cfg.model.get("test_cfg") is None:
        cfg.model.test_cfg = {}
    cfg.model.test_cfg.feature_extraction = True
    _clear_pretrained(cfg.model)
    return cfg


def reads_raw_frames(cfg: Config) -> bool:
    """Whether the config was written for extracted frames (a ``RawframeDataset``)."""
    test = cfg.data.test
    return test.get("type") == "RawframeDataset" or any(s.get("type") == "RawFrameDecode" for s in test.pipeline)


def apply_raw_frame_rule(cfg: Config) -> None:
    """featx's one rule for a raw-frame config: read the same model input from the video instead.

    ``DecordInit`` is inserted as the first step, each ``RawFrameDecode`` becomes ``DecordDecode``,
    every other step stays as written; frames are indexed from 0, as for any video. An optical
    flow config (``modality='Flow'``) has no video equivalent and is refused.
    """
    if not reads_raw_frames(cfg):
        return
    modality = cfg.data.test.get("modality", "RGB")
    if modality != "RGB":
        raise UserError(f"the config reads {modality} frames (data.test.modality={modality!r}): featx extracts "
                        "from RGB video only; optical flow is not supported")
    steps = [dict(type="DecordDecode") if s.get("type") == "RawFrameDecode" else s for s in cfg.data.test.pipeline]
    cfg.data.test.pipeline = [dict(type="DecordInit"), *steps]


OPTIONAL_SECTIONS = ("test_dataloader", "test_cfg", "dist_params", "fp16")  # read when present, often absent


def _check_option_paths(cfg: Config, options: Mapping[str, Any]) -> None:
    """Refuse an option whose parent does not exist (a typo), unless it is a section extraction reads
    that configs often leave out (``data.test_dataloader.videos_per_gpu=2``); warn when it adds a new leaf."""
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
            elif isinstance(node, Mapping) and (last or part in OPTIONAL_SECTIONS):
                log.warning("--cfg-options %s: not in the config, adding it", dotted)
                break
            else:
                where = ".".join(parts[:depth]) or "the config"
                raise UserError(f"--cfg-options {dotted}: {where} has no key {part!r}")


def _clear_pretrained(node: Any) -> None:
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == "pretrained":
                node[key] = None
            else:
                _clear_pretrained(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _clear_pretrained(value)


@dataclass(frozen=True)
class LoaderSettings:
    """What the data loader takes from ``data``: the reference's defaults, then ``test_dataloader``."""

    videos_per_gpu: int
    workers_per_gpu: int

    @classmethod
    def from_config(cls, cfg: Config) -> "LoaderSettings":
        data = cfg.get("data", {})
        merged = {"videos_per_gpu": data.get("videos_per_gpu", 1), "workers_per_gpu": data.get("workers_per_gpu", 1)}
        merged.update({k: v for k, v in data.get("test_dataloader", {}).items() if k in merged})
        return cls(**{k: int(v) for k, v in merged.items()})


def use_dense_sampling(cfg: Config, stride: str, window: int = 1) -> None:
    """``--dense-stride``: the test pipeline's ``SampleFrames`` becomes a ``StrideSampleFrames`` with the
    same clip length, frame interval and out-of-bound rule, one clip every ``16`` frames or ``0.5s``; for a
    backbone that mixes groups of ``window`` views (its ``view_group``), one window of that many segments."""
    text = stride.strip().lower()
    try:
        option = {"stride_seconds": float(text[:-1])} if text.endswith("s") else {"stride": int(text)}
    except ValueError:
        raise UserError(f"--dense-stride {stride}: give frames (16) or seconds (0.5s)") from None
    if not next(iter(option.values())) > 0:
        raise UserError(f"--dense-stride {stride}: must be more than 0")
    pipeline = cfg.data.test.pipeline
    at = [i for i, step in enumerate(pipeline) if step.get("type") == "SampleFrames"]
    if not at:
        raise UserError("--dense-stride: the config's data.test.pipeline has no SampleFrames to replace")
    old = pipeline[at[0]]
    pipeline[at[0]] = dict(type="StrideSampleFrames", clip_len=old.get("clip_len"),
                           frame_interval=old.get("frame_interval", 1),
                           out_of_bound_opt=old.get("out_of_bound_opt", "loop"), window=window, **option)
