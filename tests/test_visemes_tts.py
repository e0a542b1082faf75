"""Phone -> ARKit mouth targets, the TTS corpus generator and audio augmentation."""
from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import soundfile as sf

from facecast.schema import MOUTH_CHANNELS
from facecast_runtime.training import augment as aug
from facecast_runtime.training import tts
from facecast_runtime.training.visemes import (
    PHONE_CLASSES, UNKNOWN_LABELS, Phone, normalize_label, normalize_phones,
    opening, phone_class, phones_to_targets,
)

COL = {name: i for i, name in enumerate(MOUTH_CHANNELS)}

# "sil  m a p a  b u  sil  f ɔ  m i  sil" with a long pause in the middle
PHONES = [
    (0.00, 0.40, "sil"), (0.40, 0.47, "m"), (0.47, 0.62, "a"), (0.62, 0.70, "p"),
    (0.70, 0.86, "a"), (0.86, 0.93, "b"), (0.93, 1.08, "u"), (1.08, 1.90, "sil"),
    (1.90, 1.99, "f"), (1.99, 2.17, "ɔ"), (2.17, 2.23, "m"), (2.23, 2.36, "i"),
    (2.36, 3.00, "sil"),
]


def _frames(phones, fps):
    n = int(round(phones[-1][1] * fps))
    return n, np.arange(n) / fps


def _inside(times, s, e):
    return (times >= s) & (times < e)


@pytest.mark.parametrize("fps", [30, 60])
def test_targets_shape_dtype_range_deterministic(fps):
    n, _ = _frames(PHONES, fps)
    t1 = phones_to_targets(PHONES, fps, n)
    t2 = phones_to_targets([Phone(*p) for p in PHONES], fps, n)
    assert t1.shape == (n, len(MOUTH_CHANNELS))
    assert t1.dtype == np.float32
    assert np.isfinite(t1).all()
    assert t1.min() >= 0.0 and t1.max() <= 1.0
    assert np.array_equal(t1, t2)
    # more frames than phones: the tail is silence (rest); fewer: a prefix
    longer = phones_to_targets(PHONES, fps, n + 30)
    assert np.allclose(longer[:n], t1) and np.all(longer[n + 6:] == 0.0)
    assert phones_to_targets(PHONES, fps, 0).shape == (0, len(MOUTH_CHANNELS))


@pytest.mark.parametrize("fps", [30, 60])
def test_bilabials_close_and_open_vowels_open(fps):
    n, times = _frames(PHONES, fps)
    t = phones_to_targets(PHONES, fps, n)
    o = opening(t)
    o_open = max(o[_inside(times, s, e)].max() for s, e, lab in PHONES
                 if phone_class(lab) == "open_vowel")
    assert o_open > 0.5
    for s, e, lab in PHONES:
        m = _inside(times, s, e)
        if phone_class(lab) == "bilabial":
            assert m.any()
            assert o[m].min() <= 0.05 * o_open, (lab, s, o[m].min())
            # the lips meet: mouthClose ~ jawOpen, lower lip not pulled down
            k = np.argmin(o[m])
            row = t[m][k]
            assert abs(row[COL["mouthClose"]] - row[COL["jawOpen"]]) < 0.02
            assert row[COL["mouthPressLeft"]] > 0.1
        if phone_class(lab) == "open_vowel":
            assert o[m].max() > 0.5  # no false closure in an open vowel
        if phone_class(lab) == "rounded_vowel":
            assert t[m, COL["mouthPucker"]].max() > 0.3 or t[m, COL["mouthFunnel"]].max() > 0.3
        if phone_class(lab) == "labiodental":
            assert t[m, COL["mouthRollLower"]].max() > 0.3


def test_short_bilabial_still_closes_at_30fps():
    phones = [(0, 0.2, "sil"), (0.2, 0.4, "a"), (0.4, 0.415, "p"), (0.415, 0.6, "a"),
              (0.6, 1.0, "sil")]
    t = phones_to_targets(phones, 30, 30)
    o = opening(t)
    assert o.max() > 0.4
    centre = int(round(0.4075 * 30))
    assert o[centre] <= 0.05 * o.max()


