"""Beyond the seed: per-clip and per-view features, dense sampling, output formats, provenance, folder input."""
from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import featx
from helpers import CASE_CONFIGS, GOLDEN, ROOT, VIDEOS, error_line, featx_exits, golden_features, rel_error, write_list
from featx.config import read_config
from featx.data import VideoDataset, VideoItem, build_pipeline
from featx.errors import UserError
from featx.meta import Failure, Meta, VideoEntry, write_meta
from featx.outputs import Row, open_output, safe_names
from featx.registry import FORMATS
from featx.show import show

TSN = CASE_CONFIGS["tsn_clip"]
SLOWONLY = CASE_CONFIGS["slowonly_clip"]
CPU = ["--device", "cpu", "--workers", "1"]
FAST = ["--cfg-options", "data.test.pipeline.1.num_clips=3", *CPU]  # 3 TSN snippets a video: quick
# The slowonly_clip config's sampling (what clip times and dense sampling are about) on 64 px views, not 256: the
# same ResNet-50 and checkpoint, 1/16 of the work
SMALL_VIEWS = ["data.test.pipeline.3.scale=(-1,64)", "data.test.pipeline.4.crop_size=64"]
FPS = {  # from the fixtures README, not from any decoder
    "h264_320x240_30fps.mp4": 30, "mpeg4_320x240_25fps.avi": 25, "h264_426x240_24fps.mp4": 24,
    "h264_portrait_240x320.mp4": 30, "h264_176x144_18frames.mp4": 15,
}
LONG = "h264_320x240_30fps.mp4"  # 180 frames
SHORT = "h264_176x144_18frames.mp4"


@pytest.mark.parametrize("case", ["tsn_clip", "slowonly_k400_3crop"])
def test_per_clip_and_per_view_average_to_the_default_vector(case, golden_checkpoint, tmp_path):
    names = [SHORT]
    video_list = write_list(tmp_path / "list.txt", names)
    common = [CASE_CONFIGS[case], golden_checkpoint(case), "--video-list", video_list, "--video-root", VIDEOS, *CPU]
    if case == "slowonly_k400_3crop":  # 2 clips x 3 crops, not 10 x 3: quicker, and still several of each
        common += ["--cfg-options", "data.test.pipeline.1.num_clips=2"]
    outs = {per: tmp_path / f"{per}.pkl" for per in ("video", "clip", "view")}
    featx_exits(*common, "--out", outs["video"])
    featx_exits(*common, "--out", outs["clip"], "--per-clip")
    featx_exits(*common, "--out", outs["view"], "--per-view")
    video, clip, view = (featx.load(outs[p]).features for p in ("video", "clip", "view"))
    num_clips, crops = (2, 3) if case == "slowonly_k400_3crop" else (25, 1)
    for name in names:
        assert clip[name].shape == (num_clips, 2048) and view[name].shape == (num_clips, crops, 2048)
        if case == "tsn_clip":
            assert rel_error(video[name], golden_features(case)[name]) <= 1e-4
        assert rel_error(clip[name].mean(0), video[name]) <= 1e-6
        assert rel_error(view[name].mean(1), clip[name]) <= 1e-6


def test_clip_times_are_frame_index_over_fps(golden_checkpoint, tmp_path):
    expected = json.loads((GOLDEN / "slowonly_clip.frame_inds.json").read_text())
    video_list = write_list(tmp_path / "list.txt", sorted(FPS))
    out = tmp_path / "feats.pkl"
    featx_exits(SLOWONLY, golden_checkpoint("slowonly_clip"), "--video-list", video_list, "--video-root", VIDEOS,
         "--out", out, "--per-clip", *CPU, "--cfg-options", "model.test_cfg.max_testing_views=5", *SMALL_VIEWS)
    meta = featx.load(out).meta
    for name, fps in FPS.items():
        video = meta["videos"][name]
        assert video["frame_inds"] == expected[name]
        assert video["avg_fps"] == pytest.approx(fps)
        assert video["duration"] == pytest.approx(video["total_frames"] / fps)
        clips = np.asarray(expected[name]).reshape(10, 4)
        np.testing.assert_allclose(video["clips"], [[c.min() / fps, (c.max() + 1) / fps] for c in clips], rtol=1e-12)
    assert meta["per"] == "clip" and meta["format"] == "pkl"
    assert "ResNet3dSlowOnly" in meta["config"] and len(meta["checkpoint_sha256"]) == 64
    assert meta["featx_version"] == featx.__version__ and meta["precision"] == "fp32" and meta["device"] == "cpu"


