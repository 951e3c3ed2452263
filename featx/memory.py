"""How many views one forward takes: sized from the memory the device has, with bytes per view measured.

A forward's working memory grows with its views (activations), so a video's views run in forwards of
at most :attr:`ForwardSize.views` views, always whole view groups (a TSM/TANet backbone mixes a
group's views). The number does not change the vectors (views are computed independently, then
pooled): it is not part of a run's fingerprint.
"""
from __future__ import annotations

import ctypes
import logging
import math
import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from featx.errors import UserError

log = logging.getLogger(__name__)

_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?", re.IGNORECASE)
# Without --max-memory, a CPU forward takes at most this share of the memory available, and at most
# CPU_CEILING, which keeps every shipped config's peak RSS under 3 GB (README, Model families). A GPU
# forward takes GPU_SHARE of the GPU's free memory.
SHARE = 0.5
CPU_CEILING = 1 * 2**30
GPU_SHARE = 0.8


def parse_size(text: str) -> int:
    """``4G``, ``512M``, ``1.5GiB``, ``3000000000`` -> bytes (K/M/G/T are powers of 1024)."""
    match = _SIZE.fullmatch(text.strip())
    if match is None or float(match.group(1)) <= 0:
        raise UserError(f"--max-memory {text}: give a size such as 4G, 512M or 1.5G (bytes without a unit)")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def gib(n: float) -> str:
    """``1.5 GiB``, ``300 MiB``, ``1 KiB``."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20)):
        if n >= size:
            return f"{n / size:.1f} {unit}" if unit == "GiB" else f"{n / size:.0f} {unit}"
    return f"{n / 1024:.0f} KiB"


def cgroup_room(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """Bytes this process's cgroup may still take (its limit less its usage), None without a limit."""
    for limit, usage in (("memory.max", "memory.current"), ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
        try:
            cap = (root / limit).read_text().strip()
            used = int((root / usage).read_text().strip())
        except (OSError, ValueError):
            continue
        if cap.isdigit() and int(cap) < 2**60:
            return max(0, int(cap) - used)
    return None


def mem_available(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def available_bytes(device: torch.device) -> int | None:
    """Memory a forward on ``device`` may use now: the GPU's free memory (and what torch's cache holds
    unused), or on a CPU the least of the cgroup's room and the kernel's MemAvailable; None when unknown."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    known = [n for n in (cgroup_room(), mem_available()) if n is not None]
    return min(known) if known else None


class _PeakMeter:
    """The most memory one call takes above what was in use before it: torch's allocator statistics on a
    GPU; on a CPU (Linux) the process's peak RSS, after glibc gave back what it kept from earlier forwards."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.libc = ctypes.CDLL(None) if platform.libc_ver()[0] == "glibc" else None

    @property
    def works(self) -> bool:
        return self.device.type == "cuda" or (self.libc is not None and os.path.exists("/proc/self/clear_refs"))

    def __call__(self, fn: Callable[[], None]) -> int:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            before = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            fn()
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device) - before
        self.libc.malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")  # the peak RSS starts again from the RSS now
        before = _status_kib("VmRSS")
        fn()
        return (_status_kib("VmHWM") - before) * 1024


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"no {field} in /proc/self/status")


@dataclass(frozen=True)
class ForwardSize:
    """Views per forward (whole groups), and how they were sized (for the log)."""

    views: int
    group: int
    how: str

    def halved(self) -> ForwardSize | None:
        """Half as many views (whole groups) after a device ran out of memory; None at one group."""
        if self.views <= self.group:
            return None
        views = max(1, self.views // self.group // 2) * self.group
        return ForwardSize(views, self.group, f"halved to {views} after running out of memory")


def size_forward(forward: Callable[[torch.Tensor], torch.Tensor], views: torch.Tensor, device: torch.device, *,
                 group: int, max_memory: int | None, held_elsewhere: int = 0) -> tuple[ForwardSize, torch.Tensor | None]:
    """Measure the bytes a view takes in ``forward`` (a warm-up forward of one view group, then one group, then
    two) and fit as many whole groups as the budget allows: ``max_memory`` if given, else a share of the memory
    available now, less ``held_elsewhere`` (what the decoding workers will hold). The probe forwards take the
    leading groups of ``views`` (a sample's views, whole groups) in turn, so none is wasted: also returned are
    their outputs, for the first views of ``views`` (up to four groups; None when nothing was measured)."""
    if max_memory is not None:
        budget, source = max_memory, f"--max-memory {gib(max_memory)}"
    else:
        available = available_bytes(device)
        if available is None:
            return ForwardSize(group * 8, group, "memory available unknown: 8 view groups"), None
        available = max(0, available - held_elsewhere)
        if device.type == "cuda":
            budget, source = int(available * GPU_SHARE), f"{GPU_SHARE:.0%} of {gib(available)} free on the GPU"
        else:
            budget = min(int(available * SHARE), CPU_CEILING)
            source = f"{gib(budget)} of {gib(available)} available"
    meter = _PeakMeter(device)
    if not meter.works:
        return ForwardSize(group * 8, group, "memory use not measurable here: 8 view groups"), None
    leading = views[:group * max(1, min(4, len(views) // group))].split(group)  # (not whole groups: the model says so)
    # Groups 0 (warm-up), 1, then 2 and 3 together, modulo the groups the sample has: the first len(leading)
    # of 0, 1, 2, 3 modulo len(leading) are 0 .. len(leading) - 1, so the outputs begin with the leading groups'.
    g0, g1, g2, g3 = (leading[i % len(leading)] for i in range(4))
    two = torch.cat([g2, g3])
    outputs = [forward(g0)]  # warm-up: one-off allocations (oneDNN's primitives, prepacked weights) stay
    one_peak = meter(lambda: outputs.append(forward(g1)))
    two_peak = meter(lambda: outputs.append(forward(two)))
    per_group = two_peak - one_peak if two_peak > one_peak else max(two_peak, 1) / 2
    fixed = max(0, one_peak - per_group)
    groups = max(1, math.floor((budget - fixed) / per_group))
    size = ForwardSize(groups * group, group, f"{gib(per_group / group)} a view measured, {source}")
    return size, torch.cat(outputs)[:len(leading) * group]
