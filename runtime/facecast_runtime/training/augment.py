"""Training-time audio augmentation that never moves anything in time.

:func:`augment` applies a random chain (each step with its own probability, ranges in
``RANGES``)::

    reverb -> background (noise / music-like tones / babble) -> gain (whisper .. clipped)
           -> channel (telephone band, mu-law, low sample-rate round trip, low-pass) -> DC offset

Timing is preserved sample for sample: the output has the input's length, filters are run
forwards and backwards (zero phase), resampling is polyphase (zero phase), and the synthetic
room impulse response has its direct path at lag 0, so reverberation only adds energy *after*
each sound, as a room does. numpy / scipy only; deterministic for a given generator state.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["augment", "RANGES", "add_noise", "reverberate", "pink_noise", "tonal_background",
           "spectral_augment", "warp_logmel", "SPECTRAL_DEFAULTS"]

#: Probabilities and ranges of every step (documented in docs/visemes.md as well).
RANGES: dict[str, dict] = {
    "reverb": {"p": 0.35, "rt60_s": (0.15, 0.9), "wet": (0.15, 0.6), "pre_delay_s": (0.0, 0.02)},
    "noise": {"p": 0.6, "snr_db": (10.0, 40.0), "colour": ("white", "pink", "brown"),
              "colour_p": (0.35, 0.45, 0.2)},
    "music": {"p": 0.15, "snr_db": (10.0, 30.0), "note_s": (0.15, 0.7), "voices": (1, 4)},
    "babble": {"p": 0.3, "snr_db": (10.0, 30.0), "talkers": (1, 4)},  # only with sources
    "gain": {"whisper_p": 0.12, "whisper_peak_db": (-45.0, -28.0),
             "normal_peak_db": (-24.0, -1.0),
             "loud_p": 0.1, "loud_overdrive_db": (2.0, 12.0)},
    "channel": {"p": 0.35, "kinds": ("telephone", "mulaw", "resample", "lowpass"),
                "telephone_hz": ((200.0, 400.0), (3000.0, 3700.0)), "mulaw_bits": (6, 8),
                "resample_hz": (4000, 6000, 8000, 11025), "lowpass_hz": (2500.0, 7000.0)},
    "dc": {"p": 0.1, "offset": (0.001, 0.05)},
}


def _active_power(x: np.ndarray, sr: int) -> float:
    """Mean power of the active (speech) part: 20 ms frames within 30 dB of the loudest."""
    n = max(1, int(0.02 * sr))
    m = len(x) // n
    if m == 0:
        return float(np.mean(x ** 2)) if len(x) else 0.0
    p = np.mean(x[: m * n].reshape(m, n) ** 2, axis=1)
    top = float(p.max())
    if top <= 0:
        return 0.0
    return float(p[p >= top * 1e-3].mean())


def _scale_to_snr(signal_power: float, noise: np.ndarray, snr_db: float) -> np.ndarray:
    npow = float(np.mean(noise ** 2))
    if npow <= 0 or signal_power <= 0:
        return np.zeros_like(noise)
    return noise * np.sqrt(signal_power / (npow * 10 ** (snr_db / 10)))


def _coloured_noise(n: int, rng: np.random.Generator, exponent: float) -> np.ndarray:
    """Noise with power spectrum ~ 1 / f**exponent (0 white, 1 pink, 2 brown)."""
    white = rng.standard_normal(n)
    if exponent == 0 or n < 4:
        return white
    spec = np.fft.rfft(white)
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    spec *= f ** (-exponent / 2)
    spec[0] = 0.0
    out = np.fft.irfft(spec, n)
    return out / (np.std(out) + 1e-12)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance pink (1/f) noise."""
    return _coloured_noise(n, rng, 1.0)


def add_noise(x: np.ndarray, sr: int, rng: np.random.Generator, snr_db: float,
              colour: str = "white") -> np.ndarray:
    """Add white / pink / brown noise at ``snr_db`` re the active speech power."""
    exp = {"white": 0.0, "pink": 1.0, "brown": 2.0}[colour]
    noise = _coloured_noise(len(x), rng, exp)
    return x + _scale_to_snr(_active_power(x, sr), noise, snr_db)


