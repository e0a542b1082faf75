"""Feature extraction: streaming log-mel frames, exact under any chunking.

The feature configuration travels inside every model file (metadata key ``feature``), so the
runtime computes exactly what the model was trained on. One configuration type exists today:

``{"type": "logmel", "sample_rate": 16000, "win": 400, "hop": 160, "n_fft": 512, "n_mels": 80,
   "fmin": 40, "fmax": 7600, "log_floor": 1e-6, "stack": 2, "dc_block": 0.995}``

``dc_block`` (0 = off) is the pole R of a DC-blocking filter y[n] = x[n] - x[n-1] + R y[n-1]
applied to the samples first (R = 0.995 puts the corner near 13 Hz at 16 kHz), so DC offsets and
rumble never reach the model. It runs sequentially in float64 with explicit state, so it is exact
under any chunking.

Feature frame ``j`` is centred on sample ``offset + j*hop`` (``offset = hop // 2``) and uses the
``win`` samples around it (Hann window); samples before the stream's start are zeros. ``stack``
consecutive feature frames form one model frame, so model frame ``m`` covers samples
``[m*hop*stack, (m+1)*hop*stack)`` and is centred on ``(m + 0.5) * hop * stack``.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

from .errors import ModelError


@dataclass(frozen=True)
class LogMelConfig:
    sample_rate: int = 16000
    win: int = 400
    hop: int = 160
    n_fft: int = 512
    n_mels: int = 80
    fmin: float = 40.0
    fmax: float = 7600.0
    log_floor: float = 1e-6
    stack: int = 2
    dc_block: float = 0.0
    type: str = "logmel"

    @property
    def offset(self) -> int:
        return self.hop // 2

    @property
    def model_hop(self) -> int:
        return self.hop * self.stack

    @property
    def dim(self) -> int:
        return self.n_mels * self.stack

    @property
    def future_samples(self) -> int:
        """Samples after a model frame's centre that computing it needs."""
        last_centre = self.offset + (self.stack - 1) * self.hop  # of frame 0's last feature
        return last_centre + self.win // 2 - self.model_hop // 2

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "LogMelConfig":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ModelError(f"model metadata 'feature' is not valid JSON ({e})") from None
        if not isinstance(d, dict) or d.get("type") != "logmel":
            raise ModelError(f"model metadata 'feature' has unsupported type "
                             f"{d.get('type') if isinstance(d, dict) else d!r}; "
                             "this runtime supports 'logmel'")
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ModelError(f"model metadata 'feature' has unknown keys {sorted(unknown)}")
        cfg = cls(**d)
        if cfg.win > cfg.n_fft or cfg.hop <= 0 or cfg.stack < 1 or cfg.n_mels < 1:
            raise ModelError(f"model metadata 'feature' is inconsistent: {d}")
        if not 0.0 <= cfg.dc_block < 1.0:
            raise ModelError(f"model metadata 'feature' has dc_block {cfg.dc_block}; need 0 <= R < 1")
        if not 0 <= cfg.fmin < cfg.fmax <= cfg.sample_rate / 2:
            raise ModelError(f"model metadata 'feature' has a bad mel range {cfg.fmin}..{cfg.fmax}")
        return cfg


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + f / 700.0)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


@lru_cache(maxsize=8)
def mel_filterbank(cfg: LogMelConfig) -> np.ndarray:
    """Triangular mel filters, shape (n_fft//2+1, n_mels), float32, area-normalised."""
    freqs = np.linspace(0, cfg.sample_rate / 2, cfg.n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(np.array(cfg.fmin)),
                                   _hz_to_mel(np.array(cfg.fmax)), cfg.n_mels + 2))
    fb = np.zeros((len(freqs), cfg.n_mels))
    for i in range(cfg.n_mels):
        lo, c, hi = edges[i], edges[i + 1], edges[i + 2]
        up = (freqs - lo) / (c - lo)
        down = (hi - freqs) / (hi - c)
        fb[:, i] = np.maximum(0.0, np.minimum(up, down)) * (2.0 / (hi - lo))
    return fb.astype(np.float32)


@lru_cache(maxsize=8)
def _window(win: int) -> np.ndarray:
    return np.hanning(win + 1)[:win].astype(np.float32)


