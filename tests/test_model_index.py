"""configs/model_index.json: well-formed, and consistent with the config files it names."""
from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

import pytest
from mmengine.config import Config

from featx.data.pipeline import Role

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
INDEX = CONFIGS / "model_index.json"
GOLDEN = ROOT / "tests" / "data" / "golden"

KEYS = {"name", "family", "config", "checkpoint", "sha256_prefix", "dataset", "top1", "backbone",
        "feature_dim", "views", "input", "unsupported", "source", "dialect"}
FAMILIES = ["tsn", "tsm", "tin", "tanet", "trn", "tpn", "slowonly", "omnisource", "slowfast", "i3d",
            "r2plus1d", "csn", "x3d", "c3d", "timesformer", "c2d", "swin", "mvit", "uniformer", "uniformerv2",
            "videomae", "videomaev2"]
FOLDERS = {"0.x": "recognition", "1.x": "mmaction2-1.x/recognition"}  # where each dialect's configs are shipped
CROPS = {"CenterCrop": 1, "ThreeCrop": 3, "TenCrop": 10}


@lru_cache(maxsize=None)
def entries() -> tuple[dict, ...]:
    return tuple(json.loads(INDEX.read_text()))


@lru_cache(maxsize=None)
def config(rel: str) -> Config:
    return Config.fromfile(str(CONFIGS / rel))


def test_entries_are_well_formed():
    assert len(entries()) > 100
    for e in entries():
        assert set(e) == KEYS, e["name"]
        assert re.fullmatch(r"[a-z0-9_]+" if e["dialect"] == "0.x" else r"[A-Za-z0-9_.-]+", e["name"]), e["name"]
        assert e["family"] in FAMILIES
        assert e["config"].startswith(f"{FOLDERS[e['dialect']]}/{e['family']}/"), e["name"]
        assert e["top1"] is None or isinstance(e["top1"], float)
        assert e["input"] in ("video", "rawframes", "flow")
        assert e["source"] in ("metafile", "readme")
        assert e["unsupported"] is None or isinstance(e["unsupported"], str) and e["unsupported"]
        if e["input"] == "flow":
            assert e["unsupported"] is not None


def test_names_and_checkpoints_are_unique():
    names = [e["name"] for e in entries()]
    assert len(set(names)) == len(names)
    for dialect in FOLDERS:  # a 1.x config may name a 0.x checkpoint (ported weights: CSN, ...)
        urls = [e["checkpoint"] for e in entries() if e["dialect"] == dialect]
        assert len(set(urls)) == len(urls)


def test_in_family_order():
    for dialect in FOLDERS:  # 0.x's entries, then 1.x's, each in family order
        order = [FAMILIES.index(e["family"]) for e in entries() if e["dialect"] == dialect]
        assert order == sorted(order)
    assert [e["dialect"] for e in entries()] == sorted(e["dialect"] for e in entries())


def test_checkpoint_urls_carry_their_hash():
    for e in entries():
        assert re.fullmatch(r"[0-9a-f]{8,}", e["sha256_prefix"]), e["name"]
        assert e["checkpoint"].startswith("https://download.openmmlab.com/mmaction/"), e["name"]
        assert e["checkpoint"].rsplit("/", 1)[1].endswith(f"-{e['sha256_prefix']}.pth"), e["name"]


def test_every_config_exists():
    for e in entries():
        assert (CONFIGS / e["config"]).is_file(), e["config"]


def test_golden_configs_are_shipped():
    options = sorted(GOLDEN.glob("*.options.json"))
    assert len(options) == 18
    for path in options:
        rel = json.loads(path.read_text())["config"]
        assert (CONFIGS / "recognition" / rel).is_file(), rel


def expected_views(pipeline: list) -> dict:
    clips = frames = None
    crops = 1
    for step in pipeline:
        kind = step["type"]
        if kind in ("SampleFrames", "DenseSampleFrames", "UniformSample"):
            assert clips is None, "two samplers"
            clips = step.get("num_clips", 1)
            if step.get("twice_sample", False):
                clips *= 2
            if kind == "DenseSampleFrames":
                clips *= step.get("num_sample_positions", 10)
            frames = step["clip_len"]
        elif kind in CROPS:
            crops *= CROPS[kind]
        elif kind == "Flip":
            assert step.get("flip_ratio", 0.5) in (0, 1), "a random flip at test time"
    assert clips is not None, "no sampler"
    return {"clips": clips, "crops": crops, "frames_per_clip": frames}


