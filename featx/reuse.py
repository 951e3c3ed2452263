"""Reusing a finished output: a rerun takes the videos that ``--out`` already holds, made with the same
settings (the fingerprint its meta sidecar records), and computes only the others."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from featx.errors import UserError
from featx.outputs import OutputFormat, meta_path
from featx.store import differences
from featx.wording import count

log = logging.getLogger(__name__)


@dataclass
class Earlier:
    """What the output of an earlier run gives the listed videos."""

    features: dict[str, np.ndarray | None] = field(default_factory=dict)  # None: a folder output's file, kept
    videos: dict[str, dict[str, Any]] = field(default_factory=dict)  # each one's entry in the old meta sidecar
    dropped: dict[str, dict[str, Any]] = field(default_factory=dict)  # entries of videos no longer listed
    discarded: int = 0  # videos it held that --restart recomputes


def earlier_output(output: OutputFormat, fingerprint: dict[str, Any], *, restart: bool) -> Earlier:
    """The listed videos ``output`` already holds, when its meta sidecar has ``fingerprint``. Another
    fingerprint is refused (exit 2) unless ``restart``; an output without one is replaced."""
    out = output.path
    if not out.exists() or not meta_path(out).is_file():
        return Earlier()
    try:
        meta = json.loads(meta_path(out).read_text())
        held = meta["videos"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("%s: its meta sidecar cannot be read (%s): its videos are computed anew", out, exc)
        return Earlier()
    if restart:
        return Earlier(discarded=len(held))
    if "fingerprint" not in meta:
        log.info("%s records no fingerprint (an older featx wrote it): its videos are computed anew", out)
        return Earlier()
    if meta["fingerprint"] != fingerprint:
        raise UserError(f"{out} holds {len(held)} videos made with other settings "
                        f"({differences(meta['fingerprint'], fingerprint)}); pass --restart to compute them anew, "
                        "or use another --out")
    listed = set(output.keys)
    features = {key: array for key, array in output.reusable(meta).items() if key in listed and key in held}
    earlier = Earlier(features, {key: held[key] for key in features},
                      {key: entry for key, entry in held.items() if key not in listed})
    if earlier.dropped:
        log.info("%s of %s no longer listed: left out of the new output", count(len(earlier.dropped), "video"),
                 out.name)
    return earlier
