"""The expressive layer (issue #6): head, gaze, blinks, upper face, emotion.

Real engine and model, real server and CLI subprocesses; statistics against the real captures
in ../shared (skipped when it is missing, failed under CI=true).
"""
from __future__ import annotations

import json
import sys
import threading
import time

import numpy as np
import pytest
from conftest import require_shared
from facecast.client import RuntimeClient, StreamEvent, Subscriber
from facecast.schema import CHANNEL_INDEX, CHANNELS, FrameBatch
from facecast_runtime.engine import Session, bake
from facecast_runtime.errors import SessionError
from facecast_runtime.expressive import (
    EMOTIONS,
    OPTION_SPEC,
    default_options,
    load_keys_file,
    parse_options,
)
from facecast_runtime.expressive import measure as M
from facecast_runtime.server import Server
from helpers import facecast_cli, one_line_error

SR = 16000
MODEL_CHANNELS = None


def _model_cols() -> np.ndarray:
    global MODEL_CHANNELS
    if MODEL_CHANNELS is None:
        from facecast_runtime.model import ModelRunner

        MODEL_CHANNELS = np.array([CHANNEL_INDEX[c] for c in ModelRunner("default").info.channels])
    return MODEL_CHANNELS


def _other_cols() -> np.ndarray:
    return np.array([i for i in range(len(CHANNELS)) if i not in set(_model_cols())])


def _speech(seconds: float, seed: int = 0) -> np.ndarray:
    return M.synthetic_speech(seconds, SR, seed)


@pytest.fixture(scope="module")
def ten_minutes():
    """10 minutes of real speech (../shared) through the engine, with its phrase spans."""
    shared = require_shared("data", "speech").parents[1]
    x, spans = M.speech_corpus(shared, 600.0)
    fb = bake((x, SR))
    return x, spans, fb


@pytest.fixture(scope="module")
def real():
    shared = require_shared("data", "meshes", "facecap_arkit52.glb").parents[2]
    fc = M.load_facecap(shared / "data" / "meshes" / "facecap_arkit52.glb")
    takes = [M.load_livelink(shared / "data" / "livelink" / f"alex_rom_{i}.csv") for i in (3, 4)]
    return fc, takes


# ---------------------------------------------------------------------------------------------
# determinism
# ---------------------------------------------------------------------------------------------
def test_seeded_determinism_and_mouth_untouched():
    x = _speech(8.0, seed=1)
    a = bake((x, SR), options={"seed": 7})
    b = bake((x, SR), options={"seed": 7})
    c = bake((x, SR), options={"seed": 8})
    plain = bake((x, SR), options={"expressive": False})
    assert np.array_equal(a.values, b.values)
    other = _other_cols()
    assert np.abs(a.values[:, other] - c.values[:, other]).max() > 1e-3   # the seed matters
    # neutral: every channel the model drives is exactly the model's output
    mc = _model_cols()
    assert np.array_equal(a.values[:, mc], plain.values[:, mc])
    # expressive off: everything else is zero; on: every non-mouth group moves
    assert not plain.values[:, other].any()
    for ch in ("headYaw", "headPitch", "headRoll", "leftEyeYaw", "rightEyePitch",
               "eyeBlinkLeft", "eyeBlinkRight", "browInnerUp", "eyeLookOutLeft",
               "cheekSquintLeft"):
        assert np.ptp(a.channel(ch)) > 1e-3, ch


def test_chunking_invariance_any_push_sizes_and_rates():
    x = _speech(12.0, seed=2)
    opts = {"seed": 3, "emotion": "happy:0.6", "emotion_keys": [[5.0, "sad", 0.8]]}
    for sr in (16000, 44100):
        xs = x if sr == SR else M.synthetic_speech(12.0, sr, 2)
        ref = bake((xs, sr), options=opts)
        rng = np.random.default_rng(sr)
        s = Session(sample_rate=sr, options=opts)
        parts, i = [], 0
        while i < len(xs):
            n = int(rng.choice([1, 7, 160, 333, 1000, 4410, 20000]))
            parts.append(s.push(xs[i:i + n]))
            i += n
        parts.append(s.flush())
        got = FrameBatch.concat(parts)
        assert len(got) == len(ref) and s.expressive.underruns == 0
        other = _other_cols()
        # what the layer computes is bit-identical; the model's channels within ONNX noise
        assert np.array_equal(got.values[:, other], ref.values[:, other])
        assert np.abs(got.values - ref.values).max() <= 1e-5
    # 30 fps shows the same instants as every second 60 fps frame
    b30 = bake((x, SR), fps=30, options=opts)
    b60 = bake((x, SR), fps=60, options=opts)
    assert np.abs(b30.values - b60.values[::2]).max() <= 1e-5