def logmel_frames(frames: np.ndarray, cfg: LogMelConfig) -> np.ndarray:
    """Log-mel of already cut windows, shape (n, win) -> (n, n_mels) float32."""
    padded = np.zeros((len(frames), cfg.n_fft), np.float32)
    np.multiply(frames, _window(cfg.win), out=padded[:, : cfg.win])
    return _logmel_padded(padded, cfg)


def _logmel_padded(padded: np.ndarray, cfg: LogMelConfig) -> np.ndarray:
    """Log-mel of windowed frames already zero-padded to ``n_fft``, shape (n, n_fft) float32
    (the padding ``rfft(x, n=n_fft)`` would add, done by the caller without a copy)."""
    from scipy import fft as sfft

    spec = sfft.rfft(padded, axis=1)  # float32 in, complex64 out
    power = spec.real ** 2 + spec.imag ** 2
    if len(power) == 1:
        # a 1-row product goes through BLAS's threaded gemv path, which stalls for ~0.3 ms on a
        # busy machine; two rows take the gemm kernel like every larger block (same numerics)
        mel = (np.vstack([power, power]) @ mel_filterbank(cfg))[:1]
    else:
        mel = power @ mel_filterbank(cfg)
    mel += cfg.log_floor
    return np.log(mel, out=mel)


class FeatureStream:
    """Streaming feature extractor: samples at ``cfg.sample_rate`` in, model frames out.

    State is explicit: ``buf`` (samples not yet fully used) and ``pending`` (feature frames
    waiting for their stack partners). ``push`` returns model frames, shape (n, cfg.dim).
    """

    def __init__(self, cfg: LogMelConfig) -> None:
        self.cfg = cfg
        lead = cfg.win // 2 - cfg.offset  # zeros before the first sample
        self.buf = np.zeros(lead, np.float32)
        self.dc_state = np.zeros(1, np.float64)  # lfilter state of the DC blocker
        self._dc_ba = (np.array([1.0, -1.0]), np.array([1.0, -cfg.dc_block]))
        self.pending = np.zeros((0, cfg.n_mels), np.float32)

    def push(self, x: np.ndarray) -> np.ndarray:
        cfg = self.cfg
        if len(x):
            x = np.asarray(x, np.float32)
            if cfg.dc_block > 0.0:
                from scipy.signal import lfilter

                y, self.dc_state = lfilter(*self._dc_ba, x.astype(np.float64), zi=self.dc_state)
                x = y.astype(np.float32)
            self.buf = np.concatenate([self.buf, x])
        n = (len(self.buf) - cfg.win) // cfg.hop + 1 if len(self.buf) >= cfg.win else 0
        if n > 0:
            # the windowed frames, written straight into the zero-padded FFT input
            padded = np.zeros((n, cfg.n_fft), np.float32)
            window = _window(cfg.win)
            if n <= 4:  # the streaming case: cheaper than building a strided view
                for i in range(n):
                    np.multiply(self.buf[i * cfg.hop : i * cfg.hop + cfg.win], window,
                                out=padded[i, : cfg.win])
            else:
                view = np.lib.stride_tricks.sliding_window_view(self.buf, cfg.win)[:: cfg.hop][:n]
                np.multiply(view, window, out=padded[:, : cfg.win])
            feats = _logmel_padded(padded, cfg)
            self.buf = self.buf[n * cfg.hop :].copy()
            self.pending = np.concatenate([self.pending, feats]) if len(self.pending) else feats
        m = len(self.pending) // cfg.stack
        out = self.pending[: m * cfg.stack].reshape(m, cfg.dim)
        self.pending = self.pending[m * cfg.stack :]
        return out


def compute_features(samples: np.ndarray, cfg: LogMelConfig, n_frames: int | None = None
                     ) -> np.ndarray:
    """Model frames of a whole signal (training and evaluation); pads the end with zeros so that
    ``n_frames`` (default: ceil(len / model_hop)) frames come out."""
    if n_frames is None:
        n_frames = -(-len(samples) // cfg.model_hop)
    need = n_frames * cfg.model_hop + cfg.future_samples + cfg.model_hop // 2 + cfg.win
    x = np.zeros(max(need, len(samples)), np.float32)
    x[: len(samples)] = samples
    fs = FeatureStream(cfg)
    out = fs.push(x)
    return out[:n_frames]
