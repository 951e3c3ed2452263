"""Benchmark: MMAction2 0.x's extraction loop against featx's default path, in one process.

    python benchmarks/bench_extract.py --config configs/recognition/tsn/tsn_r50_clip_feature_extraction_1x1x3_rgb.py \
        --videos 20 --size 320x240 --seconds 10

Videos are generated (H.264, moving content) into a temporary folder unless --video-list and
--video-root name the user's own. Without --checkpoint the model has seeded random weights. Each
variant prints videos/s, seconds per stage (summed over videos; decode and transform run in worker
processes, so they overlap the forward), peak RSS, the largest relative difference of its vectors from
the baseline's, the speed-up over the ``default`` variant and the forward's GFLOP/s (the plain
model's FLOPs of a view, counted once, times the views computed, over the forward's seconds); then
one JSON line with everything.

Variants: ``baseline`` does what the reference loop does (torch DataLoader with workers_per_gpu
workers, one video per batch, float32 normalisation on the host, NCHW, no BatchNorm folding,
frames requested in the sampler's order); ``default`` is featx as a user runs it; ``bf16`` is the
default with ``--precision bf16``; ``sorted`` the default with ``--decode-order sorted``, ``bf16-sorted``
with both; ``torchcodec`` the default with
``--decoder torchcodec`` (its decode seconds against the default's are decord against torchcodec); ``1worker``
the default with one decoding process; ``glibc-malloc`` the default with glibc's allocator left as it
is (the CLI makes it keep freed memory on a CPU); ``unbounded`` the default with every view of a batch
in one forward (``max_memory`` 1T), ``small-forwards`` in forwards of 64 MiB (a view group or a few), ``large-forwards`` of 4 GiB (where every view in one forward
would not fit the machine); ``per-video`` the default without cross-video batching (one
video's views per batch, ``videos_per_gpu``). The baseline runs first, then ``glibc-malloc``.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import av
import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from featx.config import read_config  # noqa: E402
from featx.data import VideoDataset, VideoItem, build_pipeline, read_video_list  # noqa: E402
from featx.memory import ForwardSize  # noqa: E402
from featx.extraction import FeatureExtractor, batched, extract, prepare_model, select_device  # noqa: E402
from featx.result import VideoResult  # noqa: E402
from featx.models import build_model, view_group  # noqa: E402
from featx.registry import TRANSFORMS  # noqa: E402
from featx.runner import Extraction, RunOptions  # noqa: E402


def make_videos(folder: Path, count: int, size: tuple[int, int], seconds: float, fps: int) -> list[VideoItem]:
    """``count`` H.264 videos of a textured scene panning and brightening, so decoding does real work."""
    w, h = size
    rng = np.random.default_rng(0)
    items = []
    for n in range(count):
        texture = rng.integers(0, 256, (h + 64, w + 64, 3), dtype=np.uint8)
        texture = ((texture.astype(np.uint16) + np.roll(texture, 1, 0) + np.roll(texture, 1, 1)) // 3).astype(np.uint8)
        path = folder / f"bench_{n:03d}.mp4"
        with av.open(str(path), "w") as out:
            stream = out.add_stream("libx264", rate=fps, options={"preset": "veryfast", "crf": "23"})
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            for t in range(int(seconds * fps)):
                dy, dx = (t * 2) % 64, (t * 3) % 64
                frame = np.ascontiguousarray(texture[dy:dy + h, dx:dx + w])
                out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            out.mux(stream.encode())
        items.append(VideoItem(path.name, str(path)))
    return items


def random_checkpoint(config: Any, folder: Path) -> str:
    torch.manual_seed(0)
    path = folder / "random_weights.pth"
    torch.save({"state_dict": build_model(config.model).state_dict()}, path)
    return str(path)


def peak_rss_reset() -> None:
    """Reset this process's peak RSS (Linux: writing 5 to clear_refs)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def flops_per_view(config: Any, items: list[VideoItem]) -> float:
    """The FLOPs of one view of the first video through the plain model (one view group, divided by its size)."""
    imgs = torch.as_tensor(VideoDataset(items, build_pipeline(config.pipeline, transforms=config.transforms))
                           .load((0, 0)).imgs)
    group = view_group(config.model)
    model = build_model(config.model).eval()
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model.forward_views(imgs[None, :group].float())
    return counter.get_total_flops() / group


