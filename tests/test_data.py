"""The data path: video list, sampling, decoding and transforms, checked against MMAction2 0.x's golden data."""
from __future__ import annotations

import json
import logging
import os
import re
import sys

import av
import cv2
import numpy as np
import pytest

from helpers import GOLDEN, ROOT, VIDEOS, assert_input_stats, encode_video, gradient_frames
from featx.config import read_config
from featx.data import Failure, VideoDataset, VideoItem, build_pipeline, decoded_samples, read_video_list
from featx.data.decoders import library_noise_hidden
from featx.data.decoders.decord_reader import DecordReader
from featx.data.pipeline import Role, check_step
from featx.errors import UserError, VideoError
from featx.registry import DECODERS, TRANSFORMS, TRANSFORMS_1X, Registry

MEAN, STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
NORMALIZE = dict(type="Normalize", mean=MEAN, std=STD, to_bgr=False)
VIDEO_NAMES = sorted(p.name for p in VIDEOS.iterdir())


def case_pipeline(clip_len: int, interval: int, num_clips: int, crop: dict, input_format: str) -> list[dict]:
    """A test pipeline as the shipped configs write it."""
    return [
        dict(type="DecordInit", num_threads=1),
        dict(type="SampleFrames", clip_len=clip_len, frame_interval=interval, num_clips=num_clips, test_mode=True),
        dict(type="DecordDecode"),
        dict(type="Resize", scale=(-1, 256)),
        crop,
        NORMALIZE,
        dict(type="FormatShape", input_format=input_format),
        dict(type="Collect", keys=["imgs"], meta_keys=[]),
        dict(type="ToTensor", keys=["imgs"]),
    ]


CASES = {
    "tsn_clip": case_pipeline(1, 1, 25, dict(type="CenterCrop", crop_size=256), "NCHW"),
    "slowonly_clip": case_pipeline(4, 16, 10, dict(type="CenterCrop", crop_size=256), "NCTHW"),
    "slowonly_k400_3crop": case_pipeline(4, 16, 10, dict(type="ThreeCrop", crop_size=256), "NCTHW"),
    "tsn_k400_10crop": case_pipeline(1, 1, 25, dict(type="TenCrop", crop_size=224), "NCHW"),
}


def golden(case: str, kind: str) -> dict:
    return json.loads((GOLDEN / f"{case}.{kind}.json").read_text())


def run(cfgs: list[dict], results: dict) -> dict:
    return build_pipeline(cfgs)(results)


def transform(cfg: dict, **results) -> dict:
    return TRANSFORMS.build(cfg)(results)


# ---------------------------------------------------------------- decoding


LOSSLESS = [("libx264rgb", "rgb24", {"qp": "0"}), ("ffv1", "bgr0", {})]
REQUEST = np.array([5, 3, 3, 19, 0, 12, 5, 17, 1], dtype=np.int64)  # unsorted, with repeats
OPEN_STEPS = [name for name in TRANSFORMS.names() if TRANSFORMS.get(name).role is Role.OPEN]


@pytest.fixture(scope="module", params=LOSSLESS, ids=[c[0] for c in LOSSLESS])
def lossless_clip(request, tmp_path_factory):
    """(path, frames): 20 frames of moving gradients at 10 fps, encoded losslessly."""
    codec, pix_fmt, options = request.param
    if codec not in av.codecs_available:
        pytest.skip(f"PyAV has no {codec} encoder")
    frames = gradient_frames()
    path = tmp_path_factory.mktemp("lossless") / f"lossless_{codec}.mkv"
    return str(encode_video(path, frames, codec, pix_fmt, options, fps=10)), frames


