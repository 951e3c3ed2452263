"""The data path: video list -> sample -> decode -> transform."""