def test_entries_agree_with_their_config():
    from featx.config import read_config
    from featx.errors import UserError

    for e in entries():
        if e["input"] == "flow":
            with pytest.raises(UserError, match="optical flow is not supported"):
                read_config(CONFIGS / e["config"])
            continue
        cfg = read_config(CONFIGS / e["config"])
        assert cfg.dialect == e["dialect"], e["name"]
        assert e["views"] == expected_views(cfg.pipeline), e["name"]
        assert e["input"] == ("rawframes" if cfg.raw_frames else "video"), e["name"]
        backbone = cfg.model["backbone"]
        assert e["backbone"].split("-")[0] == backbone["type"], e["name"]
        # the head reads what the backbone gives: its width is the feature size (TSM/TPN included)
        head = cfg.model.get("cls_head") or {}
        if "in_channels" in head:
            assert e["feature_dim"] == head["in_channels"], e["name"]
        if backbone["type"] == "ResNetTIN":
            assert e["unsupported"], e["name"]


SUPPORTED = [e for e in entries() if e["unsupported"] is None]


@pytest.mark.parametrize("entry", SUPPORTED, ids=[e["name"] for e in SUPPORTED])
def test_every_supported_entry_has_a_test_pipeline_that_builds(entry):
    """Its config's test pipeline builds with its dialect's steps (no video opened)."""
    from featx.config import read_config
    from featx.data.pipeline import build_pipeline

    config = read_config(CONFIGS / entry["config"])
    assert build_pipeline(config.pipeline, transforms=config.transforms).find(Role.SAMPLE), entry["name"]


def test_every_refused_entry_is_refused_by_featx():
    """An entry marked unsupported is one whose config, model (on the meta device) or test pipeline featx
    refuses (a UserError), so the index's reason is not a stale guess; for 1.x, how many of 1.2.0's 119
    checkpointed configs run."""
    import torch

    from featx.config import read_config
    from featx.data.pipeline import build_pipeline
    from featx.errors import UserError
    from featx.models import build_model

    for e in entries():
        if e["unsupported"] is not None:
            with pytest.raises(UserError), torch.device("meta"):
                config = read_config(CONFIGS / e["config"])
                build_model(config.model)
                build_pipeline(config.pipeline, transforms=config.transforms)
    v1 = [e for e in entries() if e["dialect"] == "1.x"]
    runnable = {e["config"] for e in v1 if e["unsupported"] is None}
    assert len({e["config"] for e in v1}) <= 119 and len(runnable) >= 111


WITH_TEST_PIPELINE = "mmaction2-1.x/recognition/uniformerv2/with_test_pipeline/"


def test_model_only_configs_are_run_through_their_model_with_a_test_pipeline_of_the_same_model():
    """1.2.0 ships UniFormerV2's three Kinetics-710 configs model-only; their entries name featx's configs that
    inherit a 1.2.0 config of the same model (its test pipeline) and give exactly the model-only config's model
    (but for the keys that say where the initial weights come from)."""
    from featx.config import model_dict, read_config
    from featx.errors import UserError

    wrapped = [e for e in entries() if e["config"].startswith(WITH_TEST_PIPELINE)]
    assert len(wrapped) == 3
    for e in wrapped:
        model_only = CONFIGS / e["config"].replace("with_test_pipeline/", "")
        with pytest.raises(UserError, match="has no 'test_dataloader.dataset' dict"):
            read_config(model_only)
        wrapper = read_config(CONFIGS / e["config"])
        built = {**wrapper.model, "data_preprocessor": wrapper.recorded["model.data_preprocessor"]}
        model = model_dict(config(str(model_only.relative_to(CONFIGS))).model)
        for m in (built, model):  # where the initial weights would come from: featx takes the checkpoint's
            for key in ("pretrained", "clip_pretrained"):
                m["backbone"].pop(key, None)
        assert built == model, e["name"]


@pytest.mark.parametrize("needle, dim", [("tsm_mobilenetv2", 1280), ("x3d_s", 432), ("c3d_", 4096),
                                         ("timesformer_divst", 768), ("slowfast_r50_8x8x1", 2304),
                                         ("r2plus1d_r34_8x8x1", 512), ("tsn_r18_", 512)])
