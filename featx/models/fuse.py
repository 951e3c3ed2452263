"""Inference rewrites: BatchNorm folded into the convolutions (``--fuse-conv-bn``), oneDNN fused kernels on CPUs."""
from __future__ import annotations

import torch
from torch import nn

from featx.models.conv_module import ConvModule


@torch.no_grad()
def fuse_conv_bn(model: nn.Module) -> nn.Module:
    """Fold every :class:`ConvModule`'s BatchNorm (its running statistics) into its conv, in place.

    The conv gets a bias, ``bn`` becomes ``nn.Identity``; outputs in eval mode are unchanged up to
    float rounding. The folding is computed in float64. Returns ``model``.
    """
    for module in model.modules():
        if not (isinstance(module, ConvModule) and isinstance(module.bn, nn.modules.batchnorm._BatchNorm)):
            continue
        conv, bn = module.conv, module.bn
        weight = conv.weight.double()
        scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
        conv_bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
        conv.weight.copy_(weight * scale.reshape((-1,) + (1,) * (weight.dim() - 1)))
        bias = (conv_bias - bn.running_mean.double()) * scale + bn.bias.double()
        conv.bias = nn.Parameter(bias.to(conv.weight.dtype))
        module.bn = nn.Identity()
    return model


def use_onednn_fusion(model: nn.Module) -> bool:
    """Run every folded :class:`ConvModule` as one oneDNN convolution with its ReLU (and, at the end
    of a residual block, the shortcut's sum) fused in: float32 on a CPU only, the same arithmetic in
    fewer passes over memory. Returns whether it is on (it needs folded BatchNorm and oneDNN)."""
    if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")):
        return False
    convs = [m for m in model.modules() if isinstance(m, ConvModule)]
    if not convs or any(not isinstance(m.bn, nn.Identity) or m.conv.padding_mode != "zeros" for m in convs):
        return False
    for module in convs:
        module.onednn = True
    return True
