"""featx: one deep feature vector per video, faithful to MMAction2 0.x clip feature extraction."""

__version__ = "0.1.0"