@pytest.mark.parametrize("name", DECODERS.names())
def test_every_decoder_returns_the_exact_frames_of_a_lossless_clip(name, lossless_clip):
    """The VideoReader contract, for every registered decoder: frame count, fps, and the exact frames at
    any indices in the order asked (repeats as repeats), whether it may decode them sorted or not."""
    path, frames = lossless_clip
    try:
        reader = DECODERS.get(name)(path, num_threads=1)
    except UserError as exc:  # its optional library, or the GPU it decodes on, is not here
        pytest.skip(f"{name}: {exc}")
    assert len(reader) == reader.num_frames == 20 and reader.avg_fps == 10.0 and reader.frames_on == "host"
    for in_order in (False, True):
        got = reader.get_frames(REQUEST, in_order=in_order)
        assert got.dtype == np.uint8 and np.array_equal(got, frames[REQUEST]), in_order
    assert reader.get_frames(REQUEST, accurate=False).shape == (len(REQUEST), 48, 64, 3)  # key frames: approximate
    with pytest.raises(VideoError, match=re.escape(f"{path}.missing: file not found")):
        DECODERS.get(name)(path + ".missing")


@pytest.mark.parametrize("step", OPEN_STEPS)
def test_mmaction2_decoding_steps_open_with_their_backend_or_the_runs(step, lossless_clip):
    """Each step that opens a video (DecordInit, PyAVInit, ...) and its decoding step give the exact frames
    with the step's own backend and with the one the run chose (--decoder, --decode-order sorted)."""
    path, frames = lossless_clip
    steps = [dict(type=step), dict(type=step.replace("Init", "Decode"))]
    results = run(steps, {"filename": path, "frame_inds": REQUEST})
    assert results["total_frames"] == 20 and results["avg_fps"] == 10.0
    assert results["imgs"].dtype == np.uint8 and np.array_equal(results["imgs"], frames[REQUEST])
    assert results["img_shape"] == results["original_shape"] == (48, 64)
    assert "video_reader" not in results  # dropped after decoding
    pipeline = build_pipeline(steps, decoder="decord", decode_order="sorted")
    assert pipeline.find(Role.OPEN)[0].backend == "decord" and pipeline.find(Role.DECODE)[0].in_order
    assert np.array_equal(pipeline({"filename": path, "frame_inds": REQUEST})["imgs"], frames[REQUEST])


@pytest.mark.parametrize("name", TRANSFORMS.names())
def test_every_transform_has_a_role_and_what_its_role_requires(name):
    factory = TRANSFORMS.get(name)
    assert isinstance(factory.role, Role)
    assert all(callable(getattr(factory, method)) for method in factory.role.requires)


def test_a_transform_without_a_valid_role_cannot_register():
    registry = Registry("transform")
    registry.check = check_step

    class NoRole:
        def __call__(self, results):
            return results

    class TextRole(NoRole):
        role = "spatial"

    class OpensWithoutDecoderChoice(NoRole):
        role = Role.OPEN

    for cls, message in ((NoRole, "None is not a featx.data.pipeline.Role"), (TextRole, "'spatial' is not"),
                         (OpensWithoutDecoderChoice, "its role open needs use_decoder")):
        with pytest.raises(TypeError, match=message):
            registry.register()(cls)
    assert registry.names() == []


@pytest.mark.parametrize("name", VIDEO_NAMES)
def test_fixture_videos_open(name):
    reader = DecordReader(str(VIDEOS / name))
    assert len(reader) > 0 and reader.avg_fps > 0


# ---------------------------------------------------------------- sampling


@pytest.mark.parametrize("case", sorted(CASES))
def test_sample_frames_matches_golden_indices(case):
    sampler = TRANSFORMS.build(CASES[case][1])
    for name, expected in golden(case, "frame_inds").items():
        total = len(DecordReader(str(VIDEOS / name)))
        got = sampler({"total_frames": total, "start_index": 0})["frame_inds"]
        assert got.dtype == np.int64 and got.tolist() == expected, name


GOLDEN_CASES = sorted(p.name.split(".")[0] for p in GOLDEN.glob("*.options.json"))


