"""The tests' one helper module: paths, the golden cases (their configs, checkpoints built by the fixtures'
rule, vectors), model helpers, a video writer, and running the real CLI."""
from __future__ import annotations

import contextlib
import copy
import ctypes
import functools
import json
import logging
import math
import os
import pickle
import platform
import re
import subprocess
import sys
import tempfile
import traceback
import warnings
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterable, Iterator

import av
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from featx.config import read_config
from featx.extraction import autocast, prepare_model
from featx.models import build_model, fuse_conv_bn, to_channels_last, use_onednn_fusion
from featx.options import RunOptions
from featx.runner import prepared_config

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
GOLDEN = DATA / "golden"
GOLDEN_1X = DATA / "golden-1x"  # made with MMAction2 1.2.0 (their configs under configs/mmaction2-1.x/)
VIDEOS = DATA / "videos"

# The first four cases predate options files: their configs are these.
CASE_CONFIGS = {
    "tsn_clip": "configs/recognition/tsn/tsn_r50_clip_feature_extraction_1x1x3_rgb.py",
    "slowonly_clip": "configs/recognition/slowonly/slowonly_r50_clip_feature_extraction_4x16x1_rgb.py",
    "slowonly_k400_3crop": "configs/recognition/slowonly/slowonly_r50_video_4x16x1_256e_kinetics400_rgb.py",
    "tsn_k400_10crop": "configs/recognition/tsn/tsn_r50_video_1x1x8_100e_kinetics400_rgb.py",
}
GOLDEN_CASES = sorted(p.name.split(".")[0] for p in GOLDEN.glob("*.seed0.features.pkl"))
GOLDEN_1X_CASES = sorted(p.name.split(".")[0] for p in GOLDEN_1X.glob("*.seed0.features.pkl"))
CONFIG_FOLDERS = {"0.x": "configs/recognition", "1.x": "configs/mmaction2-1.x/recognition"}  # by dialect
# Backbone types of the model index that no golden case has (none was made with MMAction2 for them): the test
# (file, function) that holds each one's parameter names, shapes and output to the reference's instead.
OTHER_LIBRARIES_TEST = ("tests/test_families_2d.py",  # against torchvision's model (1.x builds it; mmcls's has its names)
                        "test_other_libraries_backbones_load_1x_checkpoints_and_give_the_reference_s_pooled_features")
REFERENCE_LAYOUT_TESTS = {
    "torchvision.densenet161": OTHER_LIBRARIES_TEST,
    "mmcls.ResNeXt": OTHER_LIBRARIES_TEST,
    "OmniResNet": ("tests/test_families_3d.py",  # 1.2.0's names spelled out; the output against SlowOnly-50's
                   "test_omni_resnet_has_1x_names_and_is_a_slowonly_resnet_on_video"),
}


def case_config(case: str) -> tuple[str, dict[str, Any]]:
    """The shipped config a golden case was made with (relative to the checkout) and its ``--cfg-options``
    (in its dialect's key paths)."""
    options_file = golden_dir(case) / f"{case}.options.json"
    if not options_file.exists():
        return CASE_CONFIGS[case], {}
    options = json.loads(options_file.read_text())
    return f"{CONFIG_FOLDERS[options.get('dialect', '0.x')]}/{options['config']}", options["cfg_options"]


def case_model_cfg(case: str, **changes: Any) -> dict[str, Any]:
    """The ``model`` dict of a golden case's config, with its cfg_options and ``changes`` (dotted keys)."""
    config, options = case_config(case)
    return read_config(ROOT / config, {**options, **changes}).model


