"""The evaluation suite: every model and both baselines through the same metrics, same clips.

Run it as ``python -m facecast_runtime.training.evaluate --models a.onnx b.onnx --out
docs/model_card.md`` (or :func:`run_evaluation`). The markdown it writes replaces the part of the
model card between ``<!-- eval:begin -->`` and ``<!-- eval:end -->``.

Metrics (numpy only; every one is defined on a FrameBatch and phone intervals)
----------------------------------------------------------------------------
Opening ``O = jawOpen + 0.25 * (mouthLowerDownLeft + mouthLowerDownRight) - mouthClose``, read
at any time by linear interpolation between frames (frame i is at ``(start_index + i) / fps``).

* **Closure threshold** of a clip: ``0.35 * max(median O at open-vowel midpoints, 0.05)``. The
  0.05 floor only matters for a mouth that never opens: without it an all-zero output would
  score perfect recall and no false closures. A clip without open vowels has no threshold; its
  bilabials are not scored (counted as ``skipped``).
* **Bilabial closure recall**: fraction of p/b/m phones whose minimum O over the phone's
  interval widened by 30 ms on both sides is ``<=`` the threshold.
* **False closure rate**: fraction of open vowels whose O at the midpoint is ``<`` the threshold.
* **Rest in silence**: silences are the stretches not covered by speech phones (phones whose
  class is not ``silence``), including the clip's start and end. Each silence is scored from
  100 ms after the speech before it ends (the settle time the product promises) to 100 ms
  before the speech after it starts (anticipation is allowed); the clip's own start and end
  need no margin. A frame there is *at rest* when every mouth channel (``MOUTH_CHANNELS``) is
  ``<= 0.10``. Reported: fraction of such frames at rest (and mean O there).
* **Rounding**: for each clip, ``R = mouthFunnel + mouthPucker`` at every vowel midpoint; a
  rounded vowel (class ``rounded_vowel``) is *rounded* when its R exceeds the median R of the
  clip's unrounded vowels (every other ``*_vowel`` class) by at least 0.05. Reported: fraction
  of rounded vowels that are rounded (also the mean R difference rounded - unrounded).
* **Pearson r vs FACEGOOD**: predictions resampled (linear interpolation) at the 30 fps curve
  times; r per channel the animator moves in the held-out clip; a constant
  prediction has r = 0. Reported: jawOpen r and the mean r over the animated channels.
* **Robustness**: every output value finite, blendshapes in [0, 1]; on non-speech inputs the
  jaw must not flap: 95th percentile of jawOpen (after the first 100 ms) ``<= 0.10``.

Counts are pooled over the clips of a test set (sum of closed bilabials / sum of bilabials).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from facecast.schema import ARKIT52, CHANNEL_INDEX, MOUTH_CHANNELS, FrameBatch

# ----------------------------------------------------------------------------- constants

EVAL_FPS = 60
CLOSE_RATIO = 0.35
BILABIAL_PAD_S = 0.030
MIN_OPEN_REF = 0.05
SETTLE_S = 0.100
ANTICIPATE_S = 0.100
REST_MAX = 0.10
ROUND_MARGIN = 0.05
FLAP_P95_MAX = 0.10
LOOKAHEADS_MS = (0, 40, 80, 120, 200)
ROBUST_TTS_CLIPS = 6

TARGETS = {
    "facegood_jaw_r": 0.85,
    "facegood_mean_r": 0.60,
    "bilabial_recall": 0.95,
    "false_closure": 0.05,
}

BEGIN_MARK = "<!-- eval:begin -->"
END_MARK = "<!-- eval:end -->"

Interval = tuple[float, float, str]          # (start s, end s, phone class)
Progress = Callable[[str], None]
System = Callable[[np.ndarray, int], FrameBatch]


# -------------------------------------------------------------------------------- curves

def _col(fb: FrameBatch, name: str) -> np.ndarray:
    return fb.values[:, CHANNEL_INDEX[name]].astype(np.float64)


def opening(fb: FrameBatch) -> np.ndarray:
    """O = jawOpen + 0.25 (mouthLowerDownLeft + mouthLowerDownRight) - mouthClose, per frame."""
    return (_col(fb, "jawOpen")
            + 0.25 * (_col(fb, "mouthLowerDownLeft") + _col(fb, "mouthLowerDownRight"))
            - _col(fb, "mouthClose"))


def _at(fb: FrameBatch, y: np.ndarray, t: np.ndarray | float) -> np.ndarray:
    if len(y) == 0:
        return np.zeros(np.shape(t))
    return np.interp(t, fb.times, y)


def is_vowel(cls: str) -> bool:
    return cls == "vowel" or cls.endswith("_vowel")


def _phone_tuple(p) -> tuple[float, float, str]:
    if hasattr(p, "start") and hasattr(p, "label"):
        return float(p.start), float(p.end), str(p.label)
    if isinstance(p, Mapping):
        return float(p["start"]), float(p["end"]), str(p["label"])
    s, e, lab = p
    return float(s), float(e), str(lab)


def classify(phones: Iterable, phone_class: Callable[[str], str] | None = None,
             inventory: str = "auto") -> list[Interval]:
    """Phones (``visemes.Phone``, ``(start, end, label)`` or dicts) -> (start, end, class).

    Classes come from ``visemes.phone_class(label, inventory)`` unless ``phone_class`` is given.
    """
    if phone_class is None:
        from . import visemes

        def phone_class(label: str) -> str:
            return visemes.phone_class(label, inventory)
    out = []
    for p in phones:
        s, e, lab = _phone_tuple(p)
        if e > s:
            out.append((s, e, phone_class(lab)))
    return out


# ------------------------------------------------------------------------------- metrics

def closure_threshold(fb: FrameBatch, intervals: Sequence[Interval],
                      O: np.ndarray | None = None) -> tuple[float | None, float | None, int]:
    """(threshold, median O at open-vowel midpoints, number of open vowels)."""
    O = opening(fb) if O is None else O
    mids = np.array([(s + e) / 2 for s, e, c in intervals if c == "open_vowel"])
    if len(mids) == 0:
        return None, None, 0
    ref = float(np.median(_at(fb, O, mids)))
    return CLOSE_RATIO * max(ref, MIN_OPEN_REF), ref, len(mids)


def _window_min(fb: FrameBatch, y: np.ndarray, lo: float, hi: float) -> float:
    t = fb.times
    inside = y[(t >= lo) & (t <= hi)]
    edges = _at(fb, y, np.array([lo, hi]))
    return float(np.min(np.concatenate([inside, edges])))


def bilabial_closure(fb: FrameBatch, intervals: Sequence[Interval]) -> dict:
    """Counts for bilabial closure recall and open-vowel false closures on one clip."""
    O = opening(fb)
    thr, ref, n_open = closure_threshold(fb, intervals, O)
    bil = [(s, e) for s, e, c in intervals if c == "bilabial"]
    res = {"n_bilabial": 0, "n_closed": 0, "n_open": n_open, "n_false": 0,
           "n_skipped": 0, "threshold": thr, "open_ref": ref}
    if thr is None:
        res["n_skipped"] = len(bil)
        return res
    for s, e in bil:
        res["n_bilabial"] += 1
        if _window_min(fb, O, s - BILABIAL_PAD_S, e + BILABIAL_PAD_S) <= thr:
            res["n_closed"] += 1
    mids = np.array([(s + e) / 2 for s, e, c in intervals if c == "open_vowel"])
    res["n_false"] = int(np.sum(_at(fb, O, mids) < thr))
    return res


def silence_windows(intervals: Sequence[Interval], duration: float) -> list[tuple[float, float]]:
    """Scored parts of the silences: see the module docstring."""
    speech = sorted((s, e) for s, e, c in intervals if c != "silence")
    merged: list[list[float]] = []
    for s, e in speech:
        if merged and s <= merged[-1][1] + 1e-3:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    gaps = []
    t = 0.0
    for s, e in merged:
        if s > t:
            gaps.append((t, s, t > 0.0, True))
        t = max(t, e)
    if duration > t:
        gaps.append((t, duration, bool(merged), False))
    out = []
    for a, b, after_speech, before_speech in gaps:
        lo = a + SETTLE_S if after_speech else a
        hi = b - ANTICIPATE_S if before_speech else b
        if hi > lo:
            out.append((lo, hi))
    return out


def rest_in_silence(fb: FrameBatch, intervals: Sequence[Interval],
                    duration: float | None = None) -> dict:
    """Frames inside scored silences, how many are at rest, and the sum of O there.

    ``rest_over`` counts, per mouth channel, the scored frames where that channel is above
    ``REST_MAX`` (which channels keep the face from resting).
    """
    if duration is None:
        duration = len(fb) / fb.fps + fb.start_index / fb.fps
    t = fb.times
    mouth = fb.values[:, [CHANNEL_INDEX[c] for c in MOUTH_CHANNELS]]
    over = mouth > REST_MAX
    O = opening(fb)
    sel = np.zeros(len(fb), bool)
    for lo, hi in silence_windows(intervals, duration):
        sel |= (t >= lo) & (t <= hi)
    per = over[sel].sum(axis=0)
    return {"rest_frames": int(sel.sum()), "rest_ok": int((~over[sel].any(axis=1)).sum()),
            "rest_sum_O": float(O[sel].sum()),
            "rest_over": {c: int(k) for c, k in zip(MOUTH_CHANNELS, per) if k}}


def rounding(fb: FrameBatch, intervals: Sequence[Interval]) -> dict:
    """Counts for the rounding metric on one clip."""
    R = _col(fb, "mouthFunnel") + _col(fb, "mouthPucker")
    rmid = np.array([(s + e) / 2 for s, e, c in intervals if c == "rounded_vowel"])
    umid = np.array([(s + e) / 2 for s, e, c in intervals
                     if is_vowel(c) and c != "rounded_vowel"])
    res = {"n_rounded": 0, "n_round_hit": 0, "round_diff_sum": 0.0}
    if len(rmid) == 0 or len(umid) == 0:
        return res
    r_val, u_val = _at(fb, R, rmid), _at(fb, R, umid)
    u_med = float(np.median(u_val))
    res["n_rounded"] = int(len(rmid))
    res["n_round_hit"] = int(np.sum(r_val >= u_med + ROUND_MARGIN))
    res["round_diff_sum"] = float(np.sum(r_val) - len(rmid) * float(np.mean(u_val)))
    return res


def score_clip(fb: FrameBatch, intervals: Sequence[Interval], duration: float | None = None
               ) -> dict:
    """Every phone-timed metric's counts for one clip."""
    out = {}
    out.update(bilabial_closure(fb, intervals))
    out.update(rest_in_silence(fb, intervals, duration))
    out.update(rounding(fb, intervals))
    out.pop("threshold", None)
    out.pop("open_ref", None)
    return out


