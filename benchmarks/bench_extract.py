"""Benchmark: MMAction2 0.x's extraction loop against featx's default path, in one process.

    python benchmarks/bench_extract.py --config configs/recognition/tsn/tsn_r50_clip_feature_extraction_1x1x3_rgb.py \
        --videos 20 --size 320x240 --seconds 10

Videos are generated (H.264, moving content) into a temporary folder unless --video-list and
--video-root name the user's own. Without --checkpoint the model has seeded random weights. Each
variant prints videos/s, seconds per stage (summed over videos; decode and transform run in worker
processes, so they overlap the forward), peak RSS, and the largest relative difference of its
vectors from the baseline's; then one JSON line with everything.

Variants: ``baseline`` does what the reference loop does (torch DataLoader with workers_per_gpu
workers, one video per batch, float32 normalisation on the host, NCHW, no BatchNorm folding,
frames requested in the sampler's order); ``default`` is featx as a user runs it; ``bf16`` is the
default with ``--precision bf16``; ``sorted`` the default with ``--decode-order sorted``; ``1worker``
the default with one decoding process; ``glibc-malloc`` the default with glibc's allocator left as it
is (the CLI makes it keep freed memory on a CPU). The baseline runs first, then ``glibc-malloc``.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

import av
import numpy as np
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from featx.config import LoaderSettings, load_config  # noqa: E402
from featx.data import VideoDataset, VideoItem, build_pipeline, decoded_samples, read_video_list  # noqa: E402
from featx.data.pipeline import split_normalize  # noqa: E402
from featx.extract import FeatureExtractor, batched, decode_workers, prepare_model, select_device  # noqa: E402
from featx.hostmem import keep_freed_memory  # noqa: E402
from featx.models import build_model  # noqa: E402

DECODE_STEPS = ("DecordInit", "SampleFrames", "DecordDecode")


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


def random_checkpoint(cfg: Any, folder: Path) -> str:
    torch.manual_seed(0)
    path = folder / "random_weights.pth"
    torch.save({"state_dict": build_model(cfg.model).state_dict()}, path)
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


def measure(name: str, extractor: FeatureExtractor, samples: Iterable[dict[str, Any]], batch: int) -> dict[str, Any]:
    """Run every sample through ``extractor``; time the stages."""
    peak_rss_reset()
    stages = {"decode": 0.0, "transform": 0.0, "idle (waiting for data)": 0.0}
    vectors: dict[str, np.ndarray] = {}
    start = waited_from = time.perf_counter()
    for group in batched(samples, batch):
        stages["idle (waiting for data)"] += time.perf_counter() - waited_from
        for sample in group:
            for step, seconds in getattr(sample, "timings", {}).items():
                stages["decode" if step in DECODE_STEPS else "transform"] += seconds
        for result in extractor(group):
            if result.error is not None:
                raise RuntimeError(f"{result.key}: {result.error}")
            vectors[result.key] = result.feature
        waited_from = time.perf_counter()
    wall = time.perf_counter() - start
    stages.update(extractor.timings)
    return {"variant": name, "videos": len(vectors), "seconds": wall, "videos_per_s": len(vectors) / wall,
            "stages_s": stages, "peak_rss_mib": peak_rss_mib(),
            "workers_peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
            "vectors": vectors}


class _MapStyle:
    """Item ``i`` is video ``i`` in one piece (the baseline's configs are never chunked)."""

    def __init__(self, dataset: VideoDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        return self.dataset.load((index, 0))


def run_baseline(cfg: Any, checkpoint: str, items: list[VideoItem], device: torch.device) -> dict[str, Any]:
    settings = LoaderSettings.from_config(cfg)
    model, _ = prepare_model(cfg, checkpoint, device, fuse=False, channels_last=False)
    dataset = VideoDataset(items, build_pipeline(cfg.data.test.pipeline))
    whole_videos = _MapStyle(dataset)  # the reference's loader: a map-style dataset, one video per item
    loader = DataLoader(whole_videos, batch_size=1, shuffle=False, num_workers=settings.workers_per_gpu,
                        collate_fn=list)
    return measure("baseline", FeatureExtractor(model, device), (s for batch in loader for s in batch), 1)


def run_featx(name: str, cfg: Any, checkpoint: str, items: list[VideoItem], device: torch.device,
              precision: str = "fp32", workers: int | None = None, decode_order: str = "list",
              keep_memory: bool = True) -> dict[str, Any]:
    settings = LoaderSettings.from_config(cfg)
    if device.type == "cpu" and keep_memory:
        keep_freed_memory()  # as the CLI does; for good, so the variants without it run first
    model, _ = prepare_model(cfg, checkpoint, device, precision=precision)
    pipeline, normalize = split_normalize(build_pipeline(cfg.data.test.pipeline, decode_order=decode_order))
    workers = decode_workers(workers, settings.workers_per_gpu, device)
    samples = decoded_samples(VideoDataset(items, pipeline), workers, timeout=300)
    return measure(name, FeatureExtractor(model, device, precision, normalize), samples, settings.videos_per_gpu)


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

    cfg = load_config(args.config)
    device = select_device(args.device)
    with tempfile.TemporaryDirectory(prefix="featx-bench-") as tmp:
        folder = Path(tmp)
        if args.video_list:
            items = read_video_list(args.video_list, args.video_root)
        else:
            w, h = (int(v) for v in args.size.split("x"))
            items = make_videos(folder, args.videos, (w, h), args.seconds, args.fps)
        checkpoint = args.checkpoint or random_checkpoint(cfg, folder)
        runners = {
            "baseline": lambda: run_baseline(cfg, checkpoint, items, device),
            "default": lambda: run_featx("default", cfg, checkpoint, items, device),
            "1worker": lambda: run_featx("1worker", cfg, checkpoint, items, device, workers=1),
            "bf16": lambda: run_featx("bf16", cfg, checkpoint, items, device, "bf16"),
            "sorted": lambda: run_featx("sorted", cfg, checkpoint, items, device, decode_order="sorted"),
            "glibc-malloc": lambda: run_featx("glibc-malloc", cfg, checkpoint, items, device, keep_memory=False),
        }
        first = {"baseline": 0, "glibc-malloc": 1}  # the reference, then the rest of glibc's default allocator
        names = sorted(args.variants.split(","), key=lambda name: first.get(name, 2))
        results = [runners[name]() for name in names]

    reference = results[0]["vectors"]
    print(f"\n{Path(args.config).name}: {len(items)} videos, device {device}, torch threads {torch.get_num_threads()}, "
          f"{os.cpu_count()} CPUs")
    header = f"{'variant':12s} {'videos/s':>9s} {'x base':>7s} {'max rel diff':>13s} {'cosine':>9s} {'RSS MiB':>8s}  stage seconds"
    print(header)
    for r in results:
        r["speedup"] = r["videos_per_s"] / results[0]["videos_per_s"]
        r["max_rel_diff"] = rel_diff(r["vectors"], reference)
        r["min_cosine"] = cosine(r["vectors"], reference)
        stages = ", ".join(f"{k} {v:.1f}" for k, v in r["stages_s"].items())
        print(f"{r['variant']:12s} {r['videos_per_s']:9.3f} {r['speedup']:7.2f} {r['max_rel_diff']:13.2e} "
              f"{r['min_cosine']:9.6f} {r['peak_rss_mib']:8.0f}  {stages}")
    summary = {"config": args.config, "videos": len(items), "device": str(device),
               "results": [{k: v for k, v in r.items() if k != "vectors"} for r in results]}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