def golden_tensor(seed: int, key: str, shape: list[int], dtype: str) -> torch.Tensor:
    """One checkpoint tensor by the fixtures README's rule (seeded by crc32 of '<seed>:<key>')."""
    if key.endswith("num_batches_tracked"):
        return torch.tensor(0, dtype=torch.int64)
    assert dtype == "float32", (key, dtype)
    rng = np.random.default_rng(zlib.crc32(f"{seed}:{key}".encode()))
    if key.endswith("running_mean") or key.endswith("bias"):
        arr = 0.2 * rng.standard_normal(shape)
    elif key.endswith("running_var") or (key.endswith("weight") and len(shape) == 1):
        arr = 0.5 + rng.random(shape)
    else:
        arr = rng.standard_normal(shape) * math.sqrt(2 / math.prod(shape[1:]))
    return torch.from_numpy(np.asarray(arr, dtype=np.float64).astype(np.float32))


def golden_dir(case: str) -> Path:
    """The folder of a golden case: ``golden/`` (MMAction2 0.x) or ``golden-1x/``."""
    return GOLDEN_1X if (GOLDEN_1X / f"{case}.layout.json").exists() else GOLDEN


def case_weight_scale(case: str) -> dict[str, float]:
    """A golden case's ``weight_scale`` (regex -> factor; the fixtures README's "Scaled weights"), or none."""
    options_file = golden_dir(case) / f"{case}.options.json"
    return json.loads(options_file.read_text()).get("weight_scale", {}) if options_file.exists() else {}


def scaled(key: str, tensor: torch.Tensor, weight_scale: dict[str, float]) -> torch.Tensor:
    """``tensor`` times every factor whose regex matches ``key`` (``re.search``), in float32, in order."""
    for pattern, factor in weight_scale.items():
        if re.search(pattern, key):
            tensor = tensor * torch.tensor(factor, dtype=torch.float32)
    return tensor


def write_golden_checkpoint(case: str, path: Path, seed: int = 0) -> Path:
    """The checkpoint a golden case was made with, by the fixtures' rule (its ``weight_scale`` applied); a
    non-float tensor other than ``num_batches_tracked`` (an index table) is the model's own, from
    ``<case>.int_tensors.npz``."""
    folder = golden_dir(case)
    layout = json.loads((folder / f"{case}.layout.json").read_text())
    ints = folder / f"{case}.int_tensors.npz"
    own = dict(np.load(ints)) if ints.exists() else {}
    scale = case_weight_scale(case)
    state = OrderedDict((key, torch.from_numpy(own[key]) if key in own
                         else scaled(key, golden_tensor(seed, key, shape, dtype), scale)) for key, shape, dtype in layout)
    torch.save({"meta": {"seed": seed}, "state_dict": state}, path)
    return path


def golden_features(case: str) -> dict[str, np.ndarray]:
    with open(GOLDEN / f"{case}.seed0.features.pkl", "rb") as f:
        return pickle.load(f)


