"""Models: MMAction2 state-dict layouts, torchvision weight mapping, conv-bn fusion, forward modes."""
from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import torch
import torchvision
from torch import nn

from helpers import GOLDEN_1X_CASES, GOLDEN_CASES, case_model_cfg, golden_dir, randomize_, rel_error
from featx.errors import UserError
from featx.models import build_model, fuse_conv_bn, use_onednn_fusion
from featx.models.layers import ConvBuilder
from featx.models.residual import BASIC, make_res_layer
from featx.registry import MODELS as MODEL_REGISTRY
from featx.models.backbones.resnet import ResNet, torchvision_resnet_to_mmaction

# The model dicts of the shipped configs, as the extraction tool builds them (pretrained=None).
TSN_MODEL: dict[str, Any] = case_model_cfg("tsn_clip")
SLOWONLY_MODEL: dict[str, Any] = case_model_cfg("slowonly_clip")
MODELS = {"2d": TSN_MODEL, "3d": SLOWONLY_MODEL}
INPUT_SHAPES = {"2d": (2, 2, 3, 64, 64), "3d": (2, 2, 3, 4, 64, 64)}


def with_changes(model: dict[str, Any], **backbone: Any) -> dict[str, Any]:
    cfg = copy.deepcopy(model)
    cfg["backbone"].update(backbone)
    return cfg


@pytest.fixture(scope="module", params=["2d", "3d"])
def kind_and_model(request: pytest.FixtureRequest) -> tuple[str, nn.Module]:
    return request.param, randomize_(build_model(MODELS[request.param]))


# Keys of the reference's models that feature extraction does not use: the classification head, and
# TPN's auxiliary head (a loss on layer3, for training only). They stay unused in a checkpoint, reported.
NOT_BUILT = ("cls_head.", "neck.aux_head.")


@pytest.mark.parametrize("case", GOLDEN_CASES + GOLDEN_1X_CASES)
def test_state_dict_matches_mmaction_layout(case: str) -> None:
    """Every family, built from its shipped config (0.x's or 1.x's), has exactly the reference's parameter and
    buffer names and shapes: an official checkpoint loads with no renaming."""
    layout = json.loads((golden_dir(case) / f"{case}.layout.json").read_text())
    expected = {k: (shape, dtype) for k, shape, dtype in layout if not k.startswith(NOT_BUILT)}
    with torch.device("meta"):  # shapes only: no weights to initialise
        model = build_model(case_model_cfg(case))
    assert {k: (list(t.shape), str(t.dtype).removeprefix("torch.")) for k, t in model.state_dict().items()} == expected


@pytest.mark.parametrize("depth", [18, 50])
@torch.no_grad()
def test_torchvision_weights_map_to_same_features(depth: int) -> None:
    torch.manual_seed(0)
    tv = getattr(torchvision.models, f"resnet{depth}")()
    for m in tv.modules():  # non-trivial BN statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    tv.eval()
    ours = ResNet(depth=depth).eval()
    ours.load_state_dict(torchvision_resnet_to_mmaction(tv.state_dict()), strict=True)
    x = torch.randn(2, 3, 64, 64)
    expected = nn.Sequential(*list(tv.children())[:-2])(x)
    out = ours(x)
    assert out.shape == expected.shape == (2, 512 * (4 if depth == 50 else 1), 2, 2)
    assert rel_error(out, expected) < 1e-6


def test_torchvision_mapping_names() -> None:
    sd = {k: torch.zeros(1) for k in [
        "conv1.weight", "bn1.running_var", "layer2.0.conv3.weight", "layer2.0.bn3.num_batches_tracked",
        "layer2.0.downsample.0.weight", "layer2.0.downsample.1.bias", "fc.weight", "fc.bias",
    ]}
    assert list(torchvision_resnet_to_mmaction(sd)) == [
        "conv1.conv.weight", "conv1.bn.running_var", "layer2.0.conv3.conv.weight",
        "layer2.0.conv3.bn.num_batches_tracked", "layer2.0.downsample.conv.weight",
        "layer2.0.downsample.bn.bias",
    ]
    with pytest.raises(UserError, match="not a torchvision ResNet"):
        torchvision_resnet_to_mmaction({"head.weight": torch.zeros(1)})


@torch.no_grad()
def test_fuse_conv_bn_keeps_features(kind_and_model: tuple[str, nn.Module]) -> None:
    kind, model = kind_and_model
    x = torch.randn(INPUT_SHAPES[kind], generator=torch.Generator().manual_seed(1))
    expected = model(x)
    fused = fuse_conv_bn(copy.deepcopy(model))
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in fused.modules())
    assert all(k.endswith((".conv.weight", ".conv.bias")) for k in fused.state_dict())
    assert rel_error(fused(x), expected) < 1e-5


@torch.no_grad()
def test_forward_is_mean_of_views(kind_and_model: tuple[str, nn.Module]) -> None:
    kind, model = kind_and_model
    x = torch.randn(INPUT_SHAPES[kind], generator=torch.Generator().manual_seed(2))
    views = model.forward_views(x)
    assert views.shape == (2, 2, 2048)
    feats = model(x)
    assert feats.shape == (2, 2048)
    assert torch.equal(feats, views.mean(1))
    # each view alone gives its own row
    assert rel_error(model.forward_views(x[:1, 1:]), views[:1, 1:]) < 1e-5
    with pytest.raises(ValueError, match="expects a"):
        model(x[0])


