"""The extraction loop: list -> dataset -> loader -> model on the device -> one vector per video."""
from __future__ import annotations

import contextlib
import itertools
import time
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ContextManager, Iterable, Iterator

import numpy as np
import torch
from mmengine.config import Config
from torch import nn
from tqdm import tqdm

from featx.checkpoint import load_checkpoint
from featx.data import Pipeline, VideoDataset, VideoItem
from featx.data.pool import DecodePool
from featx.data.transforms import Normalize
from featx.errors import UserError
from featx.models import build_model, fuse_conv_bn

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class VideoResult:
    """What one video produced: a feature vector, or the reason it has none."""

    index: int
    key: str
    feature: np.ndarray | None = None
    error: str | None = None
    info: dict[str, Any] = field(default_factory=dict)


def select_device(name: str | None) -> torch.device:
    """``--device``: default cuda when available, else cpu; asking for a GPU that is not there is an error."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise UserError(f"--device {name}: {exc}") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: no CUDA GPU is available here (use --device cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"--device {name}: only {torch.cuda.device_count()} GPU(s) here")
    return device


def resolve_precision(requested: str | None, cfg: Config, device: torch.device) -> str:
    """``--precision`` if given, else fp16 when the config has ``fp16 = dict(...)`` and runs on a GPU, else fp32."""
    if requested is None:
        if cfg.get("fp16") is None:
            return "fp32"
        if device.type != "cuda":
            log.warning("the config asks for fp16, which needs a GPU: running fp32 on %s", device)
            return "fp32"
        return "fp16"
    if requested == "fp16" and device.type != "cuda":
        raise UserError("--precision fp16 needs a GPU; on a CPU use bf16 or fp32")
    return requested


def autocast(precision: str, device: torch.device) -> ContextManager[Any]:
    dtype = PRECISIONS[precision]
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def prepare_model(cfg: Config, checkpoint: str, device: torch.device, *, fuse: bool = True,
                  channels_last: bool = True) -> tuple[nn.Module, Path]:
    """Build the model from ``cfg.model``, load the checkpoint on the CPU and move it to ``device``.

    For speed, BatchNorm is folded into the convolutions and the weights are stored channels-last
    (both change the vectors only by float rounding, about 1e-7 relative).
    """
    model = build_model(cfg.model)
    path = load_checkpoint(model, checkpoint)
    if fuse:
        model = fuse_conv_bn(model)
    model = model.to(device).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last_3d if _is_3d(model) else torch.channels_last)
    return model, path


def _is_3d(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv3d) for m in model.modules())


def decoded_samples(pipeline: Pipeline, items: list[VideoItem], *, workers: int, timeout: float,
                    decoder: str) -> Iterable[dict[str, Any]]:
    """Every listed video through the test pipeline, in list order: in ``workers`` killable processes,
    or in this process when ``workers`` is 0 (no time limit, no isolation)."""
    dataset = VideoDataset(items, pipeline, decoder=decoder)
    if workers == 0:
        return (dataset[i] for i in range(len(dataset)))
    return DecodePool(dataset, workers, timeout)


def batched(samples: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    """Consecutive groups of ``size`` samples (the last may be shorter)."""
    it = iter(samples)
    while batch := list(itertools.islice(it, size)):
        yield batch


class FeatureExtractor:
    """Runs the model on a batch of decoded videos; views are averaged on the device."""

    def __init__(self, model: nn.Module, device: torch.device, precision: str = "fp32",
                 normalize: Normalize | None = None) -> None:
        self.model = model
        self.device = device
        self.precision = precision
        self.normalize = normalize  # applied here when the workers send uint8 frames
        self.timings = {"host->device": 0.0, "forward": 0.0}  # seconds, summed over calls

    @torch.inference_mode()
    def __call__(self, samples: list[dict[str, Any]]) -> list[VideoResult]:
        results = {s["index"]: VideoResult(s["index"], s["key"], error=s["error"]) for s in samples if "error" in s}
        good = [s for s in samples if "error" not in s]
        # Videos of one batch usually share a shape; any that differ get a forward of their own.
        by_shape: dict[tuple[int, ...], list[dict[str, Any]]] = {}
        for s in good:
            by_shape.setdefault(s["imgs"].shape, []).append(s)
        for group in by_shape.values():
            start = time.perf_counter()
            imgs = torch.stack([torch.as_tensor(s["imgs"]) for s in group])
            if self.device.type == "cuda":
                imgs = imgs.pin_memory()
            imgs = imgs.to(self.device, non_blocking=True)
            if self.normalize is not None:
                imgs = self.normalize.normalize_tensor(imgs, channel_dim=2)  # (B, V, C, ...)
            loaded = time.perf_counter()
            with autocast(self.precision, self.device):
                feats = self.model(imgs).float().cpu().numpy()  # the copy back waits for the device
            self.timings["host->device"] += loaded - start
            self.timings["forward"] += time.perf_counter() - loaded
            for s, feat in zip(group, feats):
                info = {"total_frames": int(s["total_frames"]), "avg_fps": float(s["avg_fps"]),
                        "frame_inds": np.asarray(s["frame_inds"]).tolist()}
                results[s["index"]] = VideoResult(s["index"], s["key"], feature=feat, info=info)
        return [results[i] for i in sorted(results)]


def extract(extractor: FeatureExtractor, batches: Iterable[list[dict[str, Any]]]) -> Iterator[VideoResult]:
    """Every video's result, batch after batch."""
    for batch in batches:
        yield from extractor(batch)


def with_progress(results: Iterable[VideoResult], total: int) -> Iterator[VideoResult]:
    """Pass results through with a progress bar (videos/s, ETA); each failure is warned as it happens."""
    failed = 0
    with tqdm(total=total, unit="video", dynamic_ncols=True, mininterval=1.0, desc="featx") as bar:
        for result in results:
            if result.error is not None:
                failed += 1
                bar.set_postfix(failed=failed)
                log.warning("skipped %s: %s", result.key, result.error)
            bar.update(1)
            yield result