@pytest.fixture
def tree(tmp_path):
    """A video root with a sub-folder, plus a video outside it listed by absolute path."""
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    shutil.copy(VIDEOS / SHORT, root / "sub" / SHORT)
    shutil.copy(VIDEOS / "mpeg4_320x240_25fps.avi", root / "b.avi")
    (root / "notes.txt").write_text("not a video")
    outside = tmp_path / "elsewhere" / "portrait.mp4"
    outside.parent.mkdir()
    shutil.copy(VIDEOS / "h264_portrait_240x320.mp4", outside)
    keys = ["b.avi", f"sub/{SHORT}", str(outside)]
    return root, write_list(tmp_path / "list.txt", keys), keys


def out_names(fmt: str) -> list[str]:
    """Every kind of ``--out`` name the format ``fmt`` is written as: a folder's name ending in /, or a file
    name with each suffix it is chosen by (a format chosen by --out-format only: each suffix it accepts)."""
    cls = FORMATS.get(fmt)
    if cls.folder:
        return ["feats/"]
    suffixes = cls.suffixes or [s for other in FORMATS.names() for s in FORMATS.get(other).suffixes]
    names = []
    for suffix in suffixes:
        try:
            cls.check_path(Path("feats" + suffix))
        except UserError:
            continue
        names.append("feats" + suffix)
    return names


def test_every_format_round_trips_through_load(tiny_tsn, tree, tmp_path):
    """The real CLI, with every registered format, as named by its first --out name."""
    root, video_list, keys = tree
    common = [*tiny_tsn, "--video-list", video_list, "--video-root", root, *FAST]
    featx_exits(*common, "--out", tmp_path / "feats.pkl")
    with open(tmp_path / "feats.pkl", "rb") as f:
        reference = pickle.load(f)
    assert list(reference) == keys
    for fmt in FORMATS.names():
        out = f"{tmp_path / fmt}/{out_names(fmt)[0]}"  # a string: "feats/" keeps its slash
        featx_exits(*common, "--out", out, "--out-format", fmt)
        features, meta = featx.load(out)
        assert list(features) == keys, fmt
        for key in keys:
            assert features[key].dtype == np.float32 and np.array_equal(features[key], reference[key]), (fmt, key)
        assert list(meta["videos"]) == keys and meta["format"] == fmt
    # What a script written for each format reads without featx:
    assert out_names("list")[0] == "feats.json"  # MMAction2's list as JSON (its pickle: test_list_format_keeps_...)
    rows = json.loads((tmp_path / "list" / "feats.json").read_text())
    assert isinstance(rows, list) and all(np.array_equal(np.float32(r), reference[k]) for r, k in zip(rows, keys))
    with np.load(tmp_path / "npz" / "feats.npz") as npz:
        assert np.array_equal(npz[f"sub/{SHORT}"], reference[f"sub/{SHORT}"])
    assert np.array_equal(np.load(tmp_path / "dir" / "feats" / "sub" / f"{SHORT}.npy"), reference[f"sub/{SHORT}"])
    assert (tmp_path / "dir" / "feats" / (keys[2].lstrip("/") + ".npy")).is_file()  # absolute: made relative


