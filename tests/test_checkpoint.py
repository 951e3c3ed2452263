"""Checkpoint loading: formats, URLs through the hub cache, hash check, weights-only safety, key reports."""
from __future__ import annotations

import functools
import hashlib
import http.server
import logging
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import featx
from featx.checkpoint import file_sha256, load_checkpoint, read_checkpoint, resolve_checkpoint
from featx.errors import UserError
from featx.models import build_model
from featx.runner import RunOptions, run
from helpers import CASE_CONFIGS, ROOT, VIDEOS

TINY_2D = {"type": "Recognizer2D", "backbone": {"type": "ResNet", "depth": 18}}


@pytest.fixture
def model():
    return build_model(TINY_2D)


def _state(model, prefix=""):
    torch.manual_seed(1)
    return {prefix + k: torch.randn_like(v.float()).to(v.dtype) for k, v in model.state_dict().items()}


def test_wrapped_bare_and_module_prefixed_dicts_load(model, tmp_path):
    state = _state(model)
    for name, obj in {
        "wrapped": {"state_dict": state, "meta": {"epoch": np.int64(3), "lr": np.float64(0.1), "dt": np.dtype("float32")}},
        "bare": state,
        "ddp": {"state_dict": _state(model, "module.")},
    }.items():
        torch.save(obj, tmp_path / f"{name}.pth")
        fresh = build_model(TINY_2D)
        load_checkpoint(fresh, str(tmp_path / f"{name}.pth"))
        assert torch.equal(fresh.state_dict()["backbone.conv1.conv.weight"], state["backbone.conv1.conv.weight"]), name


def test_head_keys_are_reported_and_recorded(model, tmp_path, caplog):
    state = _state(model)
    state["cls_head.fc_cls.weight"] = torch.zeros(400, 512)
    del state["backbone.layer4.1.conv2.bn.num_batches_tracked"]  # a training counter: nothing is lost without it
    torch.save({"state_dict": state}, tmp_path / "c.pth")
    with caplog.at_level(logging.WARNING, logger="featx"):
        loaded = load_checkpoint(model, str(tmp_path / "c.pth"))
    assert (loaded.missing, loaded.unused) == ((), ("cls_head.fc_cls.weight",))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "1 keys not used by the feature model (cls_head.fc_cls.weight)" in warnings[0]


def test_checkpoint_lacking_model_keys_is_refused_unless_allowed(model, tmp_path, caplog):
    state = _state(model)
    lost = [k for k in state if k.startswith("backbone.layer4.1.")]
    for key in lost:
        del state[key]
    missing = [k for k in lost if not k.endswith("num_batches_tracked")]
    torch.save({"state_dict": state}, tmp_path / "c.pth")
    with pytest.raises(UserError) as refused:
        load_checkpoint(model, str(tmp_path / "c.pth"))
    message = str(refused.value)
    assert f"lacks {len(missing)} of the model's {len(model.state_dict())} keys" in message
    assert f"({', '.join(missing[:4])}, ... {len(missing) - 4} more)" in message
    assert "--allow-partial-checkpoint" in message and "\n" not in message
    with caplog.at_level(logging.WARNING, logger="featx"):
        loaded = load_checkpoint(model, str(tmp_path / "c.pth"), allow_partial=True)
    assert loaded.missing == tuple(missing) and loaded.unused == ()
    assert any(f"{len(missing)} model keys not in the checkpoint" in r.getMessage() for r in caplog.records)


def test_a_run_with_a_partial_checkpoint_is_refused_or_recorded(golden_checkpoint, tmp_path):
    """--allow-partial-checkpoint runs with a checkpoint that lacks model keys; the meta sidecar records which
    keys were missing and which went unused. Without it the run stops before anything is written."""
    state, _ = read_checkpoint(golden_checkpoint("tsn_clip"))
    missing = ["backbone.layer4.2.conv3.conv.weight", "backbone.layer4.2.conv3.bn.weight"]
    for key in missing:
        del state[key]
    torch.save({"state_dict": state}, tmp_path / "partial.pth")
    options = dict(config=str(ROOT / CASE_CONFIGS["tsn_clip"]), checkpoint=str(tmp_path / "partial.pth"),
                   videos=["h264_176x144_18frames.mp4"], video_root=str(VIDEOS), out=str(tmp_path / "o.pkl"),
                   workers=0)
    with pytest.raises(UserError, match="lacks 2 of the model's"):
        run(RunOptions(**options))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["partial.pth"]
    assert run(RunOptions(**options, allow_partial_checkpoint=True)) == 0
    features, meta = featx.load(tmp_path / "o.pkl")
    assert list(features) == ["h264_176x144_18frames.mp4"]
    assert meta["checkpoint_missing_keys"] == missing
    assert meta["checkpoint_unused_keys"] == ["cls_head.fc_cls.weight", "cls_head.fc_cls.bias"]


def test_checkpoint_matching_nothing_is_an_error(model, tmp_path):
    torch.save({"state_dict": {"encoder.w": torch.zeros(3)}}, tmp_path / "other.pth")
    with pytest.raises(UserError, match="matches none"):
        load_checkpoint(model, str(tmp_path / "other.pth"))


class _Payload:
    def __reduce__(self):
        return (Path.touch, (Path(os.environ["FEATX_TEST_MARKER"]),))


