"""``featx layers CONFIG``: the modules ``--layer`` can name, with their output shapes for one view group of the
config's test pipeline (run on a short generated video, through the model as a run builds it, random weights)."""
from __future__ import annotations

import tempfile
from pathlib import Path

import av
import numpy as np
import torch

from featx.models import build_model, fuse_conv_bn, use_onednn_fusion
from featx.models.taps import layer_shapes
from featx.options import RunOptions
from featx.runner import prepared_config


def sample_video(path: Path, frames: int = 96, size: tuple[int, int] = (320, 240), fps: int = 30) -> Path:
    """A short H.264 video of moving noise, enough frames for any shipped sampler."""
    rng = np.random.default_rng(0)
    w, h = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for _ in range(frames):
            image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


def layer_table(options: RunOptions) -> list[tuple[str, str]]:
    """``(module name, output shape)`` of every module of the config's model, for one view group."""
    config, pipeline, _ = prepared_config(options)
    model = build_model(config.model)
    if options.fuse_conv_bn:  # as a run builds it: a module folded or fused away does not run
        model = fuse_conv_bn(model)
        use_onednn_fusion(model)
    with tempfile.TemporaryDirectory(prefix="featx-layers-") as folder:
        results = pipeline({"filename": str(sample_video(Path(folder) / "sample.mp4")), "start_index": 0})
    views = torch.as_tensor(np.asarray(results["imgs"], dtype=np.float32))[:model.view_group]
    return layer_shapes(model, views[None], model.forward_views)


def format_table(rows: list[tuple[str, str]]) -> str:
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:{width}s}  {shape}" for name, shape in rows)
