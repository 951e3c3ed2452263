"""Distributed runs: each launcher's environment, Slurm node lists, sharding, and real multi-process runs."""
from __future__ import annotations

import json
import os
import pickle
import socket
import subprocess
import sys

import numpy as np
import pytest

from helpers import ROOT, VIDEOS, call_featx, golden_features, write_list
from featx.distributed import DistInfo, first_host, launcher_env, shard
from featx.errors import UserError


@pytest.mark.parametrize("nodelist, host", [
    ("node1", "node1"), ("gpu[07-09,12],cpu3", "gpu07"), ("a-b[1,3]", "a-b1"), ("x[003-5]", "x003"), ("h1,h2", "h1"),
])
def test_first_slurm_host(nodelist, host):
    assert first_host(nodelist) == host


def test_slurm_env_gives_torch_env():
    env = {"SLURM_PROCID": "3", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_NODELIST": "gpu[07-08]"}
    assert launcher_env("slurm", env) == {"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1",
                                          "MASTER_ADDR": "gpu07", "MASTER_PORT": "29500"}


def test_mpi_env_with_port():
    env = {"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_LOCAL_RANK": "1", "PORT": "1234"}
    got = launcher_env("mpi", env)
    assert (got["RANK"], got["WORLD_SIZE"], got["MASTER_ADDR"], got["MASTER_PORT"]) == ("1", "2", "127.0.0.1", "1234")


def test_missing_launcher_env_is_a_user_error():
    with pytest.raises(UserError, match="RANK, WORLD_SIZE, LOCAL_RANK not set"):
        launcher_env("pytorch", {})


@pytest.mark.parametrize("n, world", [(4, 3), (1, 2), (10, 4), (0, 2)])
def test_shards_cover_each_item_once_balanced(n, world):
    items = list(range(n))
    shards = [shard(items, DistInfo(rank, world)) for rank in range(world)]
    assert sorted(x for s in shards for x in s) == items
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


# --- real multi-process runs on the CPU (gloo) -------------------------------------------------

# The runs use the tiny TSN (conftest): what they check is how the ranks share, gather and write the videos, against
# one process's vectors of the same model, not the vectors themselves.
FAST = ["--cfg-options", "data.test.pipeline.1.num_clips=3", "--workers", "1", "--device", "cpu"]
ALL = sorted(golden_features("tsn_clip"))  # the five golden videos


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def single_process(tiny_tsn, tmp_path_factory) -> dict[str, np.ndarray]:
    """One process's features of every video in ALL (a video's features do not depend on the rest of the
    list), computed once for the module's comparisons."""
    tmp = tmp_path_factory.mktemp("single")
    out = tmp / "single.pkl"
    proc = call_featx(*tiny_tsn, "--video-list", write_list(tmp / "all.txt", ALL),
                      "--video-root", VIDEOS, "--out", out, *FAST)
    assert proc.returncode == 0, proc.stderr
    return pickle.loads(out.read_bytes())


def assert_same(got: dict, expected: dict) -> None:
    assert list(got) == list(expected)
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-5, atol=1e-5 * np.abs(expected[key]).max())


@pytest.mark.parametrize("procs, videos, sliced", [(2, ALL, None), (3, ALL[:4], None), (2, ALL[:1], None),
                                                   (2, ALL, "1/2")])
def test_dist_script_equals_single_process(procs, videos, sliced, single_process, tiny_tsn, tmp_path):
    """Also torchrun inside a shard (N shards x M processes): shard 1 of 2 is the list's last 3 videos."""
    video_list = write_list(tmp_path / "list.txt", videos)
    out = tmp_path / "dist" / "feats.pkl"
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(free_port()))
    proc = subprocess.run(
        ["bash", str(ROOT / "tools/misc/dist_clip_feature_extraction.sh"), *map(str, tiny_tsn), str(procs), "--video-list", str(video_list), "--video-root", str(VIDEOS),
         "--out", str(out), *FAST, *(["--shard", sliced] if sliced else [])],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    if sliced:
        videos, out = videos[2:], out.with_name("feats.shard-0001-of-0002.pkl")
    assert f"{len(videos)} written, 0 failed" in proc.stderr
    assert_same(pickle.loads(out.read_bytes()), {name: single_process[name] for name in videos})
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name, f"{out.name}.meta.json"]  # no temp or partial
    assert json.loads(out.with_name(f"{out.name}.meta.json").read_text())["processes"] == procs


LAUNCHER_VARS = {
    "slurm": lambda rank, n, port: {"SLURM_PROCID": str(rank), "SLURM_NTASKS": str(n), "SLURM_LOCALID": str(rank),
                                    "SLURM_NODELIST": "localhost", "MASTER_PORT": str(port)},
    "mpi": lambda rank, n, port: {"OMPI_COMM_WORLD_RANK": str(rank), "OMPI_COMM_WORLD_SIZE": str(n),
                                  "OMPI_COMM_WORLD_LOCAL_RANK": str(rank), "MASTER_PORT": str(port)},
}


@pytest.mark.parametrize("launcher", sorted(LAUNCHER_VARS))
def test_slurm_and_mpi_launchers_with_two_local_processes(launcher, single_process, tiny_tsn, tmp_path):
    video_list = write_list(tmp_path / "list.txt", ALL[:3])
    out = tmp_path / "feats.pkl"
    port = free_port()
    procs = []
    for rank in range(2):
        env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")}
        env.update(LAUNCHER_VARS[launcher](rank, 2, port), PYTHONPATH=str(ROOT))
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "featx.cli", *map(str, tiny_tsn), "--video-list", str(video_list),
             "--video-root", str(VIDEOS), "--out", str(out), "--launcher", launcher, *FAST],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert_same(pickle.loads(out.read_bytes()), {name: single_process[name] for name in ALL[:3]})


def test_a_failing_rank_ends_the_job_with_its_message(tiny_tsn, tmp_path):
    video_list = write_list(tmp_path / "list.txt", ALL[:2])
    out = tmp_path / "feats.pkl"
    (tmp_path / "feats.pkl.partial").write_bytes(b"not a partial store")  # rank 0 refuses to touch it
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(free_port()))
    proc = subprocess.run(
        ["bash", str(ROOT / "tools/misc/dist_clip_feature_extraction.sh"), *map(str, tiny_tsn), "2", "--video-list", str(video_list), "--video-root", str(VIDEOS),
         "--out", str(out), *FAST],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode != 0
    assert "featx[rank 0]: error:" in proc.stderr and "not a featx partial store" in proc.stderr
    assert "featx[rank 1]: error: rank 0 stopped the job: " in proc.stderr  # not waiting to be killed
    assert not out.exists()
