"""Frame sampling: which frames of a video make up its clips (MMAction2 0.x's samplers, and 1.x's where
they differ: ``SampleFrames``, ``UntrimmedSampleFrames``, the new ``UniformSample``)."""
from __future__ import annotations

import logging
from typing import Any, ClassVar

import numpy as np

from featx.data.pipeline import Role
from featx.errors import UserError, VideoError
from featx.registry import TRANSFORMS, TRANSFORMS_1X
from featx.wording import count

log = logging.getLogger(__name__)

OUT_OF_BOUND_OPTS = ("loop", "repeat_last")
PADS = ("none", "repeat", "zero")


@TRANSFORMS.register()
class SampleFrames:
    """Choose ``num_clips`` clips of ``clip_len`` frames, ``frame_interval`` apart, spread evenly.

    Feature extraction always samples by the deterministic test-mode rule, as the reference's
    dataset does: ``test_mode=False`` is accepted and still samples that way. ``keep_tail_frames``
    only affects training sampling and is accepted for config compatibility; ``start_index`` is
    ignored as in MMAction2 0.x (it comes from the dataset, 0 for videos).
    """

    role: ClassVar[Role] = Role.SAMPLE

    def __init__(
        self,
        clip_len: int,
        frame_interval: int = 1,
        num_clips: int = 1,
        temporal_jitter: bool = False,
        twice_sample: bool = False,
        out_of_bound_opt: str = "loop",
        test_mode: bool = False,
        start_index: int | None = None,
        keep_tail_frames: bool = False,
    ) -> None:
        for name, value in (("clip_len", clip_len), ("frame_interval", frame_interval), ("num_clips", num_clips)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"SampleFrames: {name} must be a positive integer, got {value!r}")
        if temporal_jitter:
            raise UserError("SampleFrames: temporal_jitter=True is random; feature extraction needs it off")
        if out_of_bound_opt not in OUT_OF_BOUND_OPTS:
            raise UserError(f"SampleFrames: out_of_bound_opt must be one of {OUT_OF_BOUND_OPTS}, got {out_of_bound_opt!r}")
        if start_index is not None:
            log.warning("SampleFrames: start_index=%r is ignored (it comes from the dataset, 0 for videos)", start_index)
        self.clip_len = clip_len
        self.frame_interval = frame_interval
        self.num_clips = num_clips
        self.twice_sample = twice_sample
        self.out_of_bound_opt = out_of_bound_opt

    def describe_clips(self) -> str:
        """The clips it takes of a video, for the start line (``25 clips``)."""
        return count(self.num_clips * (2 if self.twice_sample else 1), "clip")

    def clip_offsets(self, total_frames: int) -> np.ndarray:
        """First frame of each clip (test mode); float when ``twice_sample`` adds unshifted offsets."""
        span = self.clip_len * self.frame_interval
        avg = (total_frames - span + 1) / float(self.num_clips)
        if total_frames <= span - 1:
            return np.zeros(self.num_clips, dtype=np.int64)
        base = np.arange(self.num_clips) * avg
        offsets = (base + avg / 2.0).astype(np.int64)
        if self.twice_sample:
            # As the reference: the unshifted offsets stay float until the final int cast.
            return np.concatenate([offsets, base])
        return offsets

    def frame_indices(self, total_frames: int, start_index: int = 0) -> np.ndarray:
        """The flat int64 indices, clip after clip, out-of-range ones looped or clamped."""
        return self.clip_frames(self.clip_offsets(total_frames), total_frames, start_index)

    def clip_frames(self, offsets: np.ndarray, total_frames: int, start_index: int = 0) -> np.ndarray:
        """The flat int64 indices of the clips starting at ``offsets``, out-of-range ones looped or clamped."""
        return self.bounded(offsets[:, None] + np.arange(self.clip_len)[None, :] * self.frame_interval,
                            total_frames, start_index)

    def bounded(self, inds: np.ndarray, total_frames: int, start_index: int = 0) -> np.ndarray:
        """(clips, clip_len) indices -> flat int64, out-of-range ones looped or clamped (float ones truncated
        last, as the reference casts them)."""
        if self.out_of_bound_opt == "loop":
            inds = np.mod(inds, total_frames)
        else:  # repeat_last: indices past the end become the clip's last valid index
            safe = inds < total_frames
            last = np.max(safe * inds, axis=1)
            inds = np.where(safe, inds, last[:, None])
        return (inds.reshape(-1) + start_index).astype(np.int64)

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        inds = self.frame_indices(results["total_frames"], results.get("start_index", 0))
        results["frame_inds"] = inds
        results["clip_len"] = self.clip_len
        results["frame_interval"] = self.frame_interval
        results["num_clips"] = len(inds) // self.clip_len  # all clips (the reference's num_clips lays them out alike)
        return results