@pytest.mark.parametrize("case", GOLDEN_CASES)
def test_shipped_configs_sample_the_golden_indices(case):
    """Every family's sampler (SampleFrames, DenseSampleFrames, ...) read from the shipped config, as the
    golden options and featx's raw-frame rule give it."""
    options = golden(case, "options")
    config = read_config(ROOT / "configs" / "recognition" / options["config"], options["cfg_options"])
    assert config.raw_frames == options["raw_frame_rule"]
    sampler = next(TRANSFORMS.build(s) for s in config.pipeline if s["type"].endswith("SampleFrames"))
    for name, expected in golden(case, "frame_inds").items():
        total = len(DecordReader(str(VIDEOS / name)))
        assert sampler({"total_frames": total, "start_index": 0})["frame_inds"].tolist() == expected, name


def test_dense_and_untrimmed_sampling_hand_computed():
    dense = dict(type="DenseSampleFrames", clip_len=1, num_clips=2, sample_range=8, num_sample_positions=3)
    # starts linspace(0, 20 - 8, 3) = 0, 6, 12; clips 4 apart
    assert transform(dense, total_frames=20, start_index=0)["frame_inds"].tolist() == [0, 4, 6, 10, 12, 16]
    assert transform(dense, total_frames=5, start_index=0)["frame_inds"].tolist() == [0, 4] * 3  # one start, wrapped
    untrimmed = transform(dict(type="UntrimmedSampleFrames", clip_len=3, frame_interval=4), total_frames=11, start_index=0)
    assert untrimmed["frame_inds"].tolist() == [1, 2, 3, 5, 6, 7, 9, 10, 10] and untrimmed["num_clips"] == 3


def test_dense_windows_of_whole_view_groups_hand_computed():
    """--dense-stride on a backbone that mixes groups of 4 views: a window of 4 consecutive segments starts
    every stride, and chunks of clips hold whole windows."""
    sampler = dict(type="StrideSampleFrames", clip_len=1, stride=7, window=4, clips_per_chunk=2)
    results = transform(sampler, total_frames=20, start_index=0)  # last start 20 - 4 = 16: 0, 7, 14
    assert results["frame_inds"].tolist() == [0, 1, 2, 3, 7, 8, 9, 10, 14, 15, 16, 17]
    assert (results["num_clips"], results["clip_len"], results["clips_per_chunk"]) == (3, 4, 2)
    assert TRANSFORMS.build(dict(sampler, clips_per_chunk=None)).clips_per_chunk == 16  # 64 frames: 16 windows
    two_frame_segments = transform(dict(sampler, clip_len=2, frame_interval=2, window=2), total_frames=16)
    assert two_frame_segments["frame_inds"].tolist() == [0, 2, 4, 6, 7, 9, 11, 13]  # segments of 2 frames, 2 apart
    with pytest.raises(UserError, match="window must be a positive int"):
        TRANSFORMS.build(dict(sampler, window=0))


def test_raw_frame_rule_and_flow_refusal():
    config = read_config(ROOT / "configs/recognition/tsm/tsm_r50_1x1x8_50e_kinetics400_rgb.py")
    types = [s["type"] for s in config.pipeline]
    assert types[:3] == ["DecordInit", "SampleFrames", "DecordDecode"] and "RawFrameDecode" not in types
    with pytest.raises(UserError, match="optical flow is not supported"):
        read_config(ROOT / "configs/recognition/tsn/tsn_r50_320p_1x1x3_110e_kinetics400_flow.py")


def sample_inds(total_frames: int, start_index: int = 0, **kwargs) -> list[int]:
    results = transform(dict(type="SampleFrames", test_mode=True, **kwargs), total_frames=total_frames, start_index=start_index)
    return results["frame_inds"].tolist()


