"""Training pipeline smoke test: data prep -> train -> ONNX export -> runtime loads it."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import require_shared

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from facecast_runtime.engine import bake  # noqa: E402
from facecast_runtime.model import ModelRunner  # noqa: E402
from facecast_runtime.training.train import DEFAULT_CONFIG, load_config, train  # noqa: E402

SMOKE = DEFAULT_CONFIG.with_name("smoke.toml")


def _cfg(tmp_path, extra=()):
    shared = require_shared()
    # the smoke run trains on FACEGOOD only, so it does not depend on a generated corpus
    return load_config(SMOKE, [f"data.shared={shared}", f"data.tts_dir={tmp_path}/no_tts",
                               *extra])


def test_smoke_training_exports_a_contract_model_deterministically(tmp_path):
    logs: list[str] = []
    out1, out2 = tmp_path / "a.onnx", tmp_path / "b.onnx"
    meta = train(_cfg(tmp_path), out1, "smoke", sink=logs.append)
    train(_cfg(tmp_path), out2, "smoke", sink=logs.append)
    assert any("exported" in line for line in logs)
    assert meta["model_name"] == "smoke" and meta["training_data"].startswith("sha256:")
    assert out1.stat().st_size < 5 * 1024 * 1024
    info = ModelRunner(str(out1)).info
    assert info.lookahead_frames == 1 and info.lookahead_ms == pytest.approx(37.5)
    x = (np.random.default_rng(0).standard_normal(16000 * 2) * 0.1).astype(np.float32)
    a = bake((x, 16000), model=str(out1))
    b = bake((x, 16000), model=str(out2))
    assert np.array_equal(a.values, b.values), "same seed and data must give the same model"
    assert np.isfinite(a.values).all()


def test_lookahead_override_changes_the_contract(tmp_path):
    out = tmp_path / "la.onnx"
    meta = train(_cfg(tmp_path, ["lookahead_frames=5", "train.steps=5"]), out, "la",
                 sink=lambda m: None)
    assert meta["lookahead_frames"] == "5"
    assert ModelRunner(str(out)).info.lookahead_ms == pytest.approx(117.5)


def test_spectral_augmentation_reaches_training(tmp_path):
    x = (np.random.default_rng(1).standard_normal(16000) * 0.1).astype(np.float32)
    outs = []
    for p in (0, 1):
        out = tmp_path / f"spec{p}.onnx"
        train(_cfg(tmp_path, ["train.steps=4", f"train.spectral.p={p}"]), out, "s",
              sink=lambda m: None)
        outs.append(bake((x, 16000), model=str(out)).values)
    assert np.isfinite(outs[1]).all()
    assert not np.array_equal(outs[0], outs[1]), "re-voiced crops must change what is learned"


def test_loss_kind_is_checked_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="train.opening_loss must be 'l1' or 'l2'"):
        train(_cfg(tmp_path, ["train.opening_loss=huber"]), tmp_path / "x.onnx", "x",
              sink=lambda m: None)
    assert not (tmp_path / "x.onnx").exists()


def test_reexport_of_a_fresh_training_is_exact(tmp_path):
    """The same round trip on a model trained here, so it runs where no shipped .pt exists."""
    from facecast_runtime.training.export import compare_outputs, onnx_metadata, reexport

    first = tmp_path / "a.onnx"
    train(_cfg(tmp_path, ["train.steps=4"]), first, "a", sink=lambda m: None)
    out = tmp_path / "b.onnx"
    reexport(first.with_suffix(".pt"), out, metadata_from=first, check=False)
    assert list(onnx_metadata(out).items()) == list(onnx_metadata(first).items())
    assert compare_outputs(first, out, seconds=2.0) == 0
    assert ModelRunner(str(out)).supports_batch and ModelRunner(str(first)).supports_batch


def test_reexport_refuses_to_replace_a_different_model(tmp_path):
    from facecast_runtime.training.export import main as export_main
    from facecast_runtime.training.export import reexport

    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    train(_cfg(tmp_path, ["train.steps=4"]), a, "a", sink=lambda m: None)
    train(_cfg(tmp_path, ["train.steps=4", "seed=1"]), b, "b", sink=lambda m: None)
    before = b.read_bytes()
    with pytest.raises(ValueError, match="re-export differs from the existing file"):
        reexport(a.with_suffix(".pt"), b)
    assert b.read_bytes() == before, "the existing model must be left as it was"
    assert export_main([str(a.with_suffix(".pt")), "-o", str(b)]) == 1
    assert b.read_bytes() == before
