"""The fast default path computes what the reference path computes: uint8 frames normalised on the
device, BatchNorm folded, channels-last weights, oneDNN fused convolutions on the CPU."""
from __future__ import annotations

import copy
import os
import platform
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from helpers import CASE_CONFIGS, ROOT, VIDEOS
from featx.config import read_config
from featx.data import build_pipeline
from featx.data.pipeline import split_normalize
from featx.data.transforms import Normalize
from featx.extraction import autocast, decode_workers, prepare_model
from featx.models import build_model, fuse_conv_bn, use_onednn_fusion
from featx.models.layers import ConvModule

MEAN, STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]


@pytest.mark.parametrize("to_bgr", [False, True])
def test_normalize_tensor_is_bit_identical_to_normalize(to_bgr):
    frames = np.random.default_rng(0).integers(0, 256, (5, 17, 23, 3), dtype=np.uint8)
    norm = Normalize(MEAN, STD, to_bgr=to_bgr)
    host = norm({"imgs": frames})["imgs"]  # (N, H, W, C)
    device = norm.normalize_tensor(torch.from_numpy(frames), channel_dim=3).numpy()
    np.testing.assert_array_equal(device, host)


@pytest.mark.parametrize("case", sorted(CASE_CONFIGS))
def test_split_pipeline_gives_the_same_model_input(case):
    config = read_config(ROOT / CASE_CONFIGS[case])
    full = build_pipeline(config.pipeline)
    host, norm = split_normalize(build_pipeline(config.pipeline))
    assert isinstance(norm, Normalize) and len(host.steps) == len(full.steps) - 1
    start = {"filename": str(VIDEOS / "h264_426x240_24fps.mp4"), "start_index": 0}
    expected = full(dict(start))["imgs"]
    frames = host(dict(start))["imgs"]
    assert frames.dtype == np.uint8
    got = norm.normalize_tensor(torch.from_numpy(np.ascontiguousarray(frames))[None], channel_dim=2)[0]
    np.testing.assert_array_equal(got.numpy(), expected)


def test_no_split_when_normalize_is_not_last():
    pipeline = build_pipeline([{"type": "Normalize", "mean": MEAN, "std": STD}, {"type": "CenterCrop", "crop_size": 8}])
    assert split_normalize(pipeline) == (pipeline, None)


@pytest.mark.parametrize("case", ["tsn_clip", "slowonly_clip"])
def test_folded_channels_last_model_matches_the_plain_one(case, golden_checkpoint):
    model = read_config(ROOT / CASE_CONFIGS[case]).model
    plain, _ = prepare_model(model, str(golden_checkpoint(case)), torch.device("cpu"), fuse=False, channels_last=False)
    fast, _ = prepare_model(model, str(golden_checkpoint(case)), torch.device("cpu"))
    shape = (1, 2, 3, 64, 64) if case == "tsn_clip" else (1, 2, 3, 4, 64, 64)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        a, b = plain(x), fast(x)
    assert float((a - b).abs().max() / a.abs().max()) < 1e-5
    convs = [m for m in fast.modules() if isinstance(m, ConvModule)]
    assert all(m.onednn for m in convs) == torch.backends.mkldnn.is_available()


class _ParameterCasts(TorchDispatchMode):
    """Counts the dtype conversions of ``params`` (tensors) that run under it."""

    def __init__(self, params: list[torch.Tensor]) -> None:
        super().__init__()
        self.pointers = {p.data_ptr() for p in params}
        self.casts = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket in (torch.ops.aten.to, torch.ops.aten._to_copy) and args[0].data_ptr() in self.pointers:
            self.casts += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("case", ["tsn_clip", "slowonly_clip"])
def test_bf16_weights_are_converted_once_and_convolutions_fused(case, golden_checkpoint):
    """On a CPU, bf16 stores conv and linear weights in bf16 and runs the oneDNN fused convolutions on
    them: a forward casts no parameter (autocast over the plain float32 model casts each weight, every time)."""
    model_cfg, cpu = read_config(ROOT / CASE_CONFIGS[case]).model, torch.device("cpu")
    fp32, _ = prepare_model(model_cfg, str(golden_checkpoint(case)), cpu)
    bf16, _ = prepare_model(model_cfg, str(golden_checkpoint(case)), cpu, precision="bf16")
    convs = [m for m in bf16.modules() if isinstance(m, ConvModule)]
    assert all(m.conv.weight.dtype == torch.bfloat16 for m in convs)
    assert all(m.onednn for m in convs) == torch.backends.mkldnn.is_available()
    shape = (1, 2, 3, 64, 64) if case == "tsn_clip" else (1, 2, 3, 4, 64, 64)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    counter = _ParameterCasts(list(bf16.parameters()))
    with torch.inference_mode(), autocast("bf16", cpu):
        with counter:
            got = bf16.forward_views(x).float()
        plain, _ = prepare_model(model_cfg, str(golden_checkpoint(case)), cpu, fuse=False)
        unconverted = _ParameterCasts(list(plain.parameters()))
        with unconverted:
            plain.forward_views(x)
    assert counter.casts == 0 and unconverted.casts > 0
    with torch.inference_mode():
        expected = fp32.forward_views(x)
    assert float(torch.nn.functional.cosine_similarity(got[0], expected[0]).min()) >= 0.9999