@pytest.mark.parametrize("fps", [30, 60])
def test_silence_reaches_rest_within_100ms(fps):
    n, times = _frames(PHONES, fps)
    t = phones_to_targets(PHONES, fps, n)
    for s, e, lab in PHONES:
        if lab != "sil" or e - s < 0.3:
            continue
        if s > 0:  # speech ended at s: rest from s + 100 ms until shortly before speech
            m = (times >= s + 0.100) & (times <= e - 0.08)
        else:
            m = times <= e - 0.08
        assert m.any()
        assert np.abs(t[m]).max() <= 0.01, (s, e, np.abs(t[m]).max())
        assert np.abs(opening(t[m])).max() <= 0.01


def test_label_normalisation_across_inventories():
    # "map" in espeak-ng mnemonics, festival radio, ARPAbet (cmudict / pocketsphinx), IPA, mrpa
    spellings = {
        "espeak": ["m", "a", "p"], "radio": ["m", "ae", "p"], "arpabet": ["M", "AE1", "P"],
        "ipa": ["m", "æ", "p"], "mrpa": ["m", "a", "p"],
    }
    for inv, labels in spellings.items():
        norm = [normalize_label(x, inv) for x in labels]
        assert norm[0] == "m" and norm[2] == "p", (inv, norm)
        assert [phone_class(x, inv) for x in labels] == ["bilabial", "open_vowel", "bilabial"]
        assert [phone_class(x) for x in norm] == ["bilabial", "open_vowel", "bilabial"]
    # radio / ARPAbet agree label for label
    assert [normalize_label(x, "radio") for x in ["m", "ae", "p"]] == \
        [normalize_label(x, "arpabet") for x in ["M", "AE1", "P"]]
    # ambiguous letters follow the inventory given
    assert normalize_label("S", "espeak") == "ʃ" and normalize_label("S", "arpabet") == "s"
    assert normalize_label("y", "radio") == "j" and phone_class("y", "ipa") == "rounded_vowel"
    # silences of every inventory
    for lab, inv in [("pau", "radio"), ("SIL", "arpabet"), ("_:", "espeak"), ("", "ipa"),
                     ("#", "mrpa"), ("h#", "radio")]:
        assert normalize_label(lab, inv) == "sil" and phone_class(lab, inv) == "silence"
    # IPA clean-up: stress, length, diacritics, tone and language-switch marks
    assert normalize_label("ˈɔ̃ː", "ipa") == "ɔ"
    assert normalize_label("ɯᵝ", "ipa") == "ɯ"
    assert normalize_label("(en)", "ipa") == ""
    assert phone_class("aɪ") == "open_vowel" and phone_class("oʊ") == "rounded_vowel"
    assert phone_class("f") == "labiodental" and phone_class("v", "arpabet") == "labiodental"
    assert phone_class("β") == "other_consonant"  # a bilabial fricative does not close
    assert set(PHONE_CLASSES) >= {"silence", "bilabial", "labiodental", "open_vowel",
                                  "rounded_vowel", "other_vowel", "other_consonant"}


def test_unknown_labels_do_not_crash_and_are_counted():
    UNKNOWN_LABELS.clear()
    assert phone_class("☃") == "neutral"
    assert UNKNOWN_LABELS["☃"] == 1
    t = phones_to_targets([(0, 0.1, "sil"), (0.1, 0.3, "☃"), (0.3, 0.5, "a")], 60, 30)
    assert np.isfinite(t).all() and t[:, COL["jawOpen"]].max() > 0.1
    merged = normalize_phones([(0, 0.1, "t"), (0.1, 0.15, "ʲ"), (0.15, 0.3, "a")], "ipa")
    assert [p.label for p in merged] == ["t", "a"] and merged[0].end == 0.15


# ----------------------------------------------------------------------------------------------
# corpus generation
# ----------------------------------------------------------------------------------------------