COUNT_KEYS = ("n_bilabial", "n_closed", "n_open", "n_false", "n_skipped", "rest_frames",
              "rest_ok", "rest_sum_O", "n_rounded", "n_round_hit", "round_diff_sum")


def pool(counts: Iterable[Mapping]) -> dict:
    """Sum the counts of several clips (or of several pooled sets)."""
    tot: dict = {k: 0 for k in COUNT_KEYS}
    over: dict[str, int] = {}
    n = 0
    for c in counts:
        n += c.get("n_clips", 1)
        for k in COUNT_KEYS:
            tot[k] += c.get(k, 0)
        for ch, k in c.get("rest_over", {}).items():
            over[ch] = over.get(ch, 0) + k
    tot["n_clips"] = n
    tot["rest_over"] = dict(sorted(over.items(), key=lambda kv: -kv[1]))
    return tot


def _ratio(a: float, b: float) -> float | None:
    return float(a) / float(b) if b else None


def summarize(tot: Mapping) -> dict:
    """Pooled counts -> the reported rates (None where a denominator is 0)."""
    return {
        "bilabial_recall": _ratio(tot["n_closed"], tot["n_bilabial"]),
        "false_closure": _ratio(tot["n_false"], tot["n_open"]),
        "rest": _ratio(tot["rest_ok"], tot["rest_frames"]),
        "rest_mean_O": _ratio(tot["rest_sum_O"], tot["rest_frames"]),
        "rounding": _ratio(tot["n_round_hit"], tot["n_rounded"]),
        "rounding_diff": _ratio(tot["round_diff_sum"], tot["n_rounded"]),
        "counts": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in tot.items()},
        "rest_blockers": {ch: round(k / tot["rest_frames"], 4)
                          for ch, k in tot.get("rest_over", {}).items()}
        if tot.get("rest_frames") else {},
    }


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r; 0.0 when either side is constant (no linear relation can be shown)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if len(a) < 2:
        return 0.0
    a = a - a.mean()
    b = b - b.mean()
    den = math.sqrt(float(np.dot(a, a)) * float(np.dot(b, b)))
    if den < 1e-12:
        return 0.0
    return float(np.dot(a, b) / den)


def facegood_correlation(fb: FrameBatch, curves: Mapping[str, np.ndarray], curve_fps: float,
                         channels: Sequence[str], max_lag_s: float = 0.2) -> dict:
    """Pearson r per animated channel (prediction sampled at the curve frame times).

    Also a timing diagnostic: ``jaw_best_lag_ms``, the shift of the prediction (multiples of
    1/60 s within +-200 ms) that maximises the jawOpen r, and that r. Positive = the prediction
    is late (its value at t + lag matches the curve at t). Scores use lag 0 only.
    """
    n = min(len(v) for v in curves.values())
    t = np.arange(n) / float(curve_fps)
    per = {}
    for ch in channels:
        pred = _at(fb, _col(fb, ch), t)
        per[ch] = pearson(pred, curves[ch][:n])
    out = {"jaw_r": per.get("jawOpen"), "mean_r": float(np.mean(list(per.values()))),
           "per_channel": per}
    if "jawOpen" in curves:
        jaw = _col(fb, "jawOpen")
        lags = np.arange(-round(max_lag_s * 60), round(max_lag_s * 60) + 1) / 60.0
        rs = [pearson(_at(fb, jaw, t + lag), curves["jawOpen"][:n]) for lag in lags]
        k = int(np.argmax(rs))
        out["jaw_best_lag_ms"] = round(1000 * float(lags[k]), 1)
        out["jaw_r_best_lag"] = float(rs[k])
    return out


def range_check(fb: FrameBatch) -> dict:
    v = fb.values
    finite = bool(np.isfinite(v).all())
    bs = v[:, : len(ARKIT52)]
    with np.errstate(invalid="ignore"):
        in_range = bool(finite and (bs >= -1e-6).all() and (bs <= 1 + 1e-6).all()
                        and (np.abs(v[:, len(ARKIT52):]) <= math.pi).all())
    return {"finite": finite, "in_range": in_range}


def flapping(fb: FrameBatch, skip_s: float = 0.1) -> dict:
    """How much the jaw moves on an input without speech."""
    sel = fb.times >= skip_s
    jaw = _col(fb, "jawOpen")[sel]
    mouth = fb.values[sel][:, [CHANNEL_INDEX[c] for c in MOUTH_CHANNELS]]
    if len(jaw) == 0:
        return {"jaw_p95": 0.0, "rest": 1.0}
    return {"jaw_p95": float(np.percentile(jaw, 95)),
            "rest": float(np.mean(np.all(mouth <= REST_MAX, axis=1)))}


