"""Causal prosody analysis: loudness, voicing, F0, speech/pause state and prosodic events.

The analyser is fed the audio the model sees (mono float at the model's sample rate, in any
chunks) and produces one row of features every 20 ms. Frame ``m`` (``m >= 1``)
describes the audio that ends at sample ``m * hop`` (``hop`` = 20 ms): it uses only samples
before that point, so it exists as soon as they have arrived. Frame 0 is the state before the
first sample (silence).

Exact under any chunking: the per-frame measurements are row-wise numpy operations on the same
samples, the filters carry explicit state (``scipy.signal.lfilter``), and everything sequential
runs in plain Python floats frame by frame.

Per frame (20 ms):

* ``level_db`` - mean power of the last 20 ms, dB re full scale (a full-scale sine is -3 dB);
* ``voiced``, ``f0`` - YIN-style pitch (80..400 Hz) on a 4 kHz low-passed copy, 40 ms window;
* ``speech`` - speech/pause state: adaptive threshold over a tracked noise floor and speech peak,
  40 ms to start, 250 ms of silence to end;
* ``loud`` (0..1) - loudness relative to the speaker's running peak;
* ``pitch`` - F0 in semitones over the speaker's running median (0 when unvoiced);
* ``accent`` (0..1) - strength of a stressed-syllable onset (sharp loudness rise while voiced,
  weighted by loudness and pitch excursion), 0 elsewhere;
* ``pause`` - a pause was confirmed at this frame (phrase end: 250 ms of silence after speech);
* ``onset`` - speech started at this frame; the value is the length of the pause before it (s);
* ``arousal`` (-1..1) - short-term loudness and pitch range over the speaker's long-term ones.
"""
from __future__ import annotations

import math

import numpy as np

FRAME_RATE = 50           # prosody frames per second
ENERGY_WINDOW_S = 0.020
PITCH_RATE = 4000         # Hz of the pitch path
PITCH_WINDOW_S = 0.040
F0_MIN, F0_MAX = 80.0, 400.0
YIN_THRESHOLD = 0.20

PIECE_FRAMES = 160        # frames of audio analysed per step (a working set that fits in cache)

FIELDS = ("level_db", "voiced", "f0", "speech", "loud", "pitch", "accent", "pause", "onset",
          "arousal")


def _windows(a: np.ndarray, start: int, n: int, width: int, stride: int) -> np.ndarray:
    """Rows ``a[start + r * stride : start + r * stride + width]`` for r < n, as a view of the
    contiguous array ``a`` (numpy checks that it holds them)."""
    if n == 1:
        return a[start : start + width][None]
    return np.ndarray((n, width), a.dtype, a, start * a.itemsize,
                      (stride * a.itemsize, a.itemsize))