def test_sample_frames_hand_computed():
    assert sample_inds(180, clip_len=1, num_clips=25)[:8] == [3, 10, 18, 25, 32, 39, 46, 54]  # int(7.2k + 3.6)
    assert sample_inds(18, clip_len=4, frame_interval=16, num_clips=10) == [0, 16, 14, 12] * 10  # span 64 > 18: offsets 0, looped
    assert sample_inds(180, start_index=1, clip_len=1, num_clips=2) == [45 + 1, 135 + 1]
    results = transform(dict(type="SampleFrames", clip_len=4, frame_interval=16, num_clips=10), total_frames=100)
    assert (results["clip_len"], results["frame_interval"], results["num_clips"]) == (4, 16, 10)


def test_sample_frames_train_mode_is_still_the_test_rule():
    assert sample_inds(180, clip_len=1, num_clips=25) == transform(
        dict(type="SampleFrames", clip_len=1, num_clips=25, test_mode=False), total_frames=180)["frame_inds"].tolist()


def test_sample_frames_twice_sample():
    assert sample_inds(10, clip_len=1, num_clips=2, twice_sample=True) == [2, 7, 0, 5]
    # avg 3.5: shifted offsets 1, 5; the unshifted 0, 3.5 stay float until the final cast (3.5 + 3 -> 6)
    assert sample_inds(12, clip_len=2, frame_interval=3, num_clips=2, twice_sample=True) == [1, 4, 5, 8, 0, 3, 3, 6]
    # too short a video: N zero offsets, no second set
    assert sample_inds(5, clip_len=4, frame_interval=2, num_clips=2, twice_sample=True) == [0, 2, 4, 1] * 2


def test_sample_frames_repeat_last():
    assert sample_inds(20, clip_len=4, frame_interval=8, num_clips=2, out_of_bound_opt="repeat_last") == [0, 8, 16, 16] * 2
    assert sample_inds(20, clip_len=4, frame_interval=8, num_clips=2) == [0, 8, 16, 4] * 2


# ---------------------------------------------------------------- the golden pipelines


@pytest.mark.parametrize("case", sorted(CASES))
def test_pipeline_matches_golden_input_stats(case):
    """Shape and per-view mean/std of the model input: pins resize, crop positions and order, normalisation."""
    pipeline = build_pipeline(CASES[case])
    for name, stats in golden(case, "input_stats").items():
        assert_input_stats(pipeline({"filename": str(VIDEOS / name), "start_index": 0})["imgs"], stats, name)


# ---------------------------------------------------------------- transforms on synthetic frames


def coordinate_frames(n: int, h: int, w: int) -> np.ndarray:
    """(n, h, w, 3) int32 frames whose channels are (frame index, y, x)."""
    t, y, x = np.meshgrid(np.arange(n), np.arange(h), np.arange(w), indexing="ij")
    return np.stack([t, y, x], axis=-1).astype(np.int32)


@pytest.mark.parametrize("size, expected", [
    ((240, 320), (341, 256)),  # (h, w) -> (new_w, new_h)
    ((320, 240), (256, 341)),  # portrait: width is the short side
    ((240, 426), (454, 256)),  # 426 * 256 / 240 = 454.4
    ((144, 176), (313, 256)),
])
def test_resize_short_side(size, expected):
    imgs = np.random.default_rng(0).integers(0, 256, (2, *size, 3), dtype=np.uint8)
    out = transform(dict(type="Resize", scale=(-1, 256)), imgs=imgs)
    assert out["imgs"].shape == (2, expected[1], expected[0], 3) and out["img_shape"] == (expected[1], expected[0])
    assert out["imgs"].dtype == np.uint8
    assert np.array_equal(out["imgs"][1], cv2.resize(imgs[1], expected, interpolation=cv2.INTER_LINEAR))