needs_espeak = pytest.mark.skipif(
    not tts.espeak_available(),
    reason="espeak-ng library (libespeak-ng.so.1) is not installed; apt-get install espeak-ng")


def _speech_rms(x, sr, phones):
    m = np.zeros(len(x), bool)
    for s, e, lab in phones:
        if lab != "sil":
            m[int(round(s * sr)):int(round(e * sr))] = True
    return float(np.sqrt(np.mean(x[m] ** 2)))


def _check_entry(entry, folder):
    x, sr = sf.read(str(folder / f"{entry['id']}.wav"), dtype="float64")
    assert sr == 16000 and x.ndim == 1
    assert abs(len(x) / sr - entry["duration"]) < 1e-3
    phones = entry["phones"]
    assert phones[0][0] == 0.0
    assert abs(phones[-1][1] - entry["duration"]) < 1e-3
    for (s0, e0, _), (s1, e1, _) in zip(phones, phones[1:]):
        assert s0 < e0 and abs(e0 - s1) < 1e-6  # monotonic and contiguous
    ref = _speech_rms(x, sr, phones)
    quiet = 0
    for s, e, lab in phones:
        if lab == "sil" and e - s >= 0.06:
            seg = x[int(round((s + 0.01) * sr)):int(round((e - 0.01) * sr))]
            if len(seg):
                db = 20 * math.log10(math.sqrt(float(np.mean(seg ** 2))) / ref + 1e-12)
                assert db < -30.0, (entry["id"], s, e, db)
                quiet += 1
    assert quiet >= 2  # leading / trailing / inserted pauses
    classes = {phone_class(lab) for _, _, lab in phones}
    assert "bilabial" in classes and "silence" in classes
    # targets straight from the manifest phones
    n = int(entry["duration"] * 30)
    t = phones_to_targets(phones, 30, n)
    assert t.shape == (n, len(MOUTH_CHANNELS)) and 0 <= t.min() and t.max() <= 1


@needs_espeak
def test_espeak_phone_timing():
    sr, spoken = tts.speak_groups("en-us", ["[[m'ama]], [[p'u:pa]].", "1999"], 175, 50, 50, 0)
    assert sr == 22050 and len(spoken) == 2
    audio, phones = spoken[0]
    assert len(audio) > 0.3 * sr
    assert phones[0][0] == 0.0 and abs(phones[-1][1] - len(audio) / sr) < 1e-9
    for (s0, e0, _), (s1, _, _) in zip(phones, phones[1:]):
        assert s0 < e0 and e0 == s1
    labels = [lab for _, _, lab in phones if lab]
    assert labels[:2] == ["m", "æ"]  # en-us reads the mnemonic a as IPA æ
    # the comma pause is silent in the audio
    pauses = [(s, e) for s, e, lab in phones if lab == "" and e - s > 0.06 and s > 0]
    assert pauses
    s, e = pauses[0]
    seg = audio[int((s + 0.01) * sr):int((e - 0.01) * sr)]
    assert np.sqrt(np.mean(seg ** 2)) < 0.03 * np.sqrt(np.mean(audio ** 2))
    # the same request gives the same samples (espeak-ng is spoken from a fixed state)
    _, again = tts.speak_groups("en-us", ["[[m'ama]], [[p'u:pa]].", "1999"], 175, 50, 50, 0)
    assert np.array_equal(again[0][0], audio) and again[0][1] == phones


@needs_espeak
def test_small_espeak_generation(tmp_path):
    spec = tts.CorpusSpec(minutes=0.25, heldout_minutes=0.1, workers=1, festival=False,
                          train_languages={"de": 1, "es": 1}, heldout_languages={"fr": 1},
                          english_share=0.0, batch_seconds=12.0)
    seen = []
    stats = tts.generate_corpus(tmp_path, spec, seed=3, progress=seen.append)
    entries = tts.read_manifest(tmp_path)
    assert 2 <= len(entries) <= 8
    assert {e["split"] for e in entries} == {"train", "heldout"}
    for e in entries:
        assert e["engine"] == "espeak-ng"
        assert e["language"] in ("de", "es", "fr")
        for key in ("id", "voice", "text", "duration", "phones"):
            assert key in e
        if e["split"] == "heldout":
            assert e["variant"] in tts.HELDOUT_VARIANTS
        else:
            assert e["variant"] not in tts.HELDOUT_VARIANTS
        _check_entry(e, tmp_path)
    assert stats["heldout_texts_seen_in_train"] == 0
    assert any(d.get("stage") == "render" for d in seen)
    assert json.loads((tmp_path / "stats.json").read_text())["utterances"] == len(entries)


