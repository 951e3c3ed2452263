"""One featx run, whoever asks for it (the ``featx`` command, :func:`featx.extract`, the benchmark, the
demo): options -> config -> videos -> output checked -> model -> results -> output.

:class:`RunOptions` holds what a run is asked to do and refuses bad values before anything is read;
:class:`Extraction` is a run's prepared config, data path and model, giving each video's result;
:func:`run` adds what makes a long run safe (the partial store, reuse of a finished output, several
processes, the progress bar) and writes the output; :func:`extract_features` keeps results in memory.
"""
from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
from tqdm.contrib.logging import logging_redirect_tqdm

from featx.checkpoint import LoadedCheckpoint, file_sha256
from featx.config import ExtractionConfig, read_config, use_dense_sampling, use_tool_views
from featx.data import Pipeline, VideoDataset, VideoItem, build_pipeline, decoded_samples, find_videos, read_video_list
from featx.data.pipeline import Role, describe_views, split_normalize
from featx.distributed import (DistInfo, broadcast_from_main, gather_to_main, init_distributed, leave,
                               object_group, shard)
from featx.errors import UserError
from featx.extraction import (FeatureExtractor, Progress, batched, decode_workers, extract, filling_forwards,
                              prepare_model, resolve_precision, select_device)
from featx.hostmem import keep_freed_memory
from featx.memory import gib, parse_size
from featx.meta import Failure, Fingerprint, Meta, ShardSection, VideoEntry, write_meta
from featx.models import view_group
from featx.options import Resolved, RunOptions
from featx.outputs import OutputFormat, Row, open_output, sidecar, write_error_report
from featx.registry import DECODERS, FORMATS, Registry
from featx.reuse import Earlier, earlier_output
from featx.result import VideoResult
from featx.shards import ShardSlice, parse_shard
from featx.store import PartialStore
from featx.wording import count

log = logging.getLogger("featx")

EXIT_OK, EXIT_VIDEOS_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
def listed_videos(options: RunOptions) -> list[VideoItem]:
    """The videos to extract: ``videos``, the video list's lines, or every video file under ``video_root``."""
    root = options.video_root
    if options.videos is not None or options.video_list is not None:
        if root and not os.path.isdir(root):
            raise UserError(f"--video-root {root}: no such folder")
        if options.videos is not None:
            items = [VideoItem(key, os.path.join(root, key)) for key in options.videos]
            if not items:
                raise UserError("no videos given")
        else:
            items = read_video_list(options.video_list, root)
        if not any(os.path.exists(it.path) for it in items):  # stops at the first that exists
            where = f"--video-root {root}" if root else "the current folder (no --video-root)"
            source = options.video_list or "the videos given"
            raise UserError(f"not one of the {len(items)} listed videos exists, the first is not at {items[0].path}: "
                            f"check {where} and the paths in {source}")
        return items
    if root:
        return find_videos(root, tuple(e.strip() for e in options.video_ext if e.strip()))
    raise UserError("give --video-list, or --video-root alone to take every video file under it")


def prepared_config(options: RunOptions) -> tuple[ExtractionConfig, Pipeline, Any]:
    """The config as read (``--cfg-options``, the raw-frame rule, ``--views`` and dense sampling applied), its
    test pipeline as the workers run it, and the normalisation the device applies (a final ``Normalize`` step,
    or the config's own device-side one: a ``GPUNormalize`` module hook, a 1.x data preprocessor), if any."""
    config = read_config(options.config, options.cfg_options)
    if options.views == "tool":
        config = use_tool_views(config)
    if options.dense_stride is not None:  # a backbone that mixes views gets windows of whole groups
        config = use_dense_sampling(config, options.dense_stride, view_group(config.model), options.pad)
    pipeline, normalize = split_normalize(build_pipeline(config.pipeline, transforms=config.transforms,
                                                          decoder=options.decoder, decode_order=options.decode_order,
                                                          fps=options.fps))
    if config.normalize is not None and (normalize is not None or pipeline.find(Role.NORMALIZE)):
        raise UserError(f"the config normalises twice (a Normalize step and its {type(config.normalize).__name__}): "
                        "keep one")
    return config, pipeline, normalize or config.normalize


def resolved_decoder(requested: str | None, pipeline_cfg: Sequence[Mapping[str, Any]], transforms: Registry) -> str:
    """The backend that opens the videos: ``--decoder`` if given, else the config's opening step's own (a step
    of ``transforms``, the config dialect's); "none" when no step opens a video (the config is checked already)."""
    for step in pipeline_cfg:
        factory = transforms.get(step["type"])
        if factory.role is Role.OPEN:
            return requested or factory.default_backend
    return "none"


