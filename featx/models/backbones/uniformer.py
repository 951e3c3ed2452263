"""MMAction2 1.x's ``UniFormer`` (v1): four stages, each a patch embedding (a strided conv, then a
LayerNorm over channels) and blocks; the first two stages' blocks mix tokens with a depthwise 5x5x5
conv (``CBlock``), the last two with self-attention over all tokens of the view (``SABlock``); a
BatchNorm at the end. Input (N, C, T, H, W), output (N, C', T / 2, H / 32, W / 32)."""
from __future__ import annotations

from typing import Any, Sequence

from torch import Tensor, nn

from featx.errors import UserError
from featx.models.layers import check_pretrained
from featx.models.transformer import Mlp, QKVAttention
from featx.registry import MODELS


def _conv(cin: int, cout: int, kernel: tuple[int, int, int], stride: tuple[int, int, int] = (1, 1, 1),
          padding: tuple[int, int, int] = (0, 0, 0), groups: int = 1) -> nn.Conv3d:
    return nn.Conv3d(cin, cout, kernel, stride, padding, groups=groups)


def _depthwise(dims: int, size: int) -> nn.Conv3d:
    """A depthwise ``size``^3 conv keeping the map's size (UniFormer's position embedding and local mixing)."""
    return _conv(dims, dims, (size,) * 3, padding=(size // 2,) * 3, groups=dims)


class CMlp(nn.Module):
    """The MLP as two 1x1x1 convs with a GELU between them, on (B, C, T, H, W)."""

    def __init__(self, in_features: int, hidden_features: int) -> None:
        super().__init__()
        self.fc1 = _conv(in_features, hidden_features, (1, 1, 1))
        self.act = nn.GELU()
        self.fc2 = _conv(hidden_features, in_features, (1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class CBlock(nn.Module):
    """A conv position embedding, then local mixing (BN, 1x1x1, depthwise 5x5x5, 1x1x1) and the conv MLP
    (after a BN), each added to its input."""

    # each BatchNorm is followed by a 1x1x1 conv it can fold into
    norm_conv_pairs = (("norm1", "conv1"), ("norm2", "mlp.fc1"))

    def __init__(self, dim: int, mlp_ratio: float) -> None:
        super().__init__()
        self.pos_embed = _depthwise(dim, 3)
        self.norm1 = nn.BatchNorm3d(dim)
        self.conv1 = _conv(dim, dim, (1, 1, 1))
        self.conv2 = _conv(dim, dim, (1, 1, 1))
        self.attn = _depthwise(dim, 5)
        self.norm2 = nn.BatchNorm3d(dim)
        self.mlp = CMlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.pos_embed(x)
        x = x + self.conv2(self.attn(self.conv1(self.norm1(x))))
        return x + self.mlp(self.norm2(x))


class SABlock(nn.Module):
    """A conv position embedding, then pre-norm self-attention over every token of the view and an MLP,
    each added to its input."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, qk_scale: float | None) -> None:
        super().__init__()
        self.pos_embed = _depthwise(dim, 3)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = QKVAttention(dim, num_heads, qkv_bias, qk_scale)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.pos_embed(x)
        shape = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        tokens = tokens + self.attn(self.norm1(tokens))
        tokens = tokens + self.mlp(self.norm2(tokens))
        return tokens.transpose(1, 2).reshape(shape)


class PatchEmbed(nn.Module):
    """A strided conv (``kernel``, ``stride``, ``padding``), then a LayerNorm over channels."""

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int, int], stride: tuple[int, int, int],
                 padding: tuple[int, int, int]) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(cout)
        self.proj = _conv(cin, cout, kernel, stride, padding)

    def forward(self, x: Tensor) -> Tensor:
        x = self.proj(x)
        return self.norm(x.permute(0, 2, 3, 4, 1)).permute(0, 4, 1, 2, 3).contiguous()


@MODELS.register()
class UniFormer(nn.Module):
    """MMAction2 1.x ``UniFormer``: ``depth`` blocks in each of four stages of ``embed_dim`` channels,
    ``embed_dim / head_dim`` heads in the attention stages. The first patch embedding is a 3x4x4 conv
    of stride 2x4x4 (padded in time), the others 1x2x2 of stride 1x2x2. Dropout and drop-path are
    training-only; ``pretrained`` must be None (``img_size`` only names the
    pretraining size)."""

    def __init__(
        self,
        depth: Sequence[int] = (5, 8, 20, 7),
        img_size: int = 224,
        in_chans: int = 3,
        embed_dim: Sequence[int] = (64, 128, 320, 512),
        head_dim: int = 64,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        pretrained2d: bool = True,
        pretrained: str | None = None,
        init_cfg: Any = None,
    ) -> None:
        super().__init__()
        del img_size, drop_rate, attn_drop_rate, drop_path_rate, pretrained2d, init_cfg
        check_pretrained("UniFormer", pretrained)
        if len(depth) != 4 or len(embed_dim) != 4:
            raise UserError(f"UniFormer: depth={list(depth)!r} and embed_dim={list(embed_dim)!r} must give 4 stages")
        for dims in embed_dim[2:]:
            if dims % head_dim:
                raise UserError(f"UniFormer: embed_dim {dims} is not a multiple of head_dim={head_dim}")
        dims_in = [in_chans, *embed_dim[:3]]
        for i, (cin, cout) in enumerate(zip(dims_in, embed_dim)):
            patch = ((3, 4, 4), (2, 4, 4), (1, 0, 0)) if i == 0 else ((1, 2, 2), (1, 2, 2), (0, 0, 0))
            self.add_module(f"patch_embed{i + 1}", PatchEmbed(cin, cout, *patch))
        for i, (blocks, dims) in enumerate(zip(depth, embed_dim)):
            self.add_module(f"blocks{i + 1}", nn.ModuleList(
                CBlock(dims, mlp_ratio) if i < 2 else SABlock(dims, dims // head_dim, mlp_ratio, qkv_bias, qk_scale)
                for _ in range(blocks)))
        self.norm = nn.BatchNorm3d(embed_dim[-1])

    def forward(self, x: Tensor) -> Tensor:
        for i in range(1, 5):
            x = getattr(self, f"patch_embed{i}")(x)
            for block in getattr(self, f"blocks{i}"):
                x = block(x)
        return self.norm(x)