# ----------------------------------------------------------------------------- systems

@dataclass
class SystemSpec:
    name: str
    kind: str                        # "model" | "baseline"
    run: System
    lookahead_ms: float | None = None
    path: str | None = None
    note: str = ""


def model_lookahead_ms(path: str | os.PathLike) -> float | None:
    import onnxruntime as ort

    meta = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]
                                ).get_modelmeta().custom_metadata_map
    try:
        return float(meta["lookahead_ms"])
    except (KeyError, ValueError):
        return None


def model_system(name: str, path: str | os.PathLike) -> SystemSpec:
    from ..engine import bake

    p = str(path)

    def run(samples: np.ndarray, sr: int) -> FrameBatch:
        return bake((np.asarray(samples, np.float32), int(sr)), model=p, fps=EVAL_FPS)

    return SystemSpec(name, "model", run, model_lookahead_ms(p), p)


# -------------------------------------------------------------------------------- data

@dataclass
class PhoneClip:
    id: str
    language: str
    samples: np.ndarray
    sample_rate: int
    intervals: list[Interval]
    phones: list = field(default_factory=list)
    voice: str = ""
    engine: str = ""
    text: str = ""

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


def _load_wav(path: Path) -> tuple[np.ndarray, int]:
    from ..audio import load_audio

    return load_audio(path)


def load_tts_heldout(tts_dir: Path, max_per_language: int | None = None,
                     phone_class: Callable[[str], str] | None = None
                     ) -> tuple[dict[str, list[PhoneClip]], dict]:
    """Held-out items of the TTS corpus (``split == 'heldout'``) grouped by language."""
    manifest = Path(tts_dir) / "manifest.jsonl"
    info: dict = {"manifest": str(manifest), "available": manifest.exists(),
                  "max_per_language": max_per_language}
    if not manifest.exists():
        return {}, info
    entries = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    held = [e for e in entries if e.get("split") == "heldout"]
    info["n_entries"] = len(entries)
    info["n_heldout_total"] = len(held)
    train = [e for e in entries if e.get("split") == "train"]
    # the honesty check: no held-out voice or text may occur in training
    train_voices = {(e.get("engine"), e.get("voice")) for e in train}
    train_texts = {e.get("text", "").strip().lower() for e in train}
    info["heldout_voices_in_train"] = sorted({f"{e.get('engine')}:{e.get('voice')}" for e in held
                                              if (e.get("engine"), e.get("voice")) in train_voices})
    info["heldout_texts_in_train"] = sum(e.get("text", "").strip().lower() in train_texts
                                         for e in held)
    by_lang: dict[str, list[dict]] = {}
    for e in sorted(held, key=lambda e: str(e["id"])):
        by_lang.setdefault(_tts_group(e), []).append(e)
    out: dict[str, list[PhoneClip]] = {}
    for lang, items in sorted(by_lang.items()):
        if max_per_language is not None:
            items = _spread(items, max_per_language)
        clips = []
        for e in items:
            wav = Path(tts_dir) / f"{e['id']}.wav"
            if not wav.exists():
                continue
            x, sr = _load_wav(wav)
            # the corpus stores labels normalised by visemes.normalize_phones (IPA, "sil")
            inv = str(e.get("inventory") or e.get("phone_set") or "ipa")
            clips.append(PhoneClip(str(e["id"]), lang, x, sr,
                                   classify(e.get("phones", []), phone_class, inv),
                                   [tuple(p) for p in e.get("phones", [])],
                                   str(e.get("voice", "")), str(e.get("engine", "")),
                                   str(e.get("text", ""))))
        if clips:
            out[lang] = clips
    info["languages"] = {lang: {"clips": len(c), "voices": sorted({f"{x.engine}:{x.voice}"
                                                                   for x in c}),
                                "seconds": round(sum(x.duration for x in c), 1)}
                         for lang, c in out.items()}
    return out, info


def _tts_group(e: Mapping) -> str:
    """Test group of a TTS item: its language; engines other than espeak-ng (festival's HTS
    voice, a different synthesiser) are reported as their own group, e.g. ``en-us/festival``."""
    lang = str(e.get("language", "?"))
    engine = str(e.get("engine", ""))
    return lang if engine in ("", "espeak-ng", "espeak") else f"{lang}/{engine}"


def _spread(items: list, k: int) -> list:
    """Up to k items spread over voices (round robin over voices, in id order)."""
    if len(items) <= k:
        return items
    by_voice: dict[str, list] = {}
    for e in items:
        by_voice.setdefault(f"{e.get('engine')}:{e.get('voice')}", []).append(e)
    out = []
    queues = [list(v) for _, v in sorted(by_voice.items())]
    while len(out) < k and any(queues):
        for q in queues:
            if q and len(out) < k:
                out.append(q.pop(0))
    return sorted(out, key=lambda e: str(e["id"]))


def load_real_english(shared: Path, cache_dir: Path | None,
                      phone_class: Callable[[str], str] | None = None
                      ) -> tuple[list[PhoneClip], dict]:
    """Real English clips with transcripts, force-aligned with pocketsphinx."""
    from .align import align, pocketsphinx_available, real_english_clips

    info: dict = {"available": False}
    if not pocketsphinx_available():
        info["reason"] = "pocketsphinx is not installed"
        return [], info
    clips = []
    sources: dict[str, int] = {}
    dropped: list[str] = []
    for rc in real_english_clips(shared):
        x, sr = _load_wav(rc.audio)
        res = align(x, sr, rc.transcript, cache_dir=cache_dir)
        dropped += res.dropped
        clips.append(PhoneClip(rc.id, "en", x, sr,
                               classify(res.phones, phone_class, inventory="arpabet"),
                               [tuple(p) for p in res.phones],
                               text=rc.transcript))
        sources[rc.source] = sources.get(rc.source, 0) + 1
    info.update({"available": bool(clips), "clips": len(clips), "sources": sources,
                 "seconds": round(sum(c.duration for c in clips), 1),
                 "dropped_words": dropped})
    return clips, info


# ------------------------------------------------------------------------- robustness

def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0


def _db(level: float) -> float:
    return 10.0 ** (level / 20.0)


def _pinkish_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    from scipy.signal import lfilter

    w = rng.standard_normal(n)
    # Paul Kellet's economy pink filter (-3 dB/octave above ~100 Hz)
    b = [0.049922035, -0.095993537, 0.050612699, -0.004408786]
    a = [1, -2.494956002, 2.017265875, -0.522189400]
    y = lfilter(b, a, w)
    return (y / (_rms(y) + 1e-12)).astype(np.float64)


