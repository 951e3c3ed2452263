"""Test-time transforms of MMAction2 (0.x, and 1.x's own where they differ), on whole (N, H, W, C) frame arrays.

Each transform is built from its config kwargs and maps a ``results`` dict to itself. Frames stay
one numpy array: uint8 RGB until ``Normalize``, float32 after. Crops are made crop-major (all
frames of crop 1, then crop 2, ...), as the reference orders its views.
"""
from __future__ import annotations

import math
from numbers import Real
from typing import Any, ClassVar, Sequence

import cv2
import numpy as np
import torch

from featx.data.pipeline import Role
from featx.errors import UserError, VideoError
from featx.registry import TRANSFORMS, TRANSFORMS_1X

INTERPOLATIONS = {
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
    "lanczos": cv2.INTER_LANCZOS4,
}


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _size_pair(size: int | Sequence[int], owner: str) -> tuple[int, int]:
    """``c`` -> ``(c, c)``; ``(w, h)`` stays; both positive integers."""
    pair = (size, size) if isinstance(size, int) else tuple(size) if isinstance(size, (tuple, list)) else ()
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in pair):
        raise UserError(f"{owner}: crop_size must be a positive int or a (w, h) pair, got {size!r}")
    return pair


def _frame_size(imgs: np.ndarray) -> tuple[int, int]:
    """(height, width) of the frames of an (N, H, W, C) array."""
    return imgs.shape[1], imgs.shape[2]


def _check_crop_fits(imgs: np.ndarray, crop_w: int, crop_h: int, owner: str) -> None:
    img_h, img_w = _frame_size(imgs)
    if crop_w > img_w or crop_h > img_h:
        raise VideoError(f"{owner}: frames of {img_w}x{img_h} are smaller than the {crop_w}x{crop_h} crop")


def _crops(imgs: np.ndarray, offsets: Sequence[tuple[int, int]], crop_w: int, crop_h: int, flipped: bool) -> np.ndarray:
    """Every frame cropped at each (x, y) offset in turn (each crop followed by its mirror when ``flipped``)."""
    pieces = []
    for x, y in offsets:
        crop = imgs[:, y:y + crop_h, x:x + crop_w]
        pieces.append(crop)
        if flipped:
            pieces.append(crop[:, :, ::-1])
    return np.concatenate(pieces)


@TRANSFORMS.register()
class Resize:
    """Resize every frame with OpenCV, as mmcv's ``imresize`` does.

    ``scale``: a positive number multiplies both sides; a pair with ``keep_ratio=True`` bounds
    the long and short sides (``-1`` means unbounded, so ``(-1, 256)`` makes the short side
    256); a ``(w, h)`` pair with ``keep_ratio=False`` is the exact output size. New sides are
    rounded half up: ``int(side * r + 0.5)``.
    """

    role: ClassVar[Role] = Role.SPATIAL

    def __init__(
        self, scale: float | Sequence[int], keep_ratio: bool = True, interpolation: str = "bilinear", lazy: bool = False
    ) -> None:
        if lazy:
            raise UserError("Resize: lazy=True is not supported (no lazy transforms in feature extraction)")
        if interpolation not in INTERPOLATIONS:
            raise UserError(f"Resize: interpolation must be one of {sorted(INTERPOLATIONS)}, got {interpolation!r}")
        self.interpolation = interpolation
        self.keep_ratio = keep_ratio
        if _is_number(scale):
            if scale <= 0 or not keep_ratio:
                raise UserError(f"Resize: a number scale must be positive and used with keep_ratio=True, got {scale!r}")
            self.scale: float | tuple[float, float] = float(scale)
        elif isinstance(scale, (tuple, list)) and len(scale) == 2 and all(_is_number(v) for v in scale):
            longer, shorter = max(scale), min(scale)
            if keep_ratio:
                if longer <= 0 or (shorter <= 0 and shorter != -1):
                    raise UserError(f"Resize: scale {tuple(scale)} must be positive sides, -1 for an unbounded one")
                self.scale = (math.inf, longer) if shorter == -1 else (longer, shorter)  # (max long, max short)
            elif not all(isinstance(v, int) and v > 0 for v in scale):
                raise UserError(f"Resize: with keep_ratio=False, scale must be (w, h) positive ints, got {tuple(scale)}")
            else:
                self.scale = (scale[0], scale[1])  # exact (w, h)
        else:
            raise UserError(f"Resize: scale must be a positive number or a pair, got {scale!r}")

    def output_size(self, img_h: int, img_w: int) -> tuple[int, int]:
        """(new_w, new_h) for a frame of img_w x img_h (mmcv's ``rescale_size`` rule)."""
        if not self.keep_ratio:
            return self.scale
        if isinstance(self.scale, float):
            r = self.scale
        else:
            max_long, max_short = self.scale
            r = min(max_long / max(img_h, img_w), max_short / min(img_h, img_w))
        return int(img_w * r + 0.5), int(img_h * r + 0.5)

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        imgs = results["imgs"]
        img_h, img_w = _frame_size(imgs)
        new_w, new_h = self.output_size(img_h, img_w)
        flag = INTERPOLATIONS[self.interpolation]
        out = np.empty((len(imgs), new_h, new_w) + imgs.shape[3:], dtype=imgs.dtype)
        for i, frame in enumerate(imgs):
            out[i] = cv2.resize(frame, (new_w, new_h), interpolation=flag)
        results["imgs"] = out
        results["img_shape"] = (new_h, new_w)
        return results


