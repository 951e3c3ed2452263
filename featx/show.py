"""``featx show OUT [--png map.png]``: what an output holds, before anyone trains on it.

A text summary (how many videos, the dimension, the norms, constant and non-finite vectors by name, the
closest pairs) and, with ``--png``, a picture (``pip install 'featx[show]'``): a 2-D map of the videos (PCA,
or UMAP / t-SNE where installed), coloured by the first folder of each listed path (the class folder of
UCF101 and Kinetics layouts); for a ``--per-clip``/``--per-view`` output, beside it, per video a strip of the
cosine similarity between consecutive clips over time (the clip times in seconds from the meta sidecar).
"""
from __future__ import annotations

import importlib
import pickle
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from featx.errors import UserError
from featx.outputs import atomic_write, load
from featx.wording import count

MAP_POINTS = 20_000  # at most this many videos on the map (a seeded sample beyond)
PAIR_VIDEOS = 4_096  # nearest pairs among at most this many videos (a seeded sample beyond)
PAIRS = 5
STRIPS = 8  # per-clip strips for the first this many videos
LEGEND = 20  # folders named in the legend; the rest are "other"
LABELLED = 30  # a map of at most this many videos names each point
NAMED = 10  # constant or non-finite vectors named, then "and N more"
TOP_LEVEL = "(no folder)"


@dataclass
class Look:
    """An output as ``show`` sees it: per video, one vector (the clips' and views' mean) and its clip rows."""

    path: Path
    keys: list[str]
    vectors: np.ndarray  # (videos, dim) float64
    clips: list[np.ndarray] | None  # per video (clips, dim), for a --per-clip/--per-view output
    times: list[np.ndarray | None]  # per video each clip's [start, end] in seconds, None without the meta's
    per: str

    @classmethod
    def read(cls, out: str | Path) -> Look:
        path = Path(out)
        if not path.exists():
            raise UserError(f"{path}: no such file or folder")
        try:
            features, meta = load(path)
        except (OSError, ValueError, EOFError, KeyError, pickle.UnpicklingError) as exc:
            raise UserError(f"{path}: cannot be read as a featx output ({exc})") from None
        if not isinstance(features, dict) or not features:
            raise UserError(f"{path}: holds no video")
        keys = list(features)
        arrays = [np.asarray(features[k], dtype=np.float64) for k in keys]
        ranks = {a.ndim for a in arrays}
        if len(ranks) != 1 or {a.shape[-1] for a in arrays} != {arrays[0].shape[-1]}:
            raise UserError(f"{path}: its videos' arrays differ in shape; not one run's output")
        per = {1: "video", 2: "clip", 3: "view"}.get(ranks.pop())
        if per is None:
            raise UserError(f"{path}: arrays of shape {arrays[0].shape} are not feature vectors")
        clips = None if per == "video" else [a.mean(1) if per == "view" else a for a in arrays]
        vectors = np.stack([a.mean(0) for a in clips] if clips else arrays)
        entries = (meta or {}).get("videos", {})
        times = [np.asarray(entries[k]["clips"], dtype=np.float64).reshape(-1, 2)
                 if entries.get(k, {}).get("clips") else None for k in keys]
        return cls(path, keys, vectors, clips, times, per)


def folder_of(key: str) -> str:
    """The first folder of a listed path (``ApplyEyeMakeup/v_..._c01.avi`` -> ``ApplyEyeMakeup``)."""
    parts = [p for p in key.replace("\\", "/").split("/") if p not in ("", ".", "..")]
    return parts[0] if len(parts) > 1 else TOP_LEVEL


def _names(keys: Sequence[str]) -> str:
    shown = ", ".join(keys[:NAMED])
    return shown + (f" and {len(keys) - NAMED} more" if len(keys) > NAMED else "")


def summary(look: Look) -> list[str]:
    """The summary's lines: count and dimension, norms, constant and non-finite vectors, the closest pairs."""
    finite = np.isfinite(look.vectors).all(1)
    rows = look.clips if look.clips is not None else list(look.vectors[:, None])
    bad = [k for k, r in zip(look.keys, rows) if not np.isfinite(r).all()]
    constant = [k for k, r, ok in zip(look.keys, rows, finite) if ok and (np.ptp(r, axis=-1) == 0).any()]
    lines = [f"{look.path}: {count(len(look.keys), 'video')}, {look.vectors.shape[1]}-d, per {look.per}"
             + (f" ({_clip_counts(look.clips)})" if look.clips is not None else "")]
    norms = np.linalg.norm(look.vectors[finite], axis=1)
    if len(norms):
        at = [look.keys[i] for i in np.flatnonzero(finite)]
        lines.append(f"norms: min {norms.min():.4g} ({at[norms.argmin()]}), median {np.median(norms):.4g}, "
                     f"max {norms.max():.4g} ({at[norms.argmax()]})")
    lines.append(f"constant vectors ({len(constant)}): {_names(constant) or 'none'}"
                 + (" (all values equal: a blank or frozen video, or a broken model)" if constant else ""))
    lines.append(f"non-finite vectors ({len(bad)}): {_names(bad) or 'none'}"
                 + (" (NaN or inf: left off the map and the pairs)" if bad else ""))
    lines.extend(nearest_pairs(look, finite & (np.linalg.norm(np.nan_to_num(look.vectors), axis=1) > 0)))
    return lines