def test_layers_switch_independently():
    x = _speech(10.0, seed=3)
    full = bake((x, SR))
    no_head = bake((x, SR), options={"enable": {"head": False}})
    half = bake((x, SR), options={"gains": {"head": 0.5, "blinks": 0.0}})
    head = [CHANNEL_INDEX[c] for c in ("headYaw", "headPitch", "headRoll")]
    blinks = [CHANNEL_INDEX[c] for c in ("eyeBlinkLeft", "eyeBlinkRight")]
    brows = [CHANNEL_INDEX[c] for c in ("browInnerUp", "browOuterUpLeft", "browDownLeft")]
    assert not no_head.values[:, head].any()
    # switching the head off leaves the blinks and brows as they were (the resting lids follow
    # the eyes, which counter-rotate the head, so compare the blink events)
    assert np.array_equal(no_head.values[:, brows], full.values[:, brows])
    ev = [M.blink_events(f.channel("eyeBlinkLeft"), f.channel("eyeBlinkRight"), f.fps)["peaks"]
          for f in (full, no_head)]
    assert len(ev[0]) >= 2 and np.array_equal(ev[0], ev[1])
    np.testing.assert_allclose(half.values[:, head], 0.5 * full.values[:, head], atol=1e-6)
    lids = half.values[:, blinks]
    assert lids.max() < 0.3 < full.values[:, blinks].max()   # only the resting lid is left


# ---------------------------------------------------------------------------------------------
# statistics against the real captures
# ---------------------------------------------------------------------------------------------
def test_blink_statistics_of_ten_minutes_match_real_captures(ten_minutes, real):
    x, spans, fb = ten_minutes
    _, takes = real
    gen = M.blink_events(fb.channel("eyeBlinkLeft"), fb.channel("eyeBlinkRight"), fb.fps)
    assert gen["seconds"] >= 599
    lo = hi = None
    widths = []
    for t in takes:
        ev = M.blink_events(t.channel("eyeBlinkLeft"), t.channel("eyeBlinkRight"), t.fps)
        a, b = M.poisson_rate_ci(ev["count"], ev["seconds"])
        lo = a if lo is None else min(lo, a)
        hi = b if hi is None else max(hi, b)
        widths.append(ev["width_s"])
    w = np.concatenate(widths)
    # rate within the real takes' range (95 % intervals), duration within their 10-90 %
    assert lo <= gen["rate_per_min"] <= hi, (gen["rate_per_min"], lo, hi)
    p10, p90 = np.percentile(w, [10, 90])
    med = float(np.median(gen["width_s"]))
    assert p10 <= med <= p90, (med, p10, p90)
    assert gen["lr_corr"] > 0.9
    # not a metronome: inter-blink intervals vary (coefficient of variation > 0.4)
    ibi = gen["ibi_s"]
    assert ibi.std() / ibi.mean() > 0.4 and ibi.min() >= 0.3
    # blinks come at phrase ends more often than by chance
    share = M.pause_blink_share(gen["peaks"] / fb.fps, spans, len(x) / SR)
    assert share["pause_share"] > share["chance_share"] + 0.08, share


def test_head_motion_std_and_spectrum_match_real_capture(ten_minutes, real):
    _, _, fb = ten_minutes
    fc, _ = real
    r = M.head_stats(fc["head"], fc["fps"])
    g = M.head_stats(M.frames_head(fb), fb.fps)
    for axis in range(3):
        ratio = g["std_deg"][axis] / r["std_deg"][axis]
        assert 0.5 <= ratio <= 1.6, (axis, g["std_deg"], r["std_deg"])
        diff = np.abs(np.array(g["bands"][axis]) - np.array(r["bands"][axis]))
        assert diff.max() <= 0.15, (axis, g["bands"][axis], r["bands"][axis])
        assert g["bands"][axis][0] > 0.5 and g["bands"][axis][-1] < 0.05
    assert 0.5 <= g["speed_pct"]["p50"] / r["speed_pct"]["p50"] <= 2.0
    # gaze: eyes move in fixations and saccades on the scale of the real capture
    gz = M.gaze_stats(fb.channel("leftEyeYaw"), fb.channel("leftEyePitch"), fb.fps)
    rz = M.gaze_stats(fc["eyes"][:, 0], fc["eyes"][:, 1], fc["fps"])
    for k in range(2):
        assert 0.4 <= gz["std_deg"][k] / rz["std_deg"][k] <= 2.5
    assert 0.4 <= gz["fixation_s_median"] <= 3.0 and gz["saccades_per_min"] > 5