@TRANSFORMS.register()
class CenterCrop:
    """Crop the centre: ``left = (W - cw) // 2``, ``top = (H - ch) // 2``; a view of the frames."""

    role: ClassVar[Role] = Role.SPATIAL
    num_crops: ClassVar[int] = 1

    def __init__(self, crop_size: int | Sequence[int], lazy: bool = False) -> None:
        if lazy:
            raise UserError("CenterCrop: lazy=True is not supported")
        self.crop_w, self.crop_h = _size_pair(crop_size, "CenterCrop")

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        imgs = results["imgs"]
        _check_crop_fits(imgs, self.crop_w, self.crop_h, "CenterCrop")
        img_h, img_w = _frame_size(imgs)
        left, top = (img_w - self.crop_w) // 2, (img_h - self.crop_h) // 2
        results["imgs"] = imgs[:, top:top + self.crop_h, left:left + self.crop_w]
        results["img_shape"] = (self.crop_h, self.crop_w)
        results["num_crops"] = self.num_crops
        return results


@TRANSFORMS.register()
class ThreeCrop:
    """Three crops along the long side (one side must equal the crop's): start, end, middle."""

    role: ClassVar[Role] = Role.SPATIAL
    num_crops: ClassVar[int] = 3

    def __init__(self, crop_size: int | Sequence[int]) -> None:
        self.crop_w, self.crop_h = _size_pair(crop_size, "ThreeCrop")

    def offsets(self, img_h: int, img_w: int) -> list[tuple[int, int]]:
        """The (x, y) of each crop, in output order."""
        if self.crop_h == img_h:
            step = (img_w - self.crop_w) // 2
            return [(0, 0), (2 * step, 0), (step, 0)]
        if self.crop_w == img_w:
            step = (img_h - self.crop_h) // 2
            return [(0, 0), (0, 2 * step), (0, step)]
        raise VideoError(
            f"ThreeCrop: a {self.crop_w}x{self.crop_h} crop needs frames of that height or width, got {img_w}x{img_h}"
        )

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        imgs = results["imgs"]
        _check_crop_fits(imgs, self.crop_w, self.crop_h, "ThreeCrop")
        results["imgs"] = _crops(imgs, self.offsets(*_frame_size(imgs)), self.crop_w, self.crop_h, flipped=False)
        results["img_shape"] = (self.crop_h, self.crop_w)
        results["num_crops"] = self.num_crops
        return results