@pytest.mark.skipif(shutil.which("festival") is None or not tts.espeak_available(),
                    reason="festival (and espeak-ng) not installed")
def test_small_festival_generation(tmp_path):
    spec = tts.CorpusSpec(minutes=0.1, heldout_minutes=0.0, workers=1, festival=True,
                          festival_share=1.0, train_languages={"de": 1},
                          heldout_languages={"de": 1}, batch_seconds=8.0)
    tts.generate_corpus(tmp_path, spec, seed=1)
    entries = tts.read_manifest(tmp_path)
    assert entries and all(e["engine"] == "festival" for e in entries)
    for e in entries:
        assert e["voice"] in tts.FESTIVAL_TRAIN_VOICES
        _check_entry(e, tmp_path)


# ----------------------------------------------------------------------------------------------
# augmentation
# ----------------------------------------------------------------------------------------------


def _speechlike(sr=16000, seconds=2.0):
    rng = np.random.default_rng(0)
    t = np.arange(int(sr * seconds)) / sr
    env = (np.sin(2 * np.pi * 3 * t) > 0).astype(float)
    return (0.3 * env * np.sin(2 * np.pi * 180 * t) + 0.02 * env * rng.standard_normal(len(t))
            ).astype(np.float32)


def test_augment_keeps_length_finite_and_is_deterministic():
    x = _speechlike()
    outs = []
    for seed in range(40):
        y = aug.augment(x, 16000, np.random.default_rng(seed))
        assert y.shape == x.shape and y.dtype == np.float32
        assert np.isfinite(y).all() and np.abs(y).max() <= 1.0
        outs.append(y)
    a = aug.augment(x, 16000, np.random.default_rng(123))
    b = aug.augment(x, 16000, np.random.default_rng(123))
    assert np.array_equal(a, b)
    assert not np.array_equal(outs[0], outs[1])
    pcm = (x * 32767).astype(np.int16)
    assert aug.augment(pcm, 16000, np.random.default_rng(0)).shape == x.shape
    assert aug.augment(np.zeros(0, np.float32), 16000, np.random.default_rng(0)).shape == (0,)


def test_augment_does_not_move_events_in_time():
    sr = 16000
    x = np.zeros(sr * 2, np.float32)
    clicks = np.arange(800, len(x) - 1600, 2999)
    x[clicks] = 0.9
    babble = [_speechlike(sr, 1.0)]
    for seed in range(60):
        info: dict = {}
        y = aug.augment(x, sr, np.random.default_rng(seed), babble, info).astype(np.float64)
        y -= np.median(y)
        for c in clicks:
            assert abs(int(np.argmax(np.abs(y[c - 40:c + 41]))) - 40) <= 1, (seed, info)


def test_augment_ranges_are_documented():
    assert 10.0 <= aug.RANGES["noise"]["snr_db"][0] and aug.RANGES["noise"]["snr_db"][1] <= 40.0
    for key in ("reverb", "noise", "music", "gain", "channel", "dc"):
        assert key in aug.RANGES


# ----------------------------------------------------------------------------------------------
# festival voices of other languages: phone-set features -> IPA
# ----------------------------------------------------------------------------------------------

from facecast_runtime.training.visemes import festival_features_ipa  # noqa: E402

_DECL = {"vheight": ["1", "2", "3", "0"], "vfront": ["1", "2", "3", "0"]}


def _cons(ctype, cplace, cvox):
    return {"vc": "-", "ctype": ctype, "cplace": cplace, "cvox": cvox}


