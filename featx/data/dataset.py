"""The dataset: each listed video run through the test pipeline, in one piece or, for dense
sampling, a chunk of clips at a time."""
from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np
from torch.utils.data import Dataset

from featx.data.pipeline import Pipeline
from featx.data.video_list import VideoItem
from featx.errors import VideoError


class VideoDataset(Dataset):
    """``sample(i, chunk)`` is the model input of chunk ``chunk`` of ``items[i]``, or an error record.

    A sample is ``{'index', 'key', 'chunk', 'num_chunks', 'imgs' ((views, ...), float32, or uint8
    before a device-side Normalize), 'frame_inds' (this chunk's), 'clip_len', 'num_crops',
    'total_frames', 'avg_fps', 'timings'}``; a video that cannot be used gives ``{'index', 'key',
    'error': reason}`` instead, so one bad file never stops the loader. A video is one chunk unless
    its sampler sets ``clips_per_chunk`` (dense sampling): then the pipeline up to the sampler runs
    once and the rest (decoding onwards) once per chunk of that many clips.
    """

    def __init__(self, items: Sequence[VideoItem], pipeline: Pipeline, decoder: str = "decord",
                 decode_order: str = "list") -> None:
        self.items = list(items)
        self.head, self.tail = pipeline.split_before("DecordDecode")
        self.options = {"decoder": decoder, "decode_order": decode_order}
        self._opened: tuple[int, dict[str, Any]] | None = None  # the video whose later chunks are still to come

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.sample(index)

    def sample(self, index: int, chunk: int = 0) -> dict[str, Any]:
        item = self.items[index]
        try:
            opened = self._open(index)
            results, num_chunks = self._chunk(opened, chunk)
            if chunk + 1 >= num_chunks:
                self._opened = None
            results = self.tail(results)
        except VideoError as exc:
            self._opened = None
            return {"index": index, "key": item.key, "chunk": chunk, "error": str(exc)}
        return {
            "index": index,
            "key": item.key,
            "chunk": chunk,
            "num_chunks": num_chunks,
            "imgs": np.ascontiguousarray(results["imgs"]),
            "frame_inds": results["frame_inds"],
            "clip_len": results.get("clip_len", 1),
            "num_crops": results.get("num_crops", 1),
            "total_frames": results["total_frames"],
            "avg_fps": results["avg_fps"],
            "timings": results["timings"],
        }

    def samples(self) -> Iterator[dict[str, Any]]:
        """Every chunk of every video, in order, in this process."""
        for index in range(len(self)):
            chunk, num_chunks = 0, 1
            while chunk < num_chunks:
                sample = self.sample(index, chunk)
                num_chunks = 1 if "error" in sample else sample["num_chunks"]
                chunk += 1
                yield sample

    def _open(self, index: int) -> dict[str, Any]:
        """The results of the pipeline up to decoding (file opened, frames sampled), kept for later chunks."""
        if self._opened is None or self._opened[0] != index:
            item = self.items[index]
            self._opened = (index, self.head({"filename": item.path, "start_index": 0, **self.options}))
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
