"""Streaming engine, model contract and runner, with the real shipped model."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from facecast.schema import CHANNELS, MOUTH_CHANNELS, FrameBatch
from facecast_runtime.engine import Session, bake, bake_iter
from facecast_runtime.errors import AudioError, ModelError, SessionError
from facecast_runtime.model import ModelRunner, resolve_model, shipped_models


def speechlike(seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    """Voiced bursts with pauses (harmonics + noise, syllable-rate envelope)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    env = np.clip(np.sin(2 * np.pi * 3.5 * t), 0, None) * (np.sin(2 * np.pi * 0.3 * t) > -0.3)
    x = 0.2 * voiced * env + 0.01 * rng.standard_normal(len(t))
    return x.astype(np.float32)


def stream_in_chunks(x: np.ndarray, sr: int, rng: np.random.Generator, fps: int = 60,
                     max_chunk_s: float = 5.0) -> FrameBatch:
    s = Session(fps=fps, sample_rate=sr)
    parts, i = [], 0
    while i < len(x):
        kind = rng.integers(0, 4)
        if kind == 0:
            n = 1
        elif kind == 1:
            n = int(rng.integers(1, 400))
        else:
            n = int(rng.integers(1, int(max_chunk_s * sr) + 1))
        parts.append(s.push(x[i : i + n]))
        i += n
    parts.append(s.flush())
    return FrameBatch.concat(parts)


def test_shipped_variants_have_two_lookaheads():
    models = shipped_models()
    assert {"default", "la120"} <= set(models)
    la = {name: ModelRunner(name).info.lookahead_ms for name in ("default", "la120")}
    assert la["default"] == pytest.approx(37.5) and la["la120"] == pytest.approx(117.5)
    x = speechlike(4.0, 16000)
    a, b = bake((x, 16000), model="default"), bake((x, 16000), model="la120")
    assert len(a) == len(b) == 240
    # two real models, both follow the speech: their jaw curves agree but are not identical
    ja, jb = a.channel("jawOpen"), b.channel("jawOpen")
    assert np.abs(ja - jb).max() > 1e-3 and np.corrcoef(ja, jb)[0, 1] > 0.5


def test_streaming_exact_with_the_long_lookahead_variant():
    x = speechlike(6.0, 22050, seed=5)
    offline = bake((x, 22050), model="la120")
    s = Session(model="la120", sample_rate=22050)
    parts = [s.push(x[i : i + 997]) for i in range(0, len(x), 997)] + [s.flush()]
    streamed = FrameBatch.concat(parts)
    assert len(streamed) == len(offline) == 360
    assert np.abs(streamed.values - offline.values).max() <= 1e-5


def test_shipped_default_model_follows_contract():
    models = shipped_models()
    assert "default" in models
    info = ModelRunner("default").info
    assert info.sample_rate == 16000
    assert info.lookahead_ms <= 100.0
    assert set(info.channels) <= set(CHANNELS)
    assert "jawOpen" in info.channels and "mouthClose" in info.channels
    assert models["default"].stat().st_size <= 5 * 1024 * 1024


@pytest.mark.parametrize("sr", [16000, 44100, 8000])
def test_bake_equals_stream_for_any_chunking(sr):
    x = speechlike(12.0, sr, seed=sr)
    offline = bake((x, sr))
    assert len(offline) == int(np.ceil(len(x) * 60 / sr))
    for seed in range(2):
        streamed = stream_in_chunks(x, sr, np.random.default_rng(seed))
        assert len(streamed) == len(offline)
        assert streamed.start_index == 0
        np.testing.assert_array_equal(streamed.indices, offline.indices)
        assert np.abs(streamed.values - offline.values).max() <= 1e-5


def test_fps_30_and_timestamps_from_audio_clock():
    x = speechlike(3.0, 16000)
    b30 = bake((x, 16000), fps=30)
    b60 = bake((x, 16000), fps=60)
    assert len(b30) == 90 and len(b60) == 180
    np.testing.assert_allclose(b30.times, np.arange(90) / 30)
    # a 30 fps frame shows the same instant as the 60 fps frame with twice its index
    assert np.abs(b30.values - b60.values[::2]).max() <= 1e-5


def test_frames_are_in_range_and_mouth_moves_with_speech():
    x = speechlike(6.0, 16000)
    fb = bake((x, 16000))
    assert np.isfinite(fb.values).all()
    assert fb.blendshapes.min() >= 0.0 and fb.blendshapes.max() <= 1.0
    jaw = fb.channel("jawOpen")
    assert jaw.std() > 0.01, "jaw does not move on speech-like input"


def test_silence_gives_a_resting_mouth():
    fb = bake((np.zeros(16000 * 3, np.float32), 16000))
    mouth = np.stack([fb.channel(c) for c in MOUTH_CHANNELS], axis=1)
    assert mouth.max() < 0.15


