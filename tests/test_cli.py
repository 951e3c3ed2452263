"""The command line as a user meets it: the shim, the console entry, output formats and every input error."""
from __future__ import annotations

import dataclasses
import json
import logging
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import featx
from helpers import CASE_CONFIGS, ROOT, VIDEOS, call_featx, error_line, golden_features, rel_error, run_featx, write_list
from featx.cli import build_parser, options_from
from featx.config import read_config
from featx.errors import UserError
from featx.extraction import resolve_precision
from featx.model_index import find_model, models
from featx.options import RunOptions
from featx.runner import RunObserver, run

TSN = CASE_CONFIGS["tsn_clip"]
SLOWONLY = CASE_CONFIGS["slowonly_clip"]
SHORT = "h264_176x144_18frames.mp4"


@pytest.fixture
def short_list(tmp_path):
    return write_list(tmp_path / "list.txt", ["# sample list", "", f"{SHORT} 3"])


def test_shim_and_json_output(golden_checkpoint, short_list, tmp_path):
    out = tmp_path / "nested" / "feats.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools/misc/clip_feature_extraction.py"), str(ROOT / TSN), str(golden_checkpoint("tsn_clip")),
         "--video-list", str(short_list), "--video-root", str(VIDEOS), "--out", str(out)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(out.read_text())
    assert list(got) == [SHORT]
    assert rel_error(got[SHORT], golden_features("tsn_clip")[SHORT]) <= 1e-4
    assert "1 written, 0 failed" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["list.txt", "nested"]  # nothing left in the working dir


def test_plain_unfused_model_and_cfg_options(golden_checkpoint, short_list, tmp_path):
    out = tmp_path / "feats.pkl"
    proc = call_featx(SLOWONLY, golden_checkpoint("slowonly_clip"), "--video-list", short_list, "--video-root", VIDEOS,
                      "--out", out, "--no-fuse-conv-bn", "--cfg-options", "data.workers_per_gpu=0",
                      "model.test_cfg.max_testing_views=3")
    assert proc.returncode == 0, proc.stderr
    got = pickle.loads(out.read_bytes())
    assert rel_error(got[SHORT], golden_features("slowonly_clip")[SHORT]) <= 1e-4


def test_help_lists_the_seed_arguments():
    proc = run_featx("--help")
    assert proc.returncode == 0
    for flag in ("--video-list", "--video-root", "--out", "--cfg-options", "--fuse-conv-bn", "--launcher",
                 "--local-rank", "--device"):
        assert flag in proc.stdout


def test_help_lists_the_commands():
    text = build_parser().format_help()
    assert "featx models [WORD ...]" in text and "featx merge --out OUT SHARD ..." in text
    assert "featx show OUT [--png map.png]" in text


def test_the_parser_and_the_checks_come_from_the_option_fields():
    """Flags not typed take the field's default; every field with choices refuses another value in one line."""
    typed = options_from(build_parser().parse_args([TSN, "w.pth", "--out", "x.pkl", "--per-view", "--workers", "3",
                                                    "--video-ext", ".mp4,.mkv", "--no-fuse-conv-bn"]))
    assert typed == RunOptions(TSN, "w.pth", out="x.pkl", per="view", workers=3, video_ext=(".mp4", ".mkv"),
                               fuse_conv_bn=False)
    with_choices = [f.name for f in dataclasses.fields(RunOptions) if f.metadata["option"].choices is not None]
    assert {"per", "decoder", "precision", "out_format", "decode_order", "launcher", "shard_by"} <= set(with_choices)
    for name in with_choices:
        with pytest.raises(UserError, match=f"^{name}='bogus': use one of "):
            RunOptions(TSN, "w.pth", **{name: "bogus"}).check()


def _config_without_model(tmp_path):
    path = tmp_path / "no_model.py"
    path.write_text("data = dict(test=dict(pipeline=[dict(type='DecordInit')]))\n")
    return path


def _empty_list(tmp_path):
    return write_list(tmp_path / "empty.txt", ["# nothing here", ""])