def test_pickled_callable_is_refused_and_never_runs(model, tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    monkeypatch.setenv("FEATX_TEST_MARKER", str(marker))
    torch.save({"state_dict": _state(model), "meta": _Payload()}, tmp_path / "evil.pth")
    with pytest.raises(UserError, match="refused") as refused:
        read_checkpoint(tmp_path / "evil.pth")
    assert not marker.exists()
    assert "Unsupported global" in str(refused.value) and "weights_only" not in str(refused.value)  # no advice


@pytest.mark.parametrize("content", [b"hello", b"", b"PK\x05\x06" + bytes(18)])
def test_not_a_checkpoint(content, tmp_path):
    (tmp_path / "x.pth").write_bytes(content)
    with pytest.raises(UserError, match="is not a PyTorch checkpoint"):
        read_checkpoint(tmp_path / "x.pth")


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A loopback HTTP server over ``tmp_path/www`` and an empty torch hub cache; yields the base URL."""
    www = tmp_path / "www"
    www.mkdir()
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_url_is_downloaded_once_and_hash_checked(model, served, tmp_path):
    www, base = served
    torch.save({"state_dict": _state(model)}, www / "plain.pth")
    sha = hashlib.sha256((www / "plain.pth").read_bytes()).hexdigest()
    (www / "plain.pth").rename(www / f"tsn_20200702-{sha[:8]}.pth")
    url = f"{base}/tsn_20200702-{sha[:8]}.pth"
    cached = resolve_checkpoint(url)
    assert cached.parent == Path(torch.hub.get_dir()) / "checkpoints"
    (www / f"tsn_20200702-{sha[:8]}.pth").unlink()  # a second use must not need the server
    load_checkpoint(model, url)


def test_url_with_wrong_hash_is_refused_and_not_kept(model, served):
    www, base = served
    torch.save({"state_dict": _state(model)}, www / "tsn_20200702-deadbeef.pth")
    with pytest.raises(UserError, match="deadbeef"):
        resolve_checkpoint(f"{base}/tsn_20200702-deadbeef.pth")
    assert not (Path(torch.hub.get_dir()) / "checkpoints" / "tsn_20200702-deadbeef.pth").exists()


def test_unreachable_url_is_a_user_error(served):
    _, base = served
    with pytest.raises(UserError, match="cannot download"):
        resolve_checkpoint(f"{base}/missing-0123abcd.pth")


def test_file_url(model, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    torch.save(_state(model), tmp_path / "local.pth")
    load_checkpoint(model, (tmp_path / "local.pth").as_uri())


def test_sha256_of_a_file_replaced_with_its_old_size_and_mtime_is_new(tmp_path):
    """file_sha256 reads a file once per version; a copy made with cp -p (same size and mtime) is a new version."""
    path = tmp_path / "model.pth"
    path.write_bytes(b"a" * 1000)
    first = file_sha256(path)
    st = path.stat()
    replacement = tmp_path / "new.pth"
    replacement.write_bytes(b"b" * 1000)
    os.utime(replacement, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(replacement, path)
    assert path.stat().st_mtime_ns == st.st_mtime_ns and path.stat().st_size == st.st_size
    assert file_sha256(path) == hashlib.sha256(b"b" * 1000).hexdigest() != first


def test_1x_zoo_meta_loads_weights_only_through_its_allow_list(model, tmp_path):
    """A 1.x zoo file: {"meta", "state_dict"}, numpy arrays and an mmengine ConfigDict in meta, the data
    preprocessor's buffers among the keys (not weights: not loaded, not reported)."""
    from mmengine.config import ConfigDict
    from mmengine.logging import HistoryBuffer

    state = {**_state(model), "data_preprocessor.mean": torch.zeros(3, 1, 1)}
    meta = {"mmengine_version": "0.10.7", "seed": np.int64(0), "counts": np.arange(3.0),
            "cfg": ConfigDict(model=dict(type="Recognizer2D"))}
    torch.save({"meta": meta, "state_dict": state}, tmp_path / "v1.pth")
    loaded = load_checkpoint(model, str(tmp_path / "v1.pth"), dialect="1.x")
    assert loaded.unused == () and loaded.missing == ()
    _, read_meta = read_checkpoint(tmp_path / "v1.pth")
    assert read_meta["cfg"]["model"]["type"] == "Recognizer2D" and read_meta["counts"].tolist() == [0, 1, 2]
    history = HistoryBuffer()
    history.update(1.0)
    torch.save({"meta": {"hub": history}, "state_dict": state}, tmp_path / "hub.pth")
    with pytest.raises(UserError, match="refused for safety.*HistoryBuffer"):  # not allowed: it pickles getattr
        read_checkpoint(tmp_path / "hub.pth")


@pytest.mark.parametrize("saved_by, dialect, says", [
    ("mmcv_version", "1.x", "an MMAction2 0.x checkpoint of another model than this MMAction2 1.x config's"),
    ("mmengine_version", "0.x", "an MMAction2 1.x checkpoint of another model than this MMAction2 0.x config's"),
    ("mmengine_version", "1.x", "is for another model")])
def test_a_checkpoint_of_another_dialects_model_names_the_mismatch(model, saved_by, dialect, says, tmp_path):
    other = build_model({"type": "Recognizer3D", "backbone": {"type": "ResNet3dSlowOnly", "depth": 18}})
    torch.save({"meta": {saved_by: "x"}, "state_dict": _state(other)}, tmp_path / "other.pth")
    with pytest.raises(UserError, match=says):
        load_checkpoint(model, str(tmp_path / "other.pth"), dialect=dialect)