@dataclass
class Extraction:
    """A run's prepared config, data path and model on its device; :meth:`results` gives each video's result.

    ``timings`` adds up seconds per stage over every video it computed: the pipeline's steps (in the
    decoding workers, overlapping the forward), the copy to the device and the forward.
    ``fill_forwards``: the views of consecutive videos share forwards up to the memory bound (else
    ``batch_size`` videos a batch, the config's ``videos_per_gpu``).
    """

    options: RunOptions
    config: ExtractionConfig
    pipeline: Pipeline
    extractor: FeatureExtractor
    checkpoint: LoadedCheckpoint
    resolved: Resolved
    batch_size: int
    info: DistInfo = field(default_factory=DistInfo)
    timings: dict[str, float] = field(default_factory=dict)
    fill_forwards: bool = True

    @classmethod
    def prepare(cls, options: RunOptions, prepared: tuple[ExtractionConfig, Pipeline, Any] | None = None
                ) -> Extraction:
        """Load the model on its device (joining the process group first when a launcher started this one)."""
        config, pipeline, normalize = prepared or prepared_config(options)
        device, info = select_device(options.device), DistInfo()
        if options.launcher != "none":
            info, device = init_distributed(options.launcher, device, config.dist_backend)
        precision = resolve_precision(options.precision, config.fp16, device)
        torch.backends.cudnn.benchmark = config.cudnn_benchmark
        if device.type == "cpu" and options.keep_freed_memory:
            keep_freed_memory()
        model, checkpoint = prepare_model(config.model, options.checkpoint, device, fuse=options.fuse_conv_bn,
                                          precision=precision, allow_partial=options.allow_partial_checkpoint,
                                          dialect=config.dialect)
        if options.layer is not None:
            model.tap(options.layer, options.pool or "avg")
        settings = config.loader
        decoder = resolved_decoder(options.decoder, config.pipeline, config.transforms)
        workers = decode_workers(options.workers, settings.workers_per_gpu, device)
        if workers and decoder != "none" and not DECODERS.get(decoder).forks:
            log.info("decoding in this process, not in %s: %s decodes with CUDA, which a forked worker cannot "
                     "use", count(workers, "worker"), decoder)
            workers = 0
        resolved = Resolved(decoder=decoder, precision=precision, device=str(device), workers=workers,
                            video_root=os.path.abspath(options.video_root))
        max_memory = None if options.max_memory is None else parse_size(options.max_memory)
        extractor = FeatureExtractor(model, device, precision, normalize, per=options.per, max_memory=max_memory,
                                     samples_in_flight=2 * workers)
        return cls(options, config, pipeline, extractor, checkpoint, resolved, max(1, settings.videos_per_gpu),
                   info)

    @property
    def checkpoint_file(self) -> Path:
        return self.checkpoint.path

    def results(self, items: Sequence[VideoItem], on_chunk: Any = None) -> Iterator[VideoResult]:
        """Every video's result, in list order: decoded in the workers, batched, through the model, its chunks
        joined; ``on_chunk`` sees each chunk's result as it is computed."""
        samples = decoded_samples(VideoDataset(items, self.pipeline), self.resolved.workers, self.options.video_timeout)
        if self.fill_forwards:
            batches = filling_forwards(self._timed(samples), self._views_per_forward)
        else:
            batches = batched(self._timed(samples), self.batch_size)
        return extract(self.extractor, batches, on_chunk=on_chunk)

    def _views_per_forward(self) -> int | None:
        size = self.extractor.forward_size
        return None if size is None else size.views

    def _timed(self, samples: Iterable[Any]) -> Iterator[Any]:
        for sample in samples:
            for step, seconds in getattr(sample, "timings", {}).items():
                self.timings[step] = self.timings.get(step, 0.0) + seconds
            yield sample
        self.timings.update(self.extractor.timings)

    def fingerprint(self, folder_output: bool) -> Fingerprint:
        """What decides the vectors (the partial store and the meta sidecar record it; a rerun compares it)."""
        return Fingerprint.of(self.config.marks(), file_sha256(self.checkpoint_file),
                              self.options.fingerprinted(self.resolved), folder_output)

    def describe(self) -> str:
        """The start line's account of the model and where it runs."""
        c = self.config
        rule = "a raw-frame config read from videos (featx's rule)" if c.raw_frames else ""
        about = [f"MMAction2 {c.dialect}", c.model.get("type"), describe_views(self.pipeline), rule, *c.notes]
        bound = self.extractor.max_memory
        sizing = (f"views per forward sized at the first video to {gib(bound)} (--max-memory)" if bound is not None
                  else "views per forward sized at the first video from the memory available")
        return (f"config {self.options.config} ({', '.join(filter(None, about))}); "
                f"checkpoint {self.checkpoint_file}; {self.resolved.device} ({self.resolved.precision}), "
                f"{count(self.info.world_size, 'process', 'processes')}, {count(self.resolved.workers, 'decoding worker')}"
                f"{' each' if self.info.world_size > 1 else ''}; {sizing}")

    def provenance(self, output: OutputFormat, marks: Fingerprint, shard: ShardSection | None) -> Meta:
        """What the meta sidecar records of how the output was made (its videos come from the results)."""
        o, resolved = self.options, self.resolved
        return Meta(format=FORMATS.name_of(type(output)), per=o.per, config_file=os.path.abspath(o.config),
                    checkpoint=o.checkpoint, checkpoint_file=str(self.checkpoint_file),
                    checkpoint_sha256=marks.checkpoint_sha256,
                    checkpoint_missing_keys=list(self.checkpoint.missing),  # left as built (--allow-partial-checkpoint)
                    checkpoint_unused_keys=list(self.checkpoint.unused),  # the classification head's, usually
                    precision=resolved.precision, device=resolved.device, processes=self.info.world_size,
                    decoder=resolved.decoder, decode_order=o.decode_order, fuse_conv_bn=o.fuse_conv_bn,
                    video_root=resolved.video_root, config_dialect=self.config.dialect, config=self.config.text,
                    fingerprint=marks, shard=shard,
                    grid=self.grid() if o.fps is not None or o.pad != "none" else None,
                    layer={"name": o.layer, "pool": o.pool or "avg"} if o.layer is not None else None)

    def grid(self) -> dict[str, Any]:
        """The time grid the windows are on (``--fps``, ``--dense-stride``, ``--pad``): its rate (None: each
        video's own), the stride and window in grid frames, the padding."""
        sampler = self.pipeline.find("sample")[0]
        return {"fps": self.options.fps, "stride": getattr(sampler, "stride", None),
                "window": (sampler.clip_len - 1) * sampler.frame_interval + 1, "pad": self.options.pad}