def test_list_format_keeps_positions_when_a_video_fails(tiny_tsn, tmp_path):
    video_list = write_list(tmp_path / "list.txt", [SHORT, "missing.mp4", "mpeg4_320x240_25fps.avi"])
    out = tmp_path / "list.pkl"
    featx_exits(*tiny_tsn, "--video-list", video_list, "--video-root", VIDEOS, "--out", out,
         "--out-format", "list", *FAST, expect=1)
    rows = pickle.loads(out.read_bytes())
    assert len(rows) == 3 and rows[1] is None and rows[0].shape == rows[2].shape == (512,)  # ResNet-18's width
    assert list(featx.load(out).features) == [SHORT, "mpeg4_320x240_25fps.avi"]


def test_video_root_alone_is_walked_sorted(tiny_tsn, tree, tmp_path):
    root, _, _ = tree
    out = tmp_path / "walked.pkl"
    featx_exits(*tiny_tsn, "--video-root", root, "--out", out, *FAST)
    assert list(featx.load(out).features) == ["b.avi", f"sub/{SHORT}"]
    featx_exits(*tiny_tsn, "--video-root", root, "--out", out, "--video-ext", "mp4", *FAST)
    assert list(featx.load(out).features) == [f"sub/{SHORT}"]


def test_dir_output_is_written_as_videos_finish_and_resumes(tiny_tsn, tmp_path):
    video_list = write_list(tmp_path / "list.txt", [SHORT, "missing.mp4", "mpeg4_320x240_25fps.avi"])
    out = tmp_path / "feats"
    common = [*tiny_tsn, "--video-list", video_list, "--video-root", VIDEOS,
              "--out", f"{out}/", *FAST]
    featx_exits(*common, "--strict", expect=1)  # stops at the missing video: the first is already on disk
    assert [p.name for p in out.iterdir()] == [f"{SHORT}.npy"]
    assert not (tmp_path / "feats.meta.json").exists()
    write_list(video_list, [SHORT, "mpeg4_320x240_25fps.avi"])
    proc = featx_exits(*common)
    assert "1 computed in this run, 1 resumed" in proc.stderr
    features, meta = featx.load(out)
    assert list(features) == [SHORT, "mpeg4_320x240_25fps.avi"] and meta["videos"][SHORT]["file"] == f"{SHORT}.npy"


def _dense_dataset(stride: dict, clips_per_chunk: int | None = None) -> VideoDataset:
    pipeline = read_config(SLOWONLY).pipeline
    pipeline[1] = dict(type="StrideSampleFrames", clip_len=4, frame_interval=16, clips_per_chunk=clips_per_chunk,
                       **stride)
    return VideoDataset([VideoItem(LONG, str(VIDEOS / LONG))], build_pipeline(pipeline))


