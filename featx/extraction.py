"""The extraction loop: list -> dataset -> loader -> model on the device -> one vector per video."""
from __future__ import annotations

import contextlib
import itertools
import logging
import os
import re
import sys
import time
from typing import Any, Callable, ContextManager, Iterable, Iterator, Mapping, TextIO

import torch
from torch import nn
from tqdm import tqdm

from featx.checkpoint import LoadedCheckpoint, load_checkpoint
from featx.data import Failure, Sample
from featx.data.dataset import join_chunks
from featx.data.decoders import first_line
from featx.data.transforms import Normalize
from featx.errors import UserError
from featx.memory import ForwardSize, size_forward
from featx.result import VideoResult
from featx.wording import count
from featx.models import build_model, fuse_conv_bn, store_weights_in, to_channels_last, use_onednn_fusion

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
    (both change the vectors only by float rounding, about 1e-7 relative); on a CPU, each convolution
    runs as one oneDNN kernel with its ReLU and residual sum (in float32, the same arithmetic). In bf16
    on a CPU, conv and linear weights are converted once here, not by autocast at each forward (on a
    GPU, autocast casts them).
    """
    model = build_model(model_cfg)
    loaded = load_checkpoint(model, checkpoint, allow_partial=allow_partial, dialect=dialect)
    if fuse:
        model = fuse_conv_bn(model)
        if device.type == "cpu":
            use_onednn_fusion(model)
    if device.type == "cpu" and PRECISIONS[precision] is not None:
        store_weights_in(model, PRECISIONS[precision])
    model = model.to(device).eval()
    if channels_last:
        model = to_channels_last(model)
    return model, loaded


def decode_workers(requested: int | None, workers_per_gpu: int, device: torch.device,
                   environ: Mapping[str, str] = os.environ) -> int:
    """How many decoding processes: ``--workers`` when given; else the config's ``workers_per_gpu`` on a
    CPU, where the forward needs the cores, but no more than this process's share of them (1.x configs
    ask for 8); on a GPU at least that, and up to one per core of the share less one for itself, so the
    GPU does not wait for decoding."""
    if requested is not None:
        return requested
    cores = _core_share(environ)
    if device.type == "cpu":
        return min(workers_per_gpu, cores)
    return max(workers_per_gpu, cores - 1)


def _core_share(environ: Mapping[str, str] = os.environ) -> int:
    """This process's share of the machine's cores (at least 1): Slurm's cpus-per-task, else the cores it
    may run on divided among the node's ranks (torchrun's LOCAL_WORLD_SIZE, Open MPI's local size)."""
    if environ.get("SLURM_CPUS_PER_TASK"):
        return max(1, int(environ["SLURM_CPUS_PER_TASK"]))
    ranks_here = int(environ.get("LOCAL_WORLD_SIZE") or environ.get("OMPI_COMM_WORLD_LOCAL_SIZE") or 1)
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, usable // max(1, ranks_here))


def batched(samples: Iterable[Sample | Failure], size: int) -> Iterator[list[Sample | Failure]]:
    """Consecutive groups of ``size`` samples (the last may be shorter)."""
    it = iter(samples)
    while batch := list(itertools.islice(it, size)):
        yield batch