BAD_INPUTS = {
    # name: (how to change the good arguments, words the one error line must contain)
    "missing config": (lambda a, t, c: {**a, "config": str(t / "nope.py")}, "config file not found"),
    "config without model": (lambda a, t, c: {**a, "config": str(_config_without_model(t))}, "no 'model'"),
    "missing checkpoint": (lambda a, t, c: {**a, "checkpoint": str(t / "nope.pth")}, "checkpoint file not found"),
    "checkpoint of the other model": (lambda a, t, c: {**a, "checkpoint": str(c("slowonly_clip"))}, "another model"),
    "missing video list": (lambda a, t, c: {**a, "--video-list": str(t / "nope.txt")}, "nope.txt"),
    "empty video list": (lambda a, t, c: {**a, "--video-list": str(_empty_list(t))}, "no videos"),
    "unsupported --out suffix": (lambda a, t, c: {**a, "--out": str(t / "feats.csv")}, "unsupported suffix"),
    "cfg-options typo": (lambda a, t, c: {**a, "--cfg-options": "dta.videos_per_gpu=2"}, "dta"),
    "unknown transform": (lambda a, t, c: {**a, "--cfg-options": "data.test.pipeline.3.type=Rezise"}, "Rezise"),
    "bad config value": (lambda a, t, c: {**a, "--cfg-options": "model.backbone.depth=51"}, "depth"),
    "checkpoint covering part of the model": (lambda a, t, c: {**a, "--cfg-options": "model.backbone.depth=101"},
                                              "lacks 255 of the model's"),
    "output folder not creatable": (lambda a, t, c: {**a, "--out": str(_a_file(t) / "feats.pkl")}, "cannot create"),
    "unknown decoder": (lambda a, t, c: {**a, "--decoder": "ffmpeg"}, "invalid choice"),
    "zero timeout": (lambda a, t, c: {**a, "--video-timeout": "0"}, "--video-timeout"),
    "GPU where there is none": (lambda a, t, c: {**a, "--device": "cuda"}, "no CUDA GPU"),
    "output folder not writable": (lambda a, t, c: {**a, "--out": "/proc/feats.pkl"}, "cannot write in folder /proc"),
    "device type featx does not run on": (lambda a, t, c: {**a, "--device": "mps"}, "featx runs on cpu, cuda or"),
    "device type torch does not know": (lambda a, t, c: {**a, "--device": "gpu"}, "featx runs on cpu, cuda or"),
    "a video as checkpoint": (lambda a, t, c: {**a, "checkpoint": str(VIDEOS / SHORT)}, "is not a PyTorch checkpoint"),
    "checkpoint that needs code": (lambda a, t, c: {**a, "checkpoint": str(_code_checkpoint(t))}, "refused for safety"),
    "missing video root": (lambda a, t, c: {**a, "--video-root": str(t / "vidoes")}, "vidoes: no such folder"),
    "no listed video exists": (lambda a, t, c: {**a, "--video-root": str(t)}, f"the first is not at {{t}}/{SHORT}"),
}


def _code_checkpoint(tmp_path):
    path = tmp_path / "code.pth"
    torch.save({"state_dict": {}, "meta": Path("made by code")}, path)  # unpickling it calls pathlib.Path
    return path


def _a_file(tmp_path):
    path = tmp_path / "plain_file"
    path.write_text("not a folder")
    return path


# These go through the real command in a subprocess (an argparse refusal, a config's, the device's); the
# others call its main in this process (the same code, its output captured the same way, without the start).
REAL_CLI = {"missing config", "unknown decoder", "GPU where there is none"}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_and_exit_2(name, golden_checkpoint, short_list, tmp_path):
    if name == "GPU where there is none" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    change, words = BAD_INPUTS[name]
    good = {"config": TSN, "checkpoint": str(golden_checkpoint("tsn_clip")), "--video-list": str(short_list),
            "--video-root": str(VIDEOS), "--out": str(tmp_path / "out" / "feats.pkl")}
    args = change(good, tmp_path, golden_checkpoint)
    argv = [args.pop("config"), args.pop("checkpoint")] + [x for kv in args.items() for x in kv]
    proc = (run_featx if name in REAL_CLI else call_featx)(*argv)
    assert proc.returncode == 2, proc.stderr
    assert words.format(t=tmp_path) in error_line(proc) and "weights_only" not in proc.stderr
    out_dir = tmp_path / "out"
    assert not out_dir.exists() or not any(out_dir.iterdir())  # nothing half-written


def test_cfg_options_may_add_a_section_configs_often_leave_out():
    assert read_config(ROOT / TSN, {"data.test_dataloader.videos_per_gpu": 2}).loader.videos_per_gpu == 2
    with pytest.raises(UserError, match="no key 'tset_dataloader'"):
        read_config(ROOT / TSN, {"data.tset_dataloader.videos_per_gpu": 2})


def test_config_fp16_runs_half_precision_on_a_gpu_only(caplog, monkeypatch):
    monkeypatch.setattr(logging.getLogger("featx"), "propagate", True)  # to caplog, whatever set it up before
    assert not read_config(ROOT / TSN).fp16
    fp16 = read_config(ROOT / TSN, {"fp16.loss_scale": 512.0}).fp16
    assert resolve_precision(None, fp16, torch.device("cuda")) == "fp16"
    assert resolve_precision(None, fp16, torch.device("cpu")) == "fp32"
    assert "needs a GPU" in caplog.text
    assert resolve_precision("bf16", fp16, torch.device("cpu")) == "bf16"


# ---------------------------------------------------------------- models by name, the Python API

TSM_NAME = "tsm_r50_video_1x1x8_100e_kinetics400_rgb"  # its config is the tsm_r50_video golden case's