@pytest.mark.parametrize("stride, starts", [
    ({"stride": 8}, list(range(0, 132, 8))),  # a clip spans 49 frames: the last starts at 131 or before
    ({"stride_seconds": 1.5}, [0, 45, 90]),  # 30 fps
])
def test_dense_sampling_covers_the_video_a_chunk_at_a_time(stride, starts):
    dataset = _dense_dataset(stride, clips_per_chunk=2)
    chunks = list(dataset.samples())
    assert len(chunks) == -(-len(starts) // 2) and all(c.num_chunks == len(chunks) for c in chunks)
    assert all(c.imgs.shape[0] <= 2 for c in chunks)  # never more than a chunk of clips decoded at once
    inds = np.concatenate([c.frame_inds for c in chunks]).reshape(-1, 4)
    assert inds[:, 0].tolist() == starts and (inds - inds[:, :1] == [0, 16, 32, 48]).all()


def test_dense_flag_chunked_equals_one_piece_config(golden_checkpoint, tmp_path):
    video_list = write_list(tmp_path / "list.txt", [LONG, SHORT])
    common = ["--video-list", video_list, "--video-root", VIDEOS, "--device", "cpu", "--per-clip",
              "--cfg-options", *SMALL_VIEWS]
    config = tmp_path / "dense.py"  # the config route, all clips in one piece
    config.write_text(f"_base_ = [{str(ROOT / SLOWONLY)!r}]\n"
                      "data = dict(test=dict(pipeline=[dict(type='DecordInit'), dict(type='StrideSampleFrames', "
                      "clip_len=4, frame_interval=16, stride=8, clips_per_chunk=100), dict(type='DecordDecode'), "
                      "dict(type='Resize', scale=(-1, 256)), dict(type='CenterCrop', crop_size=256), "
                      "dict(type='Normalize', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], "
                      "to_bgr=False), dict(type='FormatShape', input_format='NCTHW'), "
                      "dict(type='Collect', keys=['imgs'], meta_keys=[]), dict(type='ToTensor', keys=['imgs'])]))\n")
    checkpoint = golden_checkpoint("slowonly_clip")
    featx_exits(config, checkpoint, *common, "--out", tmp_path / "one.pkl", "--workers", "0")
    featx_exits(SLOWONLY, checkpoint, *common, "--out", tmp_path / "chunked.pkl", "--dense-stride", "8", "--workers", "2")
    one, chunked = featx.load(tmp_path / "one.pkl").features, featx.load(tmp_path / "chunked.pkl")
    assert chunked.features[LONG].shape == (17, 2048) and chunked.features[SHORT].shape == (1, 2048)
    for key in (LONG, SHORT):
        assert rel_error(chunked.features[key], one[key]) <= 1e-6
    assert "StrideSampleFrames" in chunked.meta["config"]


def test_safe_names_are_relative_and_unique():
    names = safe_names(["a/b.mp4", "/a/b.mp4", "../../x.mp4", "c\\d.avi", "__featx_index__"])
    assert list(names.values()) == ["a/b.mp4", "a/b.mp4~2", "x.mp4", "c/d.avi", "__featx_index__~2"]


AWKWARD_KEYS = ["file", "allow_pickle", "a", "a/b.mp4", "a/b.mp4/c.mp4", "__featx_index__",
                "__featx_index__/d.mp4", "x", "x.npy", "e", "e.npy/f.mp4", "/abs/g.mp4", "../h i.mp4", "ünï.mp4"]
FAILED = "a/b.mp4"  # listed, but written by no format: its position stays empty


@pytest.mark.parametrize("shape", [(4,), (3, 4), (2, 3, 4)], ids=["per-video", "per-clip", "per-view"])
@pytest.mark.parametrize("fmt, name", [(fmt, name) for fmt in FORMATS.names() for name in out_names(fmt)])
def test_every_format_round_trips_awkward_keys(fmt, name, shape, tmp_path):
    """The contract of every registered format, as a run uses it: chosen for its --out name (or by name), given
    the listed keys, each array added as it comes (a format that streams stores it there), the whole written in
    list order less a failed video, the meta sidecar written as a run writes it; featx.load gives back every
    written key, in list order, with its float32 array. The keys are np.savez's own argument names, keys that are
    both a video and a folder of others (a, a/b.mp4; e.npy for a folder), a key ending in .npy beside the same
    name without it, an absolute path, a ``..`` path, spaces and non-ASCII."""
    rng = np.random.default_rng(0)
    features = {key: rng.standard_normal(shape).astype(np.float32) for key in AWKWARD_KEYS if key != FAILED}
    chosen_by_name = not (FORMATS.get(fmt).suffixes or FORMATS.get(fmt).folder)
    output = open_output(f"{tmp_path}/{name}", fmt if chosen_by_name else None, AWKWARD_KEYS)
    assert type(output) is FORMATS.get(fmt)
    for key, array in features.items() if output.streams else ():
        output.add(key, array)
    clips = [[0.5 * i, 0.5 * i + 1] for i in range(3)]
    output.write(Row(key, None if output.streams else array, VideoEntry(clips=clips)) for key, array in features.items())
    write_meta(output.path, Meta(fmt), ((key, VideoEntry(**output.entry(key))) for key in features),
               [Failure(FAILED, "no video")])
    loaded, meta = featx.load(tmp_path / name)
    assert list(loaded) == list(features) and list(meta["videos"]) == list(features)
    for key, array in features.items():
        assert loaded[key].dtype == np.float32 and np.array_equal(loaded[key], array), key


def test_tree_names_keep_leaves_and_folders_apart():
    names = safe_names(["a", "a/b.mp4", "a/b.mp4/c.mp4", "a~2/d.mp4", "__featx_index__/e.mp4"], tree=True)
    assert list(names.values()) == ["a~3", "a/b.mp4~2", "a/b.mp4/c.mp4", "a~2/d.mp4", "__featx_index__~/e.mp4"]
    assert safe_names(["f", "f.npy/g.mp4"], tree=True, suffix=".npy") == {"f": "f~2", "f.npy/g.mp4": "f.npy/g.mp4"}
    assert safe_names(["a", "a/b.mp4"]) == {"a": "a", "a/b.mp4": "a/b.mp4"}  # files in a folder can share


@pytest.mark.parametrize("flags, words", [
    (["--dense-stride", "often"], "--dense-stride often"),
    (["--dense-stride", "0"], "more than 0"),
    (["--per-clip", "--per-view"], "not allowed with"),
    (["--out-format", "list", "--out", "feats.npz"], "list format"),
    (["--out-format", "pdf"], "invalid choice"),
    (["--out-format", "pkl", "--out", "{tmp}"], "is a folder"),
    (["--shard", "3/3"], "--shard 3/3: shard 3 of 3 does not exist"),
    (["--shard", "1-4"], "--shard 1-4: give K/N"),
])
def test_bad_new_options_are_one_line_and_exit_2(flags, words, golden_checkpoint, tmp_path):
    video_list = write_list(tmp_path / "list.txt", [SHORT])
    flags = [f.format(tmp=tmp_path) for f in flags]
    args = ["--video-list", video_list, "--video-root", VIDEOS, *CPU, "--out", tmp_path / "out" / "feats.pkl", *flags]
    proc = featx_exits(TSN, golden_checkpoint("tsn_clip"), *args, expect=2)
    assert words in error_line(proc)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("setup, words", [
    ("nothing", "give --video-list, or --video-root"),
    ("empty root", "no video files"),
    ("missing root", "no such folder"),
])
def test_bad_folder_input_is_one_line_and_exit_2(setup, words, golden_checkpoint, tmp_path):
    root = tmp_path / "videos"
    if setup == "empty root":
        root.mkdir()
        (root / "readme.txt").write_text("no videos here")
    args = [] if setup == "nothing" else ["--video-root", root]
    proc = featx_exits(TSN, golden_checkpoint("tsn_clip"), *args, "--out", tmp_path / "feats.pkl", *CPU, expect=2)
    assert words in error_line(proc)


def test_outputs_get_the_mode_the_umask_gives(tmp_path):
    """As an ordinary open() would make them (mkstemp alone would give 0600), and the umask is left as it was."""
    code = ("import os, sys\nfrom pathlib import Path\nfrom featx.outputs import atomic_write\n"
            "os.umask(0o027)\natomic_write(Path(sys.argv[1]), lambda f: f.write(b'x'))\nprint(oct(os.umask(0)))\n")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "out.pkl")], check=True, capture_output=True, text=True)
    assert proc.stdout.strip() == "0o27"
    assert (tmp_path / "out.pkl").stat().st_mode & 0o777 == 0o640