@TRANSFORMS.register()
class TenCrop:
    """Four corners and the centre, each followed by its horizontal mirror."""

    role: ClassVar[Role] = Role.SPATIAL
    num_crops: ClassVar[int] = 10

    def __init__(self, crop_size: int | Sequence[int]) -> None:
        self.crop_w, self.crop_h = _size_pair(crop_size, "TenCrop")

    def offsets(self, img_h: int, img_w: int) -> list[tuple[int, int]]:
        """The (x, y) of the five unflipped crops, in output order."""
        ws, hs = (img_w - self.crop_w) // 4, (img_h - self.crop_h) // 4
        return [(0, 0), (4 * ws, 0), (0, 4 * hs), (4 * ws, 4 * hs), (2 * ws, 2 * hs)]

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        imgs = results["imgs"]
        _check_crop_fits(imgs, self.crop_w, self.crop_h, "TenCrop")
        results["imgs"] = _crops(imgs, self.offsets(*_frame_size(imgs)), self.crop_w, self.crop_h, flipped=True)
        results["img_shape"] = (self.crop_h, self.crop_w)
        results["num_crops"] = self.num_crops
        return results


@TRANSFORMS.register()
class Flip:
    """Flip every frame, deterministically: ``flip_ratio`` must be 0 (never) or 1 (always).

    ``flip_label_map``, ``left_kps`` and ``right_kps`` concern labels and keypoints and are
    accepted for config compatibility.
    """

    role: ClassVar[Role] = Role.SPATIAL

    def __init__(
        self,
        flip_ratio: float = 0.5,
        direction: str = "horizontal",
        flip_label_map: dict | None = None,
        left_kps: list | None = None,
        right_kps: list | None = None,
        lazy: bool = False,
    ) -> None:
        if flip_ratio not in (0, 1):
            raise UserError(f"Flip: flip_ratio={flip_ratio!r} flips at random; feature extraction needs 0 or 1")
        if direction not in ("horizontal", "vertical"):
            raise UserError(f"Flip: direction must be 'horizontal' or 'vertical', got {direction!r}")
        if lazy:
            raise UserError("Flip: lazy=True is not supported")
        self.flip = flip_ratio == 1
        self.direction = direction

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        if self.flip:
            imgs = results["imgs"]
            results["imgs"] = imgs[:, :, ::-1] if self.direction == "horizontal" else imgs[:, ::-1]
        return results


@TRANSFORMS.register()
class Normalize:
    """To float32, then ``(x - mean) * (1 / std)`` per channel, exactly as mmcv's ``imnormalize_``.

    mmcv calls OpenCV, which (5.x, as the reference ran) subtracts the mean and multiplies by the
    reciprocal of the std both in float32: the same float32 arithmetic runs here in numpy, so the
    result does not depend on the OpenCV version installed. ``to_bgr=True`` reverses the channels
    first. ``adjust_magnitude`` only concerns optical flow.
    """

    role: ClassVar[Role] = Role.NORMALIZE

    def __init__(
        self, mean: Sequence[float], std: Sequence[float], to_bgr: bool = False, adjust_magnitude: bool = False
    ) -> None:
        mean64, std64 = np.asarray(mean, dtype=np.float64).ravel(), np.asarray(std, dtype=np.float64).ravel()
        if mean64.size != 3 or std64.size != 3 or not np.all(std64 > 0):
            raise UserError(f"Normalize: mean and std need 3 values each (std > 0), got {mean!r} and {std!r}")
        self.mean = mean64.astype(np.float32)
        self.inv_std = (1.0 / std64).astype(np.float32)
        self.to_bgr = to_bgr

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        imgs = results["imgs"]
        if self.to_bgr:
            imgs = imgs[..., ::-1]
        out = np.array(imgs, dtype=np.float32, order="C")
        out -= self.mean
        out *= self.inv_std
        results["imgs"] = out
        return results

    def normalize_tensor(self, imgs: torch.Tensor, channel_dim: int) -> torch.Tensor:
        """The same arithmetic, bit for bit, on a uint8 tensor whose channels lie along ``channel_dim``
        (so frames can travel as uint8 and be normalised on the device)."""
        shape = [1] * imgs.dim()
        shape[channel_dim] = 3
        if self.to_bgr:
            imgs = imgs.flip(channel_dim)
        mean = torch.from_numpy(self.mean).to(imgs.device).view(shape)
        inv_std = torch.from_numpy(self.inv_std).to(imgs.device).view(shape)
        return (imgs.float() - mean) * inv_std