def _vow(h, f, r):
    return {"vc": "+", "vheight": str(h), "vfront": str(f), "vrnd": r}


def test_festival_features_to_ipa():
    assert festival_features_ipa("p", _cons("s", "l", "-"), _DECL) == "p"
    assert festival_features_ipa("b", _cons("s", "l", "+"), _DECL) == "b"
    assert festival_features_ipa("m", _cons("n", "l", "+"), _DECL) == "m"
    assert festival_features_ipa("mm", _cons("n", "l", "+"), _DECL) == "m"
    for name, feats in (("p", _cons("s", "l", "-")), ("b", _cons("s", "l", "+")),
                        ("m", _cons("n", "l", "+"))):
        assert phone_class(festival_features_ipa(name, feats, _DECL)) == "bilabial"
        # inverted voicing convention never turns a bilabial into something else
        assert phone_class(festival_features_ipa(name, feats, _DECL,
                                                 voicing_inverted=True)) == "bilabial"
    assert festival_features_ipa("f", _cons("f", "b", "-"), _DECL) == "f"
    assert festival_features_ipa("v", _cons("f", "b", "+"), _DECL) == "v"
    assert festival_features_ipa("r", _cons("l", "a", "+"), _DECL) == "r"
    assert festival_features_ipa("l", _cons("l", "a", "+"), _DECL) == "l"
    assert festival_features_ipa("pau", {}, _DECL) == "sil"
    # vowels: 1 = close / front by default
    assert festival_features_ipa("u", _vow(1, 3, "+"), _DECL) == "u"
    assert festival_features_ipa("o", _vow(2, 3, "+"), _DECL) == "o"
    assert festival_features_ipa("y", _vow(1, 1, "+"), _DECL) == "y"
    assert festival_features_ipa("i", _vow(1, 1, "-"), _DECL) == "i"
    for name, feats in (("u", _vow(1, 3, "+")), ("o", _vow(2, 3, "+")), ("y", _vow(1, 1, "+")),
                        ("oe", _vow(2, 1, "+"))):
        assert phone_class(festival_features_ipa(name, feats, _DECL)) == "rounded_vowel"
    for feats in (_vow(3, 2, "-"), _vow(3, 3, "-"), _vow(3, 1, "-")):
        assert phone_class(festival_features_ipa("a", feats, _DECL)) == "open_vowel"
    # scales where the largest height is close (Catalan, Russian: 1..5)
    d5 = {"vheight": list("123450"), "vfront": list("123450")}
    assert phone_class(festival_features_ipa("aa", _vow(1, 3, "-"), d5,
                                             close_high=True)) == "open_vowel"
    assert festival_features_ipa("uu", _vow(5, 5, "+"), d5, close_high=True) == "u"
    assert festival_features_ipa("ii", _vow(5, 1, "-"), d5, close_high=True) == "i"
    # glide described by vowel features (Italian j / w)
    assert festival_features_ipa("j", {"vc": "-", "vheight": "1", "vfront": "1"}, _DECL) == "j"
    assert festival_features_ipa("w", {"vc": "-", "vheight": "1", "vfront": "3",
                                       "vrnd": "+"}, _DECL) == "w"


_FOREIGN = {**tts.FESTIVAL_FOREIGN_TRAIN_VOICES, **tts.FESTIVAL_FOREIGN_HELDOUT_VOICES}
_TEST_TEXT = {
    "it": "bapo mamba pumo bella", "cs": "bapo mamba pumo bela",
    "fi": "bapo mamba pumo pallo", "ca": "bapo mamba pumo bela",
    "ru": "\u0431\u0430\u043f\u043e \u043c\u0430\u043c\u0431\u0430 "
          "\u043f\u0443\u043c\u043e \u0431\u044d\u043b\u043b\u0430",
}


def _makefile_syspkgs() -> str:
    from pathlib import Path
    mk = Path(__file__).resolve().parents[1] / "Makefile"
    return mk.read_text() if mk.is_file() else ""