def filling_forwards(samples: Iterable[Sample | Failure], views: Callable[[], int | None]) -> Iterator[list[Sample | Failure]]:
    """Consecutive samples, each group closed once its views fill a forward (``views()``; one sample a group
    until the first forward has sized it)."""
    batch: list[Sample | Failure] = []
    held = 0
    for sample in samples:
        batch.append(sample)
        held += len(sample.imgs) if isinstance(sample, Sample) else 0
        if held >= (views() or 1):
            yield batch
            batch, held = [], 0
    if batch:
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
    per video (``per='video'``), per clip (``'clip'``) or per clip and crop (``'view'``).

    The views of a batch's samples (of one view shape) run as one stream, in forwards of
    :attr:`forward_size` views: whole view groups, sized at the first forward from the memory
    available (:mod:`featx.memory`) or ``max_memory``, so a short video's views share a forward with
    the next one's and a long one's are split; each sample's views are then pooled on their own
    (the same vectors as one forward per video, to float rounding). When a GPU runs out of memory
    the views per forward are halved and the batch computed again; at one view group, its videos fail.
    ``samples_in_flight``: how many samples the decoding workers hold meanwhile (kept out of the budget).
    """

    def __init__(self, model: nn.Module, device: torch.device, precision: str = "fp32",
                 normalize: Normalize | None = None, per: str = "video", *, max_memory: int | None = None,
                 samples_in_flight: int = 0) -> None:
        if per not in PER:
            raise ValueError(f"per must be one of {PER}, got {per!r}")
        self.model = model
        self.device = device
        self.precision = precision
        self.normalize = normalize  # applied here when the workers send uint8 frames
        self.per = per
        self.max_memory = max_memory
        self.samples_in_flight = samples_in_flight
        self.view_group: int = getattr(model, "view_group", 1)
        self.forward_size: ForwardSize | None = None  # sized at the first forward
        self.timings = {"host->device": 0.0, "forward": 0.0}  # seconds, summed over calls
        self.views_computed = 0  # views through the model in those forwards

    @torch.inference_mode()
    def __call__(self, samples: list[Sample | Failure]) -> list[VideoResult]:
        """One result per sample (a chunk of a video), in the samples' order."""
        results = {id(s): _result(s, error=s.error) for s in samples if isinstance(s, Failure)}
        # Samples whose views differ in shape (rare: a config of several sizes) get forwards of their own.
        groups: dict[tuple[int, ...], list[Sample]] = {}
        for s in samples:
            if isinstance(s, Sample):
                groups.setdefault(tuple(s.imgs.shape[1:]), []).append(s)
        for group in groups.values():
            try:
                feats = self._view_features([torch.as_tensor(s.imgs) for s in group])
            except _TooBig as exc:
                results.update({id(s): _result(s, error=str(exc)) for s in group})
                continue
            except RuntimeError as exc:  # the model cannot take this shape (too small a view, a fixed size)
                if isinstance(exc, DEVICE_ERRORS):
                    raise
                reason = f"the model cannot run on this input: {first_line(exc)}"
                results.update({id(s): _result(s, error=reason) for s in group})
                continue
            for s, feat in zip(group, feats):
                pooled = reduce_views(feat[None], num_clips=s.num_clips, num_crops=s.num_crops, per=self._per(s))
                results[id(s)] = _result(s, feature=pooled[0].cpu().numpy())
        return [results[id(s)] for s in samples]

    def _view_features(self, imgs: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """Each sample's (V, D) view features, its views computed with the others' in forwards of
        :attr:`forward_size`; a GPU out of memory halves it and starts again."""
        shrunk_from = 0  # the views per forward that ran out of memory first, said once it fits
        done = None  # the sizing's outputs, for the first views of imgs[0]
        while True:
            try:
                if self.forward_size is None:
                    self.forward_size, done = self._size(imgs[0])
                    log.info("views per forward: %d (%s)", self.forward_size.views, self.forward_size.how)
                feats = self._forwards(imgs, self.forward_size.views, done)
            except torch.cuda.OutOfMemoryError as exc:
                tried = self.forward_size.views if self.forward_size else 2 * self.view_group
                smaller = (self.forward_size.halved() if self.forward_size is not None
                           else ForwardSize(self.view_group, self.view_group, "one view group"))
                if smaller is None:
                    raise _TooBig(f"out of memory on {self.device} with one view group ({count(self.view_group, 'view')}"
                                  f" per forward): {first_line(exc)}") from exc
                shrunk_from = shrunk_from or tried
                self.forward_size = smaller
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            if shrunk_from:
                log.warning("%s ran out of memory at %d views per forward: %d from now on", self.device, shrunk_from,
                            self.forward_size.views)
            return feats

    def _size(self, sample: torch.Tensor) -> tuple[ForwardSize, torch.Tensor | None]:
        """Views per forward, measured on the leading view groups of ``sample`` (a decoded sample's views),
        and those views' features."""
        return size_forward(self._forward, sample, self.device, group=self.view_group, max_memory=self.max_memory,
                            held_elsewhere=self.samples_in_flight * sample.nbytes)

    def _forwards(self, imgs: list[torch.Tensor], views: int, done: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """Each of ``imgs``' view features; ``done`` holds those of the first views of ``imgs[0]``, computed already."""
        sizes = [len(x) for x in imgs]
        feats = [] if done is None else [done]
        feats += [self._forward(torch.cat([imgs[i][a:b] for i, a, b in parts]))
                  for parts in view_chunks(sizes, views, skip=0 if done is None else len(done))]
        return torch.cat(feats).split(sizes)

    def _forward(self, views: torch.Tensor) -> torch.Tensor:
        """(N, *view) on the host -> (N, D) float32 on the device."""
        start = time.perf_counter()
        if self.device.type == "cuda":
            views = views.pin_memory()
        views = views.to(self.device, non_blocking=True)
        if self.normalize is not None:
            views = self.normalize.normalize_tensor(views, channel_dim=1)  # (N, C, ...)
        loaded = time.perf_counter()
        with autocast(self.precision, self.device):
            feats = self.model.forward_views(views[None])[0].float()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.timings["host->device"] += loaded - start
        self.timings["forward"] += time.perf_counter() - loaded
        self.views_computed += len(views)
        return feats

    def _per(self, sample: Sample) -> str:
        """How to pool this sample: a video in several chunks is pooled per clip, then averaged when whole."""
        return "clip" if self.per == "video" and sample.num_chunks > 1 else self.per


class _TooBig(Exception):
    """One view group does not fit in the device's memory."""


def view_chunks(sizes: list[int], views: int, skip: int = 0) -> Iterator[list[tuple[int, int, int]]]:
    """The samples' views (``sizes[i]`` of sample ``i``, one stream, less the first ``skip`` of sample 0) in
    consecutive forwards of ``views`` (the last may be shorter): each forward as ``(sample, start, stop)`` slices."""
    parts: list[tuple[int, int, int]] = []
    room = views
    for i, size in enumerate(sizes):
        start = skip if i == 0 else 0
        while start < size:
            take = min(room, size - start)
            parts.append((i, start, start + take))
            start, room = start + take, room - take
            if not room:
                yield parts
                parts, room = [], views
    if parts:
        yield parts


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
    """Progress over videos (videos/s, ETA) that also moves inside a video computed a chunk at a time (dense
    sampling); each failure is warned as it happens. On a terminal it is a bar; written to a file (``nohup``,
    Slurm's output) it is a plain line every ``every`` seconds, so the file holds no carriage returns."""

    FRACTIONAL = "{l_bar}{bar}| {n:.1f}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"
    LINE = "{n:.0f}/{total_fmt} videos [{elapsed}<{remaining}, {rate_fmt}]"

    def __init__(self, total: int, *, every: float = 60.0, stream: TextIO | None = None) -> None:
        stream = stream or sys.stderr
        self.on_terminal = stream.isatty()
        self.bar = tqdm(total=total, unit="video", dynamic_ncols=True, mininterval=1.0, desc="featx", file=stream,
                        disable=not total or not self.on_terminal)
        self.total = total
        self.every = every
        self.position = 0.0  # videos done, a video computed in chunks counting its chunks done
        self.videos = 0
        self.failed = 0
        self.started = self.last_line = time.monotonic()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()  # ends the bar's line: what is logged next starts a line of its own

    def chunk(self, part: VideoResult) -> None:
        """A chunk of a video computed in this process: progress moves by its share of the video. In a
        distributed run it never moves back when another process's video arrives in between."""
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
        if position <= self.position:
            return
        self.bar.update(position - self.position)
        self.position = position
        now = time.monotonic()
        if not self.on_terminal and self.total and now - self.last_line >= self.every:
            self.last_line = now
            line = tqdm.format_meter(position, self.total, now - self.started, unit="video", bar_format=self.LINE)
            log.info("%s%s", line, f", {count(self.failed, 'failed video')}" if self.failed else "")