def measure(name: str, results: Iterator[VideoResult], timings: dict[str, float]) -> dict[str, Any]:
    """Consume ``results`` (every video's); time the run, and sum the stages ``timings`` collected meanwhile:
    the pipeline's steps (run in the decoding workers, overlapping the forward) by role, then the copy to the
    device, the forward, and the main process's wait for data (the rest of the wall time)."""
    peak_rss_reset()
    vectors: dict[str, np.ndarray] = {}
    start = time.perf_counter()
    for result in results:
        if result.error is not None:
            raise RuntimeError(f"{result.key}: {result.error}")
        vectors[result.key] = result.feature
    wall = time.perf_counter() - start
    stages = {"decode": 0.0, "transform": 0.0}
    for step, seconds in timings.items():
        role = getattr(TRANSFORMS.get(step), "role", None) if step in TRANSFORMS else None
        if role in ("open", "sample", "decode"):
            stages["decode"] += seconds
        elif role is not None:
            stages["transform"] += seconds
        else:
            stages[step] = seconds
    stages["idle (waiting for data)"] = wall - stages.get("forward", 0.0) - stages.get("host->device", 0.0)
    return {"variant": name, "videos": len(vectors), "seconds": wall, "videos_per_s": len(vectors) / wall,
            "stages_s": stages, "peak_rss_mib": peak_rss_mib(),
            "workers_peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
            "vectors": vectors}


