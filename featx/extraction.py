"""The extraction loop: list -> dataset -> loader -> model on the device -> one vector per video."""
from __future__ import annotations

import contextlib
import itertools
import logging
import os
import re
import time
from typing import Any, Callable, ContextManager, Iterable, Iterator, Mapping

import torch
from torch import nn
from tqdm import tqdm

from featx.checkpoint import LoadedCheckpoint, load_checkpoint
from featx.data import Failure, Sample
from featx.data.dataset import join_chunks
from featx.data.decoders import first_line
from featx.data.transforms import Normalize
from featx.errors import UserError
from featx.result import VideoResult
from featx.models import build_model, fuse_conv_bn, to_channels_last, use_onednn_fusion

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
PER = ("video", "clip", "view")
# RuntimeErrors of the device itself (out of memory, a failed kernel): not a video's fault.
DEVICE_ERRORS = (torch.cuda.OutOfMemoryError, torch.AcceleratorError)
DEVICE = re.compile(r"cpu|cuda(:\d+)?")  # what --device accepts (torch knows more types, featx runs on these)


def select_device(name: str | None) -> torch.device:
    """``--device``: default cuda when available, else cpu; asking for a GPU that is not there is an error."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not DEVICE.fullmatch(name):
        raise UserError(f"--device {name}: featx runs on cpu, cuda or cuda:N (N: the GPU's index)")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: no CUDA GPU is available here (use --device cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"--device {name}: only {torch.cuda.device_count()} GPU(s) here")
    return device


def resolve_precision(requested: str | None, config_fp16: bool, device: torch.device) -> str:
    """``--precision`` if given, else fp16 when the config asks for it (``config_fp16``) and runs on a GPU, else fp32."""
    if requested is None:
        if not config_fp16:
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


def prepare_model(model_cfg: Mapping[str, Any], checkpoint: str, device: torch.device, *, fuse: bool = True,
                  channels_last: bool = True, precision: str = "fp32",
                  allow_partial: bool = False, dialect: str | None = None) -> tuple[nn.Module, LoadedCheckpoint]:
    """Build the model from a config's ``model`` dict, load the checkpoint on the CPU (refused if it lacks model
    keys, unless ``allow_partial``; ``dialect``: the config's, named if the checkpoint's differs) and move it
    to ``device``.

    For speed, BatchNorm is folded into the convolutions and the weights are stored channels-last
    (both change the vectors only by float rounding, about 1e-7 relative); in float32 on a CPU,
    each convolution runs as one oneDNN kernel with its ReLU and residual sum (same arithmetic).
    """
    model = build_model(model_cfg)
    loaded = load_checkpoint(model, checkpoint, allow_partial=allow_partial, dialect=dialect)
    if fuse:
        model = fuse_conv_bn(model)
        if device.type == "cpu" and precision == "fp32":
            use_onednn_fusion(model)
    model = model.to(device).eval()
    if channels_last:
        model = to_channels_last(model)
    return model, loaded


def decode_workers(requested: int | None, workers_per_gpu: int, device: torch.device,
                   environ: Mapping[str, str] = os.environ) -> int:
    """How many decoding processes: ``--workers`` when given; else the config's ``workers_per_gpu`` on a
    CPU, where the forward needs the cores; on a GPU at least that, and up to one per core of this
    process's share of the machine less one for itself, so the GPU does not wait for decoding. The
    share is Slurm's cpus-per-task, else the cores this process may run on divided among the node's
    ranks (torchrun's LOCAL_WORLD_SIZE, Open MPI's local size)."""
    if requested is not None:
        return requested
    if device.type == "cpu":
        return workers_per_gpu
    if environ.get("SLURM_CPUS_PER_TASK"):
        cores = int(environ["SLURM_CPUS_PER_TASK"])
    else:
        ranks_here = int(environ.get("LOCAL_WORLD_SIZE") or environ.get("OMPI_COMM_WORLD_LOCAL_SIZE") or 1)
        usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        cores = usable // max(1, ranks_here)
    return max(workers_per_gpu, cores - 1)


def batched(samples: Iterable[Sample | Failure], size: int) -> Iterator[list[Sample | Failure]]:
    """Consecutive groups of ``size`` samples (the last may be shorter)."""
    it = iter(samples)
    while batch := list(itertools.islice(it, size)):
        yield batch


def reduce_views(feats: torch.Tensor, *, num_clips: int, num_crops: int, per: str) -> torch.Tensor:
    """(B, V, D) view features -> (B, D) (``per='video'``), (B, clips, D) or (B, clips, crops, D).

    Views are crop-major (all clips of crop 1, then crop 2, ...); a 2D model has one view per
    frame of a clip, averaged into its clip. The mean over clips of ``per='clip'`` is ``per='video'``.
    """
    if per == "video":
        return feats.mean(1)
    batches, views, dim = feats.shape
    frames, rest = divmod(views, num_clips * num_crops)
    if rest or not frames:
        raise ValueError(f"{views} views are not {num_crops} crops x {num_clips} clips")
    by_crop = feats.reshape(batches, num_crops, num_clips, frames, dim).mean(3)  # (B, crops, clips, D)
    return by_crop.transpose(1, 2) if per == "view" else by_crop.mean(1)


class FeatureExtractor:
    """Runs the model on a batch of decoded samples; views are pooled on the device into one vector
    per video (``per='video'``), per clip (``'clip'``) or per clip and crop (``'view'``)."""

    def __init__(self, model: nn.Module, device: torch.device, precision: str = "fp32",
                 normalize: Normalize | None = None, per: str = "video") -> None:
        if per not in PER:
            raise ValueError(f"per must be one of {PER}, got {per!r}")
        self.model = model
        self.device = device
        self.precision = precision
        self.normalize = normalize  # applied here when the workers send uint8 frames
        self.per = per
        self.timings = {"host->device": 0.0, "forward": 0.0}  # seconds, summed over calls

    @torch.inference_mode()
    def __call__(self, samples: list[Sample | Failure]) -> list[VideoResult]:
        """One result per sample (a chunk of a video), in the samples' order."""
        results = {id(s): _result(s, error=s.error) for s in samples if isinstance(s, Failure)}
        # Samples of one batch usually share a layout; any that differ get a forward of their own.
        groups: dict[tuple[Any, ...], list[Sample]] = {}
        for s in samples:
            if isinstance(s, Sample):
                groups.setdefault((s.imgs.shape, s.num_clips, s.num_crops, self._per(s)), []).append(s)
        for (_, num_clips, num_crops, per), group in groups.items():
            start = time.perf_counter()
            imgs = torch.stack([torch.as_tensor(s.imgs) for s in group])
            if self.device.type == "cuda":
                imgs = imgs.pin_memory()
            imgs = imgs.to(self.device, non_blocking=True)
            if self.normalize is not None:
                imgs = self.normalize.normalize_tensor(imgs, channel_dim=2)  # (B, V, C, ...)
            loaded = time.perf_counter()
            try:
                with autocast(self.precision, self.device):
                    feats = self.model.forward_views(imgs)
            except RuntimeError as exc:  # the model cannot take this shape (too small a view, a fixed size)
                if isinstance(exc, DEVICE_ERRORS):
                    raise
                reason = f"the model cannot run on this input: {first_line(exc)}"
                results.update({id(s): _result(s, error=reason) for s in group})
                continue
            feats = reduce_views(feats.float(), num_clips=num_clips, num_crops=num_crops, per=per)
            feats = feats.cpu().numpy()  # the copy back waits for the device
            self.timings["host->device"] += loaded - start
            self.timings["forward"] += time.perf_counter() - loaded
            for s, feat in zip(group, feats):
                results[id(s)] = _result(s, feature=feat)
        return [results[id(s)] for s in samples]

    def _per(self, sample: Sample) -> str:
        """How to pool this sample: a video in several chunks is pooled per clip, then averaged when whole."""
        return "clip" if self.per == "video" and sample.num_chunks > 1 else self.per


