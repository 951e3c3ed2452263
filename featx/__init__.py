"""featx: one deep feature vector per video, faithful to MMAction2 0.x clip feature extraction."""

__version__ = "0.1.0"

from featx.output import FeatureFile, load  # noqa: E402  (the API for reading results back)

__all__ = ["FeatureFile", "load"]
