"""The ``featx`` command (and ``tools/misc/clip_feature_extraction.py``): arguments, logging, exit status."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import Any, Sequence

import torch.distributed as dist
from mmengine.config import DictAction

from featx import __version__
from featx.data.video_list import VIDEO_EXTENSIONS
from featx.distributed import LAUNCHER_ENV, DistInfo, launcher_info
from featx.errors import UserError
from featx.extraction import PRECISIONS
from featx.merge import merge
from featx.model_index import find_model, models, resolve_model, table
from featx.registry import DECODERS, FORMATS
from featx.runner import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, EXIT_VIDEOS_FAILED, RunOptions, run
from featx.shards import SHARD_BY

log = logging.getLogger("featx")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="featx",
        description="Extract one clip-level feature vector per video with an MMAction2 config and checkpoint.",
        epilog="Exit status: 0 every video written; 1 some videos failed (the others are written, the failures "
               "listed in OUT.errors.json), or --strict stopped at a failure; 2 bad input (one line says what); "
               "130 interrupted (finished videos are kept in OUT.partial: run the same command to resume).",
    )
    p.add_argument("config", help="MMAction2-style Python config file, or a model name (`featx models` lists them)")
    p.add_argument("checkpoint", nargs="?",
                   help="checkpoint file or http(s):// URL (cached in torch's hub folder); a model name has its own")
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
    p.add_argument("--max-memory", metavar="SIZE",
                   help="the most memory one forward may take, e.g. 4G or 512M (default: half the memory available "
                        "on a CPU, at most 1 GiB; 80%% of the free memory on a GPU); views per forward are "
                        "measured to fit it, the vectors do not change")
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
    p.add_argument("--shard", metavar="K/N|auto",
                   help="take the K-th (from 0) of N contiguous slices of the list, the same on every machine, and "
                        "write OUT's stem.shard-KKKK-of-NNNN output beside OUT (join them with `featx merge`); "
                        "auto: Slurm's SLURM_ARRAY_TASK_ID of SLURM_ARRAY_TASK_COUNT")
    p.add_argument("--shard-by", choices=SHARD_BY, default="count",
                   help="balance the shards by number of videos (default) or by the videos' file sizes")
    p.add_argument("--local-rank", "--local_rank", dest="local_rank", type=int, default=0,
                   help="set by older launchers; torchrun uses LOCAL_RANK")
    p.add_argument("--gpu-collect", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--tmpdir", help=argparse.SUPPRESS)
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("--list-models", action="store_true", help="list the official checkpoints featx knows by name "
                                                                    "(also: featx models [WORD ...])")
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


def options_from(args: argparse.Namespace) -> RunOptions:
    """The run the command line asks for; a model name in place of CONFIG stands for its config and
    official checkpoint (a CHECKPOINT after it replaces the official one)."""
    config, checkpoint = args.config, args.checkpoint
    if not os.path.exists(config) and (checkpoint is None or find_model(config) is not None):
        entry = resolve_model(config)
        config, checkpoint = str(entry.config_path), checkpoint or entry.checkpoint
    if checkpoint is None:
        raise UserError("give CHECKPOINT after CONFIG (a file or URL), or a model name from `featx models` alone")
    return RunOptions(
        config=config, checkpoint=checkpoint, out=args.out, video_list=args.video_list, video_root=args.video_root,
        video_ext=tuple(args.video_ext.split(",")), out_format=args.out_format, per=args.per,
        dense_stride=args.dense_stride, cfg_options=args.cfg_options, fuse_conv_bn=args.fuse_conv_bn,
        device=args.device, precision=args.precision, workers=args.workers, video_timeout=args.video_timeout,
        decoder=args.decoder, decode_order=args.decode_order, strict=args.strict, restart=args.restart,
        launcher=args.launcher, shard=args.shard, shard_by=args.shard_by, max_memory=args.max_memory)


def list_models(argv: Sequence[str]) -> int:
    """``featx models [WORD ...]``: the model index, or the entries whose name or family has every word."""
    words = [w.lower() for w in argv if not w.startswith("-")]
    entries = [e for e in models() if all(w in e.name or w == e.family for w in words)]
    print(table(entries))
    return EXIT_OK if entries else EXIT_USAGE


def merge_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="featx merge",
        description="Join the outputs of one run's shards (--shard K/N) into one output, in list order.",
        epilog="Exit status: 0 every video merged; 1 some videos failed in their shard or are in no shard given "
               "(listed in OUT.errors.json); 2 bad input (shards of other settings or lists, not a shard output).")
    p.add_argument("shards", nargs="+", metavar="SHARD", help="shard outputs (any format, any mix of shard counts)")
    p.add_argument("--out", required=True, help="the merged output; its suffix or --out-format says the format")
    p.add_argument("--out-format", choices=FORMATS.names(), help="output format instead of --out's suffix")
    p.add_argument("--video-list", help="the list the shards were made from, to name the videos of a missing shard "
                                        "(default: the list file the shards recorded, if it is still there)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def merge_command(argv: Sequence[str]) -> int:
    """``featx merge --out OUT SHARD ...``"""
    args = merge_parser().parse_args(argv)
    setup_logging(args.debug)
    try:
        return merge(args.shards, args.out, args.out_format, args.video_list)
    except UserError as exc:
        return _usage_error(exc, args.debug)


def _usage_error(exc: UserError, debug: bool) -> int:
    """One ``featx: error:`` line (and the traceback with --debug); the exit status of bad input."""
    if debug:
        log.exception("error")
    log.error("%s", exc)
    return EXIT_USAGE


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["models"] or "--list-models" in argv:
        return list_models(argv[1:] if argv[:1] == ["models"] else [])
    if argv[:1] == ["merge"]:
        return merge_command(argv[1:])
    args = build_parser().parse_args(argv)
    setup_logging(args.debug)
    # Slurm pre-emption and kill stop the run like Ctrl-C; once it has returned, during the interpreter's
    # exit, a SIGTERM gets the handling it had before (a KeyboardInterrupt there would interrupt teardown)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
        options = options_from(args)
        if options.launcher != "none":  # every line names its rank from the start
            setup_logging(args.debug, launcher_info(options.launcher))
        return run(options)
    except UserError as exc:
        return _usage_error(exc, args.debug)
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