def test_parquet_is_one_row_per_video_for_pyarrow_pandas_and_merge(tiny_tsn, tmp_path):
    """--per-clip into .parquet: one row per video with its clip rows (float32) and their seconds, read back by
    pyarrow and pandas; two shards in Parquet merged into one, and into a pickle, equal one whole run."""
    import pandas
    import pyarrow
    import pyarrow.parquet as pq

    from featx.merge import merge
    from featx.runner import RunOptions, run as run_featx_in_process

    names = [SHORT, "mpeg4_320x240_25fps.avi", "h264_portrait_240x320.mp4"]
    run = dict(video_list=str(write_list(tmp_path / "list.txt", names)), video_root=str(VIDEOS), per="clip",
               cfg_options={"data.test.pipeline.1.num_clips": 3}, device="cpu")
    config, checkpoint = map(str, tiny_tsn)
    whole = featx.extract(config, checkpoint, out=str(tmp_path / "whole.parquet"), **run)
    meta = featx.load(tmp_path / "whole.parquet").meta

    table = pq.read_table(tmp_path / "whole.parquet")
    assert table.column_names == ["video", "feature", "clip_start", "clip_end"] and table.num_rows == 3
    clips = table.schema.field("feature").type  # a list of clip rows, each a fixed-size list of float32
    assert pyarrow.types.is_list(clips) and pyarrow.types.is_fixed_size_list(clips.value_type)
    assert clips.value_type.list_size == 512 and clips.value_type.value_type == pyarrow.float32()
    frame = pandas.read_parquet(tmp_path / "whole.parquet")
    assert frame["video"].tolist() == names
    for name, row in zip(names, frame.itertuples()):
        assert np.array_equal(np.stack(row.feature), whole.features[name])  # (3, 512), float32 as written
        np.testing.assert_array_equal(np.stack([row.clip_start, row.clip_end], 1), meta["videos"][name]["clips"])

    for k in (0, 1):
        options = RunOptions(config, checkpoint, out=str(tmp_path / "feats.parquet"), shard=f"{k}/2", **run)
        assert run_featx_in_process(options) == 0
    shards = [str(tmp_path / f"feats.shard-000{k}-of-0002.parquet") for k in (0, 1)]
    for merged in ("merged.parquet", "merged.pkl"):
        assert merge(shards, str(tmp_path / merged)) == 0
        features = featx.load(tmp_path / merged).features
        assert list(features) == names and all(np.array_equal(features[n], whole.features[n]) for n in names)
    assert pq.ParquetFile(tmp_path / "merged.parquet").metadata.num_rows == 3