def reverberate(x: np.ndarray, sr: int, rng: np.random.Generator, rt60: float, wet: float,
                pre_delay: float = 0.0) -> np.ndarray:
    """Synthetic room: exponentially decaying noise tail (-60 dB at ``rt60``) after a direct
    path at lag 0, a few sparse early reflections, mixed ``wet`` : (1 - wet)."""
    from scipy.signal import fftconvolve

    n_ir = max(2, int(min(rt60, 1.2) * sr))
    t = np.arange(n_ir) / sr
    decay = np.exp(-6.9078 * t / rt60)  # ln(1000): amplitude -60 dB at rt60
    tail = rng.standard_normal(n_ir) * decay
    # the diffuse tail starts after the pre-delay, never before the direct sound
    start = int(pre_delay * sr)
    tail[: max(start, 1)] = 0.0
    for _ in range(int(rng.integers(2, 6))):  # early reflections (1-30 ms)
        k = int(rng.uniform(0.001, 0.03) * sr)
        if k < n_ir:
            tail[k] += rng.uniform(-0.6, 0.6)
    tail /= np.sqrt(np.sum(tail ** 2)) + 1e-12
    ir = tail * wet
    ir[0] += 1.0 - wet
    y = fftconvolve(x, ir)[: len(x)]
    # keep the active loudness of the dry signal
    p0, p1 = _active_power(x, sr), _active_power(y, sr)
    if p1 > 0 and p0 > 0:
        y *= np.sqrt(p0 / p1)
    return y


def tonal_background(n: int, sr: int, rng: np.random.Generator,
                     note_range: Sequence[float] = (0.15, 0.7), voices: int = 2) -> np.ndarray:
    """Music-like background: ``voices`` lines of harmonic tones (a few partials, pitch drawn
    per note from a pentatonic-ish scale) with soft attack / release envelopes."""
    out = np.zeros(n)
    scale = np.array([0, 2, 4, 7, 9, 12, 14, 16, 19, 21])
    for _ in range(voices):
        pos = 0
        base = float(rng.uniform(110.0, 440.0))
        while pos < n:
            length = int(rng.uniform(*note_range) * sr)
            length = min(max(16, length), n - pos)
            f0 = base * 2 ** (scale[int(rng.integers(len(scale)))] / 12)
            t = np.arange(length) / sr
            tone = np.zeros(length)
            for h in range(1, int(rng.integers(2, 6)) + 1):
                if f0 * h < sr / 2 - 100:
                    tone += np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 2 * np.pi)) / h
            att = max(1, int(0.01 * sr))
            env = np.ones(length)
            env[:att] = np.linspace(0.0, 1.0, att)[:length]
            env *= np.exp(-t * rng.uniform(0.5, 4.0))
            rel = max(1, min(int(0.02 * sr), length))
            env[-rel:] *= np.linspace(1, 0, rel)
            out[pos: pos + length] += tone * env
            pos += length
    return out


def _babble(x: np.ndarray, sr: int, rng: np.random.Generator, sources: Sequence[np.ndarray],
            talkers: int) -> np.ndarray:
    mix = np.zeros(len(x))
    for _ in range(talkers):
        src = np.asarray(sources[int(rng.integers(len(sources)))], np.float64)
        if len(src) == 0:
            continue
        reps = int(np.ceil(len(x) / len(src))) + 1
        tiled = np.tile(src, reps)
        off = int(rng.integers(0, len(src)))
        seg = tiled[off: off + len(x)]
        p = _active_power(seg, sr)
        if p > 0:
            mix += seg / np.sqrt(p)
    return mix


def _butter(x: np.ndarray, sr: int, btype: str, freq) -> np.ndarray:
    from scipy.signal import butter, sosfiltfilt

    nyq = sr / 2.0
    f = np.atleast_1d(np.asarray(freq, np.float64)) / nyq
    f = np.clip(f, 1e-4, 0.999)
    sos = butter(4, f if len(f) > 1 else f[0], btype=btype, output="sos")
    if len(x) <= 3 * (2 * len(sos) + 1):
        return x
    return sosfiltfilt(sos, x)


def _mulaw(x: np.ndarray, bits: int, mu: float = 255.0) -> np.ndarray:
    y = np.sign(x) * np.log1p(mu * np.minimum(np.abs(x), 1.0)) / np.log1p(mu)
    levels = 2 ** bits
    q = np.round((y + 1) / 2 * (levels - 1)) / (levels - 1) * 2 - 1
    return np.sign(q) * (np.expm1(np.abs(q) * np.log1p(mu)) / mu)