@pytest.mark.parametrize("voice", sorted(_FOREIGN))
def test_foreign_festival_voice_end_to_end(voice, tmp_path):
    import os
    if not tts.festival_voice_available(voice):
        if os.environ.get("CI") == "true" and "festvox" in _makefile_syspkgs():
            pytest.fail(f"festival voice {voice} listed in SYSPKGS is not installed")
        pytest.skip(f"festival voice {voice} not installed")
    lang = _FOREIGN[voice]
    table = tts.festival_phone_table(voice)
    assert table and all(v != "" for v in table.values()), table
    assert {"p", "b", "m"} <= set(table.values())
    job = {"id": "x0", "split": "train", "engine": "festival", "voice": voice, "variant": "",
           "language": lang, "params": {"stretch": 1.0}, "groups": [_TEST_TEXT[lang] + "."],
           "pauses": [0.2, 0.3], "text_kinds": ["syllables"], "peak": 0.8}
    entry, reason = tts._render_festival([job], tmp_path, (0.06, -30.0))[0]
    # room tone in festival's pauses (czech_machac, hy_fi_mv_diphone) passes the noise-floor
    # route of the quiet-pause check
    assert entry is not None, f"{voice}: {reason}"
    labels = [lab for _, _, lab in entry["phones"]]
    assert entry["checks"]["monotonic"] and entry["checks"]["covers"]
    assert sum(phone_class(lab) == "bilabial" for lab in labels) >= 6, labels
    assert all(phone_class(lab) != "neutral" for lab in labels), labels


# ----------------------------------------------------------------------------------------------
# quiet-pause check with a steady noise floor
# ----------------------------------------------------------------------------------------------

def _noisy_utterance(floor_db, burst=False, sr=16000):
    """sil 0.4 | speech 0.6 | sil 0.5 | speech 0.6 | sil 0.4, pauses filled with steady noise
    ``floor_db`` re speech RMS; ``burst``: a 80 ms speech-level vowel inside the middle pause."""
    rng = np.random.default_rng(0)
    bounds = [0.0, 0.4, 1.0, 1.5, 2.1, 2.5]
    n = int(bounds[-1] * sr)
    t = np.arange(n) / sr
    x = np.zeros(n)
    speech = np.zeros(n, bool)
    for a, b in ((0.4, 1.0), (1.5, 2.1)):
        speech[int(a * sr):int(b * sr)] = True
    x[speech] = 0.3 * np.sin(2 * np.pi * 150 * t[speech]) * (
        0.6 + 0.4 * np.sin(2 * np.pi * 4 * t[speech]))
    ref = np.sqrt(np.mean(x[speech] ** 2))
    noise = rng.standard_normal(n)
    x[~speech] = noise[~speech] * ref * 10 ** (floor_db / 20)
    if burst:
        a, b = int(1.2 * sr), int(1.28 * sr)
        x[a:b] += 0.3 * np.sin(2 * np.pi * 150 * t[a:b])
    phones = [(0.0, 0.4, "sil"), (0.4, 0.55, "m"), (0.55, 0.85, "a"), (0.85, 1.0, "p"),
              (1.0, 1.5, "sil"), (1.5, 1.65, "b"), (1.65, 1.95, "u"), (1.95, 2.1, "m"),
              (2.1, 2.5, "sil")]
    return x.astype(np.float32), phones


def test_quiet_pause_check_tolerates_steady_noise_floor():
    # clean pauses: the plain rule, as before
    x, ph = _noisy_utterance(-200)
    c = tts.check_alignment(x, 16000, ph)
    assert c["silence_ok"] and c["noise_floor_db"] == -120.0 and c["silence_count"] == 3
    # room tone 24 dB under speech: louder than the plain -30 dB rule, steady -> passes, and
    # the boundary checks still find the pause edges (sound = above floor + 10 dB)
    x, ph = _noisy_utterance(-24)
    c = tts.check_alignment(x, 16000, ph)
    assert c["silence_db_max"] > -30.0
    assert c["silence_ok"], c
    assert abs(c["noise_floor_db"] + 24) < 2
    assert c["onset_lead_ms"] is not None and abs(c["onset_lead_ms"]) <= 25.0, c
    assert c["offset_overhang_ms"] is not None and abs(c["offset_overhang_ms"]) <= 25.0, c


