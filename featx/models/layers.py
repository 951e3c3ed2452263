"""Layers built from MMAction2's ``conv_cfg`` / ``norm_cfg`` / ``act_cfg`` dicts, named as mmcv names them,
and the bricks every model family shares: the default layer cfgs (``CONV2D``, ``BN2D``, ``CONV3D``, ``BN3D``,
``RELU``) and the argument checks (``positive_int``, ``check_pretrained``, ``check_layer_cfgs``).

``ConvModule`` is mmcv's conv -> norm -> activation unit (``.conv``, ``.bn`` / ``.ln``, ``.activate``),
with any of groups, bias, norm and activation. Conv, norm and activation types are looked up in
their own registries, so a family adds its own (``Conv2plus1d``) next to its backbone.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn

from featx.errors import UserError
from featx.registry import Registry

CONV_LAYERS = Registry("conv_cfg", providers=("featx.models",))  # a family may add its own conv type
NORM_LAYERS = Registry("norm_cfg")
ACTIVATIONS = Registry("act_cfg")

IntOrTuple = int | tuple[int, ...]

# MMAction2's default layer cfgs (read-only: a backbone's default argument is shared by every build).
CONV2D = MappingProxyType({"type": "Conv"})
BN2D = MappingProxyType({"type": "BN2d", "requires_grad": True})
CONV3D = MappingProxyType({"type": "Conv3d"})
BN3D = MappingProxyType({"type": "BN3d", "requires_grad": True})
RELU = MappingProxyType({"type": "ReLU", "inplace": True})

for _name, _conv in {"Conv": nn.Conv2d, "Conv1d": nn.Conv1d, "Conv2d": nn.Conv2d, "Conv3d": nn.Conv3d}.items():
    CONV_LAYERS.register(_name)(_conv)


def _batch_norm(cls: type[nn.Module]) -> Any:
    def build(num_features: int, eps: float = 1e-5, momentum: float = 0.1, requires_grad: bool = True) -> nn.Module:
        del requires_grad  # training only
        return cls(num_features, eps=eps, momentum=momentum)
    return build


# SyncBN is a BatchNorm of any dimension at inference (it only synchronises statistics in training).
for _name, _norm in {"BN": nn.BatchNorm2d, "BN1d": nn.BatchNorm1d, "BN2d": nn.BatchNorm2d, "BN3d": nn.BatchNorm3d,
                     "SyncBN": nn.SyncBatchNorm}.items():
    NORM_LAYERS.register(_name)(_batch_norm(_norm))


@NORM_LAYERS.register("LN")
def _layer_norm(num_features: int, eps: float = 1e-5, requires_grad: bool = True) -> nn.Module:
    del requires_grad
    return nn.LayerNorm(num_features, eps=eps)


NORM_ABBREVIATIONS = {"LN": "ln"}  # every other registered norm is a BatchNorm: "bn"


class Swish(nn.Module):
    """``x * sigmoid(x)`` (mmcv's ``Swish``)."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(x)


class HSigmoid(nn.Module):
    """mmcv's ``HSigmoid``: ``clamp((x + bias) / divisor, min_value, max_value)``."""

    def __init__(self, bias: float = 3.0, divisor: float = 6.0, min_value: float = 0.0, max_value: float = 1.0) -> None:
        super().__init__()
        self.bias, self.divisor, self.min_value, self.max_value = bias, divisor, min_value, max_value

    def forward(self, x: Tensor) -> Tensor:
        return ((x + self.bias) / self.divisor).clamp_(self.min_value, self.max_value)


for _name, _act in {"ReLU": nn.ReLU, "ReLU6": nn.ReLU6, "LeakyReLU": nn.LeakyReLU, "Sigmoid": nn.Sigmoid,
                    "Tanh": nn.Tanh, "GELU": nn.GELU, "HSwish": nn.Hardswish, "Swish": Swish,
                    "HSigmoid": HSigmoid}.items():
    ACTIVATIONS.register(_name)(_act)


def build_conv_layer(cfg: Mapping[str, Any] | None, *args: Any, **kwargs: Any) -> nn.Module:
    """A conv layer of ``cfg['type']`` (mmcv: None means ``Conv2d``) with the given arguments."""
    return CONV_LAYERS.build(dict(cfg or {"type": "Conv2d"}), *args, **kwargs)


def build_norm_layer(cfg: Mapping[str, Any], num_features: int, postfix: str = "") -> tuple[str, nn.Module]:
    """``(name, layer)``: the attribute name mmcv gives it (``bn``, ``ln`` + postfix) and the layer."""
    layer = NORM_LAYERS.build(cfg, num_features)
    return NORM_ABBREVIATIONS.get(cfg["type"], "bn") + str(postfix), layer


def build_activation(cfg: Mapping[str, Any]) -> nn.Module:
    """An activation of ``cfg['type']``; ``inplace`` is kept only where the layer has it."""
    cfg = dict(cfg)
    if cfg.get("inplace") is not None and cfg["type"] not in ("ReLU", "ReLU6", "LeakyReLU", "HSwish"):
        del cfg["inplace"]
    return ACTIVATIONS.build(cfg)


class ConvModule(nn.Module):
    """mmcv's ``ConvModule`` in its default order: ``conv`` -> optional norm -> optional ``activate``.

    ``bias='auto'`` gives the conv a bias only when there is no norm. The norm is registered under
    mmcv's name for it (``bn`` for BatchNorms, ``ln``). ``fuse_conv_bn`` may fold a BatchNorm into
    ``conv`` (it becomes ``nn.Identity``); ``use_onednn_fusion`` may then run conv + ReLU as one kernel,
    on its input cast to the weights' dtype (oneDNN takes no autocast: float32 as it comes, or bf16).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple,
        stride: IntOrTuple = 1,
        padding: IntOrTuple = 0,
        dilation: IntOrTuple = 1,
        groups: int = 1,
        bias: bool | str = "auto",
        *,
        conv_cfg: Mapping[str, Any] | None = None,
        norm_cfg: Mapping[str, Any] | None = None,
        act_cfg: Mapping[str, Any] | None = {"type": "ReLU"},  # noqa: B006  (never mutated)
        inplace: bool = True,
    ) -> None:
        super().__init__()
        with_bias = norm_cfg is None if bias == "auto" else bool(bias)
        self.conv = build_conv_layer(conv_cfg, in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                                     dilation=dilation, groups=groups, bias=with_bias)
        self.norm_name: str | None = None
        if norm_cfg is not None:
            self.norm_name, norm = build_norm_layer(norm_cfg, out_channels)
            self.add_module(self.norm_name, norm)
        self.activate: nn.Module | None = None
        if act_cfg is not None:
            self.activate = build_activation({"inplace": inplace, **act_cfg})
        self.onednn = False  # set by featx.models.fuse.use_onednn_fusion

    @property
    def norm(self) -> nn.Module | None:
        return getattr(self, self.norm_name) if self.norm_name else None

    @property
    def conv_norm_pairs(self) -> tuple[tuple[str, str], ...]:
        """The (conv, norm) attribute pairs ``fuse_conv_bn`` may fold."""
        return ((("conv", self.norm_name),) if self.norm_name else ())

    def forward(self, x: Tensor) -> Tensor:
        if self.onednn:
            activation = "relu" if self.activate is not None else "none"
            return torch.ops.mkldnn._convolution_pointwise(x.to(self.conv.weight.dtype), *self._onednn_args(),
                                                           activation, [], "")
        x = self.conv(x)
        if self.norm_name:
            x = getattr(self, self.norm_name)(x)
        return x if self.activate is None else self.activate(x)

    def add_activate(self, x: Tensor, other: Tensor, activate: nn.Module) -> Tensor:
        """``activate(self(x) + other)``: a residual block's last conv, its shortcut and the block's
        activation (one oneDNN convolution with the sum and a ReLU fused in, when enabled)."""
        if self.onednn and type(activate) is nn.ReLU:
            dtype = self.conv.weight.dtype
            return torch.ops.mkldnn._convolution_pointwise.binary(
                x.to(dtype), other.to(dtype), *self._onednn_args(), "add", None, "relu", [], "")
        return activate(self(x) + other)

    def _onednn_args(self) -> tuple[Any, ...]:
        conv = self.conv
        return conv.weight, conv.bias, list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups


@dataclass(frozen=True)
class ConvBuilder:
    """Makes a backbone's :class:`ConvModule`\\ s with its ``conv_cfg`` / ``norm_cfg`` / ``act_cfg``.

    ``ndim`` (2 or 3) is the dimension of the backbone's convs, used by :meth:`shape`.
    """

    ndim: int
    conv_cfg: Mapping[str, Any] | None = None
    norm_cfg: Mapping[str, Any] | None = field(default_factory=lambda: {"type": "BN"})
    act_cfg: Mapping[str, Any] | None = field(default_factory=lambda: {"type": "ReLU"})

    def conv(self, in_channels: int, out_channels: int, kernel_size: IntOrTuple, *args: Any, relu: bool = True,
             **kwargs: Any) -> ConvModule:
        """A :class:`ConvModule` (same arguments) with this builder's layers; ``relu=False`` leaves the
        activation out."""
        return ConvModule(in_channels, out_channels, kernel_size, *args, conv_cfg=self.conv_cfg,
                          norm_cfg=self.norm_cfg, act_cfg=self.act_cfg if relu else None, **kwargs)

    def shape(self, t: int, s: int) -> tuple[int, ...]:
        """A kernel/stride/padding tuple: ``(t, s, s)`` in 3D, ``(s, s)`` in 2D (``t`` unused)."""
        return (t, s, s)[-self.ndim:]


def check_layer_cfgs(owner: str, **cfgs: Mapping[str, Any] | None) -> None:
    """Refuse a ``conv_cfg``/``norm_cfg``/``act_cfg`` featx cannot build, in one line naming it."""
    registries = {"conv_cfg": CONV_LAYERS, "norm_cfg": NORM_LAYERS, "act_cfg": ACTIVATIONS}
    for name, cfg in cfgs.items():
        if cfg is None:
            continue
        kind = cfg.get("type") if isinstance(cfg, Mapping) else None
        if kind not in registries[name]:
            known = " / ".join(registries[name].names())
            raise UserError(f"{owner}: {name}={dict(cfg) if isinstance(cfg, Mapping) else cfg!r} is not supported "
                            f"(featx builds type {known})")


def positive_int(owner: str, name: str, value: Any) -> int:
    """``value`` if it is an int >= 1 (not a bool); else a UserError naming ``owner`` and ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{owner}: {name}={value!r} must be a positive int")
    return value


def check_pretrained(owner: str, pretrained: Any, key: str = "pretrained") -> None:
    """featx never downloads or loads weights at build time: the argument ``key`` that would must be None."""
    if pretrained is not None:
        raise UserError(
            f"{owner}: {key}={pretrained!r} must be None: featx loads weights only from "
            "the CHECKPOINT argument"
        )


def arch_settings(owner: str, arch: Any, zoo: Mapping[str, Mapping[str, Any]], required: Sequence[str],
                  optional: Sequence[str] = ()) -> Mapping[str, Any]:
    """A backbone's ``arch``: a name of ``zoo`` (any case) or a dict with the ``required`` keys and
    perhaps the ``optional`` ones; anything else is the user's error, naming ``owner``."""
    if isinstance(arch, str):
        if arch.lower() not in zoo:
            raise UserError(f"{owner}: arch={arch!r} is not one of {', '.join(zoo)}")
        return zoo[arch.lower()]
    if not isinstance(arch, Mapping) or not set(required) <= set(arch) <= set(required) | set(optional):
        keys = ", ".join(required) + "".join(f" [, {key}]" for key in optional)
        raise UserError(f"{owner}: arch={arch!r} must be a name or a dict of {keys}")
    return arch