def test_silence_gives_idle_motion_not_frozen_not_jittering():
    fb = bake((np.zeros(SR * 40, np.float32), SR))
    h = np.degrees(M.frames_head(fb))
    assert h.std(axis=0).max() > 0.3                    # not frozen
    speed = np.linalg.norm(np.diff(h, axis=0), axis=1) * fb.fps
    assert np.percentile(speed, 99) < 25.0               # no jitter
    acc = np.abs(np.diff(h, 2, axis=0)).max() * fb.fps ** 2
    assert acc < 2000.0                                  # deg/s^2, smooth
    for a in range(3):
        assert M.band_fractions(h[:, a], fb.fps)[-1] < 0.05
    blinks = M.blink_events(fb.channel("eyeBlinkLeft"), fb.channel("eyeBlinkRight"), fb.fps)
    assert 3 <= blinks["count"] <= 20                   # 4.5..30 per minute
    gz = M.gaze_stats(fb.channel("leftEyeYaw"), fb.channel("leftEyePitch"), fb.fps)
    assert gz["saccades_per_min"] > 3
    assert np.abs(np.degrees(fb.channel("leftEyeYaw"))).max() < 25
    mouth = np.stack([fb.channel(c) for c in ("jawOpen", "mouthSmileLeft")])
    assert mouth.max() < 0.15


# ---------------------------------------------------------------------------------------------
# emotion
# ---------------------------------------------------------------------------------------------
def _espeak_clip():
    from facecast_runtime.training import evaluate as E
    from facecast_runtime.training import tts

    if not tts.espeak_available():
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    groups = ["[[p'Ap@ b'Ot m'Ak@rouni]], [[b'ab@ m'Ep p'Ip@]].",
              "[[m'am@ b'ab@ p'ap@]], [[b'Im pa:m b'u:m]].",
              "[[m'Ak@ p'Op m'Ab@ b'ap]], [[b'Eb@ m'ap]]."]
    sr, spoken = tts.speak_groups("en-us", groups, 160, 50, 50, 0)
    xs, phones, t0 = [], [], 0.0
    for audio, ph in spoken:
        gap = np.zeros(int(0.4 * sr), np.float32)
        xs += [np.asarray(audio, np.float32), gap]
        phones += [(s + t0, e + t0, tts.espeak_phone_label(lab)) for s, e, lab in ph]
        phones.append((t0 + len(audio) / sr, t0 + len(audio) / sr + 0.4, "sil"))
        t0 += (len(audio) + len(gap)) / sr
    intervals = E.classify(phones, inventory="ipa")
    return np.concatenate(xs), sr, intervals


def test_happy_raises_smile_and_cheeks_and_bilabials_still_close():
    from facecast_runtime.training import evaluate as E

    x, sr, intervals = _espeak_clip()
    neutral = bake((x, sr))
    happy = bake((x, sr), options={"emotion": "happy"})
    for ch in ("mouthSmileLeft", "mouthSmileRight", "cheekSquintLeft", "cheekSquintRight"):
        assert happy.channel(ch).mean() > neutral.channel(ch).mean() + 0.2, ch
    rn = E.bilabial_closure(neutral, intervals)
    rh = E.bilabial_closure(happy, intervals)
    assert rh["n_bilabial"] >= 20
    recall = rh["n_closed"] / rh["n_bilabial"]
    assert recall >= 0.95 and rh["n_closed"] >= rn["n_closed"], (rn, rh)
    # the lip channels are the model's, untouched by the smile
    for ch in ("jawOpen", "mouthClose", "mouthPressLeft", "mouthRollLower", "mouthPucker"):
        assert np.array_equal(happy.channel(ch), neutral.channel(ch)), ch


@pytest.mark.parametrize("name, channels", [
    ("sad", ("browInnerUp", "mouthFrownLeft")),
    ("angry", ("browDownLeft", "noseSneerLeft")),
    ("surprised", ("browOuterUpLeft", "eyeWideLeft")),
    ("disgusted", ("noseSneerLeft", "noseSneerRight")),
    ("afraid", ("eyeWideRight", "mouthStretchLeft")),
])
def test_each_emotion_moves_its_channels(name, channels):
    x = _speech(4.0, seed=4)
    base = bake((x, SR))
    emo = bake((x, SR), options={"emotion": f"{name}:0.8"})
    for ch in channels:
        assert emo.channel(ch).mean() > base.channel(ch).mean() + 0.1, (name, ch)