def test_memory_is_bounded_over_a_long_stream():
    s = Session(sample_rate=16000)
    chunk = speechlike(1.0, 16000)
    sizes = []
    for i in range(120):
        s.push(chunk)
        sizes.append(len(s._delayed) + len(s.features.buf) + len(s.resampler.__dict__))
    assert max(sizes[60:]) <= max(sizes[:60]) + 2
    assert s.frames_emitted >= 119 * 60


def test_bake_iter_yields_consecutive_batches(tmp_path):
    import soundfile as sf

    x = speechlike(5.0, 22050)
    p = tmp_path / "a.wav"
    sf.write(p, x, 22050)
    batches = list(bake_iter(p, block_seconds=1.0))
    assert len(batches) >= 5
    whole = FrameBatch.concat(batches)
    assert len(whole) == 300
    decoded, sr = sf.read(p, dtype="float32")
    assert sr == 22050
    assert np.abs(whole.values - bake((decoded, sr)).values).max() <= 1e-5


@pytest.mark.parametrize("bad, match", [
    (np.array([0.0, np.nan, 0.1], np.float32), "NaN or Inf"),
    (np.array([0.0, np.inf], np.float64), "NaN or Inf"),
    (np.array(["a", "b"]), "dtype"),
    (np.zeros((4, 2, 2), np.float32), "1-D"),
    (np.zeros((10, 65), np.float32), "channels"),
])
def test_bad_chunks_are_refused_with_a_reason(bad, match):
    s = Session()
    with pytest.raises(AudioError, match=match):
        s.push(bad)
    # the session stays usable
    assert len(s.push(np.zeros(1600, np.float32))) >= 0


def test_zero_length_chunks_and_eight_channels_and_int_samples():
    s = Session(sample_rate=48000)
    assert len(s.push(np.zeros(0, np.float32))) == 0
    x8 = (np.random.default_rng(0).standard_normal((48000, 8)) * 3000).astype(np.int16)
    s.push(x8)
    out = s.flush()
    assert len(out) + 0 <= 60 and s.frames_emitted == 60


def test_huge_chunk_is_refused():
    s = Session()
    with pytest.raises(SessionError, match="exceeds the limit"):
        s.push(np.zeros(48_000 * 600 + 1, np.float32))


@pytest.mark.parametrize("rate", [1, 10_000_000, 0, -16000, 16000.5])
def test_bad_sample_rates(rate):
    with pytest.raises(AudioError, match="sample rate"):
        Session(sample_rate=rate)


def test_bad_fps_and_options_and_push_after_flush():
    with pytest.raises(SessionError, match="fps"):
        Session(fps=25)
    with pytest.raises(SessionError, match="unknown session option"):
        Session(options={"wobble": 1})
    s = Session()
    s.flush()
    with pytest.raises(SessionError, match="finished"):
        s.push(np.zeros(10, np.float32))


def test_unknown_model_name_and_missing_file(tmp_path):
    with pytest.raises(ModelError, match="no shipped model named 'nope'"):
        Session(model="nope")
    with pytest.raises(ModelError, match="does not exist"):
        Session(model=str(tmp_path / "x.onnx"))


def _rewrite(tmp_path, edit):
    onnx = pytest.importorskip("onnx")
    m = onnx.load(str(resolve_model("default")))
    meta = {p.key: p.value for p in m.metadata_props}
    edit(meta)
    del m.metadata_props[:]
    for k, v in meta.items():
        p = m.metadata_props.add()
        p.key, p.value = k, v
    path = tmp_path / "edited.onnx"
    onnx.save(m, str(path))
    return path


@pytest.mark.parametrize("edit, match", [
    (lambda m: m.pop("sample_rate"), "lacks sample_rate"),
    (lambda m: m.pop("channels"), "lacks channels"),
    (lambda m: m.update({"facecast.contract": "99"}), "contract version"),
    (lambda m: m.update({"channels": json.dumps(["jawOpen", "mouthSmile"] + ["x"] * 27)}),
     "not a facecast channel"),
    (lambda m: m.update({"hop": "999"}), "disagrees"),
    (lambda m: m.update({"sample_rate": "abc"}), "not an integer"),
    (lambda m: m.update({"schema_version": "42"}), "newer than this runtime"),
    (lambda m: m.update({"feature": json.dumps({"type": "mfcc"})}), "unsupported type"),
])
def test_model_with_bad_metadata_is_refused(tmp_path, edit, match):
    path = _rewrite(tmp_path, edit)
    with pytest.raises(ModelError, match=match):
        ModelRunner(str(path))


def test_non_onnx_file_is_refused(tmp_path):
    p = tmp_path / "junk.onnx"
    p.write_bytes(b"not a model at all")
    with pytest.raises(ModelError, match="cannot load ONNX model"):
        ModelRunner(str(p))


def test_runner_state_makes_streaming_exact():
    r1, r2 = ModelRunner("default"), ModelRunner("default")
    feats = np.random.default_rng(0).standard_normal((300, r1.info.feature.dim)).astype(
        np.float32) * 3 - 8
    whole = r1.run(feats)
    parts = np.concatenate([r2.run(feats[a:b]) for a, b in
                            [(0, 1), (1, 50), (50, 51), (51, 300)]])
    assert np.abs(whole - parts).max() <= 1e-5


