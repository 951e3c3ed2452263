"""The GPU check: the CUDA path on real hardware, in one command (sized for under 8 minutes on one GPU).

Not run on a GPU yet: none was available to this work.

    python benchmarks/gpu_check.py --out gpu_check.json

Checks, each recorded in the JSON (``ok``, figures) and the exit status (1 when one fails):
``parity``: the golden cases (tests/data/golden, checkpoints by the fixtures' rule) on ``--device cuda`` in
float32 with TF32 off, within 1e-4 of MMAction2's vectors; ``precision``: bf16 and fp16 against float32
(cosine per video); ``speed``: videos/s of the reference-style loop, featx's default and featx fp16 on
generated videos at 320x240 and 1280x720, with the share of the wall time the GPU waited for decoded
videos, and peak CUDA memory; ``out_of_memory``: a GPU capped to a fraction of its memory runs a 250-view
config by halving its views per forward, to the same vectors; ``torchrun``: a 1-process ``torchrun`` run
equals the single-process one. ``--skip-cuda`` runs what needs no GPU on the CPU (a couple of golden
cases, bf16, the speed variants on small videos): the test suite runs it so, with ``--clips 3``.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]

import featx  # noqa: E402
from bench_extract import cosine, make_videos, random_checkpoint, rel_diff, run_baseline, run_featx  # noqa: E402
from featx.config import read_config  # noqa: E402
from featx.data import VideoItem  # noqa: E402
from featx.runner import RunOptions, extract_features  # noqa: E402
from helpers import GOLDEN, VIDEOS, case_config, golden_features, rel_error, write_golden_checkpoint  # noqa: E402

log = logging.getLogger("gpu_check")
TOLERANCE = 1e-4
MIN_COSINE = 0.999  # bf16 / fp16 against float32, per video
CI_VIDEOS = ["h264_176x144_18frames.mp4", "h264_426x240_24fps.mp4"]
SPEED_CONFIG = "configs/recognition/tsn/tsn_r50_clip_feature_extraction_1x1x3_rgb.py"
MANY_VIEWS = "configs/recognition/tsn/tsn_r50_1x1x3_100e_kinetics400_rgb.py"  # 25 clips x 10 crops


def check_parity(cases: list[str], device: str, folder: Path) -> dict[str, Any]:
    """Each golden case's vectors on ``device`` (float32, TF32 off) against MMAction2's."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    errors = {}
    for case in cases:
        config, cfg_options = case_config(case)
        expected = {k: v for k, v in golden_features(case).items() if k in CI_VIDEOS and v is not None}
        checkpoint = write_golden_checkpoint(case, folder / f"{case}.pth")
        got = extract_features(RunOptions(str(ROOT / config), str(checkpoint), videos=sorted(expected),
                                          video_root=str(VIDEOS), cfg_options=cfg_options, device=device,
                                          precision="fp32", workers=0)).features
        errors[case] = max(rel_error(got[k], v) for k, v in expected.items()) if set(got) == set(expected) else None
        log.info("parity %s: %s", case, errors[case])
    ok = all(e is not None and e <= TOLERANCE for e in errors.values())
    return {"ok": ok, "tolerance": TOLERANCE, "max_rel_error": errors}


def speed_cfg_options(clips: int | None) -> dict[str, Any]:
    """SPEED_CONFIG's --cfg-options for ``--clips`` (its SampleFrames' num_clips; none: the config's 25)."""
    return {} if clips is None else {"data.test.pipeline.1.num_clips": clips}


def check_precision(precisions: list[str], device: str, items: list[VideoItem], checkpoint: str,
                    clips: int | None = None) -> dict[str, Any]:
    """Cosine of each precision's vectors to float32's, the worst video."""
    def run(precision: str) -> dict[str, np.ndarray]:
        return extract_features(RunOptions(str(ROOT / SPEED_CONFIG), checkpoint, videos=[i.path for i in items],
                                           cfg_options=speed_cfg_options(clips), device=device,
                                           precision=precision)).features

    fp32 = run("fp32")
    cosines = {p: cosine(run(p), fp32) for p in precisions}
    return {"ok": all(c >= MIN_COSINE for c in cosines.values()), "min_cosine": cosines, "bar": MIN_COSINE}


def check_speed(device: str, sizes: list[str], videos: int, seconds: float, folder: Path,
                with_fp16: bool, clips: int | None = None) -> dict[str, Any]:
    """videos/s of the reference-style loop, featx default and featx fp16, and the share of time waiting for data."""
    checkpoint = random_checkpoint(read_config(ROOT / SPEED_CONFIG), folder)
    base = RunOptions(str(ROOT / SPEED_CONFIG), checkpoint, cfg_options=speed_cfg_options(clips), device=device)
    figures = {}
    for size in sizes:
        w, h = (int(v) for v in size.split("x"))
        sub = folder / size
        sub.mkdir()
        items = make_videos(sub, videos, (w, h), seconds, 30)
        runs: list[tuple[str, Callable[[], dict[str, Any]]]] = [
            ("baseline", lambda: run_baseline(base, items)), ("default", lambda: run_featx("default", base, items))]
        if with_fp16:
            runs.append(("fp16", lambda: run_featx("fp16", replace(base, precision="fp16"), items)))
        results = {}
        for name, fn in runs:
            if device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            r = fn()
            waiting = r["stages_s"]["idle (waiting for data)"]
            results[name] = {"videos_per_s": r["videos_per_s"], "waiting_share": waiting / r["seconds"],
                             "peak_rss_mib": r["peak_rss_mib"], "vectors": r["vectors"],
                             "peak_cuda_mib": torch.cuda.max_memory_allocated() / 2**20
                             if device.startswith("cuda") else None}
        reference = results["baseline"].pop("vectors")
        for name in results:
            vectors = results[name].pop("vectors", reference)
            results[name]["max_rel_diff"] = rel_diff(vectors, reference)
        figures[size] = results
        log.info("speed %s: %s", size, results)
    ok = all(r["default"]["max_rel_diff"] <= TOLERANCE for r in figures.values())
    return {"ok": ok, "videos": videos, "seconds": seconds, "config": SPEED_CONFIG, "clips": clips or 25,
            "figures": figures}