def test_timed_emotion_keys_blend_smoothly():
    x = _speech(8.0, seed=5)
    fb = bake((x, SR), options={"emotion_keys": [{"time": 3.0, "name": "happy",
                                                  "intensity": 1.0, "transition": 0.5},
                                                 [6.0, "neutral", 0]]})
    base = bake((x, SR))
    d = fb.channel("cheekSquintLeft") - base.channel("cheekSquintLeft")
    t = fb.times
    assert np.abs(d[t < 3.0]).max() == 0.0
    assert d[(t > 3.6) & (t < 6.0)].min() > 0.4
    assert np.abs(d[t > 6.7]).max() < 1e-6
    assert np.abs(np.diff(d)).max() < 0.06           # blended, no jump


def test_auto_emotion_follows_arousal():
    quiet = _speech(20.0, seed=6)
    x = np.concatenate([quiet * 0.3, quiet * 1.5])
    on = bake((x, SR), options={"auto_emotion": True})
    off = bake((x, SR))
    t = on.times
    wide = on.channel("eyeWideLeft") - off.channel("eyeWideLeft")
    assert wide[t > 21].mean() > wide[t < 19].mean() + 0.01


# ---------------------------------------------------------------------------------------------
# options
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("opts, match", [
    ({"emotion": "joyful"}, ("unknown emotion 'joyful'; allowed: neutral, happy, sad, angry, "
                             "surprised, disgusted, afraid")),
    ({"emotion": "happy:2"}, "intensity must be between 0 and 1"),
    ({"emotion": "happy:lots"}, "not a number"),
    ({"emotion": {"name": "sad", "color": 1}}, "unknown emotion field 'color'"),
    ({"emotion_keys": [[1.0, "grumpy", 0.5]]}, "emotion key 0: unknown emotion 'grumpy'"),
    ({"gains": {"hair": 1.0}}, "unknown layer 'hair'"),
    ({"gains": {"head": -1}}, "between 0 and 3"),
    ({"enable": {"gaze": "no"}}, "true or false"),
    ({"seed": -1}, "seed"),
    ({"seed": True}, "seed"),
    ({"wobble": 1}, "unknown session option 'wobble'"),
])
def test_bad_options_are_refused_with_a_reason(opts, match):
    with pytest.raises(SessionError, match=match.replace("(", r"\(")):
        Session(options=opts)


def test_options_spec_defaults_and_keys_files(tmp_path):
    d = default_options()
    assert set(d) == set(OPTION_SPEC) and d["expressive"] is True and d["seed"] == 0
    assert parse_options(d).enabled
    json.dumps(OPTION_SPEC)                              # plain data for UIs
    (tmp_path / "k.json").write_text(json.dumps([{"time": 2, "name": "Happy", "intensity": .5},
                                                 [1, "sad", 0.3, 0.2]]))
    keys = load_keys_file(tmp_path / "k.json")
    assert [k["name"] for k in keys] == ["sad", "happy"] and keys[0]["transition"] == 0.2
    (tmp_path / "k.csv").write_text("time,name,intensity\n# comment\n0.5,angry,0.4\n3,neutral\n")
    keys = load_keys_file(tmp_path / "k.csv")
    assert keys == [{"time": 0.5, "name": "angry", "intensity": 0.4},
                    {"time": 3.0, "name": "neutral", "intensity": 1.0}]
    (tmp_path / "bad.csv").write_text("1,happy,x\n")
    with pytest.raises(SessionError, match="bad.csv:1"):
        load_keys_file(tmp_path / "bad.csv")
    s = Session(options={"expressive": False})
    with pytest.raises(SessionError, match="expressive layer is off"):
        s.set_options({"emotion": "happy"})