class StrictFailure(Exception):
    """--strict: a video failed."""


@dataclass
class Extracted:
    """What :func:`extract_features` gives: ``{listed key: array}`` in list order, and the videos that failed."""

    features: dict[str, np.ndarray]
    failed: dict[str, str]  # {listed key: reason}


def extract_features(options: RunOptions) -> Extracted:
    """Every listed video's features, kept in memory (no output, store or progress bar): for Python callers."""
    options.check()
    prepared = prepared_config(options)
    extraction = Extraction.prepare(options, prepared)
    features, failed = {}, {}
    for result in extraction.results(listed_videos(options)):
        if result.error is None:
            features[result.key] = result.feature
        else:
            failed[result.key] = result.error
    return Extracted(features, failed)


class RunObserver:
    """What a caller of :func:`run` may watch, one method per step (each does nothing here: override those
    wanted). The benchmark times the loop and the final write through it; rank 0 alone sees a distributed
    run's steps after ``prepared``."""

    def planned(self, items: list[VideoItem], output: OutputFormat) -> None:
        """Every input is checked (config, list, output), before the model loads: the videos of this run (a
        shard's slice) and the output they go to."""

    def prepared(self, extraction: Extraction) -> None:
        """The model is on its device; the loop over the videos starts next (``extraction.timings`` adds up
        its stages as it goes)."""

    def video(self, result: VideoResult) -> None:
        """A video's result has arrived (in list order), and goes to the store next."""

    def computed(self, store: PartialStore) -> None:
        """Every video is computed and in ``store``; the final write of the output starts next."""

    def finished(self, status: int) -> None:
        """The output, its meta sidecar and its error report are written; ``status`` is the run's exit status."""


@dataclass
class Planned:
    """A run's inputs, all checked before the model loads: the prepared config, the videos (a shard's slice),
    the shard (if any) and the output."""

    prepared: tuple[ExtractionConfig, Pipeline, Any]
    items: list[VideoItem]
    sliced: ShardSlice | None
    output: OutputFormat