@pytest.mark.parametrize("cfg, expected", [
    (dict(scale=(256, -1)), (341, 256)),  # the -1 may come first
    (dict(scale=(340, 256)), (340, 255)),  # both bounded: r = min(340/320, 256/240)
    (dict(scale=0.5), (160, 120)),
    (dict(scale=(224, 200), keep_ratio=False), (224, 200)),
    (dict(scale=[-1, 256]), (341, 256)),  # a list, as --cfg-options may give
])
def test_resize_scales(cfg, expected):
    out = transform(dict(type="Resize", **cfg), imgs=np.zeros((1, 240, 320, 3), np.uint8))
    assert out["imgs"].shape[1:3] == expected[::-1]


def test_resize_interpolation_names():
    imgs = np.random.default_rng(1).integers(0, 256, (1, 30, 40, 3), dtype=np.uint8)
    out = transform(dict(type="Resize", scale=(-1, 45), interpolation="bicubic"), imgs=imgs)["imgs"]
    assert np.array_equal(out[0], cv2.resize(imgs[0], (60, 45), interpolation=cv2.INTER_CUBIC))


def test_center_crop():
    out = transform(dict(type="CenterCrop", crop_size=256), imgs=coordinate_frames(2, 256, 341))
    assert out["imgs"].shape == (2, 256, 256, 3) and out["num_crops"] == 1
    assert out["imgs"][0, 0, 0].tolist() == [0, 0, 42]  # left (341 - 256) // 2, top 0
    out = transform(dict(type="CenterCrop", crop_size=(100, 50)), imgs=coordinate_frames(1, 120, 130))
    assert out["imgs"].shape == (1, 50, 100, 3) and out["imgs"][0, 0, 0].tolist() == [0, 35, 15]


@pytest.mark.parametrize("size, origins", [
    ((256, 341), [(0, 0), (0, 84), (0, 42)]),  # (h, w), then (y, x) of each crop: left, right, middle
    ((341, 256), [(0, 0), (84, 0), (42, 0)]),  # portrait: top, bottom, middle
])
def test_three_crop(size, origins):
    out = transform(dict(type="ThreeCrop", crop_size=256), imgs=coordinate_frames(2, *size))
    imgs = out["imgs"]
    assert imgs.shape == (6, 256, 256, 3) and out["num_crops"] == 3
    # crop-major: crop 1's two frames, then crop 2's, then crop 3's
    assert [tuple(v[0, 0]) for v in imgs] == [(t, y, x) for y, x in origins for t in range(2)]


def test_three_crop_needs_a_matching_side():
    with pytest.raises(VideoError, match="ThreeCrop"):
        transform(dict(type="ThreeCrop", crop_size=224), imgs=coordinate_frames(1, 256, 341))


def test_ten_crop():
    imgs = coordinate_frames(2, 256, 341)
    out = transform(dict(type="TenCrop", crop_size=224), imgs=imgs)["imgs"]
    assert out.shape == (20, 224, 224, 3)
    ws, hs = (341 - 224) // 4, (256 - 224) // 4  # 29, 8
    offsets = [(0, 0), (4 * ws, 0), (0, 4 * hs), (4 * ws, 4 * hs), (2 * ws, 2 * hs)]
    for i, (x, y) in enumerate(offsets):
        crop = imgs[:, y:y + 224, x:x + 224]
        assert np.array_equal(out[4 * i:4 * i + 2], crop)  # the crop's frames ...
        assert np.array_equal(out[4 * i + 2:4 * i + 4], crop[:, :, ::-1])  # ... then the same, mirrored
    assert out[2, 0, 0].tolist() == [0, 0, 223]


def test_crop_larger_than_frame_is_a_video_error():
    with pytest.raises(VideoError, match="smaller than"):
        transform(dict(type="CenterCrop", crop_size=256), imgs=coordinate_frames(1, 144, 176))