def test_feature_sizes(needle, dim):
    hits = [e for e in entries() if e["name"].startswith(needle)]
    assert hits
    assert {e["feature_dim"] for e in hits} == {dim}


def test_names_resolve_to_shipped_configs_and_refusals_say_why():
    from featx.errors import UserError
    from featx.model_index import models, resolve_model

    for entry in models():
        assert entry.config_path.is_file(), entry.name
    entry = resolve_model("tsm_r50_256p_1x1x8_50e_kinetics400_rgb")
    assert entry.checkpoint.endswith(f"-{entry.sha256_prefix}.pth") and entry.feature_dim == 2048
    with pytest.raises(UserError, match="did you mean tsn_r50_1x1x3_100e_kinetics400_rgb"):
        resolve_model("tsn_r50_1x1x3_100e_kinetics")
    with pytest.raises(UserError, match="tin_shift"):
        resolve_model(next(e.name for e in models() if e.family == "tin"))


def test_the_wheel_carries_the_configs_and_the_index(tmp_path):
    """`pip install featx` users resolve model names too: the configs travel inside the package."""
    import subprocess
    import sys
    import zipfile

    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True)
    [wheel] = tmp_path.glob("featx-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "featx/configs/model_index.json" in names
    shipped = {f"featx/configs/{p.relative_to(CONFIGS).as_posix()}" for p in CONFIGS.rglob("*")
               if p.suffix in (".py", ".json")}  # .json: UniFormerV2's K710 channel maps, which its configs name
    assert "featx/configs/mmaction2-1.x/recognition/uniformerv2/k710_channel_map/map_k400.json" in shipped
    assert shipped <= names


@lru_cache(maxsize=None)
def index_models() -> dict[str, list[tuple[dict, dict, int]]]:
    """Per backbone type: each distinct model (its head left out) that a supported entry names, with the
    first such entry and its config's crop size, as featx builds it from the entry's config."""
    from featx.config import read_config

    distinct: dict[str, tuple[dict, dict, int]] = {}
    for e in entries():
        if e["unsupported"] is None:
            config = read_config(CONFIGS / e["config"])
            model = dict(config.model)
            model.pop("cls_head", None)
            crop = next(step["crop_size"] for step in config.pipeline if step["type"] in CROPS)
            distinct.setdefault(json.dumps(model, sort_keys=True, default=str), (model, e, crop))
    by_type: dict[str, list[tuple[dict, dict, int]]] = {}
    for model, e, crop in distinct.values():
        by_type.setdefault(model["backbone"]["type"], []).append((model, e, crop))
    return by_type


INDEX_BACKBONES = sorted({e["backbone"].split("-")[0] for e in entries() if e["unsupported"] is None})


@pytest.mark.parametrize("backbone", INDEX_BACKBONES)
def test_every_backbone_the_index_names_builds_with_its_feature_size_and_has_a_reference_layout(backbone):
    """Each model a supported entry names builds from its config and gives ``feature_dim`` values per view
    (shapes only, on the meta device); its backbone type's parameter layout is held to the reference's by
    a golden case (tests/test_models.py's layout test) or, for a backbone no golden case has, the test
    ``helpers.REFERENCE_LAYOUT_TESTS`` names."""
    import torch

    from featx.models import build_model
    from helpers import GOLDEN_1X_CASES, GOLDEN_CASES, REFERENCE_LAYOUT_TESTS, case_model_cfg

    held_by = REFERENCE_LAYOUT_TESTS.get(backbone)
    assert held_by and held_by[1] in (ROOT / held_by[0]).read_text() or any(
        case_model_cfg(case)["backbone"]["type"] == backbone for case in GOLDEN_CASES + GOLDEN_1X_CASES), \
        f"neither a golden case nor a reference test holds {backbone}'s layout to the reference's"
    for model_cfg, e, crop in index_models()[backbone]:  # the config's crop (C3D's fc6, patch grids fix it)
        with torch.device("meta"):
            model = build_model(model_cfg)
            view = (3, crop, crop) if model.view_ndim == 3 else (3, e["views"]["frames_per_clip"], crop, crop)
            out = model.forward_views(torch.empty((1, model.view_group) + view))
        assert tuple(out.shape) == (1, model.view_group, e["feature_dim"]), e["name"]
