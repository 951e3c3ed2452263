"""Benchmark: featx's own per-video machinery at scale, where decoding and the forward cost next to nothing.

    python benchmarks/bench_overhead.py --videos 1000,10000,100000 --formats dir,pkl --merge-shards 64

One generated H.264 video of 8 frames at 64x64 is hard-linked as many times as the largest count asks
(so decoding is real but cheap), and a ResNet-18 TSN config at 64 px, 1 clip of 1 frame, with seeded
random weights, is written to the work folder. Each measurement runs in a process of its own through
``featx.runner.run``, the command's own path (listing, the decoding pool, the partial store, the output,
the meta sidecar), and reports: wall seconds of the whole run and of its loop over the videos (start-up,
model load and the final write apart), milliseconds per video of the loop, of the forward in it and of the
main process's time besides the forward (featx's machinery: pool, store, output, bookkeeping, and any wait
for decoding; wall time, as the forward's own threads make the process's CPU time say nothing of it), the
decoding workers' CPU per video, the final write's seconds, peak RSS of the main process (VmHWM) and of the largest
worker, and the partial store's and meta sidecar's bytes per video. For the largest count it then times a
rerun that finds everything done (reuse), reopening the partial store as a resume does, and, with
``--merge-shards N``, N shard runs of the same list (``--shard k/N``, pkl) and ``featx merge`` of them.
Prints a table, then one JSON line with everything.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_extract import make_videos, peak_rss_mib, random_checkpoint  # noqa: E402

TINY_CONFIG = """\
model = dict(type='Recognizer2D', backbone=dict(type='ResNet', pretrained=None, depth=18, norm_eval=False),
             train_cfg=None, test_cfg=dict(feature_extraction=True))
img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_bgr=False)
test_pipeline = [
    dict(type='DecordInit', num_threads=1),
    dict(type='SampleFrames', clip_len=1, frame_interval=1, num_clips=1, test_mode=True),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, 64)),
    dict(type='CenterCrop', crop_size=64),
    dict(type='Normalize', **img_norm_cfg),
    dict(type='FormatShape', input_format='NCHW'),
    dict(type='Collect', keys=['imgs'], meta_keys=[]),
    dict(type='ToTensor', keys=['imgs']),
]
data = dict(videos_per_gpu=1, workers_per_gpu=2,
            test=dict(type='VideoDataset', ann_file=None, data_prefix=None, pipeline=test_pipeline))
"""
LINKS_PER_FILE = 50_000


def prepare(folder: Path, most: int) -> tuple[Path, Path, Path]:
    """The tiny config, its random checkpoint, and ``most`` hard links of one tiny video (1000 a folder; a copy
    of it for every ``LINKS_PER_FILE``)."""
    from featx.config import read_config

    config = folder / "tiny_r18_64px.py"
    config.write_text(TINY_CONFIG)
    checkpoint = Path(random_checkpoint(read_config(str(config)), folder))
    [video] = make_videos(folder, 1, (64, 64), seconds=1.0, fps=8)
    root = folder / "videos"
    for i in range(most):
        link = root / f"{i // 1000:03d}" / f"v{i:06d}.mp4"
        if i % 1000 == 0:
            link.parent.mkdir(parents=True, exist_ok=True)
        if i % LINKS_PER_FILE == 0:  # a file system allows so many links to one file (ext4: 65000)
            source = shutil.copyfile(video.path, folder / f"source_{i}.mp4")
        os.link(source, link)
    return config, checkpoint, root


def video_list(folder: Path, count: int) -> Path:
    path = folder / f"list_{count}.txt"
    path.write_text("".join(f"{i // 1000:03d}/v{i:06d}.mp4\n" for i in range(count)))
    return path


def disk_bytes(path: Path) -> int:
    """A file's size, or a folder's files' sizes added up."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else 0


