"""The ``featx`` command (and ``tools/misc/clip_feature_extraction.py``): arguments, logging, exit status."""
from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import signal
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
import torch.distributed as dist
from mmengine.config import Config, DictAction
from tqdm.contrib.logging import logging_redirect_tqdm

from featx import __version__
from featx.checkpoint import file_sha256
from featx.config import LoaderSettings, describe_views, load_config, use_dense_sampling
from featx.data import VideoDataset, VideoItem, build_pipeline, decoded_samples, find_videos, read_video_list
from featx.data.video_list import VIDEO_EXTENSIONS
from featx.data.pipeline import split_normalize
from featx.distributed import (LAUNCHER_ENV, DistInfo, broadcast_from_main, gather_to_main, init_distributed,
                               leave, object_group, shard)
from featx.errors import UserError
from featx.extract import (PRECISIONS, FeatureExtractor, Progress, VideoResult, batched, decode_workers, extract,
                           prepare_model, resolve_precision, select_device)
from featx.hostmem import keep_freed_memory
from featx.output import OutputFormat, meta_path, open_output, sidecar, write_error_report, write_json
from featx.registry import DECODERS, FORMATS
from featx.reuse import Earlier, earlier_output
from featx.store import PartialStore, Record, fingerprint
from featx.wording import count

log = logging.getLogger("featx")