def test_models_lists_the_index_and_filters_it():
    proc = run_featx("models")
    assert proc.returncode == 0
    names = [line.split()[0] for line in proc.stdout.splitlines()[1:]]
    assert len(names) == len(models()) and TSM_NAME in names
    assert call_featx("--list-models").stdout == proc.stdout
    tsm = call_featx("models", "tsm", "video")
    assert tsm.returncode == 0 and TSM_NAME in tsm.stdout and "tsn_" not in tsm.stdout


def test_models_says_when_nothing_matched():
    proc = run_featx("models", "nosuchword")
    assert proc.returncode == 2 and proc.stdout == ""
    assert error_line(proc) == ("featx: error: no model's name, family or dialect has 'nosuchword' "
                                "(featx models lists them all)")


def test_a_value_that_starts_with_a_dash_gets_featxs_answer_not_argparses(tmp_path):
    proc = run_featx(TSN, "w.pth", "--video-root", VIDEOS, "--out", tmp_path / "feats.pkl", "--shard", "-1/3")
    assert proc.returncode == 2 and "usage:" not in proc.stderr
    assert error_line(proc) == "featx: error: --shard -1/3: give K/N (shard K of N, K from 0) or auto"


def test_a_model_name_stands_for_config_and_checkpoint(golden_checkpoint, short_list, tmp_path):
    """The name alone resolves its config and official URL; with a checkpoint after it (here a local file URL,
    through torch's hub cache) that one is used."""
    entry = find_model(TSM_NAME)
    options = options_from(build_parser().parse_args([TSM_NAME, "--out", "x.pkl"]))
    assert options.config == str(entry.config_path) and options.checkpoint == entry.checkpoint
    out = tmp_path / "feats.pkl"
    proc = call_featx(TSM_NAME, golden_checkpoint("tsm_r50_video").as_uri(), "--video-list", short_list,
                      "--video-root", VIDEOS, "--out", out, "--device", "cpu", env={"TORCH_HOME": str(tmp_path / "hub")})
    assert proc.returncode == 0, proc.stderr
    assert rel_error(pickle.loads(out.read_bytes())[SHORT], golden_features("tsm_r50_video")[SHORT]) <= 1e-4
    unknown = call_featx("tsm_r50_video_1x1x8_kinetics", "--out", tmp_path / "y.pkl")
    assert unknown.returncode == 2 and "neither a config file nor a model name; did you mean" in unknown.stderr


def test_gpu_normalize_module_hook_gives_the_normalize_steps_vector(golden_checkpoint, short_list, tmp_path):
    """tsm_r50_gpu_normalize normalises in a hook before the backbone instead of a Normalize step: same vector."""
    out = tmp_path / "feats.pkl"
    proc = call_featx("configs/recognition/tsm/tsm_r50_gpu_normalize_1x1x8_50e_kinetics400_rgb.py",
                      golden_checkpoint("tsm_r50_video"), "--video-list", short_list, "--video-root", VIDEOS,
                      "--out", out, "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert rel_error(pickle.loads(out.read_bytes())[SHORT], golden_features("tsm_r50_video")[SHORT]) <= 1e-4


def test_a_run_shows_each_step_to_its_observer(golden_checkpoint, short_list, tmp_path):
    seen = []

    class Watch(RunObserver):
        def planned(self, items, output):
            seen.append(("planned", [it.key for it in items], output.path.name))

        def prepared(self, extraction):
            seen.append(("prepared", extraction.resolved.decoder, extraction.resolved.workers))

        def video(self, result):
            seen.append(("video", result.key, result.error is None))

        def computed(self, store):
            seen.append(("computed", sorted(store.done)))

        def finished(self, status):
            seen.append(("finished", status, (tmp_path / "f.pkl").exists()))

    options = RunOptions(str(ROOT / TSN), str(golden_checkpoint("tsn_clip")), out=str(tmp_path / "f.pkl"),
                         video_list=str(short_list), video_root=str(VIDEOS), device="cpu", workers=0)
    assert run(options, Watch()) == 0
    assert seen == [("planned", [SHORT], "f.pkl"), ("prepared", "decord", 0), ("video", SHORT, True),
                    ("computed", [SHORT]), ("finished", 0, True)]


def test_python_api_in_memory_and_to_an_output(golden_checkpoint, tmp_path):
    args = (str(ROOT / TSN), str(golden_checkpoint("tsn_clip")), [SHORT, "missing.mp4"])
    result = featx.extract(*args, video_root=str(VIDEOS), device="cpu", workers=0)
    assert list(result.features) == [SHORT] and "file not found" in result.failed["missing.mp4"]
    assert rel_error(result.features[SHORT], golden_features("tsn_clip")[SHORT]) <= 1e-4
    written = featx.extract(*args, video_root=str(VIDEOS), device="cpu", out=str(tmp_path / "f.npz"))
    assert np.array_equal(written.features[SHORT], result.features[SHORT]) and list(written.failed) == ["missing.mp4"]
    assert list(featx.load(tmp_path / "f.npz").features) == [SHORT]
    with pytest.raises(UserError, match="per='frame'"):
        featx.extract(*args, per="frame")
