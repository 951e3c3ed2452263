"""The dataset: one sample per listed video, run through the test pipeline."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from torch.utils.data import Dataset

from featx.data.pipeline import Pipeline
from featx.data.video_list import VideoItem
from featx.errors import VideoError


class VideoDataset(Dataset):
    """Maps index ``i`` to the model input of ``items[i]``, or to an error record.

    A sample is ``{'index', 'key', 'imgs' ((views, ...), float32, or uint8 before a device-side Normalize), 'frame_inds', 'total_frames',
    'avg_fps'}``; a video that cannot be used gives ``{'index', 'key', 'error': reason}`` instead,
    so one bad file never stops the loader.
    """

    def __init__(self, items: Sequence[VideoItem], pipeline: Pipeline, decoder: str = "decord") -> None:
        self.items = list(items)
        self.pipeline = pipeline
        self.decoder = decoder

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.items[index]
        results = {"filename": item.path, "start_index": 0, "decoder": self.decoder}
        try:
            results = self.pipeline(results)
        except VideoError as exc:
            return {"index": index, "key": item.key, "error": str(exc)}
        return {
            "index": index,
            "key": item.key,
            "imgs": np.ascontiguousarray(results["imgs"]),
            "frame_inds": results["frame_inds"],
            "total_frames": results["total_frames"],
            "avg_fps": results["avg_fps"],
            "timings": results["timings"],
        }
