"""Distributed set-up helpers: each launcher's environment, Slurm node lists, sharding."""
from __future__ import annotations

import pytest

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