class ProsodyAnalyser:
    """Streaming prosody features at 50 frames per second (see the module docstring)."""

    def __init__(self, sample_rate: int = 16000) -> None:
        from scipy.signal import butter

        sr = int(sample_rate)
        if sr < 4000:
            raise ValueError(f"prosody needs a sample rate of at least 4000 Hz, got {sr}")
        self.sr = sr
        self.hop = sr // FRAME_RATE     # exactly 20 ms at every rate divisible by 50
        self.ewin = int(round(ENERGY_WINDOW_S * sr))
        dec = max(1, sr // PITCH_RATE)
        while self.hop % dec:
            dec -= 1
        self.dec = dec
        self.psr = sr / dec
        self.pwin = int(round(PITCH_WINDOW_S * self.psr))
        self.tau_min = max(2, int(self.psr / F0_MAX))
        self.tau_max = min(self.pwin // 2, int(math.ceil(self.psr / F0_MIN)))
        self.nfft = 1 << int(math.ceil(math.log2(self.pwin + self.tau_max)))
        self._taus = np.arange(1, self.tau_max + 1)
        self._dscale = self.pwin / (self.pwin - self._taus)
        dt = 1.0 / FRAME_RATE

        def ema(tau: float) -> float:
            return 1.0 - math.exp(-dt / tau)

        # constants of the sequential part, from time constants (seconds)
        self._k = {
            "rise": 2.0 * dt, "decay": 1.0 * dt,           # floor +2 dB/s, peak -1 dB/s
            "on": max(1, round(0.03 * FRAME_RATE)),        # 40 ms over threshold: speech
            "off": round(0.25 * FRAME_RATE),               # 250 ms under: pause
            "phrase": round(0.30 * FRAME_RATE),            # a phrase lasts >= 300 ms
            "base": ema(2.5), "pdecay": math.exp(-dt / 0.06),
            "fast": ema(0.015), "slow": ema(0.16),
            "refr": round(0.2 * FRAME_RATE),               # accents >= 200 ms apart
            "long": ema(15.0), "short": ema(1.0), "arousal": ema(0.5),
            "ar_decay": math.exp(-dt / 5.0),
        }
        self._b, self._a = butter(4, min(0.95, 900.0 / (sr / 2)))
        self._zi = np.zeros(max(len(self._a), len(self._b)) - 1)
        # history: samples before the stream are zeros
        self._x = np.zeros(self.ewin, np.float64)       # last samples at sr
        self._p = np.zeros(self.pwin, np.float64)       # last samples of the pitch path
        self.n_in = 0                                    # samples analysed
        self._pending: list[np.ndarray] = []             # samples fed, not analysed yet
        self.n_pending = 0
        self.frames = 0                                  # frames computed (1..frames exist)
        # output rows, index = frame number - self.base
        self.base = 0
        self._rows: dict[str, list] = {f: [] for f in FIELDS}
        self._append_row(-100.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)  # frame 0
        # sequential state (plain floats)
        self._floor = -75.0
        self._peak = -30.0
        self._speech = False
        self._run_on = 0
        self._run_off = 0
        self._speech_frames = 0
        self._pause_frames = 10_000
        self._base_st: float | None = None
        self._pitch = 0.0
        self._es = -100.0
        self._el = -100.0
        self._onset_prev = 0.0
        self._armed = 0.0
        self._since_accent = 1000
        self._lvl_long: float | None = None
        self._lvl_short = 0.0
        self._rng_long = 2.0
        self._rng_short = 2.0
        self._arousal = 0.0

    # -- storage ------------------------------------------------------------------------------
    def _append_row(self, *vals: float) -> None:
        for f, v in zip(FIELDS, vals):
            self._rows[f].append(v)

    def frame_at(self, num: int, den: int) -> int:
        """The last frame that ends at or before time ``num / den`` seconds."""
        return (num * self.sr) // (den * self.hop)

    def row(self, m: int, field: str) -> float:
        return self._rows[field][m - self.base]

    def column(self, field: str, m0: int, m1: int) -> list:
        """Values of frames m0..m1-1."""
        return self._rows[field][m0 - self.base : m1 - self.base]

    def forget_before(self, m: int) -> None:
        """Drop frames before ``m`` (the consumer no longer needs them)."""
        drop = m - self.base
        if drop > 0:
            for f in FIELDS:
                del self._rows[f][:drop]
            self.base = m

    # -- streaming ----------------------------------------------------------------------------
    def feed(self, x: np.ndarray) -> None:
        """Add samples (model rate). Frames are computed lazily by :meth:`ensure`, in batches
        (the values never depend on how the audio was cut)."""
        x = np.asarray(x, np.float64).ravel()
        if len(x):
            self._pending.append(x)
            self.n_pending += len(x)

    def ensure(self, m: int) -> int:
        """Compute every frame the audio so far allows if frame ``m`` is not there yet;
        returns the number of frames available (frames 1..frames)."""
        if m > self.frames and self.n_pending:
            x = (self._pending[0] if len(self._pending) == 1
                 else np.concatenate(self._pending))
            self._pending = []
            self.n_pending = 0
            # in pieces of a few seconds: the same values (any cut gives them), and the
            # intermediate arrays stay in the CPU caches (much faster than one big block)
            piece = self.hop * PIECE_FRAMES
            for i in range(0, len(x), piece):
                self._compute(x[i : i + piece])
        return self.frames

    def _compute(self, x: np.ndarray) -> None:
        from scipy.signal import lfilter

        n0 = self.n_in
        self.n_in += len(x)
        lp, self._zi = lfilter(self._b, self._a, x, zi=self._zi)
        # keep the pitch-path samples with global index i where (i + 1) % dec == 0
        first = (-(n0 + 1)) % self.dec
        pitch_new = lp[first :: self.dec]
        m_end = self.n_in // self.hop
        n_new = m_end - self.frames
        xs = np.concatenate([self._x, x])            # xs[k] is sample n0 - ewin + k
        ps = np.concatenate([self._p, pitch_new])    # pitch samples before n_in
        if n_new > 0:
            # energy windows [m*hop - ewin, m*hop) for m = frames+1 .. m_end: rows of a strided
            # view (consecutive windows start hop samples apart)
            s0 = (self.frames + 1) * self.hop - n0           # xs index of the first window
            E = _windows(xs, s0, n_new, self.ewin, self.hop)
            level = 10.0 * np.log10(np.mean(E * E, axis=1) + 1e-10)
            # pitch windows: pitch samples q with q*dec + dec - 1 < m*hop, the last pwin of them
            p_first_global = (n0 + first) // self.dec - self.pwin  # global index of ps[0]
            q0 = (self.frames + 1) * self.hop // self.dec - self.pwin - p_first_global
            P = np.ascontiguousarray(_windows(ps, q0, n_new, self.pwin, self.hop // self.dec))
            f0, voiced = self._yin(P)
            rows = self._rows
            rows["level_db"].extend(level.tolist())
            rows["voiced"].extend(voiced.astype(np.float64).tolist())
            rows["f0"].extend(np.where(voiced, f0, 0.0).tolist())
            self._sequential(level.tolist(), f0.tolist(), voiced.tolist())
            self.frames = m_end
        self._x = xs[-self.ewin :]
        self._p = ps[-self.pwin :]

    def _yin(self, P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """F0 and voicing of each row (a 40 ms window of the pitch path), YIN-style: the
        difference function from the window's autocorrelation, normalised by its cumulative
        mean; the first local minimum under the threshold (else the global minimum) wins."""
        W, nfft, tmax = self.pwin, self.nfft, self.tau_max
        n = len(P)
        # the windows, mean removed, zero-padded to nfft (the padding rfft would add)
        Pp = np.zeros((n, nfft))
        np.subtract(P, P.mean(axis=1, keepdims=True), out=Pp[:, :W])
        Pc = Pp[:, :W]
        cs = np.cumsum(Pc * Pc, axis=1)
        # rows with (almost) no energy are unvoiced whatever the rest says: skip them (every
        # step below works row by row, so the other rows' values do not change)
        loud = cs[:, W - 1] > 1e-7 * W
        f0 = np.zeros(n)
        voiced = np.zeros(n, bool)
        n_loud = int(np.count_nonzero(loud))
        if n_loud == 0:
            return f0, voiced
        if n_loud < n:
            Pp = Pp[loud]
            cs = cs[loud]
        X = np.fft.rfft(Pp, nfft, axis=1)
        r = np.fft.irfft(X.real * X.real + X.imag * X.imag, nfft, axis=1)
        taus = self._taus
        # d(tau) = sum_{n < W-tau} (x[n] - x[n+tau])^2, scaled to W terms
        d = (cs[:, W - 1 - tmax : W - 1][:, ::-1] + (cs[:, W - 1 : W] - cs[:, :tmax])
             - 2.0 * r[:, 1 : tmax + 1])
        d = np.maximum(d, 0.0) * self._dscale
        cmnd = d * taus / np.maximum(np.cumsum(d, axis=1), 1e-12)
        seg = cmnd[:, self.tau_min - 1 :]
        mid = seg[:, 1:-1]
        cand = (mid < YIN_THRESHOLD) & (mid <= seg[:, :-2]) & (mid <= seg[:, 2:])
        first = np.where(cand.any(axis=1), cand.argmax(axis=1) + 1, seg.argmin(axis=1))
        rows = np.arange(len(seg))
        last = seg.shape[1] - 1
        a = seg[rows, np.maximum(first - 1, 0)]
        b = seg[rows, first]
        c = seg[rows, np.minimum(first + 1, last)]
        den = a - 2.0 * b + c
        ok = den > 1e-12
        shift = np.where(ok, 0.5 * (a - c) / np.where(ok, den, 1.0), 0.0)
        tau = first + self.tau_min + np.clip(shift, -0.5, 0.5)
        v = b < 0.30
        fv = np.where(v, self.psr / tau, 0.0)
        if n_loud < n:
            voiced[loud] = v
            f0[loud] = fv
            return f0, voiced
        return fv, v

    def _sequential(self, level: list, f0: list, voiced: list) -> None:
        # plain floats, frame by frame; min()/max() are spelt out as comparisons (the same
        # comparisons in the same order, so the same results, ties and NaN included)
        K = self._k
        rise, decay, k_on, k_off, phrase = K["rise"], K["decay"], K["on"], K["off"], K["phrase"]
        k_base, k_pdecay, k_fast, k_slow, k_refr = (K["base"], K["pdecay"], K["fast"],
                                                    K["slow"], K["refr"])
        k_long, k_short, k_ar, k_ar_decay = K["long"], K["short"], K["arousal"], K["ar_decay"]
        rows = self._rows       # level_db, voiced and f0 are stored by the caller
        o_speech, o_loud = rows["speech"], rows["loud"]
        o_pitch, o_accent, o_pause, o_onset, o_arousal = (rows["pitch"], rows["accent"],
                                                          rows["pause"], rows["onset"],
                                                          rows["arousal"])
        floor, peak, speech = self._floor, self._peak, self._speech
        run_on, run_off = self._run_on, self._run_off
        sp_frames, pa_frames = self._speech_frames, self._pause_frames
        base_st, pitch, es, el = self._base_st, self._pitch, self._es, self._el
        onset_prev, armed, since = self._onset_prev, self._armed, self._since_accent
        lvl_long, lvl_short = self._lvl_long, self._lvl_short
        rng_long, rng_short, arousal = self._rng_long, self._rng_short, self._arousal
        log2, tanh = math.log2, math.tanh
        for e, f, v in zip(level, f0, voiced):
            # noise floor (rises 2 dB/s, falls at once) and speech peak (decays 1 dB/s)
            # floor = min(e, floor + rise, peak - 20)
            x = floor + rise
            y = peak - 20.0
            floor = e
            if x < floor:
                floor = x
            if y < floor:
                floor = y
            # peak = max(e, peak - decay, floor + 25)
            x = peak - decay
            y = floor + 25.0
            peak = e
            if x > peak:
                peak = x
            if y > peak:
                peak = y
            # thr = max(floor + 12, peak - 32, -62)
            thr = floor + 12.0
            x = peak - 32.0
            if x > thr:
                thr = x
            if -62.0 > thr:
                thr = -62.0
            pause_ev = 0.0
            onset_ev = 0.0
            if e > thr:
                run_on += 1
                run_off = 0
            else:
                run_off += 1
                run_on = 0
            if not speech and run_on >= k_on:
                speech = True
                onset_ev = max(0.01, (pa_frames - k_on + 1) / FRAME_RATE)
                sp_frames = 0
            elif speech and run_off >= k_off:
                speech = False
                if sp_frames >= phrase:
                    pause_ev = 1.0
                pa_frames = k_off
            if speech:
                sp_frames += 1
            else:
                pa_frames += 1
            # pitch relative to the running median (EMA of semitones, voiced speech only)
            if v and speech and f > 0.0:
                st = 12.0 * log2(f / 100.0)
                if base_st is None:
                    base_st = st
                base_st += (st - base_st) * k_base
                # pitch = max(-12, min(12, st - base_st))
                x = st - base_st
                if not x < 12.0:
                    x = 12.0
                pitch = x if x > -12.0 else -12.0
            else:
                pitch *= k_pdecay
            # onsets: fast minus slow level
            es += (e - es) * k_fast
            el += (e - el) * k_slow
            onset = es - el
            # loud = max(0, min(1, (e - (peak - 24)) / 24))
            x = (e - (peak - 24.0)) / 24.0
            if not x < 1.0:
                x = 1.0
            loud = x if x > 0.0 else 0.0
            accent = 0.0
            since += 1
            if speech and v and onset > 5.0 and since > k_refr:
                if onset > armed:
                    armed = onset
            if armed > 0.0 and onset < onset_prev:
                sa = (0.35 * min(1.0, (armed - 5.0) / 10.0) + 0.4 * loud
                      + 0.25 * max(0.0, min(1.0, pitch / 4.0)))
                accent = max(0.05, min(1.0, sa))
                armed = 0.0
                since = 0
            if not speech:
                armed = 0.0
            onset_prev = onset
            # arousal: short-term level and pitch range over the long-term ones (speech only)
            if speech:
                if lvl_long is None:
                    lvl_long = lvl_short = e
                lvl_long += (e - lvl_long) * k_long
                lvl_short += (e - lvl_short) * k_short
                ap = pitch if pitch >= 0.0 else -pitch
                rng_long += (ap - rng_long) * k_long
                rng_short += (ap - rng_short) * k_short
                arousal += (tanh((lvl_short - lvl_long) / 6.0 + (rng_short - rng_long) / 2.5)
                            - arousal) * k_ar
            else:
                arousal *= k_ar_decay
            o_speech.append(1.0 if speech else 0.0)
            o_loud.append(loud)
            o_pitch.append(pitch if v else 0.0)
            o_accent.append(accent)
            o_pause.append(pause_ev)
            o_onset.append(onset_ev)
            o_arousal.append(arousal)
        self._floor, self._peak, self._speech = floor, peak, speech
        self._run_on, self._run_off = run_on, run_off
        self._speech_frames, self._pause_frames = sp_frames, pa_frames
        self._base_st, self._pitch, self._es, self._el = base_st, pitch, es, el
        self._onset_prev, self._armed, self._since_accent = onset_prev, armed, since
        self._lvl_long, self._lvl_short = lvl_long, lvl_short
        self._rng_long, self._rng_short, self._arousal = rng_long, rng_short, arousal