# ---------------------------------------------------------------------------------------------
# wire and CLI
# ---------------------------------------------------------------------------------------------
def test_wire_set_emotion_mid_stream():
    x = _speech(6.0, seed=7)
    with Server("127.0.0.1", 0, 0) as srv, RuntimeClient(srv.control_endpoint) as rc:
        sub = Subscriber(srv.frame_endpoint, ["amy"], events=True)
        frames: dict[int, object] = {}
        done = threading.Event()

        def listen() -> None:
            while not done.is_set():
                try:
                    m = sub.recv_message(timeout=0.2)
                except TimeoutError:
                    continue
                if isinstance(m, StreamEvent):
                    if m.event == "end":
                        done.set()
                else:
                    frames[m.index] = m

        deadline = time.monotonic() + 3
        while "face.amy" not in rc.stats().get("subscriptions", []) and \
                time.monotonic() < deadline:
            time.sleep(0.02)
        th = threading.Thread(target=listen, daemon=True)
        th.start()
        s = rc.open("amy", SR, options={"seed": 5})
        with pytest.raises(Exception) as ei:
            s.options(emotion="ecstatic")
        assert getattr(ei.value, "code", "") == "bad_field"
        assert "allowed: neutral, happy" in str(ei.value)
        for i in range(0, 3 * SR, 800):                  # 3 s in 50 ms chunks
            s.push(x[i:i + 800])
        rep = s.set_emotion("happy", 1.0, time=3.5, transition=0.3)
        assert rep["options"]["gains"]["head"] == 1.0
        for i in range(3 * SR, len(x), 800):
            s.push(x[i:i + 800])
        s.close()
        done.wait(5)
        sub.close()
    assert len(frames) == 360
    smile = np.array([frames[i]["mouthSmileLeft"] for i in range(360)])
    t = np.arange(360) / 60
    ref = bake((x, SR), options={"seed": 5, "emotion_keys": [[3.5, "happy", 1.0, 0.3]]})
    np.testing.assert_allclose(smile, ref.channel("mouthSmileLeft"), atol=1e-5)
    # happy 1.0 from 3.5 s (0.3 s blend): the smile rises well above anything before it
    assert smile[t < 3.5].max() < 0.3 and smile[t > 3.9].min() > smile[t < 3.5].max() + 0.3


def test_server_default_session_options_and_expressive_off():
    x = _speech(2.0, seed=9)
    with Server("127.0.0.1", 0, 0, session_options={"emotion": "happy", "seed": 2}) as srv, \
            RuntimeClient(srv.control_endpoint) as rc:
        s = rc.open("bob", SR)                              # server defaults
        s.push(x)
        rep = s.options(transition=0.2)
        assert rep["options"]["seed"] == 2 and rep["options"]["emotion"]["name"] == "happy"
        s.close()
        off = rc.open("cat", SR, options={"expressive": False})   # session overrides
        with pytest.raises(Exception) as ei:
            off.options(emotion="sad")
        assert getattr(ei.value, "code", "") == "session_error"
        off.close()
        with pytest.raises(Exception) as ei:
            rc.open("dan", SR, options={"emotion": "giddy"})
        assert getattr(ei.value, "code", "") == "session_error"
        assert "allowed: neutral" in str(ei.value)


def test_cli_bake_with_emotion_flags(tmp_path):
    import soundfile as sf

    x = _speech(3.0, seed=8)
    wav = tmp_path / "v.wav"
    sf.write(wav, x, SR, subtype="FLOAT")
    keys = tmp_path / "keys.csv"
    keys.write_text("time,name,intensity\n1.0,surprised,0.9\n")
    out = tmp_path / "o.json"
    p = facecast_cli("bake", str(wav), "-o", str(out), "--seed", "4", "--emotion", "happy:0.5",
                     "--emotion-keys", str(keys), "--no-gaze", "--head-gain", "0.5")
    assert p.returncode == 0, p.stderr
    from facecast.formats import read

    got = read(out)
    ref = bake((x, SR), options={"seed": 4, "emotion": "happy:0.5",
                                 "emotion_keys": [[1.0, "surprised", 0.9]],
                                 "enable": {"gaze": False}, "gains": {"head": 0.5}})
    np.testing.assert_allclose(got.values, ref.values, atol=1e-4)
    assert not got.channel("leftEyeYaw").any()
    line = one_line_error(facecast_cli("bake", str(wav), "-o", str(out), "--emotion", "meh"))
    assert "unknown emotion 'meh'; allowed: neutral, happy" in line
    line = one_line_error(facecast_cli("bake", str(wav), "-o", str(out), "--emotion-keys",
                                       str(tmp_path / "none.csv")))
    assert "none.csv" in line
    p = facecast_cli("bake", str(wav), "-o", str(out), "--no-expressive")
    assert p.returncode == 0 and not read(out).channel("headYaw").any()


def test_emotion_names_are_the_issue_set():
    assert {"neutral", "happy", "sad", "angry", "surprised", "disgusted", "afraid"} == \
        set(EMOTIONS)
    assert sys.modules["facecast_runtime.expressive"].INTERNAL_FPS == 60