class _MapStyle:
    """Item ``i`` is video ``i`` in one piece (the reference's loader: a map-style dataset, one video per item;
    the baseline's configs are never chunked)."""

    def __init__(self, dataset: VideoDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        return self.dataset.load((index, 0))


def run_baseline(options: RunOptions, items: list[VideoItem]) -> dict[str, Any]:
    """What MMAction2 0.x's loop does: a DataLoader with ``workers_per_gpu`` workers, one video a batch,
    normalised on the host in float32, the plain model (no folding, NCHW)."""
    config = read_config(options.config, options.cfg_options)
    device = select_device(options.device)
    model, _ = prepare_model(config.model, options.checkpoint, device, fuse=False, channels_last=False)
    timings: dict[str, float] = {}
    loader = DataLoader(_MapStyle(VideoDataset(items, build_pipeline(config.pipeline, transforms=config.transforms))),
                        batch_size=1, shuffle=False, num_workers=config.loader.workers_per_gpu, collate_fn=list)
    extractor = FeatureExtractor(model, device, normalize=config.normalize)
    extractor.forward_size = ForwardSize(2**40, 1, "every view of a video in one forward, as the reference")

    def samples() -> Iterator[Any]:
        for [sample] in loader:
            for step, seconds in getattr(sample, "timings", {}).items():
                timings[step] = timings.get(step, 0.0) + seconds
            yield sample
        timings.update(extractor.timings)

    result = measure("baseline", extract(extractor, batched(samples(), 1)), timings)
    result["views"] = extractor.views_computed
    return result


def run_featx(name: str, options: RunOptions, items: list[VideoItem], fill_forwards: bool = True) -> dict[str, Any]:
    """featx's run of ``options``, as the command runs it, without writing an output."""
    extraction = Extraction.prepare(options)
    extraction.fill_forwards = fill_forwards
    result = measure(name, extraction.results(items), extraction.timings)
    result["views_per_forward"] = extraction.extractor.forward_size.views if extraction.extractor.forward_size else 0
    result["views"] = extraction.extractor.views_computed
    return result


def rel_diff(vectors: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> float:
    return max(float(np.abs(vectors[k] - v).max() / np.abs(v).max()) for k, v in reference.items())


def cosine(vectors: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> float:
    return min(float(np.dot(vectors[k], v) / (np.linalg.norm(vectors[k]) * np.linalg.norm(v)))
               for k, v in reference.items())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/recognition/tsn/tsn_r50_clip_feature_extraction_1x1x3_rgb.py")
    p.add_argument("--checkpoint", help="default: seeded random weights")
    p.add_argument("--videos", type=int, default=20)
    p.add_argument("--size", default="320x240", help="WxH of generated videos")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--video-list", help="benchmark on your own videos instead")
    p.add_argument("--video-root", default="")
    p.add_argument("--variants", default="baseline,default,bf16",
                   help="run baseline first, then glibc-malloc, then the rest; the first is the reference")
    p.add_argument("--device", default=None)
    args = p.parse_args()

    with tempfile.TemporaryDirectory(prefix="featx-bench-") as tmp:
        folder = Path(tmp)
        if args.video_list:
            items = read_video_list(args.video_list, args.video_root)
        else:
            w, h = (int(v) for v in args.size.split("x"))
            items = make_videos(folder, args.videos, (w, h), args.seconds, args.fps)
        checkpoint = args.checkpoint or random_checkpoint(read_config(args.config), folder)
        base = RunOptions(args.config, checkpoint, device=args.device)
        variants = {
            "default": base,
            "1worker": replace(base, workers=1),
            "bf16": replace(base, precision="bf16"),
            "sorted": replace(base, decode_order="sorted"),
            "bf16-sorted": replace(base, precision="bf16", decode_order="sorted"),
            "torchcodec": replace(base, decoder="torchcodec"),
            "glibc-malloc": replace(base, keep_freed_memory=False),
            "unbounded": replace(base, max_memory="1T"),
            "small-forwards": replace(base, max_memory="64M"),
            "large-forwards": replace(base, max_memory="4G"),
        }
        first = {"baseline": 0, "glibc-malloc": 1}  # the reference, then the rest of glibc's default allocator
        names = sorted(args.variants.split(","), key=lambda name: first.get(name, 2))
        results = [run_baseline(base, items) if name == "baseline"
                   else run_featx(name, base, items, fill_forwards=False) if name == "per-video"
                   else run_featx(name, variants[name], items) for name in names]
        view_flops = flops_per_view(read_config(args.config), items)

    reference = results[0]["vectors"]
    device = select_device(args.device)
    print(f"\n{Path(args.config).name}: {len(items)} videos, device {device}, torch threads {torch.get_num_threads()}, "
          f"{os.cpu_count()} CPUs")
    print(f"forward: {view_flops / 1e9:.2f} GFLOP a view")
    header = (f"{'variant':13s} {'videos/s':>9s} {'x base':>7s} {'x default':>9s} {'max rel diff':>13s} {'cosine':>9s} "
              f"{'fwd GFLOP/s':>11s} {'RSS MiB':>8s} {'views/fwd':>9s}  stage seconds")
    print(header)
    default = next((r for r in results if r["variant"] == "default"), None)
    for r in results:
        r["speedup"] = r["videos_per_s"] / results[0]["videos_per_s"]
        r["speedup_over_default"] = r["videos_per_s"] / default["videos_per_s"] if default else float("nan")
        r["max_rel_diff"] = rel_diff(r["vectors"], reference)
        r["min_cosine"] = cosine(r["vectors"], reference)
        r["forward_gflop_per_s"] = view_flops * r["views"] / r["stages_s"]["forward"] / 1e9
        stages = ", ".join(f"{k} {v:.1f}" for k, v in r["stages_s"].items())
        print(f"{r['variant']:13s} {r['videos_per_s']:9.3f} {r['speedup']:7.2f} {r['speedup_over_default']:9.2f} "
              f"{r['max_rel_diff']:13.2e} {r['min_cosine']:9.6f} {r['forward_gflop_per_s']:11.1f} "
              f"{r['peak_rss_mib']:8.0f} {r.get('views_per_forward', 0):9d}  {stages}")
    summary = {"config": args.config, "videos": len(items), "device": str(device), "view_gflop": view_flops / 1e9,
               "results": [{k: v for k, v in r.items() if k != "vectors"} for r in results]}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
