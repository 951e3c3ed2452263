"""Fixtures shared by the tests (the helpers themselves are in ``helpers.py``)."""
from __future__ import annotations

from pathlib import Path

import pytest

import torch

from featx.config import read_config
from featx.models import build_model
from helpers import randomize_, write_golden_checkpoint

TINY_TSN = """
model = dict(type='Recognizer2D', backbone=dict(type='ResNet', depth=18, norm_eval=False))
data = dict(videos_per_gpu=1, workers_per_gpu=0, test=dict(type='VideoDataset', ann_file=None, data_prefix=None, pipeline=[
    dict(type='DecordInit'), dict(type='SampleFrames', clip_len=2, frame_interval=1, num_clips=1, test_mode=True),
    dict(type='DecordDecode'), dict(type='Resize', scale=(-1, 32)), dict(type='CenterCrop', crop_size=32),
    dict(type='Normalize', mean=[128, 128, 128], std=[64, 64, 64], to_bgr=False),
    dict(type='FormatShape', input_format='NCHW'), dict(type='Collect', keys=['imgs'], meta_keys=[]),
    dict(type='ToTensor', keys=['imgs'])]))
"""


@pytest.fixture(scope="session")
def golden_checkpoint(tmp_path_factory: pytest.TempPathFactory):
    """``golden_checkpoint(case) -> Path``, each built once per session."""
    folder = tmp_path_factory.mktemp("checkpoints")
    made: dict[str, Path] = {}

    def get(case: str) -> Path:
        if case not in made:
            made[case] = write_golden_checkpoint(case, folder / f"{case}.pth")
        return made[case]

    return get


@pytest.fixture(scope="session")
def tiny_tsn(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(config, checkpoint)``: a ResNet-18 TSN-style config on 32 px frames (2 frames a video, decoded in
    the main process) and a checkpoint of seeded random weights, for fast runs of the real CLI. Its test dataset
    has the keys the shipped configs give it: without them mmengine's pretty_text (the meta sidecar's config
    text) spends 0.5 s a run in yapf, 25 times what it takes with them."""
    folder = tmp_path_factory.mktemp("tiny")
    config = folder / "tiny_tsn.py"
    config.write_text(TINY_TSN)
    checkpoint = folder / "tiny.pth"
    torch.save({"state_dict": randomize_(build_model(read_config(config).model)).state_dict()}, checkpoint)
    return config, checkpoint