def _result(sample: Sample | Failure, **outcome: Any) -> VideoResult:
    if isinstance(sample, Failure):
        return VideoResult(sample.index, sample.key, chunk=sample.chunk, **outcome)
    info = {"total_frames": sample.total_frames, "avg_fps": sample.avg_fps, "clip_len": sample.clip_len,
            "frame_inds": sample.frame_inds.tolist()}
    return VideoResult(sample.index, sample.key, chunk=sample.chunk, num_chunks=sample.num_chunks, info=info,
                       **outcome)


def extract(extractor: FeatureExtractor, batches: Iterable[list[dict[str, Any]]],
            on_chunk: Callable[[VideoResult], None] | None = None) -> Iterator[VideoResult]:
    """Every video's result, in list order; ``on_chunk`` sees each chunk's result as it is computed."""

    def chunks() -> Iterator[VideoResult]:
        for batch in batches:
            for part in extractor(batch):
                if on_chunk is not None:
                    on_chunk(part)
                yield part

    return join_chunks(chunks(), extractor.per)


class Progress:
    """A progress bar over videos (videos/s, ETA) that also moves inside a video computed a chunk at a
    time (dense sampling); each failure is warned as it happens."""

    FRACTIONAL = "{l_bar}{bar}| {n:.1f}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"

    def __init__(self, total: int) -> None:
        self.bar = tqdm(total=total, unit="video", dynamic_ncols=True, mininterval=1.0, desc="featx", disable=not total)
        self.videos = 0
        self.failed = 0

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()

    def chunk(self, part: VideoResult) -> None:
        """A chunk of a video computed in this process: the bar moves by its share of the video. In a
        distributed run the bar never moves back when another process's video arrives in between."""
        if part.chunk + 1 < part.num_chunks:
            self.bar.bar_format = self.FRACTIONAL
            self._move_to(self.videos + (part.chunk + 1) / part.num_chunks)

    def video(self, result: VideoResult) -> None:
        """A video's result has arrived."""
        self.videos += 1
        if result.error is not None:
            self.failed += 1
            self.bar.set_postfix(failed=self.failed)
            log.warning("skipped %s: %s", result.key, result.error)
        self._move_to(self.videos)

    def _move_to(self, position: float) -> None:
        if position > self.bar.n:
            self.bar.update(position - self.bar.n)