def test_flip():
    imgs = coordinate_frames(2, 4, 5)
    assert transform(dict(type="Flip", flip_ratio=0), imgs=imgs)["imgs"] is imgs
    assert np.array_equal(transform(dict(type="Flip", flip_ratio=1.0), imgs=imgs)["imgs"], imgs[:, :, ::-1])
    assert np.array_equal(transform(dict(type="Flip", flip_ratio=1, direction="vertical"), imgs=imgs)["imgs"], imgs[:, ::-1])


def test_normalize_is_mmcvs_arithmetic():
    """(x - mean) times (1 / std), both in float32: what mmcv's OpenCV calls give with OpenCV 5 (the reference's)."""
    imgs = np.random.default_rng(2).integers(0, 256, (3, 20, 30, 3), dtype=np.uint8)[:, 2:18, 3:27]  # a crop view
    out = transform(NORMALIZE, imgs=imgs)["imgs"]
    expected = (imgs.astype(np.float32) - np.float32(MEAN)) * (1 / np.array(STD)).astype(np.float32)
    assert out.dtype == np.float32 and out.flags.c_contiguous and np.array_equal(out, expected)
    if int(cv2.__version__.split(".")[0]) >= 5:  # mmcv's imnormalize_: in-place cv2.subtract, then cv2.multiply
        frames = np.ascontiguousarray(imgs, dtype=np.float32).reshape(-1, 24, 3)
        cv2.subtract(frames, np.array(MEAN).reshape(1, -1), frames)
        cv2.multiply(frames, 1 / np.array(STD).reshape(1, -1), frames)
        assert np.array_equal(out.reshape(-1, 24, 3), frames)
    bgr = transform(dict(NORMALIZE, to_bgr=True), imgs=imgs)["imgs"]
    np.testing.assert_allclose(bgr, (imgs[..., ::-1] - np.array(MEAN)) / np.array(STD), rtol=1e-6, atol=1e-6)


def test_format_shape_nchw():
    imgs = coordinate_frames(6, 4, 5)
    out = transform(dict(type="FormatShape", input_format="NCHW"), imgs=imgs)["imgs"]
    assert out.shape == (6, 3, 4, 5) and out.flags.c_contiguous
    assert np.array_equal(out, imgs.transpose(0, 3, 1, 2))


def test_format_shape_ncthw_order():
    crops, clips, clip_len = 2, 3, 4
    imgs = coordinate_frames(crops * clips * clip_len, 5, 6)  # crop-major, then clip, then frame
    out = transform(dict(type="FormatShape", input_format="NCTHW"), imgs=imgs, num_clips=clips, clip_len=clip_len)["imgs"]
    assert out.shape == (crops * clips, 3, clip_len, 5, 6)
    for view in range(crops * clips):
        for t in range(clip_len):
            assert np.array_equal(out[view, :, t], imgs[view * clip_len + t].transpose(2, 0, 1))


def test_collect_and_to_tensor_keep_results():
    results = {"imgs": np.zeros(1)}
    cfgs = [dict(type="Collect", keys=["imgs"], meta_keys=[], meta_name="img_metas"), dict(type="ToTensor", keys=["imgs"])]
    out = run(cfgs, dict(results))
    assert out.keys() - {"timings"} == results.keys()  # the pipeline adds only its per-step timings


# ---------------------------------------------------------------- video list


def test_read_video_list(tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text("# videos\n\na.mp4\nsub/b c.mp4 3\n  d.avi  \n/abs/e.mp4\nf 2.mp4\n")
    items = read_video_list(listing, tmp_path / "root")
    assert [i.key for i in items] == ["a.mp4", "sub/b c.mp4", "d.avi", "/abs/e.mp4", "f 2.mp4"]
    assert items[0] == VideoItem("a.mp4", str(tmp_path / "root" / "a.mp4"))
    assert items[3].path == "/abs/e.mp4"


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),
    ("# nothing\n\n", "lists no videos"),
    ("a.mp4\nb.mp4\na.mp4 1\n", r"'a.mp4' is listed twice \(lines 1 and 3\)"),
])
def test_video_list_errors(tmp_path, content, message):
    listing = tmp_path / "list.txt"
    if content is not None:
        listing.write_text(content)
    with pytest.raises(UserError, match=message):
        read_video_list(listing, tmp_path)