def synth_music(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Chords of harmonic tones (0.5 s each) with a kick drum and hi-hats: music-like, no speech."""
    t = np.arange(n) / sr
    out = np.zeros(n)
    beat = int(0.5 * sr)
    roots = [220.0, 174.6, 261.6, 196.0]
    for k, start in enumerate(range(0, n, beat)):
        seg = slice(start, min(n, start + beat))
        tt = t[seg] - t[start]
        env = np.exp(-tt * 3.0)
        root = roots[k % len(roots)]
        for ratio in (1.0, 1.26, 1.5):
            f0 = root * ratio
            for h in range(1, 5):
                out[seg] += env * np.sin(2 * np.pi * f0 * h * tt + rng.uniform(0, 6.28)) / h
        kick = np.sin(2 * np.pi * (100 * tt - 25 * tt ** 2)) * np.exp(-tt * 25) * 3
        out[seg] += kick
        hat_at = beat // 2
        if start + hat_at < n:
            hs = slice(start + hat_at, min(n, start + hat_at + int(0.05 * sr)))
            hl = hs.stop - hs.start
            out[hs] += rng.standard_normal(hl) * np.exp(-np.arange(hl) / (0.01 * sr)) * 0.5
    return out / (_rms(out) + 1e-12)


def synth_breaths(n: int, sr: int, rng: np.random.Generator, period_s: float = 2.0,
                  breath_s: float = 0.6) -> np.ndarray:
    """Band-passed (300-3000 Hz) noise bursts with a smooth envelope, one every 2 s."""
    from scipy.signal import butter, sosfilt

    sos = butter(2, [300 / (sr / 2), min(3000, 0.45 * sr) / (sr / 2)], btype="band",
                 output="sos")
    noise = sosfilt(sos, rng.standard_normal(n))
    noise /= _rms(noise) + 1e-12
    env = np.zeros(n)
    L = int(breath_s * sr)
    shape = np.sin(np.linspace(0, np.pi, L)) ** 2
    for s in range(int(0.5 * sr), n - L, int(period_s * sr)):
        env[s : s + L] = shape
    return noise * env


def _speech_rms(x: np.ndarray, sr: int) -> float:
    """RMS over the loudest 50% of 20 ms blocks (active speech level)."""
    b = max(1, int(0.02 * sr))
    m = len(x) // b
    if m == 0:
        return _rms(x)
    e = np.mean(np.square(x[: m * b].reshape(m, b), dtype=np.float64), axis=1)
    e = np.sort(e)[m // 2 :]
    return float(np.sqrt(np.mean(e)))


def speech_conditions(x: np.ndarray, sr: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Degraded versions of speech ``x`` (the phone timing does not change)."""
    rng = np.random.default_rng(seed)
    x = np.asarray(x, np.float64)
    lvl = _speech_rms(x, sr)
    n = len(x)
    noise = _pinkish_noise(n, rng)
    music = synth_music(n, sr, rng)
    return {
        "clean": x,
        "noise 10 dB SNR": x + noise * lvl / _db(10.0),
        "music under speech (-10 dB)": x + music * lvl / _db(10.0),
        "whisper level (-30 dB)": x * _db(-30.0),
        "shout level (-6 dBFS RMS, unclipped)": x * (_db(-6.0) / max(lvl, 1e-9)),
        "clipping (+20 dB, hard clip)": np.clip(x * _db(20.0), -1.0, 1.0),
        "DC offset +0.25": x + 0.25,
    }


def nonspeech_conditions(sr: int, seconds: float = 8.0, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    return {
        "silence": np.zeros(n),
        "noise only (-30 dBFS)": _pinkish_noise(n, rng) * _db(-30.0),
        "breaths (-30 dBFS bursts)": synth_breaths(n, sr, rng) * _db(-30.0),
        "music only (-20 dBFS)": synth_music(n, sr, rng) * _db(-20.0),
        "DC only (+0.25)": np.full(n, 0.25),
    }


def concat_clips(clips: Sequence[PhoneClip], sr: int = 16000, gap_s: float = 0.6
                 ) -> tuple[np.ndarray, list[Interval]]:
    """Clips resampled to ``sr`` and joined with ``gap_s`` of digital silence between them."""
    from ..audio import resample

    parts, intervals = [], []
    t = 0.0
    for c in clips:
        x = c.samples if c.sample_rate == sr else resample(c.samples, c.sample_rate, sr)
        parts.append(np.asarray(x, np.float64))
        intervals += [(s + t, e + t, cl) for s, e, cl in c.intervals]
        t += len(x) / sr
        parts.append(np.zeros(int(gap_s * sr)))
        t += int(gap_s * sr) / sr
    return np.concatenate(parts) if parts else np.zeros(0), intervals


def robustness(system: System, speech: tuple[np.ndarray, list[Interval]] | None, sr: int,
               extra: Mapping[str, np.ndarray] | None = None) -> dict:
    """Range / flapping / degradation results of one system."""
    res: dict = {"speech": {}, "nonspeech": {}, "extra": {}}
    if speech is not None and len(speech[0]):
        x, iv = speech
        for name, sig in speech_conditions(x, sr).items():
            fb = system(sig.astype(np.float32), sr)
            d = range_check(fb)
            d.update(summarize(pool([score_clip(fb, iv, len(sig) / sr)])))
            d.pop("counts", None)
            res["speech"][name] = d
    for name, sig in nonspeech_conditions(sr).items():
        fb = system(sig.astype(np.float32), sr)
        d = range_check(fb)
        d.update(flapping(fb))
        d["flaps"] = d["jaw_p95"] > FLAP_P95_MAX
        res["nonspeech"][name] = d
    for name, sig in (extra or {}).items():
        fb = system(np.asarray(sig, np.float32), sr)
        res["extra"][name] = range_check(fb)
    allr = list(res["speech"].values()) + list(res["nonspeech"].values()) + \
        list(res["extra"].values())
    res["range_failures"] = [n for part in ("speech", "nonspeech", "extra")
                             for n, d in res[part].items() if not d["in_range"]]
    res["flapping"] = [n for n, d in res["nonspeech"].items() if d["flaps"]]
    res["n_conditions"] = len(allr)
    return res


# ------------------------------------------------------------------------ run it all

def _fmt(v: float | None, pct: bool = False, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if pct:
        return f"{100 * v:.1f}%"
    return f"{v:.{digits}f}"


#: (key, label, higher is better, shown as percent, best possible value)
PHONE_METRICS = (
    ("bilabial_recall", "bilabial recall", True, True, 1.0),
    ("false_closure", "false closure", False, True, 0.0),
    ("rest", "rest in silence", True, True, 1.0),
    ("rounding", "rounding", True, True, 1.0),
)
ALL_SETS = ("facegood", "tts", "real_en", "robustness")


def _reference_clip(c: PhoneClip, phones: Sequence, inventory: str) -> FrameBatch:
    """The project's rules driven by the reference phones (the metric's sanity check)."""
    from . import visemes
    from .baselines import batch_from_curves, n_frames_for

    n = n_frames_for(len(c.samples), c.sample_rate, EVAL_FPS)
    tg = visemes.phones_to_targets(phones, EVAL_FPS, n, inventory=inventory)
    return batch_from_curves({ch: tg[:, i] for i, ch in enumerate(MOUTH_CHANNELS)}, EVAL_FPS, n)


def run_evaluation(models: Mapping[str, str | os.PathLike], shared_dir: str | os.PathLike,
                   work_dir: str | os.PathLike, out_md: str | os.PathLike | None = None,
                   progress: Progress | None = None, max_tts_per_language: int | None = 40,
                   sets: Sequence[str] = ALL_SETS) -> dict:
    """Evaluate ``models`` (name -> .onnx path) and both baselines; optionally write markdown.

    ``work_dir`` is the repo's ``work_data``: the TTS corpus is read from ``work_dir/tts`` and
    pocketsphinx results are cached in ``work_dir/align``. ``sets`` picks test sets among
    ``ALL_SETS``. Returns the full results (also what the markdown is rendered from).
    """
    from . import facegood
    from .baselines import LoudnessBaseline, PhoneRulesBaseline, tune_loudness_gain

    unknown = [x for x in sets if x not in ALL_SETS]
    if unknown:
        raise ValueError(f"unknown test set(s) {unknown}; choose from {ALL_SETS}")
    say = progress or (lambda msg: None)
    t0 = time.time()
    shared = Path(shared_dir)
    work = Path(work_dir)
    cache = work / "align"
    result: dict = {"generated": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
                    "sets": list(sets), "systems": [], "data": {}, "facegood": {}, "tts": {},
                    "real_en": {}, "reference": {}, "robustness": {}, "lookahead": [],
                    "targets": {}}

    # ---- systems
    systems: list[SystemSpec] = []
    for name, path in models.items():
        systems.append(model_system(name, path))
    have_fg = facegood.facegood_dir(shared).exists()
    if have_fg:
        say("tuning the loudness baseline's gain on the FACEGOOD training clips")
        gain, gain_info = tune_loudness_gain(shared)
    else:
        from .baselines import DEFAULT_LOUDNESS_GAIN

        gain, gain_info = DEFAULT_LOUDNESS_GAIN, {"clips": [], "note": "FACEGOOD missing"}
    result["data"]["loudness_gain"] = {"gain": gain, **gain_info}
    loud = LoudnessBaseline(gain)
    systems.append(SystemSpec(loud.name, "baseline", loud, loud.lookahead_ms,
                              note=f"gain {gain:g} fitted on FACEGOOD training clips"))
    rules = PhoneRulesBaseline(cache_dir=cache)
    systems.append(SystemSpec(rules.name, "baseline", rules, rules.lookahead_ms,
                              note="offline (decodes the whole utterance)"))
    result["systems"] = [{"name": s.name, "kind": s.kind, "lookahead_ms": s.lookahead_ms,
                          "path": s.path, "note": s.note} for s in systems]

    # ---- FACEGOOD held-out clip
    fg_clip = facegood.HELDOUT_CLIP
    if "facegood" in sets and have_fg:
        say(f"FACEGOOD held-out clip {fg_clip}")
        clip = facegood.load_clip(shared, fg_clip)
        # Pearson r is undefined against a constant curve: score the channels the animator
        # moved in this clip (pucker, press and shrug stay at 0 throughout 1114_2_05)
        channels = [c for c in facegood.animated_channels(shared)
                    if float(clip.curves[c].std()) > 1e-3]
        result["data"]["facegood"] = {"clip": fg_clip, "seconds": round(len(clip.samples) /
                                                                        clip.sample_rate, 1),
                                      "channels": channels}
        for s in systems:
            fb = s.run(clip.samples, clip.sample_rate)
            result["facegood"][s.name] = facegood_correlation(fb, clip.curves, clip.fps,
                                                              channels)
    elif "facegood" in sets:
        result["data"]["facegood"] = {"clip": fg_clip, "missing": True}

    # ---- TTS held-out
    tts: dict[str, list[PhoneClip]] = {}
    if "tts" in sets:
        say("TTS held-out corpus")
        tts, tts_info = load_tts_heldout(work / "tts", max_tts_per_language)
        result["data"]["tts"] = tts_info
        for s in systems:
            per_lang = {}
            for lang, clips in tts.items():
                counts = [score_clip(s.run(c.samples, c.sample_rate), c.intervals, c.duration)
                          for c in clips]
                per_lang[lang] = summarize(pool(counts))
            if tts:
                per_lang["all"] = summarize(pool([per_lang[lg]["counts"] for lg in tts]))
            result["tts"][s.name] = per_lang
            say(f"  {s.name}: {sum(len(v) for v in tts.values())} clips, {len(tts)} languages")
        if tts:
            ref = {}
            for lang, clips in tts.items():
                ref[lang] = summarize(pool(
                    [score_clip(_reference_clip(c, c.phones, "ipa"), c.intervals, c.duration)
                     for c in clips]))
            ref["all"] = summarize(pool([ref[lg]["counts"] for lg in tts]))
            result["reference"]["tts"] = ref

    # ---- real English, pocketsphinx-aligned
    real: list[PhoneClip] = []
    if "real_en" in sets or "robustness" in sets:
        say("real English speech (pocketsphinx forced alignment)")
        real, real_info = load_real_english(shared, cache)
        result["data"]["real_en"] = real_info
    if "real_en" in sets and real:
        for s in systems:
            counts = [score_clip(s.run(c.samples, c.sample_rate), c.intervals, c.duration)
                      for c in real]
            result["real_en"][s.name] = summarize(pool(counts))
        result["reference"]["real_en"] = summarize(pool(
            [score_clip(_reference_clip(c, c.phones, "arpabet"), c.intervals, c.duration)
             for c in real]))

    # ---- robustness
    if "robustness" in sets:
        say("robustness")
        # up to ROBUST_TTS_CLIPS held-out TTS clips (first clip of languages spread over the
        # sorted list) plus a few real English ones
        langs = sorted(tts)
        step = max(1, math.ceil(len(langs) / ROBUST_TTS_CLIPS))
        rob_clips: list[PhoneClip] = [tts[lg][0] for lg in langs[::step]][:ROBUST_TTS_CLIPS]
        rob_clips += [c for c in real if c.id.startswith(("61-70968", "multilingual_ipa_us"))]
        sr = 16000
        speech = concat_clips(rob_clips, sr) if rob_clips else None
        extra = {}
        root = shared / "data" / "speech" / "mfa_tests" / "wav"
        for fname in ("whisper.flac", "whisper2.flac", "mfa_whisper.flac", "mfa_breaths.flac"):
            if (root / fname).exists():
                from ..audio import resample

                x, xsr = _load_wav(root / fname)
                extra[f"real {fname.rsplit('.', 1)[0]}"] = resample(x, xsr, sr) if xsr != sr else x
        result["data"]["robustness"] = {
            "speech_clips": [c.id for c in rob_clips],
            "speech_seconds": round(len(speech[0]) / sr, 1) if speech else 0.0,
            "real_extra": sorted(extra)}
        for s in systems:
            result["robustness"][s.name] = robustness(s.run, speech, sr, extra)
            say(f"  {s.name}")

    # ---- lookahead table, targets
    result["lookahead"] = _lookahead_rows(result, systems)
    result["targets"] = _targets(result, systems)
    result["elapsed_s"] = round(time.time() - t0, 1)
    say(f"done in {result['elapsed_s']} s")
    if out_md is not None:
        write_card_section(out_md, render_markdown(result))
    return result


def _worst(per_lang: Mapping, key: str, higher: bool) -> tuple[float | None, str | None]:
    vals = [(v[key], lg) for lg, v in per_lang.items() if lg != "all" and v.get(key) is not None]
    if not vals:
        return None, None
    return (min(vals) if higher else max(vals))


def _headline(result: dict, name: str) -> dict:
    """The pooled numbers of one system (used by the lookahead table and target checks)."""
    fg = result["facegood"].get(name, {})
    tts = result["tts"].get(name, {})
    en = result["real_en"].get(name, {})
    row = {"facegood_jaw_r": fg.get("jaw_r"), "facegood_mean_r": fg.get("mean_r")}
    allt = tts.get("all", {})
    for key, _, higher, _, _ in PHONE_METRICS:
        row[f"tts_{key}"] = allt.get(key)
        row[f"tts_worst_{key}"] = _worst(tts, key, higher)[0]
    row["en_bilabial_recall"] = en.get("bilabial_recall")
    row["en_false_closure"] = en.get("false_closure")
    row["en_rest"] = en.get("rest")
    return row


def _lookahead_rows(result: dict, systems: Sequence[SystemSpec]) -> list[dict]:
    rows = []
    for s in systems:
        rows.append({"name": s.name, "kind": s.kind, "lookahead_ms": s.lookahead_ms,
                     **_headline(result, s.name)})
    models = sorted((r for r in rows if r["kind"] == "model"),
                    key=lambda r: (r["lookahead_ms"] is None, r["lookahead_ms"] or 0))
    return models + [r for r in rows if r["kind"] != "model"]


def _metric_columns(result: dict) -> list[tuple[str, str, bool, bool, float | None]]:
    """Every metric of the suite: (path, label, higher better, percent, best possible).

    ``path`` is ``part|key...`` into the results (language names may contain ``/``)."""
    cols: list[tuple[str, str, bool, bool, float | None]] = []
    if result["facegood"]:
        cols += [("facegood|jaw_r", "FG jawOpen r", True, False, None),
                 ("facegood|mean_r", "FG mean mouth r", True, False, None)]
    langs = sorted({lg for v in result["tts"].values() for lg in v if lg != "all"})
    for lg in langs:
        for key, label, higher, pct, best in PHONE_METRICS:
            cols.append((f"tts|{lg}|{key}", f"TTS {lg} {label}", higher, pct, best))
    if result["real_en"]:
        cols += [("real_en|bilabial_recall", "EN bilabial recall", True, True, 1.0),
                 ("real_en|false_closure", "EN false closure", False, True, 0.0)]
    return cols


def _get(result: dict, system: str, path: str):
    part, *rest = path.split("|")
    node = result[part].get(system, {})
    for k in rest:
        if not isinstance(node, dict):
            return None
        node = node.get(k)
    return node


def _not_worse(mine: float | None, theirs: float, higher: bool, best: float | None) -> bool:
    """Strictly better, or tied at the best possible value (both perfect)."""
    if mine is None:
        return False
    if best is not None and abs(mine - best) < 1e-12 and abs(theirs - best) < 1e-12:
        return True
    return mine > theirs if higher else mine < theirs


def _targets(result: dict, systems: Sequence[SystemSpec]) -> dict:
    out = {}
    base = [s.name for s in systems if s.kind == "baseline"]
    cols = _metric_columns(result)
    for s in systems:
        if s.kind != "model":
            continue
        checks = []
        fg = result["facegood"].get(s.name)
        if fg:
            checks.append(("FACEGOOD jawOpen r >= 0.85", fg["jaw_r"] is not None
                           and fg["jaw_r"] >= TARGETS["facegood_jaw_r"]))
            checks.append(("FACEGOOD mean mouth r >= 0.6",
                           fg["mean_r"] >= TARGETS["facegood_mean_r"]))
        sets = [(f"TTS {lg}", v) for lg, v in result["tts"].get(s.name, {}).items()
                if lg != "all"]
        if result["real_en"].get(s.name):
            sets.append(("real English", result["real_en"][s.name]))
        failing = []
        for label, v in sets:
            r, f = v.get("bilabial_recall"), v.get("false_closure")
            if not (r is not None and f is not None and r >= TARGETS["bilabial_recall"]
                    and f <= TARGETS["false_closure"]):
                failing.append(label)
        if sets:
            checks.append(("bilabial recall >= 95% and false closure <= 5% on every set "
                           "and language", not failing))
        worse = []
        for path, label, higher, _, best in cols:
            mine = _get(result, s.name, path)
            for b in base:
                theirs = _get(result, b, path)
                if theirs is None:
                    continue
                if not _not_worse(mine, theirs, higher, best):
                    worse.append(f"{label} (vs {b.split(': ', 1)[-1]})")
        if cols:
            checks.append(("better than both baselines on every metric", not worse))
        rob = result["robustness"].get(s.name)
        if rob:
            checks.append(("no NaN / out-of-range output on any input", not rob["range_failures"]))
            checks.append(("jaw does not flap on non-speech inputs", not rob["flapping"]))
        out[s.name] = {"checks": checks, "closure_target_failing": failing,
                       "not_better_than_baselines": worse,
                       "all_pass": bool(checks) and all(ok for _, ok in checks)}
    return out


def _group_losses(items: Sequence[str]) -> str:
    """'TTS de rest in silence (vs x)', 'TTS fr rest ...' -> 'TTS rest in silence vs x: de, fr'."""
    groups: dict[str, list[str]] = {}
    for it in items:
        label, _, vs = it.rpartition(" (vs ")
        vs = vs.rstrip(")")
        if label.startswith("TTS "):
            lang, _, metric = label[4:].partition(" ")
            key = f"TTS {metric} vs {vs}"
        else:
            lang, key = "", f"{label} vs {vs}"
        groups.setdefault(key, [])
        if lang:
            groups[key].append(lang)
    return "; ".join(f"{k} ({', '.join(v)})" if v else k for k, v in groups.items())


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def _la(v: float | None) -> str:
    if v is None:
        return "?"
    if not math.isfinite(v):
        return "offline"
    return f"{v:g}"


def _data_section(result: dict) -> list[str]:
    d = result["data"]
    L = ["### Test data", ""]
    fg = d.get("facegood")
    if fg is not None:
        if fg.get("missing"):
            L.append("- **FACEGOOD held-out clip**: not available (../shared missing).")
        else:
            L.append(f"- **FACEGOOD held-out clip** `{fg.get('clip')}`: {fg.get('seconds')} s "
                     f"of Mandarin speech by the one FACEGOOD actress with the animator's curves "
                     f"(30 fps), never used in training (the other four clips may be). Channels "
                     f"scored, the ones the animator moves in this clip (r is undefined on a constant curve): {', '.join(fg.get('channels', []))}.")
    t = d.get("tts")
    if t is not None:
        if not t.get("available"):
            L.append(f"- **TTS held-out speech**: not available (`{t.get('manifest')}` "
                     f"missing).")
        else:
            langs = t.get("languages", {})
            n = sum(v["clips"] for v in langs.values())
            secs = sum(v["seconds"] for v in langs.values())
            voices = sorted({x for v in langs.values() for x in v["voices"]})
            per_lang = ", ".join(f"{lg} {v['clips']}" for lg, v in langs.items())
            L.append(f"- **TTS held-out speech**: the `heldout` split of the generated corpus "
                     f"(`work_data/tts`, {t.get('n_heldout_total')} held-out items of "
                     f"{t.get('n_entries')}; at most {t.get('max_per_language')} per language "
                     f"scored, spread over voices): {n} clips, {secs:.0f} s, {len(langs)} "
                     f"languages ({per_lang}), "
                     f"voices {', '.join(voices)}. Phone times are the synthesiser's own. "
                     f"Held-out voices that also occur in training: "
                     f"{', '.join(t.get('heldout_voices_in_train', [])) or 'none'}; held-out "
                     f"texts that also occur in training: {t.get('heldout_texts_in_train', 0)}.")
    r = d.get("real_en")
    if r is not None and "real_en" in result.get("sets", ALL_SETS):
        if r.get("available"):
            src = ", ".join(f"{k} {v}" for k, v in r.get("sources", {}).items())
            L.append(f"- **Real English speech**: {r['clips']} clips, {r['seconds']} s ({src}), "
                     f"from the Montreal Forced Aligner test data in ../shared with their "
                     f"transcripts, force-aligned to ARPAbet phones by pocketsphinx 5 (its "
                     f"bundled en-us model and CMU dictionary). Transcript words without a "
                     f"pronunciation, dropped: {', '.join(r.get('dropped_words', [])) or 'none'}.")
        else:
            L.append(f"- **Real English speech**: not available "
                     f"({r.get('reason', 'no clips')}).")
    lg = d.get("loudness_gain", {})
    L.append(f"- **Baselines.** *Jaw follows loudness*: jawOpen = clip(g (L + 50) / 50, 0, 1), "
             f"L = level in dBFS of the 60 Hz high-passed signal under a 40 ms Hann window "
             f"centred on the frame (20 ms lookahead); the one gain g = {lg.get('gain')} was "
             f"fitted by least squares on the jawOpen curves of the FACEGOOD training clips "
             f"({', '.join(lg.get('clips', [])) or 'none'}) and nothing else; all other "
             f"channels 0. *Phone recognition + rules* (the approach of Rhubarb Lip Sync): "
             f"pocketsphinx free phone recognition (allphone search with the bundled phonetic "
             f"LM, English acoustic model) over the whole clip, then the project's "
             f"phone-to-mouth rules (`visemes.phones_to_targets`); offline.")
    L.append("")
    return L


def _method_section() -> list[str]:
    return [
        "### Method", "",
        "Every system runs on exactly the same audio and is read at 60 fps. Opening "
        "O = jawOpen + 0.25 (mouthLowerDownLeft + mouthLowerDownRight) - mouthClose.", "",
        "- *Bilabial recall*: a p/b/m counts as closed when the minimum of O over its interval "
        "+-30 ms is <= 0.35 x the clip's median O at open-vowel midpoints (the median floored "
        "at 0.05, so a mouth that never opens cannot pass; clips without an open vowel are not "
        "scored). *False closure*: an open vowel whose O at its midpoint is below that "
        "threshold. Counts are pooled over the clips of a set.",
        "- *Rest in silence*: frames of the silences, from 100 ms after speech ends to 100 ms "
        "before it resumes (clip start and end need no margin), at which every mouth channel "
        "is <= 0.10 (closed and relaxed).",
        "- *Rounding*: fraction of rounded vowels whose mouthFunnel + mouthPucker at the "
        "midpoint exceeds the median over the clip's unrounded vowels by at least 0.05.",
        "- *FACEGOOD r*: Pearson r of the prediction, sampled at the 30 fps curve times, with "
        "the animator's curve; jawOpen alone and the mean over the animated channels (a "
        "channel a system leaves constant counts as r = 0).",
        "- Phone classes (bilabial, open vowel, rounded vowel, silence...) come from "
        "`visemes.phone_class`, the same rules for every language and phone set.",
        "- *Better than a baseline* means strictly better, or both at the perfect value.",
        "",
    ]


def render_markdown(result: dict) -> str:
    L: list[str] = ["## Evaluation", ""]
    L.append(f"_Generated by `python -m facecast_runtime.training.evaluate` on "
             f"{result['generated']} in {result.get('elapsed_s', '?')} s; rerun it rather "
             f"than editing this section._")
    L.append("")
    L += _data_section(result)
    L += _method_section()
    L.append("### Results")
    L.append("")
    names = [s["name"] for s in result["systems"]]
    # ---- main table
    cols: list[tuple[str, str, bool, bool]] = []
    if result["facegood"]:
        cols += [("fg/jaw_r", "FG jawOpen r", True, False),
                 ("fg/mean_r", "FG mean mouth r", True, False)]
    if any(result["tts"].values()):
        for key, label, higher, pct, _ in PHONE_METRICS:
            cols.append((f"tts/{key}", f"TTS {label}", higher, pct))
    if result["real_en"]:
        cols += [("en/bilabial_recall", "EN bilabial recall", True, True),
                 ("en/false_closure", "EN false closure", False, True)]

    def value(n: str, path: str) -> tuple[float | None, str]:
        part, key = path.split("/")
        if part == "fg":
            v = result["facegood"].get(n, {}).get(key)
            return v, _fmt(v)
        if part == "en":
            v = result["real_en"].get(n, {}).get(key)
            return v, _fmt(v, True)
        per = result["tts"].get(n, {})
        v = per.get("all", {}).get(key)
        higher = next(m[2] for m in PHONE_METRICS if m[0] == key)
        w, lg = _worst(per, key, higher)
        txt = _fmt(v, True)
        if w is not None and len(per) > 2:
            txt += f" ({'min' if higher else 'max'} {_fmt(w, True)} {lg})"
        return v, txt

    best: dict[str, float] = {}
    for path, _, higher, _ in cols:
        vals = [v for v in (value(n, path)[0] for n in names) if v is not None]
        if vals:
            best[path] = max(vals) if higher else min(vals)
    rows = []
    for n in names:
        row = [n]
        for path, _, higher, _ in cols:
            v, txt = value(n, path)
            if v is not None and len(names) > 1 and v == best.get(path):
                txt = f"**{txt}**"
            row.append(txt)
        rows.append(row)
    if cols:
        L.append("Rows are systems. Higher is better except for false closure; the best pooled "
                 "value of each column is bold. FG = FACEGOOD held-out clip; TTS = phoneme-timed "
                 "held-out speech, all languages pooled, with the worst language in brackets; "
                 "EN = real English speech aligned with pocketsphinx.")
        L.append("")
        L += _table(["system"] + [c[1] for c in cols], rows)
        L.append("")
    diag = []
    for n in names:
        fg = result["facegood"].get(n, {})
        if fg.get("jaw_best_lag_ms") is not None:
            diag.append(f"{n}: jawOpen r peaks at a shift of {fg['jaw_best_lag_ms']:+g} ms "
                        f"(r = {_fmt(fg['jaw_r_best_lag'])})")
    if diag:
        L.append("Timing diagnostic on the FACEGOOD clip (positive shift = the prediction is "
                 "late; the scores above use no shift): " + "; ".join(diag) + ".")
        L.append("")
    blockers = []
    for s in result["systems"]:
        for setname, summ in (("TTS", result["tts"].get(s["name"], {}).get("all")),
                              ("EN", result["real_en"].get(s["name"]))):
            if summ and summ.get("rest_blockers"):
                top = list(summ["rest_blockers"].items())[:3]
                blockers.append(f"{s['name']} ({setname}): " + ", ".join(
                    f"{ch} {_fmt(v, True)}" for ch, v in top))
    if blockers:
        L.append("Channels most often above 0.10 in scored silences (share of silence frames): "
                 + "; ".join(blockers) + ".")
        L.append("")
    ref = result.get("reference", {})
    if ref:
        parts = []
        if "tts" in ref:
            a = ref["tts"]["all"]
            parts.append(f"TTS recall {_fmt(a['bilabial_recall'], True)}, false closure "
                         f"{_fmt(a['false_closure'], True)}, rest {_fmt(a['rest'], True)}, "
                         f"rounding {_fmt(a['rounding'], True)}")
        if "real_en" in ref:
            a = ref["real_en"]
            parts.append(f"EN recall {_fmt(a['bilabial_recall'], True)}, false closure "
                         f"{_fmt(a['false_closure'], True)}")
        L.append("Sanity check of the metrics (not a system): the phone-to-mouth rules driven "
                 "by the reference phones themselves score " + "; ".join(parts) + ".")
        L.append("")
    # ---- per language
    langs = sorted({lg for v in result["tts"].values() for lg in v if lg != "all"})
    if langs:
        L.append("#### TTS held-out speech per language")
        L.append("")
        L.append("Each cell: bilabial recall / false closure / rest in silence / rounding. "
                 "Counts (clips, p-b-m, open vowels, rounded vowels, silence frames) are those "
                 "of the first system; every system is scored on the same items.")
        L.append("")
        rows = []
        first = names[0]
        for lg in langs:
            c = result["tts"][first].get(lg, {}).get("counts", {})
            row = [lg, f"{c.get('n_clips')} / {c.get('n_bilabial')} / {c.get('n_open')} / "
                       f"{c.get('n_rounded')} / {c.get('rest_frames')}"]
            for n in names:
                v = result["tts"].get(n, {}).get(lg, {})
                row.append(" / ".join(_fmt(v.get(k), True) for k, *_ in PHONE_METRICS))
            rows.append(row)
        L += _table(["language", "counts"] + names, rows)
        L.append("")
    if result["real_en"]:
        c = result["real_en"][names[0]]["counts"]
        L.append(f"Real English items scored: {c['n_clips']} clips, {c['n_bilabial']} p/b/m, "
                 f"{c['n_open']} open vowels.")
        L.append("")
    # ---- lookahead
    L.append("#### Quality against lookahead")
    L.append("")
    L.append(f"One row per model variant, its lookahead read from the ONNX metadata "
             f"(`lookahead_ms`); the issue asks for {', '.join(str(x) for x in LOOKAHEADS_MS)} "
             f"ms. TTS columns pool all languages.")
    L.append("")
    la_rows = []
    for r in result["lookahead"]:
        la_rows.append([r["name"], _la(r["lookahead_ms"]), _fmt(r["facegood_jaw_r"]),
                        _fmt(r["facegood_mean_r"]),
                        _fmt(r["tts_bilabial_recall"], True), _fmt(r["tts_false_closure"], True),
                        _fmt(r["tts_rest"], True), _fmt(r["tts_rounding"], True),
                        _fmt(r["en_bilabial_recall"], True), _fmt(r["en_false_closure"], True)])
    L += _table(["system", "lookahead ms", "FG jaw r", "FG mean r", "TTS recall",
                 "TTS false closure", "TTS rest", "TTS rounding", "EN recall",
                 "EN false closure"], la_rows)
    have = [r["lookahead_ms"] for r in result["lookahead"]
            if r["kind"] == "model" and r["lookahead_ms"] is not None]
    missing = [x for x in LOOKAHEADS_MS if not any(abs(x - h) <= 10 for h in have)]
    if missing:
        L.append("")
        L.append(f"No model variant in this run near: {', '.join(str(x) for x in missing)} ms.")
    L.append("")
    # ---- robustness
    if result["robustness"]:
        rd = result["data"].get("robustness", {})
        L.append("#### Robustness")
        L.append("")
        L.append(f"Speech conditions are built from held-out clips "
                 f"({', '.join(rd.get('speech_clips', [])) or 'none'}; "
                 f"{rd.get('speech_seconds')} s joined with 0.6 s gaps) and scored against "
                 f"their clean phone times; the non-speech inputs are 8 s synthetic signals "
                 f"(pink noise, band-passed noise bursts shaped like breaths, synthetic chords "
                 f"with drums, digital silence, DC); real recordings checked for range only: "
                 f"{', '.join(rd.get('real_extra', [])) or 'none'}. A system *flaps* when the "
                 f"95th percentile of jawOpen on a non-speech input exceeds {FLAP_P95_MAX}.")
        L.append("")
        first = next(iter(result["robustness"].values()))
        sp_names = list(first["speech"])
        ns_names = list(first["nonspeech"])
        rows = []
        for n in names:
            rob = result["robustness"][n]
            row = [n, f"{len(rob['range_failures'])}/{rob['n_conditions']}"]
            for c in ns_names:
                v = rob["nonspeech"][c]["jaw_p95"]
                row.append(_fmt(v) + (" (flaps)" if rob["nonspeech"][c]["flaps"] else ""))
            rows.append(row)
        L.append("Inputs with non-finite or out-of-range output (failing / tested), and the "
                 "95th percentile of jawOpen on non-speech inputs:")
        L.append("")
        L += _table(["system", "range failures"] + ns_names, rows)
        L.append("")
        if sp_names:
            rows = []
            for n in names:
                rob = result["robustness"][n]
                rows.append([n] + [f"{_fmt(rob['speech'][c]['bilabial_recall'], True)} / "
                                   f"{_fmt(rob['speech'][c]['false_closure'], True)}"
                                   for c in sp_names])
            L.append("Bilabial recall / false closure on degraded speech:")
            L.append("")
            L += _table(["system"] + sp_names, rows)
            L.append("")
    # ---- targets
    if result["targets"]:
        L.append("#### Targets")
        L.append("")
        for n, tg in result["targets"].items():
            L.append(f"- **{n}**: " + "; ".join(f"{label}: {'PASS' if ok else 'FAIL'}"
                                                 for label, ok in tg["checks"]) + ".")
            if tg["closure_target_failing"]:
                L.append(f"  - closure target missed on: "
                         f"{', '.join(tg['closure_target_failing'])}.")
            if tg["not_better_than_baselines"]:
                L.append(f"  - not better than a baseline on: "
                         f"{_group_losses(tg['not_better_than_baselines'])}.")
        L.append("")
    L += [
        "### Limits", "",
        "- The FACEGOOD test is one clip of one speaker in one language (Mandarin) on one rig: "
        "its r says how closely a system follows that animator's style, not accuracy in "
        "general.",
        "- TTS phone times are exact (the synthesiser's own), but the voices are synthetic; "
        "held-out voices and texts are new, yet share synthesis engines with training voices.",
        "- The real English set is small (see the counts), so a 95% target on it has a "
        "resolution of a few percent; its phone times come from pocketsphinx forced alignment "
        "(10 ms frames; word boundaries typically within 20-40 ms of the MFA reference "
        "TextGrids, occasionally worse next to pauses).",
        "- The phone+rules baseline uses pocketsphinx's English phone recogniser on every "
        "language and is offline; the models are causal with a fixed lookahead. Rhubarb Lip "
        "Sync itself recognises English words, which gives it better phones on English.",
        "- The metrics score opening, closure, rest and rounding only; they do not judge "
        "smoothness, style, asymmetry, teeth or tongue.",
    ]
    return "\n".join(L) + "\n"


def write_card_section(path: str | os.PathLike, markdown: str) -> None:
    """Replace the text between the eval markers of ``path`` (created with them if absent)."""
    p = Path(path)
    block = f"{BEGIN_MARK}\n{markdown.rstrip()}\n{END_MARK}"
    if p.exists():
        text = p.read_text(encoding="utf-8")
        a, b = text.find(BEGIN_MARK), text.find(END_MARK)
        if a >= 0 and b > a:
            text = text[:a] + block + text[b + len(END_MARK):]
        else:
            text = text.rstrip() + "\n\n" + block + "\n"
    else:
        p.parent.mkdir(parents=True, exist_ok=True)
        text = f"# facecast model card\n\n{block}\n"
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(p)


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    return str(o)


def _jsonable(o):
    if isinstance(o, float) and not math.isfinite(o):
        return str(o)
    if isinstance(o, dict):
        return {k: _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    return o


def main(argv: Sequence[str] | None = None) -> int:
    repo = Path(__file__).resolve().parents[3]
    ap = argparse.ArgumentParser(prog="python -m facecast_runtime.training.evaluate",
                                 description="Evaluate facecast models against the baselines "
                                             "and write the results into the model card.")
    ap.add_argument("--models", nargs="*", default=None,
                    help="ONNX model files (default: runtime/facecast_runtime/models/*.onnx)")
    ap.add_argument("--out", default=None,
                    help="model card to update between the eval markers (default: print)")
    ap.add_argument("--json", default=None, help="also write the full results as JSON")
    ap.add_argument("--shared", default=os.environ.get("FACECAST_SHARED",
                                                       str(repo.parent / "shared")))
    ap.add_argument("--work", default=str(repo / "work_data"),
                    help="work_data folder (TTS corpus in tts/, alignment cache in align/)")
    ap.add_argument("--max-tts-per-language", type=int, default=40)
    ap.add_argument("--sets", nargs="*", default=list(ALL_SETS), choices=ALL_SETS)
    args = ap.parse_args(argv)
    paths = args.models
    if paths is None:
        paths = sorted(str(p) for p in (repo / "runtime" / "facecast_runtime" / "models"
                                        ).glob("*.onnx"))
    models: dict[str, str] = {}
    for p in paths:
        if not Path(p).is_file():
            ap.error(f"model file {p} does not exist")
        name = Path(p).stem
        k = 2
        while name in models:
            name = f"{Path(p).stem}-{k}"
            k += 1
        models[name] = p

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    res = run_evaluation(models, args.shared, args.work, args.out, say,
                         args.max_tts_per_language, args.sets)
    if args.json:
        Path(args.json).write_text(json.dumps(_jsonable(res), indent=1, default=_json_default))
    if args.out is None:
        print(render_markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