@pytest.mark.parametrize("depth", [18, 101])
def test_onednn_fused_blocks_match_plain_ones(depth):
    model = read_config(ROOT / CASE_CONFIGS["tsn_clip"], {"model.backbone.depth": depth}).model
    torch.manual_seed(0)
    plain = build_model(model)
    for m in plain.modules():  # running statistics that are not the identity
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    fast = copy.deepcopy(plain)
    assert use_onednn_fusion(fuse_conv_bn(fast)) == torch.backends.mkldnn.is_available()
    x = torch.randn(1, 2, 3, 64, 64)
    with torch.inference_mode():
        a, b = plain(x), fast(x)
    assert float((a - b).abs().max() / a.abs().max()) < 1e-5


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc" or any(v.startswith(("MALLOC_", "GLIBC_TUNABLES", "LD_PRELOAD"))
                                                              for v in os.environ),
                    reason="keep_freed_memory tunes glibc's allocator, here replaced or tuned from the environment")
def test_kept_memory_serves_a_forward_without_page_faults():
    """After keep_freed_memory, a repeated CPU forward reuses the pages of the last one; by default glibc
    maps every activation over 32 MB afresh and the kernel zero-fills its pages (tens of thousands of faults)."""
    code = (
        "import resource, sys, torch\n"
        "from featx.config import read_config\n"
        "from featx.hostmem import keep_freed_memory\n"
        "from featx.models import build_model, fuse_conv_bn, use_onednn_fusion\n"
        "if sys.argv[1] == 'keep':\n"
        "    assert keep_freed_memory()\n"
        f"config = read_config({str(ROOT / CASE_CONFIGS['tsn_clip'])!r})\n"
        "model = fuse_conv_bn(build_model(config.model).eval())\n"
        "use_onednn_fusion(model)\n"
        "model = model.to(memory_format=torch.channels_last)\n"
        "x = torch.rand(1, 12, 3, 224, 224)\n"  # stage 1 activations: 38 MB
        "with torch.inference_mode():\n"
        "    for _ in range(3):\n"
        "        model(x)\n"
        "    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "    model(x)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n"
    )
    faults = {mode: int(subprocess.run([sys.executable, "-c", code, mode], cwd=ROOT, check=True,
                                       capture_output=True, text=True).stdout)
              for mode in ("default", "keep")}
    assert faults["default"] >= 50  # fewer with transparent huge pages always on
    assert faults["keep"] < faults["default"] / 20


def test_decode_workers_fit_the_process_share_of_the_cores(monkeypatch):
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 1)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    assert decode_workers(5, 2, gpu, {}) == 5 and decode_workers(0, 2, gpu, {}) == 0  # --workers wins
    assert decode_workers(None, 2, cpu, {"LOCAL_WORLD_SIZE": "1"}) == 2  # a CPU: the forward needs the cores
    assert decode_workers(None, 8, cpu, {"LOCAL_WORLD_SIZE": "4"}) == 4  # ... and a 1.x config's 8 fit its share
    assert decode_workers(None, 0, cpu, {}) == 0 and decode_workers(12, 8, cpu, {"LOCAL_WORLD_SIZE": "4"}) == 12
    assert decode_workers(None, 2, gpu, {}) == 15  # one GPU, 16 cores: one left for the main process
    assert decode_workers(None, 2, gpu, {"LOCAL_WORLD_SIZE": "4"}) == 3
    assert decode_workers(None, 2, gpu, {"OMPI_COMM_WORLD_LOCAL_SIZE": "8"}) == 2  # never below the config's
    assert decode_workers(None, 2, gpu, {"SLURM_CPUS_PER_TASK": "8", "LOCAL_WORLD_SIZE": "8"}) == 7
