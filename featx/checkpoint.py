"""Loading official MMAction2 checkpoints (local path or URL) into featx models, weights only."""
from __future__ import annotations

import functools
import hashlib
import logging
import os
import pickle
import re
import http.client
import urllib.error
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from featx.errors import UserError

log = logging.getLogger(__name__)

URL_SCHEMES = ("http://", "https://", "file://")
# Official file names end in -<first 8+ hex digits of the file's sha256>.pth
HASH_SUFFIX = re.compile(r"-([0-9a-f]{8,64})\.pth$")
# How torch.save's files begin: a zip archive (the default since torch 1.6), or the legacy pickle stream
ZIP_MAGIC, PICKLE_PROTOCOL = b"PK\x03\x04", b"\x80"
UNPICKLER_ERROR = "WeightsUnpickler error:"
PARTIAL_FLAG = "allow-partial-checkpoint"  # the option that accepts a checkpoint lacking model keys


def _meta_safe_globals() -> list:
    """What official checkpoints' ``meta`` may hold besides plain data, and nothing callable beyond it: numpy
    scalars, dtypes and arrays (0.x and 1.x zoo files), and mmengine's ``ConfigDict`` (1.x's runner keeps
    configs in ``meta``). Not mmengine's ``HistoryBuffer`` (a training message hub's, which published zoo
    files leave out): it pickles ``getattr``, which would open every attribute to the file."""
    from mmengine.config import ConfigDict

    dtype_classes = [getattr(np.dtypes, name) for name in dir(np.dtypes) if name.endswith("DType")]
    scalar, reconstruct = np._core.multiarray.scalar, np._core.multiarray._reconstruct
    return [
        (scalar, "numpy.core.multiarray.scalar"),
        (scalar, "numpy._core.multiarray.scalar"),
        (reconstruct, "numpy.core.multiarray._reconstruct"),
        (reconstruct, "numpy._core.multiarray._reconstruct"),
        np.ndarray,
        np.dtype,
        *dtype_classes,
        ConfigDict,
    ]


def resolve_checkpoint(source: str) -> Path:
    """Return a local file for ``source``: the path itself, or a URL downloaded into torch's hub cache."""
    if not source.startswith(URL_SCHEMES):
        path = Path(source)
        if not path.is_file():
            raise UserError(f"checkpoint file not found: {source}")
        return path
    name = os.path.basename(urllib.parse.urlparse(source).path)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / name
    match = HASH_SUFFIX.search(name)
    if not cached.is_file():
        cached.parent.mkdir(parents=True, exist_ok=True)
        log.info("downloading %s to %s", source, cached)
        try:
            torch.hub.download_url_to_file(source, str(cached), hash_prefix=None, progress=True)
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            raise UserError(f"cannot download checkpoint {source}: {exc}") from exc
    if match:
        verify_hash(cached, match.group(1))
    return cached


def file_sha256(path: Path) -> str:
    """The file's sha256 (hex), read once per version of the file: the URL check and the resume
    fingerprint both ask for it."""
    st = os.stat(path)  # a replaced or rewritten file has another inode or ctime (which no copy tool sets back)
    return _sha256(os.path.realpath(path), (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))


@functools.lru_cache(maxsize=8)
def _sha256(path: str, version: tuple[int, ...]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_hash(path: Path, prefix: str) -> None:
    """Check that the file's sha256 starts with ``prefix``; a mismatch removes the file and is an error."""
    sha = file_sha256(path)
    if not sha.startswith(prefix):
        path.unlink()
        raise UserError(
            f"checkpoint {path.name} is corrupt or not the official file: sha256 {sha[:len(prefix)]}, "
            f"its name says {prefix}; the cached copy was removed, run again to download it anew"
        )


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], Mapping]:
    """A checkpoint's state dict and ``meta``, unpickled weights only (``weights_only=True``, numpy and
    mmengine types allowed by name): a checkpoint that needs code to load is refused."""
    with open(path, "rb") as f:
        head = f.read(len(ZIP_MAGIC))
    if not head.startswith((ZIP_MAGIC, PICKLE_PROTOCOL)):
        raise UserError(f"checkpoint {path} is not a PyTorch checkpoint (neither the zip nor the pickle file "
                        "torch.save writes)")
    try:
        with torch.serialization.safe_globals(_meta_safe_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UserError(
            f"checkpoint {path} needs more than tensors and plain data to load, refused for safety "
            f"(featx loads weights only): {_unpickling_reason(str(exc))}"
        ) from exc
    except Exception as exc:  # torch.load raises many types on a file that is not a checkpoint
        raise UserError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}") from exc
    state = obj.get("state_dict", obj) if isinstance(obj, Mapping) else None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"checkpoint {path} holds no state dict of tensors")
    meta = obj.get("meta") if "state_dict" in obj else None
    return {k.removeprefix("module."): v for k, v in state.items()}, meta if isinstance(meta, Mapping) else {}