def _clip_counts(clips: list[np.ndarray]) -> str:
    counts = sorted(len(c) for c in clips)
    return f"{counts[0]} clips a video" if counts[0] == counts[-1] else f"{counts[0]}-{counts[-1]} clips a video"


def nearest_pairs(look: Look, usable: np.ndarray) -> list[str]:
    """The ``PAIRS`` most similar pairs of distinct videos by cosine similarity (near 1: the same content twice)."""
    index = _sample(np.flatnonzero(usable), PAIR_VIDEOS)
    if len(index) < 2:
        return ["nearest pairs: fewer than 2 usable vectors"]
    unit = look.vectors[index] / np.linalg.norm(look.vectors[index], axis=1, keepdims=True)
    similarity = unit @ unit.T
    upper = np.triu_indices(len(index), 1)
    best = np.argsort(similarity[upper])[::-1][:PAIRS]
    sampled = f" (among a sample of {len(index)})" if len(index) < usable.sum() else ""
    lines = [f"nearest pairs, cosine similarity{sampled}:"]
    for i, j in zip(upper[0][best], upper[1][best]):
        lines.append(f"  {similarity[i, j]:.4f}  {look.keys[index[i]]}  ~  {look.keys[index[j]]}")
    return lines


def _sample(index: np.ndarray, most: int) -> np.ndarray:
    """``index``, or a seeded sample of ``most`` of it in order."""
    return index if len(index) <= most else np.sort(np.random.default_rng(0).choice(index, most, replace=False))