def _resample_round_trip(x: np.ndarray, sr: int, low: int) -> np.ndarray:
    from math import gcd

    from scipy.signal import resample_poly

    if low >= sr:
        return x
    g = gcd(sr, low)
    y = resample_poly(x, low // g, sr // g)
    z = resample_poly(y, sr // g, low // g)
    if len(z) < len(x):
        z = np.pad(z, (0, len(x) - len(z)))
    return z[: len(x)]


def augment(samples: np.ndarray, sr: int, rng: np.random.Generator,
            babble_sources: Sequence[np.ndarray] | None = None,
            info: dict | None = None) -> np.ndarray:
    """A randomly degraded copy of ``samples`` (mono, any float / int16 scale; returned as
    float32 in [-1, 1], same length, timing unchanged).

    ``babble_sources``: optional other clips (same ``sr``) to mix as babble. ``info``: when a
    dict is given, the chosen steps and parameters are written into it.
    """
    x = np.asarray(samples)
    if x.dtype == np.int16:
        x = x.astype(np.float64) / 32768.0
    x = np.nan_to_num(x.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if x.ndim != 1:
        raise ValueError(f"augment expects mono 1-D audio, got shape {x.shape}")
    n = len(x)
    log = info if info is not None else {}
    if n == 0:
        return x.astype(np.float32)
    R = RANGES

    if rng.random() < R["reverb"]["p"]:
        rt60 = float(rng.uniform(*R["reverb"]["rt60_s"]))
        wet = float(rng.uniform(*R["reverb"]["wet"]))
        pre = float(rng.uniform(*R["reverb"]["pre_delay_s"]))
        x = reverberate(x, sr, rng, rt60, wet, pre)
        log["reverb"] = {"rt60": rt60, "wet": wet, "pre_delay": pre}

    speech_power = _active_power(x, sr)
    background = np.zeros(n)
    if rng.random() < R["noise"]["p"]:
        colour = str(rng.choice(R["noise"]["colour"], p=R["noise"]["colour_p"]))
        snr = float(rng.uniform(*R["noise"]["snr_db"]))
        exp = {"white": 0.0, "pink": 1.0, "brown": 2.0}[colour]
        background += _scale_to_snr(speech_power, _coloured_noise(n, rng, exp), snr)
        log["noise"] = {"colour": colour, "snr_db": snr}
    if rng.random() < R["music"]["p"]:
        snr = float(rng.uniform(*R["music"]["snr_db"]))
        voices = int(rng.integers(R["music"]["voices"][0], R["music"]["voices"][1] + 1))
        tones = tonal_background(n, sr, rng, R["music"]["note_s"], voices)
        background += _scale_to_snr(speech_power, tones, snr)
        log["music"] = {"snr_db": snr, "voices": voices}
    if babble_sources and rng.random() < R["babble"]["p"]:
        snr = float(rng.uniform(*R["babble"]["snr_db"]))
        talkers = int(rng.integers(R["babble"]["talkers"][0], R["babble"]["talkers"][1] + 1))
        background += _scale_to_snr(speech_power, _babble(x, sr, rng, babble_sources, talkers),
                                    snr)
        log["babble"] = {"snr_db": snr, "talkers": talkers}
    x = x + background

    peak = float(np.max(np.abs(x)))
    g = R["gain"]
    u = rng.random()
    if u < g["whisper_p"]:
        target_db = float(rng.uniform(*g["whisper_peak_db"]))
        kind = "whisper"
    elif u < g["whisper_p"] + g["loud_p"]:
        target_db = float(rng.uniform(*g["loud_overdrive_db"]))
        kind = "clipped"
    else:
        target_db = float(rng.uniform(*g["normal_peak_db"]))
        kind = "normal"
    if peak > 0:
        x = x * (10 ** (target_db / 20) / peak)
    if kind == "clipped":
        x = np.tanh(x) if rng.random() < 0.5 else np.clip(x, -1.0, 1.0)
    log["gain"] = {"kind": kind, "peak_db": target_db}

    c = R["channel"]
    if rng.random() < c["p"]:
        kind = str(rng.choice(c["kinds"]))
        if kind == "telephone":
            lo = float(rng.uniform(*c["telephone_hz"][0]))
            hi = min(float(rng.uniform(*c["telephone_hz"][1])), sr / 2 * 0.95)
            x = _butter(x, sr, "bandpass", [lo, hi])
            log["channel"] = {"kind": kind, "band_hz": [lo, hi]}
        elif kind == "mulaw":
            bits = int(rng.integers(c["mulaw_bits"][0], c["mulaw_bits"][1] + 1))
            x = _mulaw(np.clip(x, -1, 1), bits)
            log["channel"] = {"kind": kind, "bits": bits}
        elif kind == "resample":
            low = int(rng.choice(c["resample_hz"]))
            x = _resample_round_trip(x, sr, low)
            log["channel"] = {"kind": kind, "rate_hz": low}
        else:
            fc = min(float(rng.uniform(*c["lowpass_hz"])), sr / 2 * 0.95)
            x = _butter(x, sr, "lowpass", fc)
            log["channel"] = {"kind": kind, "cutoff_hz": fc}

    if rng.random() < R["dc"]["p"]:
        off = float(rng.uniform(*R["dc"]["offset"])) * (1 if rng.random() < 0.5 else -1)
        x = x + off
        log["dc"] = off

    x = np.clip(np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)
    return x.astype(np.float32)


# ------------------------------------------------------------------ spectral (feature domain)

#: Defaults of :func:`spectral_augment` (the ``[train.spectral]`` table of a training config).
SPECTRAL_DEFAULTS: dict = {
    "p": 0.0,                 # probability that a training crop is augmented (0 = off)
    "warp": [0.88, 1.12],     # vocal-tract-length factor range (log-uniform)
    "tilt_db": 6.0,           # spectral tilt, +- dB from the lowest to the highest band
    "eq_db": 3.0,             # smooth random equaliser, standard deviation in dB
    "masks": 0,               # frequency masks per crop
    "mask_bands": 8,          # widest mask, in mel bands
}

_LN_DB = np.log(10.0) / 10.0   # natural-log units of a power ratio of 1 dB


def _band_centres_hz(feat) -> np.ndarray:
    from ..features import _hz_to_mel, _mel_to_hz

    mels = np.linspace(_hz_to_mel(np.array(feat.fmin)), _hz_to_mel(np.array(feat.fmax)),
                       feat.n_mels + 2)
    return _mel_to_hz(mels[1:-1])


def warp_logmel(feats: np.ndarray, feat, alpha: float) -> np.ndarray:
    """Log-mel model frames of the same sound from a vocal tract ``alpha`` times shorter.

    Vocal-tract-length perturbation: the spectral envelope S(f) becomes S(f / alpha), so
    formants move up by ``alpha`` (> 1: shorter tract, e.g. a child's or a woman's voice) while
    timing and loudness stay. Done on the band axis of each stacked frame by linear
    interpolation at the warped band centres (the filters are area-normalised, so a band's
    value is an energy density); bands warped beyond the range hold the edge value.
    """
    f = np.asarray(feats, np.float32)
    centres = _band_centres_hz(feat)
    src = np.interp(centres / alpha, centres, np.arange(feat.n_mels, dtype=np.float64))
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, feat.n_mels - 1)
    w = (src - lo).astype(np.float32)
    x = f.reshape(len(f), -1, feat.n_mels)
    out = x[..., lo] * (1 - w) + x[..., hi] * w
    return out.reshape(f.shape).astype(np.float32)


def spectral_augment(feats: np.ndarray, feat, rng: np.random.Generator,
                     opts: dict | None = None, info: dict | None = None) -> np.ndarray:
    """Randomly re-voiced copy of log-mel model frames ``feats`` (n, stack * n_mels).

    Each step changes only the spectrum, never the timing: a vocal-tract-length warp
    (:func:`warp_logmel`), a linear spectral tilt and a smooth random equaliser (both applied
    as a gain on the filter energies above the log floor, so digital silence stays silent),
    and optional frequency masks (a run of bands replaced, frame by frame, by a straight line
    between its neighbours). ``opts`` overrides
    :data:`SPECTRAL_DEFAULTS` (``p`` is not read here: the caller decides whether to call).
    """
    o = {**SPECTRAL_DEFAULTS, **(opts or {})}
    log = info if info is not None else {}
    n_mels = feat.n_mels
    x = np.asarray(feats, np.float32)
    lo, hi = (float(v) for v in o["warp"])
    if hi > lo > 0:
        alpha = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        x = warp_logmel(x, feat, alpha)
        log["warp"] = alpha
    pos = np.linspace(-1.0, 1.0, n_mels)
    gain_db = np.zeros(n_mels)
    if o["tilt_db"] > 0:
        tilt = float(rng.uniform(-o["tilt_db"], o["tilt_db"]))
        gain_db += tilt * pos / 2
        log["tilt_db"] = tilt
    if o["eq_db"] > 0:
        coef = rng.normal(0.0, float(o["eq_db"]), 3)
        phase = rng.uniform(0, np.pi, 3)
        gain_db += sum(c * np.cos(np.pi * (k + 1) * (pos + 1) / 2 + ph) / np.sqrt(k + 1)
                       for k, (c, ph) in enumerate(zip(coef, phase)))
        log["eq_db"] = [float(c) for c in coef]
    if np.any(gain_db):
        floor = float(feat.log_floor)
        e = np.exp(x.reshape(len(x), -1, n_mels).astype(np.float64)) - floor
        e = np.maximum(e, 0.0) * np.exp(gain_db * _LN_DB)
        x = np.log(e + floor).reshape(x.shape).astype(np.float32)
    masks = int(o["masks"])
    if masks > 0 and len(x):
        y = x.reshape(len(x), -1, n_mels).copy()
        for _ in range(masks):
            w = int(rng.integers(1, int(o["mask_bands"]) + 1))
            k0 = int(rng.integers(0, n_mels - w + 1))
            left, right = y[..., max(k0 - 1, 0)], y[..., min(k0 + w, n_mels - 1)]
            ramp = (np.arange(1, w + 1) / (w + 1)).astype(np.float32)
            y[..., k0 : k0 + w] = left[..., None] * (1 - ramp) + right[..., None] * ramp
            log.setdefault("masks", []).append([k0, w])
        x = y.reshape(x.shape)
    return x.astype(np.float32)
