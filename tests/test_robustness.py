"""Never lose a night's work: bad videos skipped and reported, hung decoders killed, runs resumed."""
from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest

from helpers import (CASE_CONFIGS, ROOT, VIDEOS, call_featx, encode_video, golden_features, gradient_frame, gradient_frames,
                     rel_error, write_list)
from featx.data.decoders.decord_reader import DecordReader
from featx.data.decoders.pyav_reader import PyAVReader
from featx.pool import KillablePool
from featx.outputs import sidecar
from featx.store import read_records

TSN = CASE_CONFIGS["tsn_clip"]
FAST = ["--cfg-options", "data.test.pipeline.1.num_clips=3", "--device", "cpu"]  # 3 snippets a video: quick
# one view a forward: videos finish one at a time (forwards that several videos share would finish them together,
# so a run could be done before the signal that should interrupt it)
ONE_AT_A_TIME = ["--max-memory", "1M"]
GOOD = ["h264_176x144_18frames.mp4", "h264_portrait_240x320.mp4"]


def trim_with_edit_list(src: Path, dst: Path, frames: int) -> Path:
    """Remux without re-encoding so the first ``frames`` frames sit before time 0: the mp4 muxer writes
    an edit list hiding them, as ``ffmpeg -ss ... -c copy`` does."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        stream = inp.streams.video[0]
        copy = out.add_stream_from_template(stream)
        shift = round(frames / (stream.average_rate * stream.time_base))
        for packet in inp.demux(stream):
            if packet.dts is None:
                continue
            packet.pts -= shift
            packet.dts -= shift
            packet.stream = copy
            out.mux(packet)
    return dst


@pytest.fixture
def mixed_root(tmp_path):
    """Good videos beside every kind of bad one."""
    root = tmp_path / "videos"
    root.mkdir()
    for name in GOOD:
        shutil.copy(VIDEOS / name, root / name)
    (root / "empty.mp4").write_bytes(b"")
    (root / "text.mp4").write_text("this is not a video\n" * 50)
    (root / "text.txt").write_text("this is not a video\n" * 50)  # FFmpeg would read a .txt as text "video"
    data = (VIDEOS / "h264_320x240_30fps.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(data[: int(len(data) * 0.3)])
    encode_video(root / "three_frames.mp4", gradient_frames(3))
    return root


def test_bad_videos_are_skipped_reported_and_the_rest_kept(golden_checkpoint, mixed_root, tmp_path):
    names = [GOOD[0], "missing.mp4", "empty.mp4", "text.mp4", "text.txt", "truncated.mp4", "three_frames.mp4",
             GOOD[1]]
    out = tmp_path / "out" / "feats.pkl"
    proc = call_featx(TSN, golden_checkpoint("tsn_clip"), "--video-list", write_list(tmp_path / "all.txt", names),
                      "--video-root", mixed_root, "--out", out, *FAST)
    assert proc.returncode == 1, proc.stderr  # some failed, the others written
    got = pickle.loads(out.read_bytes())
    assert list(got) == [GOOD[0], "three_frames.mp4", GOOD[1]]  # 3 frames is no error: indices wrap around
    report = {e["video"]: e["reason"] for e in json.loads(out.with_name("feats.pkl.errors.json").read_text())}
    assert sorted(report) == ["empty.mp4", "missing.mp4", "text.mp4", "text.txt", "truncated.mp4"]
    assert "not found" in report["missing.mp4"] and "empty file" in report["empty.mp4"]
    assert "not a video file" in report["text.mp4"]
    assert report["text.txt"].split(": ", 1)[1] == report["text.mp4"].split(": ", 1)[1]  # whatever the suffix
    assert "truncated MP4" in report["truncated.mp4"]
    assert "3 written, 5 failed" in proc.stderr
    assert proc.stderr.count("warning: skipped") == 5  # each said as it happens
    for noise in ("video_reader.cc", "moov atom", "[mov,mp4", "Invalid data found"):  # decord's and FFmpeg's logs
        assert noise not in proc.stderr, proc.stderr
    assert not sidecar(out, "partial").exists()

    alone = tmp_path / "alone.pkl"
    proc = call_featx(TSN, golden_checkpoint("tsn_clip"), "--video-list", write_list(tmp_path / "good.txt", GOOD),
                      "--video-root", mixed_root, "--out", alone, *FAST)
    assert proc.returncode == 0, proc.stderr
    for name, vector in pickle.loads(alone.read_bytes()).items():
        np.testing.assert_array_equal(got[name], vector)
    assert not alone.with_name("alone.pkl.errors.json").exists()


def test_strict_stops_at_the_first_failure(golden_checkpoint, mixed_root, tmp_path):
    out = tmp_path / "feats.pkl"
    proc = call_featx(TSN, golden_checkpoint("tsn_clip"), "--video-list",
                      write_list(tmp_path / "l.txt", [GOOD[0], "empty.mp4", GOOD[1]]), "--video-root", mixed_root,
                      "--out", out, "--strict", "--workers", "0", *FAST)
    assert proc.returncode == 1
    assert "--strict: stopped at empty.mp4" in proc.stderr
    assert not out.exists() and set(read_records(sidecar(out, "partial"))) == {GOOD[0], "empty.mp4"}


@pytest.fixture(scope="module")
def slow_video(tmp_path_factory):
    """A 1080p video whose decoding takes several seconds with PyAV (it decodes the file twice): about 4 s here,
    twice the time limit below (x264's veryfast preset: half the encoding time of its default)."""
    return encode_video(tmp_path_factory.mktemp("slow") / "slow.mp4", (gradient_frame(t, 1080, 1920) for t in range(360)),
                        options={"preset": "veryfast"})


def test_a_decoder_past_the_time_limit_is_killed_and_the_run_goes_on(golden_checkpoint, slow_video, tmp_path):
    out = tmp_path / "feats.pkl"
    root = slow_video.parent
    shutil.copy(VIDEOS / GOOD[0], root / GOOD[0])
    started = time.monotonic()
    proc = call_featx(TSN, golden_checkpoint("tsn_clip"), "--video-list",
                      write_list(tmp_path / "l.txt", ["slow.mp4", GOOD[0]]), "--video-root", root, "--out", out,
                      "--decoder", "pyav", "--workers", "1", "--video-timeout", "2", *FAST)
    assert proc.returncode == 1, proc.stderr
    errors = json.loads(out.with_name("feats.pkl.errors.json").read_text())
    assert list(pickle.loads(out.read_bytes())) == [GOOD[0]], errors
    [error] = errors
    assert error["video"] == "slow.mp4" and "timed out after 2 s" in error["reason"]
    assert time.monotonic() - started < 120


def _children(pid: int) -> list[int]:
    """Child processes of ``pid``, whichever of its threads started them."""
    return [int(c) for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()]


def _wait_for(predicate, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.1)


def _featx_popen(*args) -> subprocess.Popen:
    """The real command in a process of its own, taking SIGINT as a command started from a terminal does: a
    suite started as a background job of a script (``make test &``) inherits SIGINT ignored, and so would it."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "featx.cli", *map(str, args)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def test_a_crashed_decoder_costs_one_video(golden_checkpoint, slow_video, tmp_path):
    out = tmp_path / "feats.pkl"
    root = slow_video.parent
    shutil.copy(VIDEOS / GOOD[0], root / GOOD[0])
    proc = _featx_popen(TSN, golden_checkpoint("tsn_clip"), "--video-list",
                        write_list(tmp_path / "l.txt", ["slow.mp4", GOOD[0]]), "--video-root", root, "--out", out,
                        "--decoder", "pyav", "--workers", "1", *FAST)
    _wait_for(lambda: _children(proc.pid))
    time.sleep(0.3)  # the worker is now decoding slow.mp4
    for child in _children(proc.pid):
        os.kill(child, signal.SIGKILL)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1, stderr
    [error] = json.loads(out.with_name("feats.pkl.errors.json").read_text())
    assert error["video"] == "slow.mp4" and "crashed (killed by signal SIGKILL)" in error["reason"]
    assert list(pickle.loads(out.read_bytes())) == [GOOD[0]]


@pytest.fixture(scope="module")
def eight(tmp_path_factory):
    root = tmp_path_factory.mktemp("eight")
    names = []
    for i in range(8):
        name = f"v{i}_{GOOD[i % 2]}"
        os.symlink(VIDEOS / GOOD[i % 2], root / name)
        names.append(name)
    return root, write_list(root.parent / "eight.txt", names), names


@pytest.fixture(scope="module")
def eight_whole(eight, golden_checkpoint, tmp_path_factory) -> dict[str, np.ndarray]:
    """An uninterrupted run's features of the eight videos (a video's features do not depend on the rest of
    the list or on a shard): what every resumed run must give."""
    root, video_list, names = eight
    out = tmp_path_factory.mktemp("whole") / "whole.pkl"
    proc = call_featx(TSN, golden_checkpoint("tsn_clip"), "--video-list", video_list, "--video-root", root, *FAST,
                      *ONE_AT_A_TIME, "--workers", "1", "--out", out)
    assert proc.returncode == 0, proc.stderr
    return pickle.loads(out.read_bytes())


@pytest.mark.parametrize("how, shard", [(signal.SIGKILL, None), (signal.SIGINT, None), (signal.SIGKILL, "0/2")])
def test_interrupted_run_resumes_to_the_same_file(how, shard, golden_checkpoint, eight, eight_whole, tmp_path):
    """A whole run, or a shard (its own output and partial store; its slice is the first half of the list)."""
    root, video_list, names = eight
    args = [TSN, golden_checkpoint("tsn_clip"), "--video-list", video_list, "--video-root", root, *FAST,
            *ONE_AT_A_TIME, "--workers", "1"]
    n = 8

    out = tmp_path / "feats.pkl"  # what a run with --out feats.pkl writes
    if shard is not None:
        args += ["--shard", shard]
        n, names, out = 4, names[:4], tmp_path / "feats.shard-0000-of-0002.pkl"
    proc = _featx_popen(*args, "--out", tmp_path / "feats.pkl")
    _wait_for(lambda: sidecar(out, "partial").exists() and len(read_records(sidecar(out, "partial"))) >= 2)
    proc.send_signal(how)
    stopped = time.monotonic()
    _, stderr = proc.communicate(timeout=60)
    assert not out.exists()
    if how == signal.SIGINT:
        assert time.monotonic() - stopped < 10 and proc.returncode == 130
        assert "run the same command again to resume" in stderr
        # stderr is a pipe here, as a file would be: the message has a line of its own, not the progress bar's
        assert any(line.startswith("featx: error: interrupted: ") for line in stderr.split("\n")), stderr
    done = len(read_records(sidecar(out, "partial")))
    assert 2 <= done < n

    rerun = call_featx(*args, "--out", tmp_path / "feats.pkl")
    assert rerun.returncode == 0, rerun.stderr
    assert f"{n - done} computed in this run, {done} resumed" in rerun.stderr
    got = pickle.loads(out.read_bytes())
    assert list(got) == names
    for name in names:
        np.testing.assert_array_equal(got[name], eight_whole[name])


def test_a_second_run_on_the_same_output_is_refused_and_the_first_goes_on(golden_checkpoint, eight, tmp_path):
    root, video_list, names = eight
    out = tmp_path / "feats.pkl"
    args = [TSN, golden_checkpoint("tsn_clip"), "--video-list", video_list, "--video-root", root, "--out", out,
            *FAST, "--workers", "1"]
    first = _featx_popen(*args)
    _wait_for(lambda: sidecar(out, "partial").exists() and len(read_records(sidecar(out, "partial"))) >= 1)
    first.send_signal(signal.SIGSTOP)  # still running, however fast this machine
    try:
        for extra in ([], ["--restart"]):
            second = call_featx(*args, *extra)
            assert second.returncode == 2 and "another featx run is writing" in second.stderr, second.stderr
    finally:
        first.send_signal(signal.SIGCONT)
    _, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    assert list(pickle.loads(out.read_bytes())) == names


def test_changed_config_refuses_to_mix_results(golden_checkpoint, eight, tmp_path):
    root, video_list, _ = eight
    out = tmp_path / "feats.pkl"
    args = [TSN, golden_checkpoint("tsn_clip"), "--video-list", video_list, "--video-root", root, "--out", out]
    proc = _featx_popen(*args, *FAST, "--workers", "1")
    _wait_for(lambda: sidecar(out, "partial").exists() and len(read_records(sidecar(out, "partial"))) >= 1)
    proc.kill()
    proc.communicate()
    other = ["--cfg-options", "data.test.pipeline.1.num_clips=2", "--device", "cpu"]
    refused = call_featx(*args, *other)
    assert refused.returncode == 2 and "pass --restart" in refused.stderr
    assert "other settings (data.test.pipeline.1.num_clips: 3 -> 2)" in refused.stderr
    assert sidecar(out, "partial").exists()  # the earlier results are still there
    restarted = call_featx(*args, *other, "--restart")
    assert restarted.returncode == 0 and "--restart: discarded" in restarted.stderr
    assert "(8 computed in this run)" in restarted.stderr


def test_edit_list_is_detected_and_pyav_decodes_it(tmp_path, caplog):
    trimmed = trim_with_edit_list(VIDEOS / "h264_320x240_30fps.mp4", tmp_path / "trimmed.mp4", 10)
    with caplog.at_level("WARNING", logger="featx"):
        decord_reader = DecordReader(str(trimmed))
    assert len(decord_reader) == 180
    assert any("trimmed.mp4" in r.getMessage() and "--decoder pyav" in r.getMessage() for r in caplog.records)
    pyav_reader = PyAVReader(str(trimmed))
    assert len(pyav_reader) == 170
    original = DecordReader(str(VIDEOS / "h264_320x240_30fps.mp4"))
    wanted = np.array([0, 5, 60, 169, 5])
    np.testing.assert_array_equal(pyav_reader.get_frames(wanted), original.get_frames(wanted + 10))


def test_pyav_decoder_gives_the_reference_vectors(golden_checkpoint, tmp_path):
    out = tmp_path / "feats.pkl"
    proc = call_featx(TSN, golden_checkpoint("tsn_clip"), "--video-list", write_list(tmp_path / "l.txt", GOOD),
                      "--video-root", VIDEOS, "--out", out, "--decoder", "pyav")
    assert proc.returncode == 0, proc.stderr
    expected = golden_features("tsn_clip")
    for name, vector in pickle.loads(out.read_bytes()).items():
        assert rel_error(vector, expected[name]) <= 1e-4


def _chunk_of_a_dense_video(task: tuple[int, int]) -> tuple[int, int, bool]:
    """Stands in for decoding one chunk of a dense video: 3 chunks each, finishing out of order."""
    index, chunk = task
    time.sleep({0: 0.6 if index == 0 else 0.2, 1: 0.3, 2: 0.05}[chunk])  # the first video's first chunk is slow
    return index, chunk, task == _chunk_of_a_dense_video.fail


@pytest.mark.parametrize("fail", [None, (1, 1)])
def test_pool_delivers_chunks_in_order_whatever_order_they_finish(fail):
    _chunk_of_a_dense_video.fail = fail
    pool = KillablePool(_chunk_of_a_dense_video, [(i, 0) for i in range(4)], num_workers=2, timeout=30, max_ahead=2,
                        failed=lambda task, reason: pytest.fail(reason),
                        follow_ups=lambda task, outcome: [(task[0], 1), (task[0], 2)] if task[1] == 0 else [])
    got = list(pool)
    assert got == [(i, k, (i, k) == fail) for i in range(4) for k in range(3)]


def _sleep_then_echo(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def test_workers_start_after_pyav_decoded_in_the_thread_that_runs_the_pool(tmp_path):
    """PyAV keeps a frame converter (with threads of its own) per thread. A worker forked by another thread
    would free this thread's converter at its start and wait forever: every task would time out."""
    with av.open(str(encode_video(tmp_path / "v.mp4", gradient_frames(3)))) as container:
        frame = next(container.decode(video=0))
    frame.to_ndarray(format="rgb24")  # PyAV's default: a converter with threads
    try:
        pool = KillablePool(_sleep_then_echo, [4.0, 0.0, 0.0], num_workers=1, timeout=2,
                            failed=lambda task, reason: reason)
        assert list(pool) == ["timed out after 2 s (killed and replaced)", 0.0, 0.0]  # the replacement starts too
    finally:
        frame.to_ndarray(format="rgb24", threads=1)  # the converter without threads again, for the tests that follow