def pca(x: np.ndarray) -> tuple[np.ndarray, str]:
    centred = x - x.mean(0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    share = s ** 2 / max((s ** 2).sum(), 1e-300)
    points = u[:, :2] * s[:2]
    if points.shape[1] < 2:  # one video: a point at the origin
        points = np.pad(points, ((0, 0), (0, 2 - points.shape[1])))
    return points, f"PCA ({share[:2].sum():.0%} of the variance)"


def umap_map(x: np.ndarray) -> tuple[np.ndarray, str]:
    umap = _optional("umap", "the umap map needs umap-learn: pip install 'featx[umap]'")
    return umap.UMAP(n_components=2, n_neighbors=min(15, len(x) - 1), random_state=0).fit_transform(x), "UMAP"


def tsne_map(x: np.ndarray) -> tuple[np.ndarray, str]:
    manifold = _optional("sklearn.manifold", "the tsne map needs scikit-learn: pip install 'featx[tsne]'")
    return manifold.TSNE(n_components=2, perplexity=min(30.0, len(x) - 1.0), init="pca",
                         random_state=0).fit_transform(x), "t-SNE"


MAPS: dict[str, Callable[[np.ndarray], tuple[np.ndarray, str]]] = {"pca": pca, "umap": umap_map, "tsne": tsne_map}


def _optional(module: str, missing: str) -> Any:
    """``module``, imported; a missing one is the user's to install (``missing`` says how)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(missing) from None


def parse_size(text: str) -> tuple[int, int]:
    """``--size 1200x800``: the picture's width and height in pixels."""
    match = re.fullmatch(r"(\d+)[xX](\d+)", text.strip())
    if not match or not all(200 <= int(n) <= 10_000 for n in match.groups()):
        raise UserError(f"--size {text}: give WIDTHxHEIGHT in pixels, each 200 to 10000 (e.g. 1200x800)")
    return int(match[1]), int(match[2])


def draw(look: Look, png: Path, size: tuple[int, int], method: str) -> str:
    """Write the picture to ``png`` (atomically); return what the map shows, for the summary."""
    if method not in MAPS:
        raise UserError(f"--map {method}: use one of {', '.join(MAPS)}")
    figure_class = _optional("matplotlib.figure", "featx show --png needs matplotlib: pip install 'featx[show]'")
    finite = np.flatnonzero(np.isfinite(look.vectors).all(1))
    shown = _sample(finite, MAP_POINTS)
    if len(shown) < 2 and method != "pca":
        raise UserError(f"--map {method}: needs 2 or more videos with finite vectors")
    points, how = MAPS[method](look.vectors[shown]) if len(shown) else (np.zeros((0, 2)), "no finite vector")
    dpi = 100
    figure = figure_class.Figure(figsize=(size[0] / dpi, size[1] / dpi), dpi=dpi)
    strips = [i for i in range(len(look.keys)) if look.clips is not None and len(look.clips[i]) > 1][:STRIPS]
    grid = figure.add_gridspec(max(1, len(strips)), 2 if strips else 1, width_ratios=[1.3, 1] if strips else [1])
    _map(figure.add_subplot(grid[:, 0]), look, shown, points, how)
    for row, i in enumerate(strips):
        _strip(figure.add_subplot(grid[row, 1]), look, i, last=row == len(strips) - 1)
    if strips:
        more = len([c for c in look.clips if len(c) > 1]) - len(strips)
        figure.axes[1].set_title("cosine similarity of consecutive clips" + (f" (first {len(strips)}; "
                                 f"{more} more videos)" if more > 0 else ""), fontsize=9)
    figure.tight_layout()
    atomic_write(png, lambda f: figure.savefig(f, format="png", dpi=dpi))
    return f"{how} of {count(len(shown), 'video')}" + (f" (a sample of {len(finite)})" if len(shown) < len(finite)
                                                     else "")


def _short(key: str, most: int = 28) -> str:
    """A listed path short enough to label a point or a strip: its end."""
    return key if len(key) <= most else "..." + key[3 - most:]


def _map(ax: Any, look: Look, shown: np.ndarray, points: np.ndarray, how: str) -> None:
    folders = [folder_of(look.keys[i]) for i in shown]
    named = [f for f, _ in Counter(folders).most_common(LEGEND)]
    palette = [f"C{n % 10}" for n in range(len(named))]
    markers = "osD^v<>pP*"
    for n, folder in enumerate(named):
        at = [i for i, f in enumerate(folders) if f == folder]
        ax.scatter(points[at, 0], points[at, 1], s=24, c=palette[n], marker=markers[(n // 10) % len(markers)],
                   label=f"{folder} ({len(at)})", alpha=0.85, edgecolors="none")
    rest = [i for i, f in enumerate(folders) if f not in named]
    if rest:
        ax.scatter(points[rest, 0], points[rest, 1], s=12, c="0.6", alpha=0.6, edgecolors="none",
                   label=f"{len(set(folders) - set(named))} other folders ({len(rest)})")
    if len(shown) <= LABELLED:
        for i, (x, y) in zip(shown, points):
            ax.annotate(_short(look.keys[i]), (x, y), xytext=(4, 3), textcoords="offset points", fontsize=7)
    ax.set_title(f"{look.path.name}: {how}, coloured by first folder", fontsize=10)
    ax.margins(0.12)
    ax.set_xticks([])
    ax.set_yticks([])
    if len(shown):
        ax.legend(fontsize=7, loc="best", framealpha=0.8)


def _strip(ax: Any, look: Look, i: int, last: bool) -> None:
    """Video ``i``'s cosine similarity between clip k and k+1, at the time between their centres."""
    clips = look.clips[i]  # type: ignore[index]  (only for a per-clip output)
    norms = np.linalg.norm(clips, axis=1)
    similarity = (clips[:-1] * clips[1:]).sum(1) / np.maximum(norms[:-1] * norms[1:], 1e-300)
    times = look.times[i]
    if times is not None and len(times) == len(clips):
        centres = times.mean(1)
        x, unit = (centres[:-1] + centres[1:]) / 2, "seconds"
    else:
        x, unit = np.arange(len(clips) - 1) + 0.5, "clip"
    ax.plot(x, similarity, lw=1.2, marker=".", ms=3)
    ax.set_ylim(min(0.0, float(np.nanmin(similarity)) if np.isfinite(similarity).any() else 0.0) - 0.02, 1.02)
    ax.set_ylabel(_short(look.keys[i]), fontsize=6, rotation=0, ha="right", va="center")
    ax.tick_params(labelsize=6)
    if last:
        ax.set_xlabel(unit, fontsize=7)


def show(out: str, png: str | None = None, size: str = "1200x800", method: str = "pca") -> list[str]:
    """The summary of the output ``out`` (and the picture, with ``png``): the lines to print."""
    dims = parse_size(size)
    look = Look.read(out)
    lines = summary(look)
    if png is not None:
        target = Path(png)
        if target.suffix.lower() != ".png":
            raise UserError(f"--png {png}: name a .png file")
        if not target.parent.is_dir():
            raise UserError(f"--png {png}: no folder {target.parent}")
        lines.append(f"picture: {target} ({dims[0]}x{dims[1]}; map: {draw(look, target, dims, method)})")
    return lines
