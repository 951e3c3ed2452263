"""``make demo``: extract TSN features of the bundled sample videos and show what was written.

Uses the official Kinetics-400 TSN checkpoint when it can be downloaded; offline, it says so
and uses a randomly initialised model instead (its features mean nothing, but every other step is real).
"""
from __future__ import annotations

import argparse
import logging
import socket
import sys
from pathlib import Path

import torch

from featx.checkpoint import resolve_checkpoint
from featx.cli import setup_logging
from featx.config import read_config
from featx.errors import UserError
from featx.model_index import CONFIGS
from featx.models import build_model
from featx.outputs import load
from featx.runner import EXIT_USAGE, RunOptions, run

log = logging.getLogger("featx.demo")

CONFIG = str(CONFIGS / "recognition/tsn/tsn_r50_clip_feature_extraction_1x1x3_rgb.py")
CHECKPOINT_URL = (
    "https://download.openmmlab.com/mmaction/recognition/tsn/tsn_r50_320p_1x1x3_100e_kinetics400_rgb/"
    "tsn_r50_320p_1x1x3_100e_kinetics400_rgb_20200702-cc665e2a.pth"
)


def official_or_random_checkpoint(out_dir: Path) -> tuple[str, bool]:
    """The official checkpoint if reachable, else a seeded random one written to ``out_dir``; (path, is_random)."""
    socket.setdefaulttimeout(20)
    try:
        return str(resolve_checkpoint(CHECKPOINT_URL)), False
    except UserError as exc:
        log.warning("offline (%s): using a RANDOMLY INITIALISED model, its features are not meaningful", exc)
    torch.manual_seed(0)
    model = build_model(read_config(CONFIG).model)
    path = out_dir / "random_tsn_r50.pth"
    torch.save({"state_dict": model.state_dict()}, path)
    return str(path), True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--video-root", default="tests/data/videos")
    p.add_argument("--out-dir", default="demo_out")
    args = p.parse_args(argv)
    setup_logging(debug=False)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    videos = sorted(p.name for p in Path(args.video_root).iterdir() if p.suffix in {".mp4", ".avi"})
    video_list = out_dir / "videos.txt"
    video_list.write_text("".join(f"{v}\n" for v in videos))
    checkpoint, is_random = official_or_random_checkpoint(out_dir)
    out = out_dir / "features.pkl"
    # restart: a rerun may have other weights (online now, offline before), which featx would refuse to mix
    try:
        status = run(RunOptions(CONFIG, checkpoint, out=str(out), video_list=str(video_list),
                                video_root=args.video_root, restart=True))
    except UserError as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    features = load(out).features
    weights = "RANDOM weights (offline)" if is_random else "official Kinetics-400 TSN weights"
    print(f"\n{out}: {len(features)} videos, {weights}")
    for key, vector in features.items():
        head = ", ".join(f"{x:.4g}" for x in vector[:4])
        print(f"  {key:32s} {vector.dtype} {vector.shape}  [{head}, ...]")
    return status


if __name__ == "__main__":
    sys.exit(main())
