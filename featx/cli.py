"""The ``featx`` command (and ``tools/misc/clip_feature_extraction.py``): arguments, logging, exit status."""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from typing import Sequence

import torch
from mmengine.config import DictAction
from tqdm.contrib.logging import logging_redirect_tqdm

from featx import __version__
from featx.config import load_config
from featx.data import read_video_list
from featx.errors import UserError
from featx.extract import FeatureExtractor, PRECISIONS, iter_results, make_loader, prepare_model, resolve_precision, select_device
from featx.output import check_output_path, write_features

log = logging.getLogger("featx")

EXIT_OK, EXIT_VIDEOS_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="featx",
        description="Extract one clip-level feature vector per video with an MMAction2 config and checkpoint.",
    )
    p.add_argument("config", help="MMAction2-style Python config file")
    p.add_argument("checkpoint", help="checkpoint file or http(s):// URL (cached in torch's hub folder)")
    p.add_argument("--video-list", required=True, help="text file, one video path per line (relative to --video-root)")
    p.add_argument("--video-root", default="", help="folder the listed paths are relative to")
    p.add_argument("--out", required=True, help="output file: .pkl/.pickle (dict of float32 vectors) or .json")
    p.add_argument("--cfg-options", nargs="+", action=DictAction, default={},
                   help="override config values, e.g. data.workers_per_gpu=4 model.test_cfg.max_testing_views=10")
    p.add_argument("--fuse-conv-bn", action="store_true", help="fold BatchNorm into the convolutions (same output, faster)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available, else cpu)")
    p.add_argument("--precision", choices=sorted(PRECISIONS), default=None,
                   help="compute precision (default fp32, or fp16 on a GPU when the config sets fp16)")
    p.add_argument("--workers", type=int, default=None, help="decoding worker processes (default: data.workers_per_gpu)")
    p.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none", help="job launcher")
    p.add_argument("--local-rank", "--local_rank", dest="local_rank", type=int, default=0,
                   help="set by older launchers; torchrun uses LOCAL_RANK")
    p.add_argument("--gpu-collect", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--tmpdir", help=argparse.SUPPRESS)
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("--version", action="version", version=f"featx {__version__}")
    return p


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        level = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        return f"featx: {level}{record.getMessage()}"


def setup_logging(debug: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    root = logging.getLogger("featx")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    root.propagate = False


def run(args: argparse.Namespace) -> int:
    """Extract features for every listed video and write them; return the exit status."""
    os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    if args.launcher != "none":
        raise UserError(f"--launcher {args.launcher}: distributed runs are not supported yet")
    cfg = load_config(args.config, args.cfg_options)
    out = check_output_path(args.out)
    items = read_video_list(args.video_list, args.video_root)
    device = select_device(args.device)
    precision = resolve_precision(args.precision, cfg, device)
    torch.backends.cudnn.benchmark = bool(cfg.get("cudnn_benchmark", False))
    model, ckpt = prepare_model(cfg, args.checkpoint, device, fuse=args.fuse_conv_bn)
    log.info("%d videos, model %s from %s, on %s (%s)", len(items), cfg.model.type, ckpt, device, precision)
    loader = make_loader(cfg, items, workers=args.workers, device=device)
    features, failed = {}, []
    start = time.monotonic()
    with logging_redirect_tqdm(loggers=[log]):
        for result in iter_results(FeatureExtractor(model, device, precision), loader, len(items)):
            if result.error is None:
                features[result.key] = result.feature
            else:
                failed.append(result.key)
    write_features(out, features)
    log.info("%d written, %d failed, in %.1f s -> %s", len(features), len(failed), time.monotonic() - start, out)
    return EXIT_VIDEOS_FAILED if failed else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.debug)
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


if __name__ == "__main__":
    sys.exit(main())
