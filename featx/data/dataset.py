"""The dataset: each listed video through the test pipeline, in one piece or, for dense sampling, a
chunk of clips at a time. This is the one place that knows a video may be several chunks: it splits
a video into chunks (``load``, ``follow_ups``) and joins their results back (``join_chunks``)."""
from __future__ import annotations

from typing import Any, Iterable, Iterator, Sequence

import cv2
import numpy as np
import torch

from featx.data.pipeline import Pipeline, Role
from featx.data.sample import Failure, Sample
from featx.data.video_list import VideoItem
from featx.errors import VideoError
from featx.pool import KillablePool
from featx.result import VideoResult

Task = tuple[int, int]  # (video index, chunk)


class VideoDataset:
    """``load((i, chunk))`` is the model input of chunk ``chunk`` of ``items[i]``, or a :class:`Failure`.

    A video is one chunk unless its sampler sets ``clips_per_chunk`` (dense sampling): then the
    pipeline up to decoding runs once (the video opened, its frames sampled) and the rest, from the
    ``decode`` step on, once per chunk of that many clips. ``tasks()`` are the first chunks; the
    first chunk's sample says how many there are (``follow_ups``).
    """

    def __init__(self, items: Sequence[VideoItem], pipeline: Pipeline) -> None:
        self.items = list(items)
        self.head, self.tail = pipeline.split_at(Role.DECODE)
        self._opened: tuple[int, dict[str, Any]] | None = None  # the video whose later chunks are still to come

    def __len__(self) -> int:
        return len(self.items)

    def tasks(self) -> list[Task]:
        return [(index, 0) for index in range(len(self.items))]

    def load(self, task: Task) -> Sample | Failure:
        index, chunk = task
        item = self.items[index]
        try:
            opened = self._open(index)
            results, num_chunks = self._chunk(opened, chunk)
            if chunk + 1 >= num_chunks:
                self._opened = None
            results = self.tail(results)
        except VideoError as exc:
            self._opened = None
            return Failure(index, item.key, str(exc), chunk)
        return Sample(index, item.key, np.ascontiguousarray(results["imgs"]), np.asarray(results["frame_inds"]),
                      int(results.get("clip_len", 1)), int(results.get("num_crops", 1)), int(results["total_frames"]),
                      float(results["avg_fps"]), chunk, num_chunks, results["timings"])

    @staticmethod
    def follow_ups(task: Task, outcome: Sample | Failure) -> list[Task]:
        """The video's other chunks, once its first one says how many it has."""
        if task[1] != 0 or not isinstance(outcome, Sample):
            return []
        return [(task[0], chunk) for chunk in range(1, outcome.num_chunks)]

    def failed(self, task: Task, reason: str) -> Failure:
        """The outcome of a task whose decoding worker crashed or timed out (``reason`` says which)."""
        item = self.items[task[0]]
        return Failure(task[0], item.key, f"{item.path}: its decoding worker {reason}", task[1])

    def samples(self) -> Iterator[Sample | Failure]:
        """Every chunk of every video, in order, in this process."""
        for task in self.tasks():
            yield from self._with_follow_ups(task)

    def _with_follow_ups(self, task: Task) -> Iterator[Sample | Failure]:
        outcome = self.load(task)
        yield outcome
        for later in self.follow_ups(task, outcome):
            yield self.load(later)

    def _open(self, index: int) -> dict[str, Any]:
        """The results of the pipeline up to decoding (file opened, frames sampled), kept for later chunks."""
        if self._opened is None or self._opened[0] != index:
            self._opened = (index, self.head({"filename": self.items[index].path, "start_index": 0}))
        return self._opened[1]

    @staticmethod
    def _chunk(opened: dict[str, Any], chunk: int) -> tuple[dict[str, Any], int]:
        """A copy of ``opened`` holding only chunk ``chunk``'s clips, and the number of chunks."""
        results = dict(opened, timings=dict(opened["timings"]) if chunk == 0 else {})
        per_chunk = opened.get("clips_per_chunk")
        if per_chunk is None:
            return results, 1
        clips = np.asarray(opened["frame_inds"]).reshape(-1, opened["clip_len"])
        num_chunks = -(-len(clips) // per_chunk)
        if chunk >= num_chunks:
            raise VideoError(f"{opened['filename']}: has only {num_chunks} chunks of clips (asked for {chunk + 1})")
        part = clips[chunk * per_chunk:(chunk + 1) * per_chunk]
        results.update(frame_inds=part.reshape(-1), num_clips=len(part))
        return results, num_chunks


def _one_thread_each() -> None:
    """In a decoding worker: one OpenCV and one torch thread (the workers are the parallelism)."""
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def _stop_opencv_threads() -> None:
    """OpenCV's thread pool does not survive a fork: a child that touches it waits forever on a lock
    held by a thread it does not have. Stop it before forking (the workers use one thread anyway)."""
    cv2.setNumThreads(1)


def decoded_samples(dataset: VideoDataset, workers: int, timeout: float) -> Iterable[Sample | Failure]:
    """Every chunk of every video, in list order: in ``workers`` killable processes (a decoder that
    hangs past ``timeout`` seconds or crashes costs one video), or in this process when ``workers`` is 0
    (no time limit, no isolation)."""
    if workers == 0:
        return dataset.samples()
    return KillablePool(dataset.load, dataset.tasks(), workers, timeout, failed=dataset.failed,
                        follow_ups=dataset.follow_ups, worker_init=_one_thread_each,
                        before_fork=_stop_opencv_threads)


def clip_times(frame_inds: list[int], clip_len: int, fps: float) -> list[list[float]]:
    """Each clip's ``[start, end]`` in seconds: from its earliest sampled frame to the end of its latest."""
    if fps <= 0:
        return []
    clips = np.asarray(frame_inds, dtype=np.int64).reshape(-1, clip_len)
    return [[float(c.min()) / fps, float(c.max() + 1) / fps] for c in clips]


def join_chunks(chunks: Iterable[VideoResult], per: str = "video") -> Iterator[VideoResult]:
    """Join each video's chunk results, in order, into its result (chunks computed per clip are averaged
    when ``per`` is ``video``); a failed chunk fails the video and its later chunks are dropped. Each
    video is yielded as soon as it is whole, with its duration and each clip's time span in ``info``."""
    parts: list[VideoResult] = []
    finished = -1  # index of the last video yielded
    for part in chunks:
        if part.index == finished:
            continue
        if part.error is not None:
            parts, finished = [], part.index
            yield VideoResult(part.index, part.key, error=part.error)
            continue
        parts.append(part)
        if part.chunk + 1 < part.num_chunks:
            continue
        if len(parts) == 1:
            result = parts[0]
        else:
            feature = np.concatenate([p.feature for p in parts])
            info = dict(parts[0].info, frame_inds=[i for p in parts for i in p.info["frame_inds"]])
            result = VideoResult(part.index, part.key, feature=feature.mean(0) if per == "video" else feature,
                                 info=info)
        info = result.info
        info["duration"] = info["total_frames"] / info["avg_fps"] if info["avg_fps"] > 0 else None
        info["clips"] = clip_times(info["frame_inds"], info["clip_len"], info["avg_fps"])
        info["centres"] = [(start + end) / 2 for start, end in info["clips"]]
        parts, finished = [], part.index
        yield result