@pytest.mark.parametrize("cfg, message", [
    (dict(type="NoSuchTransform"), "NoSuchTransform"),
    (dict(type="Flip", flip_ratio=0.5), "flip_ratio"),
    (dict(type="SampleFrames", clip_len=1, temporal_jitter=True), "temporal_jitter"),
    (dict(type="SampleFrames", clip_len=1, out_of_bound_opt="wrap"), "out_of_bound_opt"),
    (dict(type="Resize", scale=(-1, 256), lazy=True), "lazy"),
    (dict(type="Resize", scale=(-1, 256), interpolation="linear"), "interpolation"),
    (dict(type="Resize", scale=(-1, 256), keep_ratio=False), "keep_ratio=False"),
    (dict(type="Resize", scale=(-1, 256), size=3), "size"),
    (dict(type="CenterCrop", crop_size=0), "crop_size"),
    (dict(type="FormatShape", input_format="NTHWC"), "input_format"),
    (dict(type="DecordInit", io_backend="petrel"), "io_backend"),
])
def test_bad_transform_configs_are_user_errors(cfg, message):
    with pytest.raises(UserError, match=message):
        build_pipeline([dict(type="DecordInit"), cfg])


def test_a_decoding_librarys_own_stderr_is_hidden_unless_debugging(capfd):
    """What decord and its FFmpeg write straight to file descriptor 2 stays out of the terminal; with
    --debug (featx logging at debug level) it is shown."""
    with library_noise_hidden():
        os.write(2, b"[mov,mp4 @ 0x1] moov atom not found\n")
    print("featx's own", file=sys.stderr)
    assert capfd.readouterr().err == "featx's own\n"
    logger = logging.getLogger("featx")
    level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        with library_noise_hidden():
            os.write(2, b"video_reader.cc:312: Failed to seek\n")
    finally:
        logger.setLevel(level)
    assert capfd.readouterr().err == "video_reader.cc:312: Failed to seek\n"


@pytest.fixture
def bad_videos(tmp_path):
    (tmp_path / "empty.mp4").touch()
    (tmp_path / "text.mp4").write_text("this is not a video\n")
    (tmp_path / "text.txt").write_text("this is not a video\n")
    return tmp_path


@pytest.mark.parametrize("name, reason", [
    ("missing.mp4", "file not found"),
    ("empty.mp4", "empty file"),
    ("text.mp4", "not a video file"),
    ("text.txt", "not a video file"),  # whatever the suffix (FFmpeg reads a .txt as text "video")
])
def test_dataset_reports_bad_videos(bad_videos, name, reason):
    dataset = VideoDataset([VideoItem(name, str(bad_videos / name))], build_pipeline(CASES["tsn_clip"]))
    sample = dataset.load((0, 0))
    assert isinstance(sample, Failure) and (sample.index, sample.key, sample.chunk) == (0, name, 0)
    assert reason in sample.error and name in sample.error


def test_dataset_goes_on_after_a_bad_video(bad_videos):
    good = "h264_176x144_18frames.mp4"
    items = [VideoItem("text.mp4", str(bad_videos / "text.mp4")), VideoItem(good, str(VIDEOS / good))]
    dataset = VideoDataset(items, build_pipeline(CASES["slowonly_clip"]))
    batch = list(decoded_samples(dataset, workers=2, timeout=60))
    assert [s.index for s in batch] == [0, 1] and isinstance(batch[0], Failure)
    sample = batch[1]
    assert sample.key == good and sample.total_frames == 18 and sample.avg_fps == 15.0
    assert sample.imgs.dtype == np.float32 and sample.imgs.shape == (10, 3, 4, 256, 256)
    assert sample.frame_inds.tolist() == golden("slowonly_clip", "frame_inds")[good]


