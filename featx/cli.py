"""The ``featx`` command (and ``tools/misc/clip_feature_extraction.py``): arguments, logging, exit status."""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import textwrap
from typing import Any, Callable, Sequence

import torch.distributed as dist
from mmengine.config import DictAction

from featx import __version__
from featx.distributed import DistInfo, launcher_info
from featx.errors import UserError
from featx.layers import format_table, layer_table
from featx.merge import merge
from featx.model_index import find_model, models, resolve_model, table
from featx.options import RunOptions, add_arguments, options_given
from featx.registry import FORMATS
from featx.runner import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, EXIT_VIDEOS_FAILED, run
from featx.show import MAPS, show

log = logging.getLogger("featx")


COMMANDS = """\
  featx CONFIG [CHECKPOINT] --out OUT ...  extract the features (the options below)
  featx models [WORD ...]                  list the models featx knows by name
  featx merge --out OUT SHARD ...          join the outputs of a run's shards
  featx show OUT [--png map.png]           summarise an output and draw a map of its videos
  featx layers CONFIG                      list the modules --layer can name, with their output shapes"""


def build_parser() -> argparse.ArgumentParser:
    """The ``featx`` command's parser: each run option from its :class:`RunOptions` field, then the command's own."""
    p = argparse.ArgumentParser(
        prog="featx", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Extract one clip-level feature vector per video with an MMAction2 config and checkpoint.\n\n"
                    f"commands:\n{COMMANDS}",
        epilog=textwrap.fill(
            "Exit status: 0 every video written; 1 some videos failed (the others are written, the failures "
            "listed in OUT.errors.json), or --strict stopped at a failure; 2 bad input (one line says what); "
            "130 interrupted (finished videos are kept in OUT.partial: run the same command to resume).",
            shutil.get_terminal_size().columns - 2),
    )
    add_arguments(p)
    p.add_argument("--local-rank", "--local_rank", dest="local_rank", type=int, default=0,
                   help="set by older launchers; torchrun uses LOCAL_RANK")
    p.add_argument("--gpu-collect", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--tmpdir", help=argparse.SUPPRESS)
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("--list-models", action="store_true", help="list the official checkpoints featx knows by name "
                                                                    "(also: featx models [WORD ...])")
    p.add_argument("--version", action="version", version=f"featx {__version__}")
    return p


class _Formatter(logging.Formatter):
    def __init__(self, rank: int | None) -> None:
        super().__init__()
        self.prefix = "featx" if rank is None else f"featx[rank {rank}]"

    def format(self, record: logging.LogRecord) -> str:
        level = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        return f"{self.prefix}: {level}{record.getMessage()}"


def setup_logging(debug: bool, info: DistInfo | None = None) -> None:
    """featx's one-line messages on stderr; in a distributed run, each line names its rank."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(info.rank if info and info.world_size > 1 else None))
    root = logging.getLogger("featx")
    root.handlers[:] = [handler]
    quiet = info is not None and not info.is_main  # only rank 0 reports progress; every rank reports problems
    root.setLevel(logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO)
    root.propagate = False


def options_from(args: argparse.Namespace) -> RunOptions:
    """The run the command line asks for; a model name in place of CONFIG stands for its config and
    official checkpoint (a CHECKPOINT after it replaces the official one)."""
    given = options_given(args)
    config, checkpoint = given["config"], given.get("checkpoint")
    if not os.path.exists(config) and (checkpoint is None or find_model(config) is not None):
        entry = resolve_model(config)
        config, checkpoint = str(entry.config_path), checkpoint or entry.checkpoint
    if checkpoint is None:
        raise UserError("give CHECKPOINT after CONFIG (a file or URL), or a model name from `featx models` alone")
    return RunOptions(**{**given, "config": config, "checkpoint": checkpoint})


def list_models(argv: Sequence[str]) -> int:
    """``featx models [WORD ...]``: the model index, or the entries whose name, family or dialect (``1.x``) has
    every word."""
    words = [w.lower() for w in argv if not w.startswith("-")]
    entries = [e for e in models() if all(w in e.name.lower() or w in (e.family, e.dialect) for w in words)]
    if not entries:
        setup_logging(debug=False)
        log.error("no model's name, family or dialect has %s (featx models lists them all)",
                  " and ".join(repr(w) for w in words))
        return EXIT_USAGE
    print(table(entries))
    return EXIT_OK


def merge_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="featx merge",
        description="Join the outputs of one run's shards (--shard K/N) into one output, in list order.",
        epilog="Exit status: 0 every video merged; 1 some videos failed in their shard or are in no shard given "
               "(listed in OUT.errors.json); 2 bad input (shards of other settings or lists, not a shard output).")
    p.add_argument("shards", nargs="+", metavar="SHARD", help="shard outputs (any format, any mix of shard counts)")
    p.add_argument("--out", required=True, help="the merged output; its suffix or --out-format says the format")
    p.add_argument("--out-format", choices=FORMATS.names(), help="output format instead of --out's suffix")
    p.add_argument("--video-list", help="the list the shards were made from, to name the videos of a missing shard "
                                        "(default: the list file the shards recorded, if it is still there)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def merge_command(argv: Sequence[str]) -> int:
    """``featx merge --out OUT SHARD ...``"""
    return _subcommand(merge_parser(), argv, lambda args: merge(args.shards, args.out, args.out_format,
                                                                args.video_list))


def show_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="featx show",
        description="What a featx output holds: count, dimension, norms, constant and non-finite vectors, the "
                    "closest pairs; with --png, a 2-D map of the videos coloured by their first folder and, for a "
                    "--per-clip output, per video the cosine similarity of consecutive clips over time.",
        epilog="Exit status: 0 shown; 2 bad input (no featx output, a missing optional library).")
    p.add_argument("out", metavar="OUT", help="a featx output (any format)")
    p.add_argument("--png", help="write the picture to this .png file (needs matplotlib: pip install 'featx[show]')")
    p.add_argument("--size", default="1200x800", help="the picture's WIDTHxHEIGHT in pixels (default: %(default)s)")
    p.add_argument("--map", default="pca", choices=sorted(MAPS),
                   help="how the videos are laid out in 2-D (default: %(default)s; umap needs umap-learn, tsne "
                        "scikit-learn)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def show_command(argv: Sequence[str]) -> int:
    """``featx show OUT [--png map.png]``: the summary on stdout."""

    def shown(args: argparse.Namespace) -> int:
        print("\n".join(show(args.out, args.png, args.size, args.map)))
        return EXIT_OK

    return _subcommand(show_parser(), argv, shown)


def _subcommand(parser: argparse.ArgumentParser, argv: Sequence[str],
                action: Callable[[argparse.Namespace], int]) -> int:
    """A subcommand's arguments parsed, logging set up, ``action`` run; bad input is one line, exit 2."""
    args = parser.parse_args(argv)
    setup_logging(args.debug)
    try:
        return action(args)
    except UserError as exc:
        return _usage_error(exc, args.debug)


def layers_command(argv: Sequence[str]) -> int:
    """``featx layers CONFIG [--cfg-options ...]``"""
    p = argparse.ArgumentParser(prog="featx layers", description="The modules of CONFIG's model that --layer can "
                                "name, with their output shapes for one view group of its test pipeline.")
    p.add_argument("config", help="MMAction2-style Python config file")
    p.add_argument("--cfg-options", nargs="+", action=DictAction, default={}, help="override config values")
    p.add_argument("--no-fuse-conv-bn", dest="fuse_conv_bn", action="store_false",
                   help="the modules of the model as a run with --no-fuse-conv-bn builds it")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    args = p.parse_args(argv)
    setup_logging(args.debug)
    try:
        rows = layer_table(RunOptions(args.config, "", cfg_options=args.cfg_options, fuse_conv_bn=args.fuse_conv_bn))
    except UserError as exc:
        return _usage_error(exc, args.debug)
    print(format_table([("module", "output shape (views of one group first)"), *rows]))
    return EXIT_OK


SUBCOMMANDS = {"models": list_models, "merge": merge_command, "show": show_command, "layers": layers_command}


def values_attached(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """``--shard -1/3`` as ``--shard=-1/3``: a value that starts with a dash (and is no flag) stays the flag's
    value, so featx's own check answers it, not argparse's usage text ("expected one argument")."""
    takes_one = {flag for action in parser._actions if action.nargs is None and action.option_strings
                 for flag in action.option_strings}
    flags = set(parser._option_string_actions)
    attached, at = [], 0
    while at < len(argv):
        arg, value = argv[at], argv[at + 1] if at + 1 < len(argv) else ""
        joined = arg in takes_one and value.startswith("-") and value.split("=")[0] not in flags
        attached.append(f"{arg}={value}" if joined else arg)
        at += 2 if joined else 1
    return attached


def _usage_error(exc: UserError, debug: bool) -> int:
    """One ``featx: error:`` line (and the traceback with --debug); the exit status of bad input."""
    if debug:
        log.exception("error")
    log.error("%s", exc)
    return EXIT_USAGE


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] and argv[0] in SUBCOMMANDS:
        return SUBCOMMANDS[argv[0]](argv[1:])
    if "--list-models" in argv:
        return list_models([])
    parser = build_parser()
    args = parser.parse_args(values_attached(parser, argv))
    setup_logging(args.debug)
    # Slurm pre-emption and kill stop the run like Ctrl-C; once it has returned, during the interpreter's
    # exit, a SIGTERM gets the handling it had before (a KeyboardInterrupt there would interrupt teardown)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
        options = options_from(args)
        if options.launcher != "none":  # every line names its rank from the start
            setup_logging(args.debug, launcher_info(options.launcher))
        return run(options)
    except UserError as exc:
        return _usage_error(exc, args.debug)
    except KeyboardInterrupt:
        log.error("interrupted")
        return EXIT_INTERRUPTED
    except dist.DistBackendError as exc:
        if args.debug:
            log.exception("error")
        log.error("lost contact with another process of the job (it failed: see its message): %s",
                  str(exc).splitlines()[0])
        return EXIT_VIDEOS_FAILED
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
