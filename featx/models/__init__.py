"""Recognizers, backbones and necks, built from a config's ``model`` dict through ``featx.registry.MODELS``.

One file per family under ``backbones/`` (and ``necks/``); each registers its classes by name, and
the registry imports every module of this package before a lookup.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from featx.errors import UserError
from featx.models.fuse import fuse_conv_bn, store_weights_in, to_channels_last, use_onednn_fusion
from featx.models.recognizers import Recognizer, Recognizer2D, Recognizer3D
from featx.registry import MODELS

__all__ = ["Recognizer", "Recognizer2D", "Recognizer3D", "build_model", "fuse_conv_bn", "store_weights_in",
           "to_channels_last", "use_onednn_fusion", "view_group"]


def build_model(model_cfg: Mapping[str, Any]) -> nn.Module:
    """Build a recognizer from a config's ``model`` dict, in eval mode (weights still to load)."""
    model = MODELS.build(model_cfg)
    if not isinstance(model, Recognizer):
        raise UserError(
            f"model.type={model_cfg['type']!r} is not a recognizer (Recognizer2D, Recognizer3D or RecognizerOmni)"
        )
    return model.eval()


def view_group(model_cfg: Mapping[str, Any]) -> int:
    """How many neighbouring views the model of ``model_cfg`` mixes (1: none), before any weights exist:
    the model is built on the meta device (shapes only), so a bad model config is refused here too."""
    with torch.device("meta"):
        return build_model(model_cfg).view_group