def test_engine_does_not_import_torch():
    code = ("import sys, numpy as np; from facecast_runtime.engine import bake; "
            "bake((np.zeros(16000, np.float32), 16000)); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _batch_one_copy(tmp_path):
    """The shipped default model with its batch axis fixed to 1, as models exported before the
    dynamic batch axis declare it."""
    onnx = pytest.importorskip("onnx")
    m = onnx.load(str(resolve_model("default")))
    for v in list(m.graph.input) + list(m.graph.output):
        d = v.type.tensor_type.shape.dim[0]
        d.ClearField("dim_param")
        d.dim_value = 1
    path = tmp_path / "batch1.onnx"
    onnx.save(m, str(path))
    return path


def test_shipped_models_declare_a_dynamic_batch_axis():
    for name in shipped_models():
        assert ModelRunner(name).supports_batch, name


@pytest.mark.parametrize("model", ["default", "la120", "batch1"])
def test_run_batch_is_bitwise_equal_to_running_each_alone(model, tmp_path):
    path = str(_batch_one_copy(tmp_path)) if model == "batch1" else model
    n = 9
    batched = [ModelRunner(path) for _ in range(n)]
    alone = [ModelRunner(path) for _ in range(n)]
    assert batched[0].supports_batch == (model != "batch1")
    dim = batched[0].info.feature.dim
    rng = np.random.default_rng(4)
    feats = rng.standard_normal((n, 400, dim)).astype(np.float32) * 3 - 7
    pos = 0
    for T in [1, 2, 3, 2, 2, 57, 2, 1, 0, 2, 30]:
        # each runner has its own history: a few of them step alone first
        for i in range(0, n, 4):
            y = batched[i].run(feats[i, pos:pos + 1])
            assert np.array_equal(y, alone[i].run(feats[i, pos:pos + 1]))
        ys = ModelRunner.run_batch(batched, [feats[i, pos + 1:pos + 1 + T] for i in range(n)])
        for i in range(n):
            want = alone[i].run(feats[i, pos + 1:pos + 1 + T])
            assert ys[i].shape == want.shape and ys[i].tobytes() == want.tobytes()
        pos += T + 1
    for a, b in zip(batched, alone):
        assert all(a.state[s].tobytes() == b.state[s].tobytes() for s in a.info.state_names)
    if batched[0].supports_batch:
        with pytest.raises(ValueError, match="equal length"):
            ModelRunner.run_batch(batched[:2], [feats[0, :2], feats[1, :3]])


def test_prepared_pushes_batched_across_sessions_equal_plain_pushes(tmp_path):
    """prepare_push / run_model_steps / finish_push for sessions of mixed models, rates and
    chunk sizes give bitwise the frames of plain pushes; an error stays in its session."""
    from facecast_runtime.engine import run_model_steps

    SR = 16000
    old = str(_batch_one_copy(tmp_path))
    specs = [("default", SR, 320, {"seed": 1}), ("default", SR, 320, {"seed": 2}),
             ("default", SR, 480, None), ("la120", SR, 320, None), (old, SR, 320, None),
             (old, SR, 320, None), ("default", 44100, 882, {"expressive": False})]
    x = {sr: speechlike(1.2, sr, seed=sr) for sr in (SR, 44100)}
    phased = [Session(m, sample_rate=sr, options=o) for m, sr, _, o in specs]
    plain = [Session(m, sample_rate=sr, options=o) for m, sr, _, o in specs]
    out_p: list[list] = [[] for _ in specs]
    out_q: list[list] = [[] for _ in specs]
    for k in range(50):
        prepared = []
        for i, (s, (_, sr, chunk, _)) in enumerate(zip(phased, specs)):
            piece = x[sr][k * chunk:(k + 1) * chunk]
            out_q[i].append(plain[i].push(piece))
            prepared.append(s.prepare_push(piece))
        with pytest.raises(SessionError, match="not been finished"):
            phased[0].prepare_push(x[SR][:10])
        run_model_steps(prepared)
        for i, (s, p) in enumerate(zip(phased, prepared)):
            out_p[i].append(s.finish_push(p))
    for i, s in enumerate(phased):
        out_p[i].append(s.flush())
        out_q[i].append(plain[i].flush())
        a, b = FrameBatch.concat(out_p[i]), FrameBatch.concat(out_q[i])
        assert a.start_index == b.start_index and a.values.tobytes() == b.values.tobytes()

    # a failing model step is reported by that session's finish_push only
    s1, s2 = Session(), Session()
    p1, p2 = s1.prepare_push(x[SR][:3200]), s2.prepare_push(x[SR][:3200])
    p1.features = p1.features[:, :10]  # wrong feature width: the model call fails
    run_model_steps([p1, p2])
    assert p1.error is not None and p2.output is not None
    with pytest.raises(Exception):
        s1.finish_push(p1)
    assert len(s2.finish_push(p2)) > 0