def test_quiet_pause_check_catches_speech_burst_in_pause():
    for floor in (-200, -40, -24):
        x, ph = _noisy_utterance(floor, burst=True)
        c = tts.check_alignment(x, 16000, ph)
        assert not c["silence_ok"], (floor, c)
    # a "floor" at nearly speech level is no pause
    x, ph = _noisy_utterance(-8)
    assert not tts.check_alignment(x, 16000, ph)["silence_ok"]
    # audio 120 ms late against its phone times: speech sound inside the labelled pauses
    x, ph = _noisy_utterance(-24)
    x2 = np.roll(x, int(0.12 * 16000))
    assert not tts.check_alignment(x2, 16000, ph)["silence_ok"]


# ----------------------------------------------------------------------------------------------
# added festival voices: Czech krb (in _FOREIGN above) and the Indic NSK voices
# ----------------------------------------------------------------------------------------------

_NSK_TEXT = {  # "bapo mamba pumo bela, mobu." in each script
    "hi": "बापो मम्बा पुमो बेला, मोबू.", "mr": "बापो मम्बा पुमो बेला, मोबू.",
    "te": "బాపో మంబా పుమో బేలా, మోబూ.",
}


def _need_voice(voice):
    import os
    if not tts.festival_voice_available(voice):
        if os.environ.get("CI") == "true" and "festvox" in _makefile_syspkgs():
            pytest.fail(f"festival voice {voice} listed in SYSPKGS is not installed")
        pytest.skip(f"festival voice {voice} not installed")


@pytest.mark.parametrize("voice", sorted(tts.FESTIVAL_NSK_VOICES) + ["czech_krb"])
def test_added_festival_voice_phone_mapping(voice, tmp_path):
    _need_voice(voice)
    table = tts.festival_phone_table(voice)
    assert table and all(v != "" for v in table.values()), table
    for name in ("p", "b", "m"):
        assert phone_class(table[name]) == "bilabial", (name, table[name])
    vowels = ("a", "aa", "ih", "iy", "uh", "uw", "eh", "ee", "oh", "oo", "ay", "aw") \
        if voice in tts.FESTIVAL_NSK_VOICES else ("a", "a:", "e", "i", "i:", "o", "u", "u:")
    for name in vowels:
        assert phone_class(table[name]).endswith("vowel"), (name, table[name])
    for name in ("uw", "oh", "uh") if voice in tts.FESTIVAL_NSK_VOICES else ("o", "u"):
        assert phone_class(table[name]) == "rounded_vowel", (name, table[name])
    if voice not in tts.FESTIVAL_NSK_VOICES:
        return  # czech_krb: end to end in test_foreign_festival_voice_end_to_end
    assert table["x"] != "sil" and table["y"] == "j" and table["th"] == "t"
    lang = tts.FESTIVAL_NSK_VOICES[voice]
    job = {"id": "x0", "split": "train", "engine": "festival", "voice": voice, "variant": "",
           "language": lang, "params": {"stretch": 1.0}, "groups": [_NSK_TEXT[lang]],
           "pauses": [0.2, 0.3], "text_kinds": ["syllables"], "peak": 0.8}
    # read the phones even if the quiet-pause check rejects the utterance
    seen = {}
    orig = tts._finish

    def spy(job, out_dir, parts, *a):
        seen["phones"] = [p for _, ph in parts for p in ph]
        return orig(job, out_dir, parts, *a)
    try:
        tts._finish = spy
        tts._render_festival([job], tmp_path, (0.06, -30.0))
    finally:
        tts._finish = orig
    labels = [table.get(n, n) for _, _, n in seen["phones"] if n != "pau"]
    assert [phone_class(lab) for lab in labels].count("bilabial") >= 8, labels
    assert all(phone_class(lab) != "neutral" for lab in labels), labels
    # the native script is spoken as words, not spelled out letter by letter
    assert 20 <= len(labels) <= 30, labels
