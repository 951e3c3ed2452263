"""Inference rewrites: BatchNorm folded into the convolutions (``--fuse-conv-bn``), channels-last
weights, oneDNN fused kernels on CPUs, weights stored in bf16 once. Each applies where it can and leaves
the rest as it is."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from featx.models.layers import ConvModule


def underlying_conv(module: nn.Module) -> _ConvNd | None:
    """The convolution whose output ``module`` returns as it is: the module itself, the conv a layer names
    ``output_conv`` (R(2+1)D's temporal conv), or the one a wrapper keeps in ``.net`` (a temporal shift
    before a conv); a BatchNorm after ``module`` can fold into it."""
    while not isinstance(module, _ConvNd):
        module = getattr(module, "output_conv", None) or getattr(module, "net", None)
        if not isinstance(module, nn.Module):
            return None
    return None if module.transposed else module


@torch.no_grad()
def fuse_conv_bn(model: nn.Module) -> nn.Module:
    """Fold every BatchNorm that directly follows a convolution into it, in place.

    The pairs are those modules declare in ``conv_norm_pairs`` (``ConvModule``'s ``conv`` and ``bn``,
    and any other (conv, norm) attribute pair a layer lists); a BatchNorm that directly precedes a
    pointwise conv, declared in ``norm_conv_pairs`` as (norm, conv path), folds into that conv. The conv gets a bias, the norm becomes
    ``nn.Identity``; outputs in eval mode are unchanged up to float rounding (folded in float64).
    Returns ``model``.
    """
    for module in model.modules():
        for conv_name, norm_name in getattr(module, "conv_norm_pairs", ()):
            conv, bn = underlying_conv(getattr(module, conv_name)), getattr(module, norm_name)
            if conv is None or not isinstance(bn, _BatchNorm) or not bn.track_running_stats:
                continue
            weight = conv.weight.double()
            scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
            conv_bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
            conv.weight.copy_(weight * scale.reshape((-1,) + (1,) * (weight.dim() - 1)))
            bias = (conv_bias - bn.running_mean.double()) * scale + bn.bias.double()
            conv.bias = nn.Parameter(bias.to(conv.weight.dtype))
            setattr(module, norm_name, nn.Identity())
        for norm_name, conv_name in getattr(module, "norm_conv_pairs", ()):
            _fold_norm_into_next_conv(module, norm_name, module.get_submodule(conv_name))
    return model


def _fold_norm_into_next_conv(module: nn.Module, norm_name: str, conv: nn.Module) -> None:
    """Fold the BatchNorm ``module.<norm_name>`` into the pointwise (1x1..., ungrouped, unpadded) conv
    its output goes straight into: ``conv(s * x + t)`` is ``conv'(x)`` with the weight scaled per input
    channel by ``s`` and ``t``'s image added to the bias (folded in float64)."""
    bn = getattr(module, norm_name)
    if (not isinstance(bn, _BatchNorm) or not bn.track_running_stats or not isinstance(conv, _ConvNd)
            or conv.groups != 1 or any(k != 1 for k in conv.kernel_size) or any(conv.padding)):
        return
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    shift = bn.bias.double() - bn.running_mean.double() * scale
    weight = conv.weight.double().flatten(1)  # (out, in)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros(weight.shape[0], dtype=torch.float64)
    conv.bias = nn.Parameter((bias + weight @ shift).to(conv.weight.dtype))
    conv.weight.copy_((weight * scale).reshape(conv.weight.shape))
    setattr(module, norm_name, nn.Identity())


def use_onednn_fusion(model: nn.Module) -> bool:
    """Run each plain 2D/3D :class:`ConvModule` whose norm is folded (or absent) and whose activation is
    ReLU or none as one oneDNN convolution with its ReLU (and, at the end of a residual block, the
    shortcut's sum) fused in: on a CPU, in float32 (the same arithmetic in fewer passes over memory) or
    with the weights and the input in bf16 (:func:`store_weights_in`). Returns whether any module uses it."""
    if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")):
        return False
    enabled = False
    for module in model.modules():
        if (isinstance(module, ConvModule) and type(module.conv) in (nn.Conv2d, nn.Conv3d)
                and module.conv.padding_mode == "zeros" and isinstance(module.norm, (nn.Identity, type(None)))
                and isinstance(module.activate, (nn.ReLU, type(None)))):
            module.onednn = enabled = True
    return enabled


@torch.no_grad()
def store_weights_in(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Convert the weight and bias of every convolution and linear layer to ``dtype`` (bf16), in place, once:
    under autocast they are then used as they are instead of being cast at every forward, and oneDNN's
    fused convolutions run on them. Norms, embeddings and every other parameter stay float32, as autocast
    computes them. Returns ``model``."""
    for module in model.modules():
        if isinstance(module, (_ConvNd, nn.Linear)):
            module.to(dtype)
    return model


def to_channels_last(model: nn.Module) -> nn.Module:
    """Store every 2D conv's weight channels-last and every 3D conv's channels-last-3d, in place."""
    formats = {4: torch.channels_last, 5: torch.channels_last_3d}
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Conv3d)):
            module.weight.data = module.weight.data.contiguous(memory_format=formats[module.weight.dim()])
    return model