def plan(options: RunOptions) -> Planned:
    """Check everything the user gave (options, config, list, output) before any model is loaded."""
    options.check()
    if options.out is None:
        raise UserError("give --out")
    prepared = prepared_config(options)
    items = listed_videos(options)
    out, sliced = options.out, None
    if options.shard is not None:  # from here on, the run is the shard's: its slice, its own output
        sliced = ShardSlice.of(items, parse_shard(options.shard), options.shard_by, options.video_list)
        items, out = sliced.items, sliced.shard.output(options.out)
        log.info("%s", sliced.describe(out))
    return Planned(prepared, items, sliced, open_output(out, options.out_format, [it.key for it in items]))


def earlier_results(output: OutputFormat, marks: Fingerprint, restart: bool) -> tuple[PartialStore, Earlier]:
    """The partial store (opened, an interrupted run's results in it) and what a finished ``output`` holds,
    both made with ``marks`` (else refused, or discarded by ``restart``)."""
    earlier = earlier_output(output, marks, restart=restart)
    store = PartialStore(sidecar(output.path, "partial"), marks, restart=restart)
    if store.discarded or earlier.discarded:  # --restart
        where = [f"{n} in {name}" for n, name in [(earlier.discarded, output.path.name),
                                                  (store.discarded, store.path.name)] if n]
        log.info("--restart: discarded %s (%s)", count(store.discarded + earlier.discarded, "earlier result"),
                 ", ".join(where))
    return store, earlier


def run(options: RunOptions, observer: RunObserver | None = None) -> int:
    """Extract every listed video and write the output; return the exit status. Bad input raises UserError
    before the model loads; finished videos go to ``<out>.partial`` as they come, so nothing is lost.
    ``observer`` sees each step (:class:`RunObserver`)."""
    observer = observer or RunObserver()
    planned = plan(options)
    items, output = planned.items, planned.output
    observer.planned(items, output)
    extraction = Extraction.prepare(options, planned.prepared)
    info = extraction.info
    marks = extraction.fingerprint(folder_output=output.streams)
    group = object_group() if info.world_size > 1 else None
    try:
        store, earlier = earlier_results(output, marks, options.restart) if info.is_main else (None, Earlier())
    except UserError as exc:  # the other ranks wait for rank 0's list: they get its refusal instead, and stop
        if group is not None:
            broadcast_from_main(exc, group)
            leave(group)
        raise
    todo = [i for i, item in enumerate(items)
            if store is None or (item.key not in store.done and item.key not in earlier.features)]
    if group is not None:
        todo = broadcast_from_main(todo, group)
        if isinstance(todo, UserError):  # said before rank 0 exits (at leave), so before the launcher ends this rank
            log.error("rank 0 stopped the job: %s", todo)
            leave(group)
            return EXIT_USAGE
    mine = shard([items[i] for i in todo], info)
    observer.prepared(extraction)
    if store is None:  # another rank: its results go to rank 0
        for _ in gather_to_main(extraction.results(mine), info, math.ceil(len(todo) / info.world_size), group):
            pass
        leave(group)
        return EXIT_OK
    done_before = from_earlier_runs(len(earlier.features), len(items) - len(todo) - len(earlier.features),
                                    output.path, store)
    work = (f"{count(len(items), 'video')} listed, {len(todo)} to compute ({done_before})" if done_before
            else f"{count(len(todo), 'video')} to compute")
    log.info("%s; %s", work, extraction.describe())

    start = time.monotonic()
    try:
        compute(extraction, mine, len(todo), group, output, store, observer, strict=options.strict)
    except (KeyboardInterrupt, StrictFailure) as exc:
        return stopped(exc, store, len(items))
    observer.computed(store)
    provenance = extraction.provenance(output, marks, planned.sliced.section() if planned.sliced else None)
    status = finish(output, items, store, earlier, provenance, computed=len(todo), done_before=done_before,
                    seconds=time.monotonic() - start)
    observer.finished(status)
    return status


