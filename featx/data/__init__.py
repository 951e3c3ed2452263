"""The data path: video list -> sample -> decode -> transform."""
from featx.data import decode, sampling, transforms  # noqa: F401  (registers the transforms and decoders)
from featx.data.dataset import VideoDataset
from featx.data.pipeline import Pipeline, build_pipeline
from featx.data.video_list import VideoItem, find_videos, read_video_list

__all__ = ["Pipeline", "VideoDataset", "VideoItem", "build_pipeline", "find_videos", "read_video_list"]