def test_parquet_row_groups_hold_what_fits_and_read_back_in_order(monkeypatch, tmp_path):
    """Rows go out in groups of about GROUP_BYTES of vectors as they come; the groups read back as one list."""
    import pyarrow.parquet as pq

    from featx.outputs import parquet

    monkeypatch.setattr(parquet, "GROUP_BYTES", 3 * 64 * 4)  # three 64-d float32 vectors a group
    features = {f"v{i}.mp4": np.random.default_rng(i).standard_normal(64).astype(np.float32) for i in range(7)}
    output = open_output(tmp_path / "feats.parquet", None, list(features))
    output.write(Row(key, array, VideoEntry()) for key, array in features.items())
    groups = pq.ParquetFile(tmp_path / "feats.parquet").metadata
    assert [groups.row_group(g).num_rows for g in range(groups.num_row_groups)] == [3, 3, 1]
    loaded = parquet.ParquetFormat.read(tmp_path / "feats.parquet", None)
    assert list(loaded) == list(features) and all(np.array_equal(loaded[k], v) for k, v in features.items())

def test_parquet_without_pyarrow_is_one_sentence_and_exit_2(tiny_tsn, tmp_path):
    """As a user without the extra meets it: the real CLI, pyarrow made unimportable; refused before any work."""
    code = "import sys; sys.modules['pyarrow'] = None; from featx.cli import main; sys.exit(main(sys.argv[1:]))"
    args = [*tiny_tsn, "--video-list", write_list(tmp_path / "list.txt", [SHORT]),
            "--video-root", VIDEOS, "--out", tmp_path / "feats.parquet", *CPU]
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert error_line(proc) == "featx: error: the parquet format needs pyarrow: pip install 'featx[parquet]'"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["list.txt"]


