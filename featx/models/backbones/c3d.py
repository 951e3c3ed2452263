"""MMAction2 0.x's ``C3D``: eight 3x3x3 convs in five max-pooled stages, then ``fc6`` and ``fc7``;
input (N, 3, 16, 112, 112) as in its configs, output ``relu(fc7)``, one 4096-d row per view."""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor, nn

from featx.models.layers import CONV3D, RELU, ConvBuilder, check_layer_cfgs, check_pretrained
from featx.registry import MODELS

# Per stage: its convs (name, input channels, output channels), then its max pool's kernel (= stride)
# and padding.
STAGES = (
    ((("conv1a", 3, 64),), (1, 2, 2), 0),
    ((("conv2a", 64, 128),), (2, 2, 2), 0),
    ((("conv3a", 128, 256), ("conv3b", 256, 256)), (2, 2, 2), 0),
    ((("conv4a", 256, 512), ("conv4b", 512, 512)), (2, 2, 2), 0),
    ((("conv5a", 512, 512), ("conv5b", 512, 512)), (2, 2, 2), (0, 1, 1)),
)


@MODELS.register()
class C3D(nn.Module):
    """MMAction2 0.x ``C3D``: ``conv1a`` .. ``conv5b`` (ConvModules, with a bias when ``norm_cfg`` is
    None), ``pool1`` .. ``pool5``, then ``relu(fc7(relu(fc6(flat))))``. ``out_dim`` is the size of the
    flattened ``pool5`` output fc6 takes (8192 for 16x112x112 views). ``style``, dropout and
    initialisation settings have no effect at inference."""

    def __init__(
        self,
        pretrained: str | None = None,
        style: str = "pytorch",
        conv_cfg: Mapping[str, Any] | None = None,
        norm_cfg: Mapping[str, Any] | None = None,
        act_cfg: Mapping[str, Any] | None = None,
        out_dim: int = 8192,
        dropout_ratio: float = 0.5,
        init_std: float = 0.005,
    ) -> None:
        super().__init__()
        del style, dropout_ratio, init_std  # unused by MMAction2's C3D / training only / initialisation
        check_pretrained("C3D", pretrained)
        conv_cfg, act_cfg = conv_cfg or CONV3D, act_cfg or RELU
        check_layer_cfgs("C3D", conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        b = ConvBuilder(3, conv_cfg, norm_cfg, act_cfg)
        self.order: list[str] = []  # the convs and pools, in the order they run
        for stage, (convs, pool, padding) in enumerate(STAGES, 1):
            for name, cin, cout in convs:
                self.add_module(name, b.conv(cin, cout, 3, padding=1))
            self.add_module(f"pool{stage}", nn.MaxPool3d(pool, stride=pool, padding=padding))
            self.order += [name for name, _, _ in convs] + [f"pool{stage}"]
        self.fc6 = nn.Linear(out_dim, 4096)
        self.fc7 = nn.Linear(4096, 4096)

    def forward(self, x: Tensor) -> Tensor:
        """(N, C, T, H, W) -> (N, 4096); a RuntimeError when the views' size does not give ``out_dim``
        values after ``pool5`` (MMAction2 fails on them too)."""
        size = tuple(x.shape[2:])
        for name in self.order:
            x = getattr(self, name)(x)
        x = x.flatten(1)
        if x.shape[1] != self.fc6.in_features:
            raise RuntimeError(f"C3D: a {'x'.join(map(str, size))} (TxHxW) view gives {x.shape[1]} values after "
                               f"pool5, fc6 takes out_dim={self.fc6.in_features}")
        return torch.relu(self.fc7(torch.relu(self.fc6(x))))
