"""What a run is asked to do: every option declared once, as a :class:`RunOptions` field.

A field's :func:`option` metadata says how the ``featx`` command spells it, its help, its choices and
whether it decides the vectors (the fingerprint). The parser (:func:`add_arguments`), the checks
(:meth:`RunOptions.check`) and the fingerprint's options (:meth:`RunOptions.fingerprinted`) are derived
from that; a new option is one new field. The parser leaves out what the user did not type, so every
default is the field's own.
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from mmengine.config import DictAction

from featx.checkpoint import PARTIAL_FLAG
from featx.config import VIEWS
from featx.data.sampling import PADS
from featx.data.video_list import VIDEO_EXTENSIONS
from featx.distributed import LAUNCHER_ENV
from featx.errors import UserError
from featx.memory import parse_size
from featx.extraction import PER, PRECISIONS
from featx.models.taps import POOLS
from featx.registry import DECODERS, FORMATS
from featx.shards import SHARD_BY, parse_shard

DECODE_ORDERS = ("list", "sorted")


@dataclass(frozen=True)
class Option:
    """How one :class:`RunOptions` field is offered and checked.

    ``flags``: its spellings on the command line (a name without dashes: a positional argument; none: the
    field is for Python callers only). ``switches``: instead of one flag, flags that each set a value
    (``{"--per-clip": ("clip", help)}``, mutually exclusive). ``choices``: the allowed values (a function,
    for a registry's names, asked when needed). ``fingerprint``: the value decides the vectors, so the
    partial store and the meta sidecar record it and a rerun compares it. ``argparse``: further
    ``add_argument`` keywords (``type`` converts the typed text, ``action``, ``nargs``, ``metavar``,
    ``required``).
    """

    help: str = ""
    flags: tuple[str, ...] = ()
    switches: Mapping[str, tuple[Any, str]] = field(default_factory=dict)
    choices: Sequence[Any] | Callable[[], Sequence[Any]] | None = None
    fingerprint: bool = False
    argparse: Mapping[str, Any] = field(default_factory=dict)

    def allowed(self) -> Sequence[Any] | None:
        return self.choices() if callable(self.choices) else self.choices


def option(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING,
           **how: Any) -> Any:
    """A :class:`RunOptions` field with its :class:`Option` (``how``: that class's fields)."""
    return field(default=default, default_factory=default_factory, metadata={"option": Option(**how)})


@dataclass(frozen=True)
class RunOptions:
    """What a run is asked to do (the ``featx`` command's flags; ``featx --help`` says what each means).

    ``videos`` lists the videos directly (Python callers), instead of ``video_list``; without either,
    every video file under ``video_root`` is taken. ``out`` None keeps the results in memory.
    """

    config: str = option(flags=("config",), help="MMAction2-style Python config file, or a model name "
                                                  "(`featx models` lists them)")
    checkpoint: str = option(flags=("checkpoint",), argparse={"nargs": "?"},
                             help="checkpoint file or http(s):// URL (cached in torch's hub folder); a model name "
                                  "has its own")
    out: str | None = option(None, flags=("--out",), argparse={"required": True},
                             help="output: .pkl/.pickle (dict of float32 arrays), .json, .npz, .h5, .parquet, or a "
                                  "folder (ending in /) of .npy files; OUT.meta.json says how it was made")
    video_list: str | None = option(None, flags=("--video-list",),
                                    help="text file, one video path per line (relative to --video-root, or "
                                         "absolute); without it, every video file under --video-root, sorted")
    videos: Sequence[str] | None = option(None)
    video_root: str = option("", flags=("--video-root",), fingerprint=True,
                             help="folder the listed paths are relative to")
    video_ext: Sequence[str] = option(VIDEO_EXTENSIONS, flags=("--video-ext",),
                                      argparse={"type": lambda text: tuple(text.split(","))},
                                      help="file suffixes taken when --video-root is walked (default: "
                                           f"{','.join(VIDEO_EXTENSIONS)})")
    out_format: str | None = option(None, flags=("--out-format",), choices=FORMATS.names,
                                    help="output format instead of --out's suffix; 'list' writes MMAction2's list "
                                         "in list order")
    per: str = option("video", choices=PER, fingerprint=True, switches={
        "--per-clip": ("clip", "one vector per sampled clip (averaged over its crops): arrays (clips, D)"),
        "--per-view": ("view", "one vector per clip and crop: arrays (clips, crops, D)")})
    dense_stride: str | None = option(None, flags=("--dense-stride",), argparse={"metavar": "N|Ns"},
                                      help="sample clips over the whole video, one every N frames (16) or N seconds "
                                           "(0.5s), instead of the config's num_clips (memory-bounded for long "
                                           "videos)")
    views: str = option("all", flags=("--views",), choices=VIEWS,
                        help="all: every test view of the config (default); tool: the view reduction of MMAction2 "
                             "1.x's clip_feature_extraction.py without --multi-view (one centre clip for a 3D "
                             "SampleFrames, no twice_sample, TenCrop -> CenterCrop), averaged")
    fps: float | None = option(None, flags=("--fps",), fingerprint=True, argparse={"type": float, "metavar": "F"},
                               help="put every video on a grid of F frames per second first (the frame shown at "
                                    "each 1/F s, by presentation timestamp, for any frame rate): sampling, strides "
                                    "and windows then count grid frames")
    pad: str = option("none", flags=("--pad",), choices=PADS, fingerprint=True,
                      help="with --dense-stride: none (windows that fit), or repeat/zero: ceil(N / stride) windows, "
                           "window i centred on frame i * stride + stride / 2, the ends padded with the edge frame "
                           "or black")
    layer: str | None = option(None, flags=("--layer",), fingerprint=True, argparse={"metavar": "NAME"},
                               help="the output of this module instead of the backbone's, e.g. backbone.layer3 "
                                    "(`featx layers CONFIG` lists them)")
    pool: str | None = option(None, flags=("--pool",), choices=POOLS, fingerprint=True,
                              help="how --layer's output is pooled over space and time: avg (default), max, or none "
                                   "(each view's output kept whole, flattened)")
    cfg_options: Mapping[str, Any] = option(default_factory=dict, flags=("--cfg-options",),
                                            argparse={"nargs": "+", "action": DictAction},
                                            help="override config values by their key paths in the config's "
                                                 "dialect, e.g. (0.x) data.workers_per_gpu=4 "
                                                 "model.test_cfg.max_testing_views=10, (1.x) "
                                                 "test_dataloader.dataset.pipeline.1.num_clips=2")
    fuse_conv_bn: bool = option(True, flags=("--fuse-conv-bn",), fingerprint=True,
                                argparse={"action": argparse.BooleanOptionalAction},
                                help="fold BatchNorm into the convolutions (default on: same vectors to float "
                                     "rounding, faster)")
    device: str | None = option(None, flags=("--device",),
                                help="cpu, cuda or cuda:N (default: cuda when available, else cpu)")
    precision: str | None = option(None, flags=("--precision",), choices=sorted(PRECISIONS), fingerprint=True,
                                   help="compute precision (default fp32, or fp16 on a GPU when the config sets "
                                        "fp16)")
    max_memory: str | None = option(None, flags=("--max-memory",), argparse={"metavar": "SIZE"},
                                    help="the most memory one forward may take, e.g. 4G or 512M (default: half the "
                                         "memory available on a CPU, at most 1 GiB; 80%% of the free memory on a "
                                         "GPU); views per forward are measured to fit it, the vectors do not change")
    workers: int | None = option(None, flags=("--workers",), argparse={"type": int},
                                 help="decoding processes (default: data.workers_per_gpu on a CPU; on a GPU, one "
                                      "per core of this process's share, at least that); 0 decodes in this "
                                      "process, without a time limit")
    video_timeout: float = option(300.0, flags=("--video-timeout",), argparse={"type": float},
                                  help="seconds one video (or one chunk of a dense-sampled one) may take to decode "
                                       "before its worker is killed and the video skipped (default 300)")
    decoder: str | None = option(None, flags=("--decoder",), choices=DECODERS.names, fingerprint=True,
                                 help="video decoder instead of the config's (DecordInit: decord, as the "
                                      "reference; PyAVInit: pyav, which honours mp4 edit lists; OpenCVInit: "
                                      "opencv)")
    decode_order: str = option("list", flags=("--decode-order",), choices=DECODE_ORDERS, fingerprint=True,
                               help="ask the decoder for frames in the sampler's order (default, as the reference) "
                                    "or sorted (fewer seeks: faster for multi-frame clips, but see the README for "
                                    "damaged files)")
    allow_partial_checkpoint: bool = option(False, flags=(f"--{PARTIAL_FLAG}",), argparse={"action": "store_true"},
                                            help="run even when the checkpoint lacks some of the model's weights "
                                                 "(those layers keep random values: refused without it)")
    strict: bool = option(False, flags=("--strict",), argparse={"action": "store_true"},
                          help="stop at the first video that fails (exit 1)")
    restart: bool = option(False, flags=("--restart",), argparse={"action": "store_true"},
                           help="discard results of an earlier interrupted run instead of resuming")
    launcher: str = option("none", flags=("--launcher",), choices=("none", *LAUNCHER_ENV),
                           help="job launcher (see README)")
    shard: str | None = option(None, flags=("--shard",), argparse={"metavar": "K/N|auto"},
                               help="take the K-th (from 0) of N contiguous slices of the list, the same on every "
                                    "machine, and write OUT's stem.shard-KKKK-of-NNNN output beside OUT (join them "
                                    "with `featx merge`); auto: Slurm's SLURM_ARRAY_TASK_ID of "
                                    "SLURM_ARRAY_TASK_COUNT")
    shard_by: str = option("count", flags=("--shard-by",), choices=SHARD_BY,
                           help="balance the shards by number of videos (default) or by the videos' file sizes")
    keep_freed_memory: bool = option(True)  # on a CPU, glibc keeps what a forward frees (see featx.hostmem)

    def check(self) -> None:
        """Refuse values no run can take, in one line each, before any file is read or model loaded."""
        for f in dataclasses.fields(self):
            allowed, value = f.metadata["option"].allowed(), getattr(self, f.name)
            if allowed is not None and value not in allowed and not (value is None and f.default is None):
                raise UserError(f"{f.name}={value!r}: use one of {', '.join(str(a) for a in allowed)}")
        if not self.video_timeout > 0:
            raise UserError(f"--video-timeout {self.video_timeout:g}: must be more than 0 seconds")
        if self.max_memory is not None:
            parse_size(self.max_memory)
        if self.workers is not None and self.workers < 0:
            raise UserError(f"--workers {self.workers}: must be 0 or more")
        if self.videos is not None and self.video_list is not None:
            raise UserError("give the videos or a video list, not both")
        if self.out is None and self.launcher != "none":
            raise UserError("a distributed run writes an output: give out")
        if self.fps is not None and not self.fps > 0:
            raise UserError(f"--fps {self.fps:g}: must be more than 0 frames per second")
        if self.pad != "none" and self.dense_stride is None:
            raise UserError(f"--pad {self.pad}: pads the windows of --dense-stride, so give --dense-stride too")
        if self.pool is not None and self.layer is None:
            raise UserError(f"--pool {self.pool}: pools the output of --layer, so give --layer too")
        if self.shard is not None:
            parse_shard(self.shard)
            if self.out is None:
                raise UserError("a shard writes an output of its own beside out: give out")

    def fingerprinted(self, resolved: Resolved) -> dict[str, Any]:
        """The options that decide the vectors, by field name: the value the run settled on where it
        resolved one (:class:`Resolved`), else the option's own."""
        return {f.name: getattr(resolved, f.name, getattr(self, f.name))
                for f in dataclasses.fields(self) if f.metadata["option"].fingerprint}


def fingerprint_defaults() -> dict[str, Any]:
    """Each fingerprinted option's default, by field name (what a run that did not have the option did)."""
    return {f.name: f.default for f in dataclasses.fields(RunOptions)
            if f.metadata["option"].fingerprint and f.default is not dataclasses.MISSING}


@dataclass(frozen=True)
class Resolved:
    """What a run settled on where an option leaves the choice to it, the config or the machine."""

    decoder: str  # the backend that opens the videos ("none": the pipeline opens none)
    precision: str
    device: str
    workers: int  # decoding processes
    video_root: str  # absolute


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One argument per :class:`RunOptions` field that has flags; what the user leaves out stays absent from
    the parsed namespace (``argparse.SUPPRESS``), so the field's default applies."""
    for f in dataclasses.fields(RunOptions):
        how: Option = f.metadata["option"]
        if how.switches:
            group = parser.add_mutually_exclusive_group()
            for flag, (value, text) in how.switches.items():
                group.add_argument(flag, dest=f.name, action="store_const", const=value, default=argparse.SUPPRESS,
                                   help=text)
        elif how.flags:
            named = how.flags[0].startswith("-")
            extra = {**({"dest": f.name} if named else {}), **({"choices": how.allowed()} if how.choices else {})}
            parser.add_argument(*how.flags, default=argparse.SUPPRESS, help=how.help, **extra, **how.argparse)


def options_given(parsed: argparse.Namespace) -> dict[str, Any]:
    """The :class:`RunOptions` fields a namespace from :func:`add_arguments`'s parser holds."""
    return {f.name: getattr(parsed, f.name) for f in dataclasses.fields(RunOptions) if hasattr(parsed, f.name)}