@pytest.mark.parametrize("onednn", [False, True])
@torch.no_grad()
def test_residual_sum_ends_in_the_injected_activation(onednn: bool) -> None:
    """A block's activation after the sum is a ReLU unless a family injects another, which the oneDNN
    kernel (conv + sum + ReLU fused) must then not replace."""
    def stage(relu: Any = None) -> nn.Sequential:
        torch.manual_seed(0)
        layer = make_res_layer(ConvBuilder(2), BASIC, 8, 8, (1, 1), 1, "pytorch", [(1, 1)] * 2, relu=relu)
        layer = fuse_conv_bn(randomize_(layer).eval())
        if onednn and not use_onednn_fusion(layer):
            pytest.skip("no oneDNN convolution kernels on this CPU")
        return layer

    leaky, plain = stage(lambda: nn.LeakyReLU(0.25)), stage()
    assert all(isinstance(b.relu, nn.LeakyReLU) for b in leaky) and all(type(b.relu) is nn.ReLU for b in plain)
    x = torch.randn(1, 8, 6, 6, generator=torch.Generator().manual_seed(4))
    block = leaky[0]
    by_hand = nn.functional.leaky_relu(block.conv2(block.conv1(x)) + x, 0.25)
    assert (by_hand < 0).any()
    assert rel_error(block(x), by_hand) < 1e-6
    assert rel_error(plain[0](x), by_hand.clamp(min=0)) < 1e-6


@torch.no_grad()
def test_max_testing_views_chunks_give_same_result() -> None:
    cfg = copy.deepcopy(SLOWONLY_MODEL)
    whole = randomize_(build_model(cfg))
    cfg["test_cfg"]["max_testing_views"] = 3  # 4 views in all: chunks of 3 and 1
    chunked = build_model(cfg)
    chunked.load_state_dict(whole.state_dict())
    x = torch.randn(INPUT_SHAPES["3d"], generator=torch.Generator().manual_seed(3))
    assert rel_error(chunked.forward_views(x), whole.forward_views(x)) < 1e-5


@torch.no_grad()
def test_several_out_indices_are_pooled_and_concatenated() -> None:
    model = build_model(with_changes(SLOWONLY_MODEL, depth=18, out_indices=(2, 3)))
    assert model(torch.randn(1, 2, 3, 4, 64, 64)).shape == (1, 256 + 512)


def test_basic_block_3d_and_caffe_style_shapes() -> None:
    sd = build_model(with_changes(SLOWONLY_MODEL, depth=34, inflate=1)).state_dict()
    assert sd["backbone.layer1.0.conv1.conv.weight"].shape == (64, 64, 3, 3, 3)
    assert "backbone.layer1.0.downsample.conv.weight" not in sd
    caffe = build_model(with_changes(SLOWONLY_MODEL, style="caffe", inflate_style="3x3x3"))
    conv1, conv2 = caffe.backbone.layer3[0].conv1.conv, caffe.backbone.layer3[0].conv2.conv
    assert (conv1.kernel_size, conv1.stride) == ((1, 1, 1), (1, 2, 2))
    assert (conv2.kernel_size, conv2.stride, conv2.padding) == ((3, 3, 3), (1, 1, 1), (1, 1, 1))


@pytest.mark.parametrize(
    "cfg, message",
    [
        (dict(TSN_MODEL, backbone=dict(type="ResNeXt", depth=50)), "unknown model type 'ResNeXt'"),
        (with_changes(SLOWONLY_MODEL, lateral=True), "lateral=True"),
        (with_changes(SLOWONLY_MODEL, non_local=((0, 1), 0, 0, 0)), r"non_local\[0\]"),
        (with_changes(TSN_MODEL, pretrained="torchvision://resnet50"), "only from the CHECKPOINT"),
        (with_changes(SLOWONLY_MODEL, pretrained="ckpt.pth"), "only from the CHECKPOINT"),
        (dict(TSN_MODEL, neck=dict(type="FPN")), "neck is not supported"),
        (with_changes(TSN_MODEL, depth=42), "depth=42"),
        (with_changes(TSN_MODEL, style="tf"), "style='tf'"),
        (with_changes(TSN_MODEL, out_indices=(4,)), "out_indices"),
        (with_changes(TSN_MODEL, norm_cfg=dict(type="GN", num_groups=32)), "norm_cfg"),
        (with_changes(SLOWONLY_MODEL, inflate=(0, 0, (1, 0), 1)), r"inflate\[2\]"),
        (with_changes(SLOWONLY_MODEL, unknown_arg=1), "unknown_arg"),
        (dict(TSN_MODEL, test_cfg=dict(max_testing_views=0)), "max_testing_views"),
        (TSN_MODEL["backbone"], "not a recognizer"),
    ],
)
def test_bad_configs_raise_user_error(cfg: dict[str, Any], message: str) -> None:
    with pytest.raises(UserError, match=message):
        build_model(cfg)


def test_only_argument_binding_errors_are_the_users() -> None:
    with pytest.raises(UserError, match="unexpected keyword argument 'unknown_arg'"):
        MODEL_REGISTRY.build({"type": "ResNet", "depth": 50, "unknown_arg": 1})
    with pytest.raises(UserError, match="missing a required argument: 'depth'"):
        MODEL_REGISTRY.build({"type": "ResNet3dSlowOnly"})
    with pytest.raises(TypeError):  # a bug inside a constructor is not reported as bad input
        try:
            MODEL_REGISTRY.build({"type": "ResNet3d", "depth": 50, "conv1_kernel": "abc"})
        except UserError as exc:
            pytest.fail(f"reported as the user's error: {exc}")