# What each MMAction2's runner writes into a checkpoint's meta: mmcv's (0.x) its version, mmengine's (1.x) its own
META_DIALECTS = {"mmcv_version": "0.x", "mmengine_version": "1.x"}


def checkpoint_dialect(meta: Mapping) -> str | None:
    """The MMAction2 version whose runner saved the checkpoint, as its ``meta`` says, if it says."""
    return next((dialect for key, dialect in META_DIALECTS.items() if key in meta), None)


def _unpickling_reason(message: str) -> str:
    """What torch's weights-only unpickler objected to, without its advice on loading the file anyway."""
    _, found, reason = message.partition(UNPICKLER_ERROR)
    reason = " ".join((reason if found else message).split())
    return reason.split(". Please", 1)[0].split(" Check the documentation", 1)[0].rstrip(".") or "no reason given"


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A checkpoint loaded into a model: the local file, the model keys it lacked (left as built, only
    with ``allow_partial``) and its keys the model does not use (the classification head)."""

    path: Path
    missing: tuple[str, ...] = ()
    unused: tuple[str, ...] = ()


def load_checkpoint(model: nn.Module, source: str, *, allow_partial: bool = False,
                    dialect: str | None = None) -> LoadedCheckpoint:
    """Load ``source`` into ``model`` by MMAction2's parameter names.

    A checkpoint that matches none of the model's keys, whose shapes differ, or that lacks any of the
    model's keys (those layers would keep random weights) is an error; ``allow_partial`` accepts the
    last with a warning. Keys the model lacks (``cls_head.*``) are reported in one warning; a 1.x data
    preprocessor's buffers (``data_preprocessor.*``) are not weights and are left out. When the
    checkpoint's meta says another MMAction2 saved it than the config's ``dialect``, the error says so.
    """
    path = resolve_checkpoint(source)
    state, meta = read_checkpoint(path)
    state = {k: v for k, v in state.items() if not k.startswith("data_preprocessor.")}
    saved_by = checkpoint_dialect(meta)
    other = (f"an MMAction2 {saved_by} checkpoint of another model than this MMAction2 {dialect} config's"
             if saved_by and dialect and saved_by != dialect else "for another model")
    own = model.state_dict()
    matched = [k for k in state if k in own]
    if not matched:
        raise UserError(
            f"checkpoint {source} matches none of the model's parameters: is it {other}? "
            f"(checkpoint keys look like {next(iter(state), 'nothing')!r}, the model's like {next(iter(own))!r})"
        )
    for key in matched:
        if state[key].shape != own[key].shape:
            raise UserError(
                f"checkpoint {source} is {other}: {key} has shape {tuple(state[key].shape)} "
                f"there and {tuple(own[key].shape)} in the model built from the config"
            )
    unused = tuple(k for k in state if k not in own)
    # BatchNorm's num_batches_tracked only counts training steps: a checkpoint without it loses nothing
    missing = tuple(k for k in own if k not in state and not k.endswith(".num_batches_tracked"))
    if missing and not allow_partial:
        raise UserError(
            f"checkpoint {source} lacks {len(missing)} of the model's {len(own)} keys ({_summary(missing)}): "
            f"those layers would keep random weights; is it {other if saved_by != dialect else 'for this config'}? "
            f"(--{PARTIAL_FLAG} runs anyway)"
        )
    if unused:
        log.warning("checkpoint %s: %d keys not used by the feature model (%s)", path.name, len(unused),
                    _summary(unused))
    if missing:
        log.warning("checkpoint %s: %d model keys not in the checkpoint (%s): those layers keep random weights "
                    "(--%s)", path.name, len(missing), _summary(missing), PARTIAL_FLAG)
    model.load_state_dict({k: state[k] for k in matched}, strict=False)
    return LoadedCheckpoint(path, missing, unused)


def _summary(keys: Sequence[str], most: int = 4) -> str:
    shown = ", ".join(keys[:most])
    return shown + (f", ... {len(keys) - most} more" if len(keys) > most else "")
