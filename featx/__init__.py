"""featx: one deep feature vector per video, faithful to MMAction2 0.x clip feature extraction."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

__version__ = "0.1.0"

from featx.outputs import FeatureFile, load  # noqa: E402  (the API for reading results back)

if TYPE_CHECKING:
    from featx.runner import Extracted

__all__ = ["FeatureFile", "extract", "load"]


def extract(config: str, checkpoint: str, videos: Sequence[str] | None = None, **options: Any) -> Extracted:
    """Features of ``videos`` (paths, relative to ``video_root=`` if given) with an MMAction2 config and
    checkpoint, as the ``featx`` command computes them; every other option is a ``featx.options.RunOptions``
    field (``video_list=``, ``device=``, ``per=``, ``precision=``, ...). With ``out=`` the output is written
    too (resumable, reused by a rerun). Bad input raises ``featx.errors.UserError``.

    >>> result = featx.extract("configs/recognition/tsn/tsn_r50_clip_feature_extraction_1x1x3_rgb.py",
    ...                        "tsn.pth", ["a.mp4", "b.mp4"], video_root="videos")
    >>> result.features["a.mp4"].shape, result.failed
    ((2048,), {})
    """
    from featx.runner import EXIT_INTERRUPTED, Extracted, RunOptions, extract_features, run  # the heavy imports

    run_options = RunOptions(config, checkpoint, videos=None if videos is None else list(videos), **options)
    if run_options.out is None:
        return extract_features(run_options)
    if run(run_options) == EXIT_INTERRUPTED:
        raise KeyboardInterrupt
    features, meta = load(run_options.out)
    return Extracted(features, {f["video"]: f["reason"] for f in (meta or {}).get("failed", [])})