def rel_error(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    """max|a-b| / max|b|, the fixtures' measure (numpy arrays or tensors)."""
    a, b = (np.asarray(x.detach() if isinstance(x, torch.Tensor) else x, np.float64) for x in (a, b))
    return float(np.abs(a - b).max() / np.abs(b).max())


def model_input(config: str | Path, cfg_options: dict[str, Any], video: Path) -> np.ndarray:
    """The model input for ``video`` (its views, float32) as a run makes it: the config's test pipeline, as the
    workers run it, then the normalisation the device applies (a final ``Normalize``, a 1.x data preprocessor)."""
    _, pipeline, normalize = prepared_config(RunOptions(str(config), "", cfg_options=cfg_options))
    imgs = torch.as_tensor(pipeline({"filename": str(video), "start_index": 0})["imgs"])
    return (imgs if normalize is None else normalize.normalize_tensor(imgs, channel_dim=1)).numpy()


def assert_input_stats(imgs: np.ndarray, stats: dict[str, Any], name: str) -> None:
    """A test pipeline's model input for one video against its golden ``input_stats`` entry: shape and each
    view's mean and standard deviation (pins resize, crop positions and order, normalisation)."""
    assert imgs.dtype == np.float32 and imgs.shape == tuple(stats["shape"][1:]), name
    views = imgs.reshape(len(imgs), -1).astype(np.float64)
    mean, std = np.array(stats["view_mean"]), np.array(stats["view_std"])
    # The golden std is the unbiased one (ddof=1); a 1-pixel crop shift moves these by ~1e-3.
    np.testing.assert_allclose(views.std(axis=1, ddof=1), std, rtol=1e-5, err_msg=name)
    np.testing.assert_allclose(views.mean(axis=1), mean, rtol=0, atol=1e-5 * std.min(), err_msg=name)


@torch.no_grad()
def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Weights and BN statistics like the golden checkpoint rule: non-trivial, activations stay finite."""
    gen = torch.Generator().manual_seed(seed)
    for name, t in model.state_dict().items():
        if not t.is_floating_point():
            continue
        if name.endswith(("running_mean", "bias")):
            t.copy_(0.2 * torch.randn(t.shape, generator=gen))
        elif name.endswith("running_var") or t.dim() == 1:
            t.copy_(0.5 + torch.rand(t.shape, generator=gen))
        else:
            t.copy_(torch.randn(t.shape, generator=gen) * math.sqrt(2 / t[0].numel()))
    return model


def fast_path(model: nn.Module) -> tuple[nn.Module, bool]:
    """What ``featx.extraction.prepare_model`` does to a CPU float32 model (on a copy); and whether oneDNN is used."""
    fast = fuse_conv_bn(copy.deepcopy(model))
    onednn = use_onednn_fusion(fast)
    return to_channels_last(fast), onednn


def bf16_cosine(model_cfg: dict[str, Any], x: torch.Tensor, folder: Path) -> tuple[nn.Module, float]:
    """``prepare_model``'s CPU bf16 model of ``model_cfg`` (randomised weights, saved in ``folder``) and the
    lowest cosine of its view features on ``x`` to the CPU float32 model's, each run as featx runs it."""
    cpu = torch.device("cpu")
    checkpoint = folder / "bf16_cosine.pth"
    torch.save({"state_dict": randomize_(build_model(model_cfg)).state_dict()}, checkpoint)
    feats = {}
    for precision in ("fp32", "bf16"):
        prepared, _ = prepare_model(model_cfg, str(checkpoint), cpu, precision=precision)
        with torch.inference_mode(), autocast(precision, cpu):
            feats[precision] = prepared.forward_views(x).float().flatten(0, 1)
    return prepared, float(F.cosine_similarity(feats["bf16"], feats["fp32"]).min())


@functools.lru_cache(maxsize=4)
def _gradient_planes(h: int, w: int) -> np.ndarray:
    """The three channels of :func:`gradient_frame` at ``t = 0``: (h, w, 3) uint8."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([(x * 4) % 256, (y * 5) % 256, ((x + y) * 2) % 256], axis=-1).astype(np.uint8)


def gradient_frame(t: int, h: int = 48, w: int = 64) -> np.ndarray:
    """Frame ``t`` of moving gradients, a different pattern per channel: (h, w, 3) uint8 RGB, channel values
    ``(4x + 7t, 5y + 3t, 2(x + y) + 11t) mod 256`` (uint8 sums wrap at 256: a 1080p frame costs one addition)."""
    return _gradient_planes(h, w) + np.array([t * 7 % 256, t * 3 % 256, t * 11 % 256], dtype=np.uint8)


def gradient_frames(n: int = 20, h: int = 48, w: int = 64) -> np.ndarray:
    """``n`` frames of moving gradients: (n, h, w, 3) uint8 RGB."""
    return np.stack([gradient_frame(t, h, w) for t in range(n)])


def encode_video(path: Path, frames: Iterable[np.ndarray], codec: str = "libx264", pix_fmt: str = "yuv420p",
                 options: dict[str, str] | None = None, fps: int = 25) -> Path:
    """Encode (h, w, 3) uint8 RGB ``frames`` (an array or any iterable of them) with PyAV: a real video file."""
    with av.open(str(path), "w") as container:
        stream = None
        for frame in frames:
            if stream is None:
                stream = container.add_stream(codec, rate=fps)
                stream.width, stream.height, stream.pix_fmt = frame.shape[1], frame.shape[0], pix_fmt
                stream.options = options or {}
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def write_list(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def run_featx(*args: str | os.PathLike, cwd: Path | None = None, timeout: float = 600,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the real command line (``python -m featx.cli``) in a subprocess (``env``: variables to add)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"), **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "featx.cli", *map(str, args)],
        cwd=cwd or ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )


@contextlib.contextmanager
def _captured_output() -> Iterator[dict[str, str]]:
    """Everything written to stdout and stderr meanwhile, Python's streams and file descriptors 1 and 2 alike
    (what C libraries and forked workers write too): in the dict yielded, as ``stdout`` and ``stderr``, at the end."""
    got: dict[str, str] = {}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        streams = sys.stdout, sys.stderr
        for stream in streams:
            stream.flush()
        saved = [os.dup(1), os.dup(2)]
        try:
            os.dup2(out.fileno(), 1)
            os.dup2(err.fileno(), 2)
            sys.stdout, sys.stderr = (open(fd, "w", buffering=1, closefd=False) for fd in (1, 2))
            yield got
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            sys.stdout, sys.stderr = streams
            for fd, copy in enumerate(saved, start=1):
                os.dup2(copy, fd)
                os.close(copy)
            for name, file in (("stdout", out), ("stderr", err)):
                file.seek(0)
                text = file.read().decode(errors="replace")  # with universal newlines, as subprocess's text mode
                got[name] = text.replace("\r\n", "\n").replace("\r", "\n")


def call_featx(*args: str | os.PathLike, cwd: Path | None = None, env: dict[str, str] | None = None
               ) -> subprocess.CompletedProcess:
    """The command line's ``main`` called in this process, seen as :func:`run_featx` sees the real command:
    exit status, stdout and stderr (file descriptors included); an exception that would reach the user as a
    traceback is one in stderr here too, status 1. No interpreter start or import of torch, so it costs a
    run's own work only: use it unless the process itself is tested (signals, launchers, the installed script).
    ``env`` is added to the environment meanwhile; the environment, the cwd (the checkout by default), featx's
    logger and the heap (glibc's, trimmed: a run keeps what its forward freed) are as before afterwards."""
    from featx.cli import main  # noqa: PLC0415 (imported when first run, as the command would)

    argv = [str(a) for a in args]
    environ, where = dict(os.environ), os.getcwd()
    logger = logging.getLogger("featx")
    handlers, level, propagate = logger.handlers[:], logger.level, logger.propagate
    os.environ.update(env or {})
    os.chdir(cwd or ROOT)
    try:
        with _captured_output() as output, warnings.catch_warnings():
            warnings.resetwarnings()  # the interpreter's: each warning printed to stderr, not pytest's record
            warnings.simplefilter("default")
            warnings.showwarning = _print_warning
            try:
                status = main(argv)
            except SystemExit as exc:  # argparse: --help, --version, usage errors
                status = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
            except Exception:  # noqa: BLE001 (what the interpreter would print)
                traceback.print_exc()
                status = 1
        return subprocess.CompletedProcess(["featx", *argv], status, output["stdout"], output["stderr"])
    finally:
        os.chdir(where)
        os.environ.clear()
        os.environ.update(environ)
        logger.handlers[:], logger.propagate = handlers, propagate
        logger.setLevel(level)
        _trim_heap()


def _print_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                   file: Any = None, line: str | None = None) -> None:
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def _trim_heap() -> None:
    if platform.libc_ver()[0] == "glibc":
        ctypes.CDLL(None).malloc_trim(0)


def featx_exits(*args: str | os.PathLike, expect: int = 0, env: dict[str, str] | None = None
                ) -> subprocess.CompletedProcess:
    """:func:`call_featx` (in this process), asserting its exit status (stderr shown when it differs)."""
    proc = call_featx(*args, env=env)
    assert proc.returncode == expect, proc.stderr
    return proc


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The one ``featx: error:`` line a run printed (asserted: exactly one, and no traceback)."""
    errors = [line for line in proc.stderr.splitlines() if line.startswith("featx: error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return errors[0]