@TRANSFORMS.register()
class StrideSampleFrames(SampleFrames):
    """Clips over the whole video at a fixed stride, for temporal localisation.

    A clip (``clip_len`` frames, ``frame_interval`` apart) starts every ``stride`` frames, or every
    ``stride_seconds`` seconds of the stream's average fps (start ``int(k * stride_seconds * fps)``),
    at 0 and then as long as the clip fits in the video; a video shorter than one clip gets one
    clip at 0, its indices past the end looped or clamped as ``SampleFrames`` does. The clips are
    decoded ``clips_per_chunk`` at a time (default: 64 frames' worth), so an hour-long video needs
    no more memory than a short one.

    ``pad`` ``repeat`` or ``zero`` puts the clips on the localisation grid instead: a video of N frames
    gets ``ceil(N / stride)`` clips, clip i centred on ``i * stride + stride / 2`` (it starts at
    ``i * stride + stride // 2 - span // 2``, ``span = (clip_len - 1) * frame_interval + 1``); its frames
    before the first or past the last repeat the first or last frame, or are black (``zero``). The
    sampled indices keep the window's own frame numbers (negative or past the end where padded), so
    each clip's start and end seconds are its window's. ``pad='none'``: the clips that fit, as above.

    ``window`` > 1 is for a 2D backbone that mixes each group of that many views (TSM, TANet: its
    ``num_segments``): what starts every stride is then a window of ``window`` consecutive segments of
    ``clip_len`` frames, one clip of ``window * clip_len`` frames that is one group of views, so a
    chunk always holds whole groups.
    """

    def __init__(
        self,
        clip_len: int,
        frame_interval: int = 1,
        stride: int | None = None,
        stride_seconds: float | None = None,
        out_of_bound_opt: str = "loop",
        clips_per_chunk: int | None = None,
        window: int = 1,
        pad: str = "none",
    ) -> None:
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise UserError(f"StrideSampleFrames: window must be a positive int, got {window!r}")
        if pad not in PADS:
            raise UserError(f"StrideSampleFrames: pad must be one of {', '.join(PADS)}, got {pad!r}")
        if pad != "none" and stride is None:
            raise UserError("--pad: give the stride in frames (--dense-stride 4), not in seconds")
        if isinstance(clip_len, int) and not isinstance(clip_len, bool):
            clip_len *= window  # a window is one clip of its segments' frames
        super().__init__(clip_len, frame_interval, out_of_bound_opt=out_of_bound_opt)
        if (stride is None) == (stride_seconds is None):
            raise UserError("StrideSampleFrames: give exactly one of stride (frames) and stride_seconds")
        if stride is not None and (not isinstance(stride, int) or isinstance(stride, bool) or stride < 1):
            raise UserError(f"StrideSampleFrames: stride must be a positive number of frames, got {stride!r}")
        if stride_seconds is not None and not stride_seconds > 0:
            raise UserError(f"StrideSampleFrames: stride_seconds must be more than 0, got {stride_seconds!r}")
        if clips_per_chunk is not None and (not isinstance(clips_per_chunk, int) or clips_per_chunk < 1):
            raise UserError(f"StrideSampleFrames: clips_per_chunk must be a positive int, got {clips_per_chunk!r}")
        self.stride = stride
        self.stride_seconds = stride_seconds
        self.window = window
        self.pad = pad
        self.clips_per_chunk = clips_per_chunk or max(1, 64 // self.clip_len)

    def describe_clips(self) -> str:
        what = "clips" if self.window == 1 else f"windows of {self.window} segments"
        every = f"{self.stride} frames" if self.stride is not None else f"{self.stride_seconds:g} s"
        return f"{what} every {every}" + (f", the ends padded ({self.pad})" if self.pad != "none" else "")

    def dense_offsets(self, total_frames: int, fps: float) -> np.ndarray:
        """First frame of each clip."""
        if self.stride is not None:
            step = float(self.stride)
        elif fps > 0:
            step = self.stride_seconds * fps
        else:
            raise VideoError("StrideSampleFrames: stride_seconds needs the video's fps, which it does not report")
        last_start = total_frames - (self.clip_len - 1) * self.frame_interval - 1
        count = 1 if last_start < 0 else int(last_start // step) + 1
        return (np.arange(count) * step).astype(np.int64)

    def padded_offsets(self, total_frames: int) -> np.ndarray:
        """First frame of each clip on the padded grid (negative where the first clips start before the video)."""
        span = (self.clip_len - 1) * self.frame_interval + 1
        count = -(-total_frames // self.stride)
        return np.arange(count, dtype=np.int64) * self.stride + self.stride // 2 - span // 2

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        total = results["total_frames"]
        if self.pad == "none":
            offsets = self.dense_offsets(total, results.get("avg_fps", 0.0))
            results["frame_inds"] = self.clip_frames(offsets, total, results.get("start_index", 0))
        else:  # out-of-range frames stay as they are: the decoding step pads them
            offsets = self.padded_offsets(total)
            steps = np.arange(self.clip_len, dtype=np.int64) * self.frame_interval
            results["frame_inds"] = (offsets[:, None] + steps[None, :]).reshape(-1)
            results["pad"] = self.pad
        results["clip_len"] = self.clip_len
        results["frame_interval"] = self.frame_interval
        results["num_clips"] = len(offsets)
        results["clips_per_chunk"] = self.clips_per_chunk
        return results


@TRANSFORMS.register()
class DenseSampleFrames(SampleFrames):
    """MMAction2's dense sampling, test mode: ``num_clips`` clips ``sample_range // num_clips`` frames
    apart, repeated from ``num_sample_positions`` starts spread evenly over the first
    ``frames - sample_range + 1`` frames (``np.linspace``, truncated); offsets past the end wrap around.
    ``twice_sample`` has no effect here, as in the reference."""

    def __init__(self, clip_len: int, frame_interval: int = 1, num_clips: int = 1, sample_range: int = 64,
                 num_sample_positions: int = 10, **kwargs: Any) -> None:
        super().__init__(clip_len, frame_interval, num_clips, **kwargs)
        for name, value in (("sample_range", sample_range), ("num_sample_positions", num_sample_positions)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"DenseSampleFrames: {name} must be a positive integer, got {value!r}")
        self.sample_range = sample_range
        self.num_sample_positions = num_sample_positions

    def describe_clips(self) -> str:
        return count(self.num_clips * self.num_sample_positions, "clip")

    def clip_offsets(self, total_frames: int) -> np.ndarray:
        positions = max(1, 1 + total_frames - self.sample_range)
        starts = np.linspace(0, positions - 1, num=self.num_sample_positions, dtype=int)
        base = np.arange(self.num_clips) * (self.sample_range // self.num_clips)
        return ((starts[:, None] + base[None, :]) % total_frames).reshape(-1)


@TRANSFORMS.register()
class UntrimmedSampleFrames(SampleFrames):
    """MMAction2's sampling of untrimmed videos: a clip centred every ``frame_interval`` frames from
    ``frame_interval // 2`` on, its frames consecutive and clamped to the video."""

    def __init__(self, clip_len: int = 1, frame_interval: int = 16, start_index: int | None = None) -> None:
        super().__init__(clip_len, frame_interval, start_index=start_index)

    def describe_clips(self) -> str:
        return f"clips every {self.frame_interval} frames"

    def frame_indices(self, total_frames: int, start_index: int = 0) -> np.ndarray:
        centers = np.arange(self.frame_interval // 2, total_frames, self.frame_interval)
        offsets = np.arange(-(self.clip_len // 2), self.clip_len - self.clip_len // 2)
        inds = np.clip(centers[:, None] + offsets[None, :], 0, total_frames - 1)
        return (inds.reshape(-1) + start_index).astype(np.int64)


@TRANSFORMS_1X.register("SampleFrames")
class SampleFrames1x(SampleFrames):
    """MMAction2 1.x's ``SampleFrames``, test mode (featx always samples that way).

    2D (``clip_len == 1``): ``num_clips`` segments of ``N / num_clips`` frames, each clip at its segment's
    middle (``frame_interval`` plays no part); ``twice_sample`` adds the segments' starts. 3D: with
    ``span = (clip_len - 1) * frame_interval + 1`` and ``max_offset = max(N - span, 0)``, several clips
    start at ``round(k * max_offset / (num_clips - 1))`` (first frame to last, ends included; ``twice_sample``
    doubles the clips at that step), one clip at ``max_offset // 2``. ``target_fps``: the clip spans
    ``max(1, clip_len * frame_interval * fps / target_fps)`` frames of the video, its ``clip_len`` frames
    spread over it (``linspace``, truncated), the 3D offsets floored instead of rounded.
    """

    def __init__(self, clip_len: int, frame_interval: int = 1, num_clips: int = 1, temporal_jitter: bool = False,
                 twice_sample: bool = False, out_of_bound_opt: str = "loop", test_mode: bool = False,
                 keep_tail_frames: bool = False, target_fps: float | None = None) -> None:
        super().__init__(clip_len, frame_interval, num_clips, temporal_jitter, twice_sample, out_of_bound_opt,
                         test_mode, keep_tail_frames=keep_tail_frames)
        if target_fps is not None and (isinstance(target_fps, bool) or not isinstance(target_fps, (int, float))
                                       or not target_fps > 0):
            raise UserError(f"SampleFrames: target_fps must be a positive number or None, got {target_fps!r}")
        if clip_len > 1 and twice_sample and num_clips == 1:
            raise UserError("SampleFrames: twice_sample with one 3D clip divides by zero in MMAction2 1.x")
        self.target_fps = target_fps

    def span(self, fps: float) -> float:
        """Frames of the video one clip covers."""
        if self.target_fps is None:
            return (self.clip_len - 1) * self.frame_interval + 1
        ratio = fps / self.target_fps if fps else 1.0
        return max(1.0, self.clip_len * self.frame_interval * ratio)

    def test_offsets(self, total_frames: int, span: float) -> np.ndarray:
        """First frame of each clip (float where the reference keeps floats until its final cast)."""
        if self.clip_len == 1:
            avg = total_frames / float(self.num_clips)
            base = np.arange(self.num_clips) * avg
            offsets = base + avg / 2.0
            return np.concatenate([offsets, base]) if self.twice_sample else offsets
        max_offset = max(total_frames - span, 0)
        clips = self.num_clips * (2 if self.twice_sample else 1)
        if clips == 1:
            return np.array([max_offset // 2])
        between = max_offset / float(self.num_clips - 1)
        if self.target_fps is not None:
            return np.arange(clips) * np.floor(between)
        return np.round(np.arange(clips) * between)

    def frame_indices(self, total_frames: int, start_index: int = 0, fps: float = 0.0) -> np.ndarray:
        span = self.span(fps)
        offsets = self.test_offsets(total_frames, span)
        if self.target_fps is not None:
            steps = np.linspace(0, span - 1, self.clip_len).astype(np.int32)
        else:
            steps = np.arange(self.clip_len) * self.frame_interval
        return self.bounded(offsets[:, None] + steps[None, :], total_frames, start_index)

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        inds = self.frame_indices(results["total_frames"], results.get("start_index", 0), results.get("avg_fps", 0.0))
        results.update(frame_inds=inds, clip_len=self.clip_len, frame_interval=self.frame_interval,
                       num_clips=len(inds) // self.clip_len)
        return results


@TRANSFORMS_1X.register()
class UniformSample(SampleFrames):
    """MMAction2 1.x's ``UniformSample`` (UniFormer, UniFormerV2), test mode: the video's first ``N - 1``
    frames cut into ``clip_len`` segments of ``s = (N - 1) / clip_len``; clip ``k`` of ``num_clips`` takes
    frame ``round(i * s) + int((k + 1) * s / (num_clips + 1))`` of segment ``i``."""

    def __init__(self, clip_len: int, num_clips: int = 1, test_mode: bool = False) -> None:
        super().__init__(clip_len, 1, num_clips, test_mode=test_mode)

    def frame_indices(self, total_frames: int, start_index: int = 0) -> np.ndarray:
        seg_size = float(total_frames - 1) / self.clip_len
        duration = seg_size / (self.num_clips + 1)
        starts = np.array([int(np.round(seg_size * i)) for i in range(self.clip_len)])
        shifts = np.array([int(duration * (k + 1)) for k in range(self.num_clips)])
        return (shifts[:, None] + starts[None, :]).reshape(-1).astype(np.int64) + start_index


@TRANSFORMS_1X.register("UntrimmedSampleFrames")
class UntrimmedSampleFrames1x(SampleFrames):
    """MMAction2 1.x's ``UntrimmedSampleFrames``: a clip centred every ``clip_interval`` frames from
    ``clip_interval // 2`` on, its ``clip_len`` frames ``frame_interval`` apart (the centre at index
    ``clip_len // 2``), clamped to the video. (0.x's ``frame_interval`` was the spacing of the centres.)"""

    def __init__(self, clip_len: int = 1, clip_interval: int = 16, frame_interval: int = 1) -> None:
        super().__init__(clip_len, frame_interval)
        if not isinstance(clip_interval, int) or isinstance(clip_interval, bool) or clip_interval < 1:
            raise UserError(f"UntrimmedSampleFrames: clip_interval must be a positive integer, got {clip_interval!r}")
        self.clip_interval = clip_interval

    def describe_clips(self) -> str:
        return f"clips every {self.clip_interval} frames"

    def frame_indices(self, total_frames: int, start_index: int = 0) -> np.ndarray:
        centers = np.arange(self.clip_interval // 2, total_frames, self.clip_interval)
        half = self.clip_len // 2
        steps = np.arange(-half * self.frame_interval, self.frame_interval * (self.clip_len - half),
                          self.frame_interval)
        inds = np.clip(centers[:, None] + steps[None, :], 0, total_frames - 1)
        return (inds.reshape(-1) + start_index).astype(np.int64)
