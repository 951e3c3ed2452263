"""Shared test helpers: paths, golden checkpoints built by the fixtures' rule, running the real CLI."""
from __future__ import annotations

import json
import math
import os
import pickle
import subprocess
import sys
import zlib
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
GOLDEN = DATA / "golden"
VIDEOS = DATA / "videos"

CASE_CONFIGS = {
    "tsn_clip": "configs/recognition/tsn/tsn_r50_clip_feature_extraction_1x1x3_rgb.py",
    "slowonly_clip": "configs/recognition/slowonly/slowonly_r50_clip_feature_extraction_4x16x1_rgb.py",
    "slowonly_k400_3crop": "configs/recognition/slowonly/slowonly_r50_video_4x16x1_256e_kinetics400_rgb.py",
    "tsn_k400_10crop": "configs/recognition/tsn/tsn_r50_video_1x1x8_100e_kinetics400_rgb.py",
}


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


def write_golden_checkpoint(case: str, path: Path, seed: int = 0) -> Path:
    layout = json.loads((GOLDEN / f"{case}.layout.json").read_text())
    state = OrderedDict((key, golden_tensor(seed, key, shape, dtype)) for key, shape, dtype in layout)
    torch.save({"meta": {"seed": seed}, "state_dict": state}, path)
    return path


@pytest.fixture(scope="session")
def golden_checkpoint(tmp_path_factory):
    """``golden_checkpoint(case) -> Path``, each built once per session."""
    folder = tmp_path_factory.mktemp("checkpoints")
    made: dict[str, Path] = {}

    def get(case: str) -> Path:
        if case not in made:
            made[case] = write_golden_checkpoint(case, folder / f"{case}.pth")
        return made[case]

    return get


def golden_features(case: str) -> dict[str, np.ndarray]:
    with open(GOLDEN / f"{case}.seed0.features.pkl", "rb") as f:
        return pickle.load(f)


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    """max|a-b| / max|b|, the fixtures' measure."""
    return float(np.abs(np.asarray(a, np.float64) - b).max() / np.abs(b).max())


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