def transform_1x(cfg: dict, **results) -> dict:
    return TRANSFORMS_1X.build(cfg)({"start_index": 0, **results})


def test_1x_sample_frames_spreads_3d_clips_from_first_to_last_frame():
    # 90 frames, 32x2x4: a clip spans 63 frames; 1.x starts clips at round(k * 27 / 3), 0.x centres them in segments
    clips = dict(type="SampleFrames", clip_len=32, frame_interval=2, num_clips=4, test_mode=True)
    assert transform_1x(clips, total_frames=90)["frame_inds"][::32].tolist() == [0, 9, 18, 27]
    assert transform(clips, total_frames=90, start_index=0)["frame_inds"][::32].tolist() == [3, 10, 16, 23]
    one = transform_1x({**clips, "num_clips": 1}, total_frames=90)["frame_inds"]
    assert one[0] == (90 - 63) // 2 and len(one) == 32
    twice = transform_1x(dict(type="SampleFrames", clip_len=2, frame_interval=3, num_clips=2, twice_sample=True),
                         total_frames=20)  # span 4, max offset 16: 4 clips 16 apart, looped
    assert twice["frame_inds"].tolist() == [0, 3, 16, 19, 12, 15, 8, 11] and twice["num_clips"] == 4
    short = transform_1x(dict(type="SampleFrames", clip_len=4, frame_interval=16, num_clips=2), total_frames=18)
    assert short["frame_inds"].tolist() == [0, 16, 14, 12] * 2  # no room: both clips at 0, looped


def test_1x_sample_frames_2d_and_target_fps():
    # 2D: segments of N / num_clips, frame_interval plays no part (0.x: (N - interval + 1) / num_clips)
    tsn = dict(type="SampleFrames", clip_len=1, frame_interval=2, num_clips=3, test_mode=True)
    assert transform_1x(tsn, total_frames=30)["frame_inds"].tolist() == [5, 15, 25]
    assert transform(tsn, total_frames=30, start_index=0)["frame_inds"].tolist() == [4, 14, 24]
    twice = transform_1x({**tsn, "twice_sample": True}, total_frames=30)["frame_inds"]
    assert twice.tolist() == [5, 15, 25, 0, 10, 20]
    # 60 fps to 30: a 4x2 clip spans 16 frames, its 4 spread by linspace(0, 15, 4); offsets floor(84 / 1) apart
    fps = dict(type="SampleFrames", clip_len=4, frame_interval=2, num_clips=2, target_fps=30)
    assert transform_1x(fps, total_frames=100, avg_fps=60.0)["frame_inds"].tolist() == [0, 5, 10, 15, 84, 89, 94, 99]
    with pytest.raises(UserError, match="target_fps"):
        TRANSFORMS_1X.build({**fps, "target_fps": 0})


def test_1x_uniform_and_untrimmed_sampling_hand_computed():
    # 33 frames, 4 segments of 8: clip k takes round(8 i) + int((k + 1) * 8 / 3)
    uniform = transform_1x(dict(type="UniformSample", clip_len=4, num_clips=2, test_mode=True), total_frames=33)
    assert uniform["frame_inds"].tolist() == [2, 10, 18, 26, 5, 13, 21, 29] and uniform["num_clips"] == 2
    # 1.x: centres every clip_interval frames, the clip's frames frame_interval apart, clamped
    untrimmed = dict(type="UntrimmedSampleFrames", clip_len=3, clip_interval=8, frame_interval=2)
    assert transform_1x(untrimmed, total_frames=13)["frame_inds"].tolist() == [2, 4, 6, 10, 12, 12]
    with pytest.raises(UserError, match="clip_interval"):  # a 0.x name is not a 1.x one
        TRANSFORMS_1X.build({**untrimmed, "clip_interval": 0})
