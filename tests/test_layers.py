"""Features from any layer: ``Recognizer.tap`` (``--layer``, ``--pool``) on a 2D, a 3D and a transformer family,
and ``featx layers``."""
from __future__ import annotations

import pytest
import torch

import featx
from featx.errors import UserError
from featx.models import build_model
from featx.models.taps import layer_shapes
from helpers import VIDEOS, error_line, randomize_, rel_error, call_featx, write_list

TSN = dict(type="Recognizer2D", backbone=dict(type="ResNet", depth=18, norm_eval=False))
SLOWONLY = dict(type="Recognizer3D", backbone=dict(type="ResNet3dSlowOnly", depth=18, lateral=False,
                                                    conv1_kernel=(1, 7, 7), conv1_stride_t=1, pool1_stride_t=1,
                                                    inflate=(0, 0, 1, 1)))
TIMESFORMER = dict(type="Recognizer3D", backbone=dict(type="TimeSformer", num_frames=2, img_size=32, patch_size=16,
                                                      embed_dims=48, num_heads=2, num_transformer_layers=2))
FAMILIES = {  # config, one input (batch, views, ...), the last stage
    "tsn": (TSN, (1, 3, 3, 64, 64), "backbone.layer4"),
    "slowonly": (SLOWONLY, (1, 2, 3, 4, 64, 64), "backbone.layer4"),
    "timesformer": (TIMESFORMER, (1, 2, 3, 2, 32, 32), "backbone"),
}


@pytest.fixture(scope="module")
def family_models():
    return {name: randomize_(build_model(cfg).eval()) for name, (cfg, _, _) in FAMILIES.items()}


@pytest.mark.parametrize("family", FAMILIES)
def test_the_last_stage_averaged_is_the_default_vector(family, family_models):
    model, (_, shape, last) = family_models[family], FAMILIES[family]
    imgs = torch.randn(shape)
    with torch.inference_mode():
        default = model.forward_views(imgs)
        model.tap(last, "avg")
        try:
            tapped = model.forward_views(imgs)
        finally:
            model.layer = None
    assert tapped.shape == default.shape and rel_error(tapped, default) < 1e-6


def test_pooling_an_inner_layer(family_models):
    model = family_models["slowonly"]
    imgs = torch.randn(1, 2, 3, 4, 64, 64)
    maps = []
    handle = model.backbone.layer3.register_forward_hook(lambda m, a, out: maps.append(out))
    with torch.inference_mode():
        for pool in ("avg", "max", "none"):
            model.tap("backbone.layer3", pool)
            got = model.forward_views(imgs)
            expected = {"avg": maps[-1].mean((2, 3, 4)), "max": maps[-1].amax((2, 3, 4)), "none": maps[-1].flatten(1)}
            assert torch.equal(got.reshape(2, -1), expected[pool]), pool
    handle.remove()
    model.layer = None
    assert maps[-1].shape == (2, 256, 4, 4, 4)


def test_transformer_tokens_are_averaged_over_the_tokens(family_models):
    model = family_models["timesformer"]
    imgs = torch.randn(1, 2, 3, 2, 32, 32)
    tokens = []
    layer = "backbone.transformer_layers.layers.1"
    handle = model.get_submodule(layer).register_forward_hook(lambda m, a, out: tokens.append(out))
    model.tap(layer, "avg")
    with torch.inference_mode():
        got = model.forward_views(imgs)
    handle.remove()
    model.layer = None
    assert tokens[-1].dim() == 3 and torch.equal(got.reshape(2, -1), tokens[-1].mean(1))


def test_a_layer_that_is_not_there_names_its_neighbours(family_models):
    with pytest.raises(UserError, match=r"--layer backbone.layer9: no such module \(under backbone: backbone.conv1"):
        family_models["tsn"].tap("backbone.layer9")
    with pytest.raises(UserError, match="--pool mean: use one of avg, max, none"):
        family_models["tsn"].tap("backbone.layer4", "mean")


def test_layer_shapes_lists_modules_as_their_outputs_come(family_models):
    model = family_models["tsn"]
    shapes = dict(layer_shapes(model, torch.randn(1, 1, 3, 64, 64), model.forward_views))
    names = list(shapes)
    assert names.index("backbone.layer3") < names.index("backbone.layer4") < names.index("backbone")
    assert shapes["backbone.layer3"] == "(1, 256, 4, 4)" and shapes["backbone.layer4"] == "(1, 512, 2, 2)"


def test_the_cli_layer_and_pool_against_the_default(tmp_path, tiny_tsn):
    config, checkpoint = tiny_tsn
    videos = ["h264_176x144_18frames.mp4", "h264_426x240_24fps.mp4"]
    default = featx.extract(str(config), str(checkpoint), videos, video_root=str(VIDEOS)).features
    out = tmp_path / "l4.pkl"
    proc = call_featx(config, checkpoint, "--video-list", write_list(tmp_path / "l.txt", videos), "--video-root", VIDEOS,
                     "--out", out, "--layer", "backbone.layer4", "--pool", "avg")
    assert proc.returncode == 0, proc.stderr
    tapped, meta = featx.load(out)
    for name in videos:
        assert rel_error(tapped[name], default[name]) < 1e-6
    assert meta["layer"] == {"name": "backbone.layer4", "pool": "avg"} and meta["fingerprint"]["layer"] == "backbone.layer4"
    maps = featx.extract(str(config), str(checkpoint), videos[:1], video_root=str(VIDEOS), layer="backbone.layer3",
                         pool="none")
    assert maps.features[videos[0]].shape == (256 * 2 * 2,)  # 32 px in: layer3's map is 256 x 2 x 2


@pytest.mark.parametrize("args, message", [
    (["--layer", "backbone.layer9"], "--layer backbone.layer9: no such module (under backbone: backbone.conv1"),
    (["--pool", "max"], "--pool max: pools the output of --layer, so give --layer too"),
])
def test_layer_mistakes_are_one_line(tmp_path, tiny_tsn, args, message):
    config, checkpoint = tiny_tsn
    proc = call_featx(config, checkpoint, "--video-list", write_list(tmp_path / "l.txt", ["h264_176x144_18frames.mp4"]),
                     "--video-root", VIDEOS, "--out", tmp_path / "o.pkl", *args)
    assert proc.returncode == 2 and message in error_line(proc)
    assert not (tmp_path / "o.pkl").exists()


def test_featx_layers_lists_names_and_shapes(tiny_tsn):
    config, _ = tiny_tsn
    proc = call_featx("layers", config)
    assert proc.returncode == 0, proc.stderr
    rows = dict(line.split(None, 1) for line in proc.stdout.splitlines()[1:])
    assert rows["backbone.layer3"] == "(1, 256, 2, 2)" and rows["backbone"] == "(1, 512, 1, 1)"  # one view: TSN
    assert error_line(call_featx("layers", "no_such_config.py")).startswith("featx: error:")