class GPUNormalize:
    """MMAction2's ``GPUNormalize`` module hook (a config's ``module_hooks``): uint8 model input
    normalised before the backbone, ``(x - mean) / std`` in float32 (a division, unlike ``Normalize``).

    featx applies it where it applies a device-side ``Normalize``, on the whole (batch, views, ...) input.
    """

    HOOKED = {"type": "GPUNormalize", "hooked_module": "backbone", "hook_pos": "forward_pre"}

    def __init__(self, input_format: str, mean: Sequence[float], std: Sequence[float]) -> None:
        if input_format not in ("NCHW", "NCTHW"):
            raise UserError(f"GPUNormalize: input_format={input_format!r} is not supported (NCHW or NCTHW)")
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)

    @classmethod
    def from_module_hooks(cls, hooks: Sequence[Any] | None) -> GPUNormalize | None:
        """The normalisation a config's ``module_hooks`` ask for, if any; any other hook is refused."""
        found = None
        for hook in hooks or ():
            placement = {k: hook.get(k, cls.HOOKED[k]) for k in cls.HOOKED}
            if placement != cls.HOOKED or found is not None:
                raise UserError(f"module_hooks: {dict(hook)!r} is not supported (featx applies one GPUNormalize "
                                "forward_pre hook on the backbone)")
            found = cls(**{k: v for k, v in hook.items() if k not in cls.HOOKED})
        return found

    def normalize_tensor(self, imgs: torch.Tensor, channel_dim: int) -> torch.Tensor:
        return divide_normalized(imgs, self.mean, self.std, channel_dim)


def divide_normalized(imgs: torch.Tensor, mean: np.ndarray, std: np.ndarray, channel_dim: int) -> torch.Tensor:
    """``(x - mean) / std`` in float32, per channel along ``channel_dim`` (the device-side normalisations)."""
    shape = [1] * imgs.dim()
    shape[channel_dim] = 3
    mean_t = torch.from_numpy(mean).to(imgs.device).view(shape)
    std_t = torch.from_numpy(std).to(imgs.device).view(shape)
    return (imgs.float() - mean_t) / std_t


@TRANSFORMS_1X.register()
class ActionDataPreprocessor:
    """MMAction2 1.x's ``model.data_preprocessor``: on the device, the uint8 model input's channels
    reversed when ``to_rgb`` (BGR -> RGB), then ``(x - mean) / std`` in float32 (as ``GPUNormalize``),
    or only made float32 without ``mean``. ``format_shape`` (``NCHW``, the default, ``NCTHW`` or
    ``MIX2d3d``: either) must be the layout the pipeline makes; ``blending`` is training-only."""

    role: ClassVar[Role] = Role.NORMALIZE
    LAYOUTS: ClassVar[dict[str, tuple[str, ...]]] = {"NCHW": ("NCHW",), "NCTHW": ("NCTHW",),
                                                     "MIX2d3d": ("NCHW", "NCTHW")}

    def __init__(self, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 to_rgb: bool = False, to_float32: bool = True, blending: Any = None,
                 format_shape: str = "NCHW") -> None:
        del blending  # batch blending (mixup, cutmix) happens in training only
        if format_shape not in self.LAYOUTS:
            raise UserError(f"model.data_preprocessor: format_shape={format_shape!r} is not one of "
                            f"{', '.join(self.LAYOUTS)}")
        if (mean is None) != (std is None):
            raise UserError("model.data_preprocessor: give both mean and std, or neither")
        if mean is None and not to_float32:
            raise UserError("model.data_preprocessor: to_float32=False without mean/std feeds uint8 to the model")
        self.format_shape = format_shape
        self.to_rgb = bool(to_rgb)
        self.mean = self.std = None
        if mean is not None:
            self.mean, self.std = np.asarray(mean, dtype=np.float32).ravel(), np.asarray(std, dtype=np.float32).ravel()
            if self.mean.size != 3 or self.std.size != 3 or not np.all(self.std > 0):
                raise UserError(f"model.data_preprocessor: mean and std need 3 values each (std > 0), got {mean!r} "
                                f"and {std!r}")

    def check_layout(self, pipeline: Sequence[Any]) -> None:
        """Refuse a pipeline whose ``FormatShape`` makes another layout than ``format_shape`` says."""
        made = [step.get("input_format") for step in pipeline if step.get("type") == "FormatShape"]
        if made and made[-1] not in self.LAYOUTS[self.format_shape]:
            raise UserError(f"model.data_preprocessor.format_shape={self.format_shape!r}, but the test pipeline's "
                            f"FormatShape makes {made[-1]!r} input: MMAction2 1.x would normalise the wrong axis")

    def normalize_tensor(self, imgs: torch.Tensor, channel_dim: int) -> torch.Tensor:
        if self.to_rgb:
            imgs = imgs.flip(channel_dim)
        if self.mean is None:
            return imgs.float()
        return divide_normalized(imgs, self.mean, self.std, channel_dim)


