"""The data path: video list -> sample -> decode -> transform, in killable worker processes."""
from featx.data.dataset import VideoDataset, decoded_samples
from featx.data.pipeline import Pipeline, build_pipeline
from featx.data.sample import Failure, Sample
from featx.data.video_list import VideoItem, find_videos, read_video_list

__all__ = ["Failure", "Pipeline", "Sample", "VideoDataset", "VideoItem", "build_pipeline", "decoded_samples",
           "find_videos", "read_video_list"]
