"""Process-group set-up from what torchrun, Slurm or MPI put in the environment, and small pure helpers.

featx calls ``torch.distributed.init_process_group`` itself: mmcv's and mmengine's ``init_dist``
divide by the GPU count and fail on a CPU-only machine.
"""
from __future__ import annotations

import itertools
import logging
import math
import os
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Iterable, Iterator, Mapping, Sequence, TypeVar

import torch
import torch.distributed as dist

from featx.errors import UserError

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_PORT = "29500"
# rank, world size, local rank: the variables each launcher sets
LAUNCHER_ENV = {
    "pytorch": ("RANK", "WORLD_SIZE", "LOCAL_RANK"),
    "slurm": ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"),
    "mpi": ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"),
}


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def get_dist_info() -> DistInfo:
    """This process's place in the job (rank 0 of 1 when no process group is set up)."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistInfo()
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def is_main_process() -> bool:
    return get_dist_info().is_main


def first_host(nodelist: str) -> str:
    """The first host name of a Slurm node list such as ``gpu[07-09,12],cpu3`` (-> ``gpu07``)."""
    match = re.match(r"([^\[,]+)(?:\[([^\]]+)\])?", nodelist.strip())
    if not match:
        raise UserError(f"cannot read the Slurm node list {nodelist!r}")
    prefix, ranges = match.groups()
    return prefix + (re.split(r"[-,]", ranges)[0] if ranges else "")


def launcher_env(launcher: str, environ: Mapping[str, str]) -> dict[str, str]:
    """The torch ``env://`` variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) for ``launcher``."""
    names = LAUNCHER_ENV[launcher]
    missing = [n for n in names if n not in environ]
    if missing:
        raise UserError(f"--launcher {launcher}: {', '.join(missing)} not set; start featx through the launcher")
    rank, world, local = (environ[n] for n in names)
    if "MASTER_ADDR" in environ:
        addr = environ["MASTER_ADDR"]
    elif launcher == "slurm" and "SLURM_NODELIST" in environ:
        addr = first_host(environ["SLURM_NODELIST"])
    elif launcher == "pytorch":
        raise UserError("--launcher pytorch: MASTER_ADDR not set; start featx through torchrun")
    else:
        addr = "127.0.0.1"
    port = environ.get("MASTER_PORT") or environ.get("PORT") or DEFAULT_PORT
    return {"RANK": rank, "WORLD_SIZE": world, "LOCAL_RANK": local, "MASTER_ADDR": addr, "MASTER_PORT": port}


def launcher_info(launcher: str, environ: Mapping[str, str] = os.environ) -> DistInfo:
    """This process's place in the job, as the launcher's environment says, before joining the group."""
    env = launcher_env(launcher, environ)
    return DistInfo(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env["LOCAL_RANK"]))


def init_distributed(launcher: str, device: torch.device, backend: str | None = None,
                     timeout_min: float = 30) -> tuple[DistInfo, torch.device]:
    """Join the process group; return this rank's info and its device (``cuda:LOCAL_RANK`` on GPUs).

    The backend is NCCL on GPUs (or the config's, as its dialect reads it) and always gloo on a CPU.
    """
    info = launcher_info(launcher)
    os.environ.update(launcher_env(launcher, os.environ))
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
        backend = backend or "nccl"
    else:
        if backend not in (None, "gloo"):
            log.debug("the config's distributed backend %s is ignored on the CPU: using gloo", backend)
        backend = "gloo"
    dist.init_process_group(backend, init_method="env://", timeout=timedelta(minutes=timeout_min))
    return info, device


def shard(items: Sequence[T], info: DistInfo) -> list[T]:
    """This rank's share, balanced by count (sizes differ by at most one), no padding, no repeats."""
    return list(items[info.rank::info.world_size])


def object_group() -> Any:
    """A gloo group for Python objects (results, lists): works beside NCCL and on CPUs alike."""
    return dist.new_group(backend="gloo")


def broadcast_from_main(obj: T, group: Any) -> T:
    """Rank 0's ``obj`` on every rank."""
    box = [obj]
    dist.broadcast_object_list(box, src=0, group=group)
    return box[0]


def leave(group: Any) -> None:
    """The end of a run's communication, on every rank: wait until all ranks are here, so that none exits
    while another still sends to it, then tear the process groups down now, not in the interpreter's exit
    (where gloo's teardown can abort the process: "terminate called without an active exception")."""
    dist.barrier(group=group)
    dist.destroy_process_group()


def gather_to_main(results: Iterable[T], info: DistInfo, most_per_rank: int, group: Any,
                   chunk: int = 1) -> Iterator[T]:
    """Send every rank's results to rank 0 ``chunk`` at a time; rank 0 yields them all, others nothing.

    Every rank takes part in the same number of rounds (from the largest share), so rank 0 never
    holds more than ``world_size * chunk`` results in flight; with one result a round, rank 0 yields
    (and its progress bar shows) each rank's results as they are done.
    """
    it = iter(results)
    for _ in range(math.ceil(most_per_rank / chunk)):
        mine = list(itertools.islice(it, chunk))
        box: list[Any] | None = [None] * info.world_size if info.is_main else None
        dist.gather_object(mine, box, dst=0, group=group)
        if box is not None:
            for part in box:
                yield from part