def _planted_output(tmp_path: Path, per_clip: bool) -> Path:
    """An output of three class folders of four videos (clusters apart), written as a run writes it, with a
    planted constant vector and a vector holding a NaN; per clip: 6 clips a video, their seconds in the meta."""
    rng = np.random.default_rng(0)
    centres = {folder: rng.standard_normal(32) * 4 for folder in ("walk", "run", "swim")}
    shape = (6, 32) if per_clip else (32,)
    features = {f"{folder}/v{i}.mp4": (centre + rng.standard_normal(shape)).astype(np.float32)
                for folder, centre in centres.items() for i in range(4)}
    features["swim/constant.mp4"] = np.full(shape, 0.5, np.float32)
    features["run/broken.mp4"] = features["run/v0.mp4"].copy()
    features["run/broken.mp4"].flat[5] = np.nan
    output = open_output(tmp_path / "feats.pkl", None, list(features))
    output.write(Row(key, array, VideoEntry()) for key, array in features.items())
    clips = [[2.0 * i, 2.0 * i + 1.5] for i in range(6)]
    write_meta(output.path, Meta("pkl", per="clip" if per_clip else "video"),
               ((key, VideoEntry(clips=clips)) for key in features), [])
    return output.path


@pytest.mark.parametrize("per_clip", [False, True], ids=["per-video", "per-clip"])
def test_show_writes_the_picture_and_names_what_is_wrong(per_clip, tmp_path):
    from matplotlib.image import imread

    out = _planted_output(tmp_path, per_clip)
    lines = show(str(out), str(tmp_path / "map.png"), "640x480")  # what `featx show` prints
    assert lines[0] == f"{out}: 14 videos, 32-d, per {'clip (6 clips a video)' if per_clip else 'video'}"
    assert "constant vectors (1): swim/constant.mp4" in lines[2] and "non-finite vectors (1): run/broken.mp4" in lines[3]
    assert lines[1].startswith("norms: min ") and "nearest pairs, cosine similarity:" in lines
    assert f"picture: {tmp_path / 'map.png'} (640x480; map: PCA" in lines[-1] and "of 13 videos" in lines[-1]
    picture = imread(tmp_path / "map.png")
    assert picture.shape[:2] == (480, 640)
    colours = np.unique(picture.reshape(-1, picture.shape[-1]).round(2), axis=0)
    assert len(colours) > 50 and (picture[..., :3] < 0.5).mean() > 0.005  # drawn on, not one flat colour


@pytest.mark.parametrize("args, words", [
    (["{tmp}/none.pkl"], "none.pkl: no such file or folder"),
    (["{tmp}/garbage.pkl"], "garbage.pkl: cannot be read as a featx output"),
    (["{out}", "--size", "9x9"], "--size 9x9: give WIDTHxHEIGHT in pixels"),
    (["{out}", "--png", "{tmp}/map.jpg"], "--png {tmp}/map.jpg: name a .png file"),
])
def test_show_bad_input_is_one_line_and_exit_2(args, words, tmp_path):
    out = _planted_output(tmp_path, per_clip=False)
    (tmp_path / "garbage.pkl").write_bytes(b"not a pickle")
    proc = featx_exits("show", *[a.format(tmp=tmp_path, out=out) for a in args], expect=2)
    assert words.format(tmp=tmp_path) in error_line(proc) and not (tmp_path / "map.png").exists()


@pytest.mark.parametrize("library, flags, sentence", [
    ("matplotlib", [], "featx show --png needs matplotlib: pip install 'featx[show]'"),
    ("umap", ["--map", "umap"], "the umap map needs umap-learn: pip install 'featx[umap]'"),
    ("sklearn", ["--map", "tsne"], "the tsne map needs scikit-learn: pip install 'featx[tsne]'"),
])
def test_show_without_its_library_is_one_sentence_and_exit_2(library, flags, sentence, tmp_path):
    """As a user without the extra meets it: the real CLI, the library made unimportable."""
    out = _planted_output(tmp_path, per_clip=False)
    code = f"import sys; sys.modules[{library!r}] = None; from featx.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.run([sys.executable, "-c", code, "show", str(out), "--png", str(tmp_path / "map.png"), *flags],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and error_line(proc) == f"featx: error: {sentence}"
    assert not (tmp_path / "map.png").exists()