def check_out_of_memory(device: str, folder: Path) -> dict[str, Any]:
    """250 views in one forward on a GPU allowed 3 GiB: the views per forward halve until they fit, same vectors."""
    checkpoint = random_checkpoint(read_config(ROOT / MANY_VIEWS), folder)
    options = RunOptions(str(ROOT / MANY_VIEWS), checkpoint, videos=[str(VIDEOS / CI_VIDEOS[1])], device=device)
    bounded = extract_features(options).features
    total = torch.cuda.get_device_properties(torch.device(device)).total_memory
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(min(1.0, 3 * 2**30 / total), torch.device(device))
    try:
        capped = extract_features(replace(options, max_memory="1T")).features
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, torch.device(device))
    diff = rel_diff(capped, bounded) if set(capped) == set(bounded) else None
    return {"ok": diff is not None and diff <= 1e-6, "max_rel_diff": diff}


def check_torchrun(device: str, folder: Path) -> dict[str, Any]:
    """``torchrun --nproc_per_node 1`` gives the single-process run's vectors."""
    checkpoint = random_checkpoint(read_config(ROOT / SPEED_CONFIG), folder)
    videos = [str(VIDEOS / name) for name in CI_VIDEOS]
    listing = folder / "videos.txt"
    listing.write_text("\n".join(videos) + "\n")
    common = [str(ROOT / SPEED_CONFIG), checkpoint, "--video-list", str(listing), "--device", device]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    single = subprocess.run([sys.executable, "-m", "featx.cli", *common, "--out", str(folder / "single.pkl")],
                            env=env, capture_output=True, text=True)
    ran = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1", "-m", "featx.cli",
                          *common, "--launcher", "pytorch", "--out", str(folder / "torchrun.pkl")],
                         env=env, capture_output=True, text=True)
    if single.returncode or ran.returncode:
        return {"ok": False, "stderr": (single.stderr + ran.stderr)[-2000:]}
    a, _ = featx.load(folder / "single.pkl")
    b, _ = featx.load(folder / "torchrun.pkl")
    diff = rel_diff(b, a) if set(a) == set(b) else None
    return {"ok": diff is not None and diff <= 1e-6, "max_rel_diff": diff}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="the JSON written")
    p.add_argument("--skip-cuda", action="store_true",
                   help="run on the CPU what needs no GPU (parity, bf16, speed): no fp16, out of memory, torchrun")
    p.add_argument("--cases", help="golden cases, comma-separated (default: all but the 800-view dense TSN)")
    p.add_argument("--videos", type=int, default=20, help="generated videos per size for the speed check")
    p.add_argument("--seconds", type=float, default=10.0, help="their length")
    p.add_argument("--sizes", default="320x240,1280x720")
    p.add_argument("--clips", type=int, help="clips a video in the precision and speed checks (default: the "
                                             "config's 25; fewer for a quick run on a CPU)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    device = "cpu" if args.skip_cuda else "cuda"
    if not args.skip_cuda and not torch.cuda.is_available():
        p.error("no CUDA GPU here: give --skip-cuda to run the checks that need none")
    cases = args.cases.split(",") if args.cases else sorted(
        n.name.split(".")[0] for n in GOLDEN.glob("*.seed0.features.pkl") if not n.name.startswith("tsn_r50_dense"))
    report: dict[str, Any] = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
                              "torch": torch.__version__, "date": time.strftime("%Y-%m-%d")}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="featx-gpu-check-") as tmp:
        folder = Path(tmp)
        speed_items = [VideoItem(n, str(VIDEOS / n)) for n in CI_VIDEOS]
        checkpoint = random_checkpoint(read_config(ROOT / SPEED_CONFIG), folder)
        checks: dict[str, Callable[[], dict[str, Any]]] = {
            "parity": lambda: check_parity(cases, device, folder),
            "precision": lambda: check_precision(["bf16"] if args.skip_cuda else ["bf16", "fp16"], device,
                                                 speed_items, checkpoint, args.clips),
            "speed": lambda: check_speed(device, args.sizes.split(","), args.videos, args.seconds, folder,
                                         with_fp16=not args.skip_cuda, clips=args.clips),
        }
        if not args.skip_cuda:
            checks["out_of_memory"] = lambda: check_out_of_memory(device, folder)
            checks["torchrun"] = lambda: check_torchrun(device, folder)
        for name, fn in checks.items():
            began = time.perf_counter()
            try:
                report[name] = fn()
            except Exception as exc:  # a check that crashes is a failed check; the others still run
                log.exception("%s failed", name)
                report[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            report[name]["seconds"] = time.perf_counter() - began
            log.info("%s: %s", name, "ok" if report[name]["ok"] else "FAILED")
    report["seconds"] = time.perf_counter() - start
    report["ok"] = all(report[name]["ok"] for name in checks)
    Path(args.out).write_text(json.dumps(report, indent=1, default=float))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