@TRANSFORMS.register()
class FormatShape:
    """Arrange the frames as the model input: ``NCHW`` (views, C, H, W) or ``NCTHW`` (views, C, L, H, W)."""

    role: ClassVar[Role] = Role.LAYOUT

    def __init__(self, input_format: str, collapse: bool = False) -> None:
        if input_format not in ("NCHW", "NCTHW"):
            raise UserError(f"FormatShape: input_format must be 'NCHW' or 'NCTHW', got {input_format!r}")
        if collapse:
            raise UserError("FormatShape: collapse=True drops the views dimension the recognizers need")
        self.input_format = input_format

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        imgs = results["imgs"]
        if self.input_format == "NCTHW":
            # (crops*clips*L, H, W, C) -> (crops, clips, L, H, W, C) -> (crops, clips, C, L, H, W)
            imgs = imgs.reshape((-1, results["num_clips"], results["clip_len"]) + imgs.shape[1:])
            imgs = imgs.transpose(0, 1, 5, 2, 3, 4)
            imgs = imgs.reshape((-1,) + imgs.shape[2:])
        else:
            imgs = imgs.transpose(0, 3, 1, 2)
        results["imgs"] = np.ascontiguousarray(imgs)
        return results


@TRANSFORMS.register()
class Collect:
    """Accepted so configs load; the dataset picks its own keys."""

    role: ClassVar[Role] = Role.LAYOUT

    def __init__(self, keys: Sequence[str], meta_keys: Sequence[str] = (), **kwargs: Any) -> None:
        """Takes MMAction2's ``keys``, ``meta_keys``, ``meta_name`` and ``nested``; keeps none."""

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        return results


@TRANSFORMS.register()
class ToTensor:
    """Accepted so configs load; arrays become tensors when the loader batches them."""

    role: ClassVar[Role] = Role.LAYOUT

    def __init__(self, keys: Sequence[str]) -> None:
        """Takes MMAction2's ``keys``; keeps none."""

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        return results


@TRANSFORMS_1X.register()
class PackActionInputs:
    """MMAction2 1.x's last step (the model input is ``imgs``, as it packs it): featx's layout step, a no-op.
    ``meta_keys`` and ``algorithm_keys`` concern data samples, which features do not have."""

    role: ClassVar[Role] = Role.LAYOUT

    def __init__(self, collect_keys: Sequence[str] | None = None, meta_keys: Sequence[str] = (),
                 algorithm_keys: Sequence[str] = ()) -> None:
        if collect_keys is not None:
            raise UserError(f"PackActionInputs: collect_keys={collect_keys!r} is not supported (featx packs imgs)")

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        return results