def child_run(spec: dict[str, Any]) -> dict[str, Any]:
    """One featx run, instrumented from outside: when its model is ready, when its final write starts (the
    partial store's size then, and a copy of it to time a resume's reopening), and when it ends."""
    import featx.runner as runner
    from featx.store import PartialStore

    marks: dict[str, Any] = {}
    prepare_model, finish = runner.Extraction.prepare, runner.finish

    def prepared(*args: Any, **kwargs: Any) -> Any:
        marks["extraction"] = prepare_model(*args, **kwargs)
        marks["loop_start"] = time.perf_counter()
        return marks["extraction"]

    def finishing(output: Any, items: Any, store: Any, *args: Any, **kwargs: Any) -> int:
        marks["loop_end"] = time.perf_counter()
        marks["store_bytes"] = store.path.stat().st_size
        if spec.get("keep_store"):
            shutil.copyfile(store.path, spec["keep_store"])
            marks["fingerprint"] = store.fingerprint
        status = finish(output, items, store, *args, **kwargs)
        marks["finish_s"] = time.perf_counter() - marks["loop_end"]
        return status

    runner.Extraction.prepare, runner.finish = classmethod(lambda cls, *a, **k: prepared(*a, **k)), finishing
    options = runner.RunOptions(spec["config"], spec["checkpoint"], out=spec["out"], video_list=spec["list"],
                                video_root=spec["root"], out_format=spec.get("format"), device="cpu",
                                shard=spec.get("shard"))
    started = time.perf_counter()
    status = runner.run(options)
    stats: dict[str, Any] = {"status": status, "wall_s": time.perf_counter() - started,
                             "peak_rss_mib": peak_rss_mib(),
                             "workers_peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                             "workers_cpu_s": sum(resource.getrusage(resource.RUSAGE_CHILDREN)[:2])}
    if "loop_end" in marks:  # something was computed
        stats.update(loop_s=marks["loop_end"] - marks["loop_start"],
                     forward_s=marks["extraction"].timings.get("forward", 0.0), finish_s=marks["finish_s"],
                     store_bytes=marks["store_bytes"])
    if spec.get("keep_store"):
        started = time.perf_counter()
        PartialStore(Path(spec["keep_store"]), marks["fingerprint"]).close()
        stats["store_reopen_s"] = time.perf_counter() - started
    return stats


def child_merge(spec: dict[str, Any]) -> dict[str, Any]:
    from featx.merge import merge

    started = time.perf_counter()
    status = merge(spec["shards"], spec["out"])
    return {"status": status, "wall_s": time.perf_counter() - started, "peak_rss_mib": peak_rss_mib()}


def in_child(mode: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Run ``mode`` with ``spec`` in a fresh Python (its own peak RSS); featx's lines go to our stderr."""
    proc = subprocess.run([sys.executable, __file__, f"--child-{mode}", json.dumps(spec)], stdout=subprocess.PIPE,
                          text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def per_video(stats: dict[str, Any], videos: int, meta: Path) -> dict[str, Any]:
    """The run's figures per video (milliseconds, bytes)."""
    row = {"videos": videos, "wall_s": stats["wall_s"], "peak_rss_mib": stats["peak_rss_mib"],
           "workers_peak_rss_mib": stats["workers_peak_rss_mib"], "meta_bytes_per_video": disk_bytes(meta) / videos}
    if "loop_s" in stats:
        row.update(loop_ms=1e3 * stats["loop_s"] / videos, forward_ms=1e3 * stats["forward_s"] / videos,
                   machinery_ms=1e3 * (stats["loop_s"] - stats["forward_s"]) / videos,
                   workers_cpu_ms=1e3 * stats["workers_cpu_s"] / videos, finish_s=stats["finish_s"],
                   store_bytes_per_video=stats["store_bytes"] / videos)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--videos", default="1000,10000", help="list lengths, comma-separated")
    p.add_argument("--formats", default="dir,pkl", help="output formats to run each length with")
    p.add_argument("--merge-shards", type=int, default=0, help="also run the largest list as N shards and merge them")
    p.add_argument("--work-dir", help="keep everything here instead of a temporary folder")
    p.add_argument("--child-run", help=argparse.SUPPRESS)
    p.add_argument("--child-merge", help=argparse.SUPPRESS)
    args = p.parse_args()
    for mode, spec in (("run", args.child_run), ("merge", args.child_merge)):
        if spec:
            print(json.dumps({"run": child_run, "merge": child_merge}[mode](json.loads(spec))))
            return

    counts = [int(n) for n in args.videos.split(",")]
    with tempfile.TemporaryDirectory(prefix="featx-overhead-", dir=args.work_dir) as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        config, checkpoint, root = prepare(folder, max(counts))
        print(f"prepared {max(counts)} videos in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        common = {"config": str(config), "checkpoint": str(checkpoint), "root": str(root)}
        rows = []
        for fmt in args.formats.split(","):
            for n in counts:
                out = folder / f"out_{n}.{fmt}"
                spec = {**common, "list": str(video_list(folder, n)), "out": str(out), "format": fmt}
                if n == max(counts):
                    spec["keep_store"] = str(folder / "kept.partial")
                stats = in_child("run", spec)
                row = {"format": fmt, **per_video(stats, n, out.with_name(out.name + ".meta.json")),
                       "output_bytes_per_video": disk_bytes(out) / n, "store_reopen_s": stats.get("store_reopen_s")}
                if n == max(counts):
                    row["rerun_all_reused_s"] = in_child("run", {**spec, "keep_store": None})["wall_s"]
                    if out.is_dir():
                        shutil.rmtree(out)
                    else:
                        out.unlink()
                rows.append(row)
                print(json.dumps(row), file=sys.stderr)
        merge_row = None
        if args.merge_shards:
            n, k = max(counts), args.merge_shards
            spec = {**common, "list": str(video_list(folder, n)), "out": str(folder / "shards.pkl")}
            started = time.perf_counter()
            for index in range(k):
                in_child("run", {**spec, "shard": f"{index}/{k}"})
            shards_s = time.perf_counter() - started
            shards = sorted(str(s) for s in folder.glob("shards.shard-*.pkl"))
            merged = in_child("merge", {"shards": shards, "out": str(folder / "merged.pkl")})
            merge_row = {"videos": n, "shards": k, "shard_runs_s": shards_s, "merge_s": merged["wall_s"],
                         "merge_peak_rss_mib": merged["peak_rss_mib"], "merge_status": merged["status"]}
            print(json.dumps(merge_row), file=sys.stderr)

    print(f"\n{'format':6s} {'videos':>7s} {'wall s':>7s} {'loop ms/v':>9s} {'fwd ms/v':>8s} {'featx ms/v':>10s} "
          f"{'workers cpu ms/v':>16s} {'final s':>7s} {'RSS MiB':>7s} {'worker MiB':>10s} {'store B/v':>9s} "
          f"{'meta B/v':>8s}")
    for r in rows:
        print(f"{r['format']:6s} {r['videos']:7d} {r['wall_s']:7.1f} {r.get('loop_ms', 0):9.2f} "
              f"{r.get('forward_ms', 0):8.2f} {r.get('machinery_ms', 0):10.2f} {r.get('workers_cpu_ms', 0):16.2f} "
              f"{r.get('finish_s', 0):7.1f} {r['peak_rss_mib']:7.0f} {r['workers_peak_rss_mib']:10.0f} "
              f"{r.get('store_bytes_per_video', 0):9.0f} {r['meta_bytes_per_video']:8.0f}")
    print(json.dumps({"cpus": os.cpu_count(), "rows": rows, "merge": merge_row}))


if __name__ == "__main__":
    main()