EXIT_OK, EXIT_VIDEOS_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="featx",
        description="Extract one clip-level feature vector per video with an MMAction2 config and checkpoint.",
        epilog="Exit status: 0 every video written; 1 some videos failed (the others are written, the failures "
               "listed in OUT.errors.json), or --strict stopped at a failure; 2 bad input (one line says what); "
               "130 interrupted (finished videos are kept in OUT.partial: run the same command to resume).",
    )
    p.add_argument("config", help="MMAction2-style Python config file")
    p.add_argument("checkpoint", help="checkpoint file or http(s):// URL (cached in torch's hub folder)")
    p.add_argument("--video-list", help="text file, one video path per line (relative to --video-root, or absolute); "
                                        "without it, every video file under --video-root, sorted")
    p.add_argument("--video-root", default="", help="folder the listed paths are relative to")
    p.add_argument("--video-ext", default=",".join(VIDEO_EXTENSIONS),
                   help="file suffixes taken when --video-root is walked (default: %(default)s)")
    p.add_argument("--out", required=True,
                   help="output: .pkl/.pickle (dict of float32 arrays), .json, .npz, .h5, or a folder (ending in /) "
                        "of .npy files; OUT.meta.json says how it was made")
    p.add_argument("--out-format", choices=FORMATS.names(),
                   help="output format instead of --out's suffix; 'list' writes MMAction2's list in list order")
    per = p.add_mutually_exclusive_group()
    per.add_argument("--per-clip", dest="per", action="store_const", const="clip", default="video",
                     help="one vector per sampled clip (averaged over its crops): arrays (clips, D)")
    per.add_argument("--per-view", dest="per", action="store_const", const="view",
                     help="one vector per clip and crop: arrays (clips, crops, D)")
    p.add_argument("--dense-stride", metavar="N|Ns",
                   help="sample clips over the whole video, one every N frames (16) or N seconds (0.5s), "
                        "instead of the config's num_clips (memory-bounded for long videos)")
    p.add_argument("--cfg-options", nargs="+", action=DictAction, default={},
                   help="override config values, e.g. data.workers_per_gpu=4 model.test_cfg.max_testing_views=10")
    p.add_argument("--fuse-conv-bn", action=argparse.BooleanOptionalAction, default=True,
                   help="fold BatchNorm into the convolutions (default on: same vectors to float rounding, faster)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available, else cpu)")
    p.add_argument("--precision", choices=sorted(PRECISIONS), default=None,
                   help="compute precision (default fp32, or fp16 on a GPU when the config sets fp16)")
    p.add_argument("--workers", type=int, default=None,
                   help="decoding processes (default: data.workers_per_gpu on a CPU; on a GPU, one per core of this "
                        "process's share, at least that); 0 decodes in this process, without a time limit")
    p.add_argument("--video-timeout", type=float, default=300.0,
                   help="seconds one video (or one chunk of a dense-sampled one) may take to decode before its worker "
                     "is killed and the video skipped (default 300)")
    p.add_argument("--decoder", choices=DECODERS.names(),
                   help="video decoder instead of the config's (DecordInit: decord, as the reference; PyAVInit: pyav, "
                        "which honours mp4 edit lists; OpenCVInit: opencv)")
    p.add_argument("--decode-order", choices=["list", "sorted"], default="list",
                   help="ask the decoder for frames in the sampler's order (default, as the reference) or sorted "
                        "(fewer seeks: faster for multi-frame clips, but see the README for damaged files)")
    p.add_argument("--strict", action="store_true", help="stop at the first video that fails (exit 1)")
    p.add_argument("--restart", action="store_true", help="discard results of an earlier interrupted run instead of resuming")
    p.add_argument("--launcher", choices=["none", *LAUNCHER_ENV], default="none", help="job launcher (see README)")
    p.add_argument("--local-rank", "--local_rank", dest="local_rank", type=int, default=0,
                   help="set by older launchers; torchrun uses LOCAL_RANK")
    p.add_argument("--gpu-collect", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--tmpdir", help=argparse.SUPPRESS)
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("--version", action="version", version=f"featx {__version__}")
    return p


class _Formatter(logging.Formatter):
    def __init__(self, rank: int | None) -> None:
        super().__init__()
        self.prefix = "featx" if rank is None else f"featx[rank {rank}]"

    def format(self, record: logging.LogRecord) -> str:
        level = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        return f"{self.prefix}: {level}{record.getMessage()}"


def setup_logging(debug: bool, info: DistInfo | None = None) -> None:
    """featx's one-line messages on stderr; in a distributed run, each line names its rank."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(info.rank if info and info.world_size > 1 else None))
    root = logging.getLogger("featx")
    root.handlers[:] = [handler]
    quiet = info is not None and not info.is_main  # only rank 0 reports progress; every rank reports problems
    root.setLevel(logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO)
    root.propagate = False


class StrictFailure(Exception):
    """--strict: a video failed."""


def run(args: argparse.Namespace) -> int:
    """Extract features for every listed video and write them; return the exit status."""
    os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    if args.video_timeout <= 0:
        raise UserError(f"--video-timeout {args.video_timeout:g}: must be more than 0 seconds")
    cfg = load_config(args.config, args.cfg_options)
    if args.dense_stride is not None:
        use_dense_sampling(cfg, args.dense_stride)
    pipeline, normalize = split_normalize(build_pipeline(cfg.data.test.pipeline, decoder=args.decoder,
                                                          decode_order=args.decode_order))
    decoder = next((step.backend for step in pipeline.find("open")), "none")
    items = listed_videos(args)
    output = open_output(args.out, args.out_format, [it.key for it in items])
    out = output.path
    device = select_device(args.device)
    info = DistInfo()
    if args.launcher != "none":
        info, device = init_distributed(args.launcher, device, cfg.get("dist_params", {}).get("backend"))
        setup_logging(args.debug, info)
    precision = resolve_precision(args.precision, cfg, device)
    torch.backends.cudnn.benchmark = bool(cfg.get("cudnn_benchmark", False))
    if device.type == "cpu":
        keep_freed_memory()
    model, ckpt = prepare_model(cfg, args.checkpoint, device, fuse=args.fuse_conv_bn, precision=precision)
    settings = LoaderSettings.from_config(cfg)
    workers = decode_workers(args.workers, settings.workers_per_gpu, device)
    if workers < 0:
        raise UserError(f"--workers {workers}: must be 0 or more")

    checkpoint_sha256 = file_sha256(ckpt)
    marks = fingerprint(cfg.model.to_dict(), cfg.data.test.pipeline, checkpoint_sha256, precision=precision,
                        fuse_conv_bn=args.fuse_conv_bn, decoder=decoder, decode_order=args.decode_order,
                        video_root=os.path.abspath(args.video_root), per=args.per, folder_output=output.streams)
    store, earlier = None, Earlier()
    if info.is_main:
        earlier = earlier_output(output, marks, restart=args.restart)
        store = PartialStore(sidecar(out, "partial"), marks, restart=args.restart)
        if store.discarded or earlier.discarded:  # --restart
            where = [f"{n} in {name}" for n, name in [(earlier.discarded, out.name), (store.discarded, store.path.name)]
                     if n]
            log.info("--restart: discarded %s (%s)", count(store.discarded + earlier.discarded, "earlier result"),
                     ", ".join(where))
    todo = [i for i, item in enumerate(items)
            if store is None or (item.key not in store.done and item.key not in earlier.features)]
    group = None
    if info.world_size > 1:
        group = object_group()
        todo = broadcast_from_main(todo, group)
    mine = shard([items[i] for i in todo], info)
    done_before = ""
    if store is not None:
        done_before = from_earlier_runs(len(earlier.features), len(items) - len(todo) - len(earlier.features), out,
                                        store)
        work = (f"{count(len(items), 'video')} listed, {len(todo)} to compute ({done_before})" if done_before
                else f"{count(len(todo), 'video')} to compute")
        log.info("%s; config %s (%s); checkpoint %s; %s (%s), %s, %s%s", work, args.config,
                 ", ".join(filter(None, [cfg.model.type, describe_views(cfg.data.test.pipeline)])), ckpt, device,
                 precision, count(info.world_size, "process", "processes"), count(workers, "decoding worker"),
                 " each" if info.world_size > 1 else "")

    start = time.monotonic()
    samples = decoded_samples(VideoDataset(mine, pipeline), workers, args.video_timeout)
    extractor = FeatureExtractor(model, device, precision, normalize, per=args.per)
    with Progress(len(todo)) if store is not None else contextlib.nullcontext() as progress:
        results = extract(extractor, batched(samples, max(1, settings.videos_per_gpu)),
                          on_chunk=progress.chunk if progress is not None else None)
        if group is not None:
            results = gather_to_main(results, info, math.ceil(len(todo) / info.world_size), group)
        if store is None:
            for _ in results:  # this rank's results go to rank 0
                pass
            leave(group)
            return EXIT_OK
        try:
            record(results, output, store, progress, strict=args.strict)
            if group is not None:
                leave(group)
        except (KeyboardInterrupt, StrictFailure) as exc:
            store.close()
            saved = len(store.done)
            if isinstance(exc, StrictFailure):
                log.error("%s (%d videos kept in %s)", exc, saved, store.path)
                return EXIT_VIDEOS_FAILED
            log.error("interrupted: %d of %d videos are kept in %s; run the same command again to resume",
                      saved, len(items), store.path)
            return EXIT_INTERRUPTED
    provenance = describe_run(args, cfg, output, ckpt, checkpoint_sha256, marks, precision=precision, device=device,
                              processes=info.world_size, decoder=decoder)
    return finish(output, items, store, earlier, provenance, computed=len(todo), done_before=done_before,
                  seconds=time.monotonic() - start)


def from_earlier_runs(reused: int, resumed: int, out: Path, store: PartialStore) -> str:
    """``3 reused from feats.pkl, 2 resumed from feats.pkl.partial``, each part only when not 0."""
    parts = [f"{reused} reused from {out.name}" if reused else "",
             f"{resumed} resumed from {store.path.name}" if resumed else ""]
    return ", ".join(filter(None, parts))


def listed_videos(args: argparse.Namespace) -> list[VideoItem]:
    """The videos to extract: ``--video-list``'s lines, or every video file under ``--video-root``."""
    if args.video_list is not None:
        if args.video_root and not os.path.isdir(args.video_root):
            raise UserError(f"--video-root {args.video_root}: no such folder")
        items = read_video_list(args.video_list, args.video_root)
        if not any(os.path.exists(it.path) for it in items):  # stops at the first that exists
            root = f"--video-root {args.video_root}" if args.video_root else "the current folder (no --video-root)"
            raise UserError(f"not one of the {len(items)} listed videos exists, the first is not at {items[0].path}: "
                            f"check {root} and the paths in {args.video_list}")
        return items
    if args.video_root:
        return find_videos(args.video_root, tuple(e.strip() for e in args.video_ext.split(",") if e.strip()))
    raise UserError("give --video-list, or --video-root alone to take every video file under it")


def record(results: Iterable[VideoResult], output: OutputFormat, store: PartialStore, progress: Progress, *,
           strict: bool) -> None:
    """Each result, as it comes (on the progress bar): its array to a streaming output, then its record to the
    store. ``strict``: a failed video raises :class:`StrictFailure`."""
    with logging_redirect_tqdm(loggers=[log]):
        for result in results:
            progress.video(result)
            feature = result.feature
            details = result.info
            if output.streams and feature is not None:
                output.add(result.key, feature)
                feature, details = None, {**details, **output.entry(result.key)}  # where it went, for a resume
            store.add(Record(result.key, feature, result.error, details))
            if result.error is not None and strict:
                raise StrictFailure(f"--strict: stopped at {result.key}: {result.error}")


def describe_run(args: argparse.Namespace, cfg: Config, output: OutputFormat, ckpt: Path, checkpoint_sha256: str,
                 marks: dict[str, Any], *, precision: str, device: torch.device, processes: int,
                 decoder: str) -> dict[str, Any]:
    """What the meta sidecar records of how the output was made (its ``videos`` come from the store and the
    earlier output); ``marks``: the fingerprint a rerun compares to reuse it."""
    return {
        "featx_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "format": FORMATS.name_of(type(output)),
        "per": args.per,
        "config_file": os.path.abspath(args.config),
        "checkpoint": args.checkpoint,
        "checkpoint_file": str(ckpt),
        "checkpoint_sha256": checkpoint_sha256,
        "precision": precision,
        "device": str(device),
        "processes": processes,
        "decoder": decoder,
        "decode_order": args.decode_order,
        "fuse_conv_bn": args.fuse_conv_bn,
        "video_root": os.path.abspath(args.video_root),
        "config": cfg.pretty_text,
        "fingerprint": marks,
    }


def finish(output: OutputFormat, items: list[VideoItem], store: PartialStore, earlier: Earlier,
           provenance: dict[str, Any], *, computed: int, done_before: str, seconds: float) -> int:
    """Write the output (list order) from the store and the earlier output, its meta sidecar and the error
    report, then drop the store and what videos no longer listed left."""
    out = output.path
    records = store.records()
    arrays: dict[str, Any] = {}
    videos: dict[str, dict[str, Any]] = {}
    failures: list[tuple[str, str]] = []
    for key in (it.key for it in items):
        got = records.get(key)
        if got is not None and got.error is None:
            arrays[key], videos[key] = got.array, {**output.entry(key), **(got.info or {})}
        elif key in earlier.features:
            arrays[key], videos[key] = earlier.features[key], earlier.videos[key]
        elif got is not None:
            failures.append((key, got.error))
    output.write(arrays if not output.streams else {})
    write_json(meta_path(out), {**provenance, "videos": videos, "failed": [{"video": k, "reason": r} for k, r in failures]})
    report = write_error_report(out, failures)
    store.remove()
    output.remove(earlier.dropped.values())
    log.info("%d written, %d failed (%d computed in this run%s), in %.1f s -> %s%s", len(videos), len(failures),
             computed, f", {done_before}" if done_before else "", seconds, out,
             f"; failures listed in {report}" if report else "")
    return EXIT_VIDEOS_FAILED if failures else EXIT_OK


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.debug)
    # Slurm pre-emption and kill stop the run like Ctrl-C; once it has returned, during the interpreter's
    # exit, a SIGTERM gets the handling it had before (a KeyboardInterrupt there would interrupt teardown)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return run(args)
    except UserError as exc:
        if args.debug:
            log.exception("error")
        log.error("%s", exc)
        return EXIT_USAGE
    except KeyboardInterrupt:
        log.error("interrupted")
        return EXIT_INTERRUPTED
    except dist.DistBackendError as exc:
        if args.debug:
            log.exception("error")
        log.error("lost contact with another process of the job (it failed: see its message): %s",
                  str(exc).splitlines()[0])
        return EXIT_VIDEOS_FAILED
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