def compute(extraction: Extraction, mine: list[VideoItem], todo: int, group: Any, output: OutputFormat,
            store: PartialStore, observer: RunObserver, *, strict: bool) -> None:
    """Rank 0's loop: this rank's videos (``mine``) and the other ranks' (``group``), ``todo`` in all, each
    result recorded as it comes, on the progress bar. A stop (KeyboardInterrupt, or :class:`StrictFailure`
    at a failure with ``strict``) leaves the bar's line ended, for the message that follows."""
    info = extraction.info
    with Progress(todo) as progress:
        results = extraction.results(mine, on_chunk=progress.chunk)
        if group is not None:
            results = gather_to_main(results, info, math.ceil(todo / info.world_size), group)
        record(results, output, store, [progress, observer], strict=strict)
    if group is not None:
        leave(group)


def stopped(exc: BaseException, store: PartialStore, listed: int) -> int:
    """Say why the run stopped and what it kept; the exit status."""
    store.close()
    saved = len(store.done)
    if isinstance(exc, StrictFailure):
        log.error("%s (%d videos kept in %s)", exc, saved, store.path)
        return EXIT_VIDEOS_FAILED
    log.error("interrupted: %d of %d videos are kept in %s; run the same command again to resume",
              saved, listed, store.path)
    return EXIT_INTERRUPTED


def from_earlier_runs(reused: int, resumed: int, out: Path, store: PartialStore) -> str:
    """``3 reused from feats.pkl, 2 resumed from feats.pkl.partial``, each part only when not 0."""
    parts = [f"{reused} reused from {out.name}" if reused else "",
             f"{resumed} resumed from {store.path.name}" if resumed else ""]
    return ", ".join(filter(None, parts))


def record(results: Iterable[VideoResult], output: OutputFormat, store: PartialStore,
           watchers: Sequence[Progress | RunObserver], *, strict: bool) -> None:
    """Each result, as it comes (shown to the ``watchers``: the progress bar, an observer): its array to a
    streaming output, then its record to the store. ``strict``: a failed video raises :class:`StrictFailure`."""
    with logging_redirect_tqdm(loggers=[log]):
        for result in results:
            for watcher in watchers:
                watcher.video(result)
            feature = result.feature
            details = result.info
            if output.streams and feature is not None:
                output.add(result.key, feature)
                feature, details = None, {**details, **output.entry(result.key)}  # where it went, for a resume
            store.add(VideoResult(result.index, result.key, feature, result.error, details))
            if result.error is not None and strict:
                raise StrictFailure(f"--strict: stopped at {result.key}: {result.error}")


def finish(output: OutputFormat, items: list[VideoItem], store: PartialStore, earlier: Earlier,
           provenance: Meta, *, computed: int, done_before: str, seconds: float) -> int:
    """Write the output (list order) from the store and the earlier output, then its meta sidecar (each video's
    entry read back from the store as it is written: they are never all in memory) and the error report, then
    drop the store and what videos no longer listed left. The format takes the arrays one at a time, in list order."""
    out = output.path
    keys = [it.key for it in items]
    offsets = store.offsets()
    failures: list[Failure] = []
    written = 0

    def arrays() -> Iterator[Row]:
        nonlocal written
        for key, array, entry, error in outcomes(keys, output, store, offsets, earlier, arrays=not output.streams):
            if error is None:
                written += 1
                yield Row(key, array, entry)
            else:
                failures.append(Failure(key, error))

    output.write(arrays())
    entries = outcomes(keys, output, store, offsets, earlier, arrays=False)
    write_meta(out, provenance, ((key, entry) for key, _, entry, error in entries if error is None), failures)
    report = write_error_report(out, failures)
    store.remove()
    output.remove(earlier.dropped.values())
    log.info("%d written, %d failed (%d computed in this run%s), in %.1f s -> %s%s", written, len(failures),
             computed, f", {done_before}" if done_before else "", seconds, out,
             f"; failures listed in {report}" if report else "")
    return EXIT_VIDEOS_FAILED if failures else EXIT_OK


def outcomes(keys: list[str], output: OutputFormat, store: PartialStore, offsets: dict[str, int], earlier: Earlier,
             *, arrays: bool) -> Iterator[tuple[str, Any, VideoEntry | None, str | None]]:
    """``(key, array, meta entry, error)`` of each listed video that has an outcome, in list order: the store's
    latest (``arrays=False`` leaves its array unread), else the earlier output's."""
    for key in keys:
        got = store.read(offsets[key], array=arrays) if key in offsets else None
        if got is not None and got.error is None:
            yield key, got.feature, VideoEntry.from_json({**output.entry(key), **got.info}), None
        elif key in earlier.features:
            yield key, earlier.features[key], earlier.videos[key], None
        elif got is not None:
            yield key, None, None, got.error
