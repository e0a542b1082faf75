"""The two baselines the model must beat, run through the same metrics as the model.

* :class:`LoudnessBaseline` -- "jaw follows loudness": jawOpen from the smoothed loudness of
  the audio, every other channel 0. Loudness ``L`` (dBFS) at frame time ``t`` is the RMS of the
  DC-blocked signal (2nd-order Butterworth high-pass at 60 Hz) under a 40 ms Hann window centred
  on ``t`` (so it looks 20 ms ahead); ``jawOpen = clip(gain * (L - FLOOR_DB) / -FLOOR_DB, 0, 1)``
  with ``FLOOR_DB = -50``. The single free parameter ``gain`` is fitted on TRAINING data only
  (:func:`tune_loudness_gain`: least squares against the animator's jawOpen curves of the four
  FACEGOOD training clips, never the held-out one).
* :class:`PhoneRulesBaseline` -- "phone recognition + rules", the approach of Rhubarb Lip Sync:
  pocketsphinx free phone recognition (:func:`align.recognize_phones`) over the whole utterance,
  then the project's phone-to-mouth rules (``visemes.phones_to_targets``). It is offline: it
  sees the whole clip before it animates any of it.

Both return a :class:`facecast.schema.FrameBatch` at 60 fps with ``ceil(n * fps / sr)`` frames,
the count the engine emits for the same audio.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from facecast.schema import CHANNEL_INDEX, CHANNELS, MOUTH_CHANNELS, FrameBatch

FLOOR_DB = -50.0
WINDOW_S = 0.040
HIGHPASS_HZ = 60.0
DEFAULT_LOUDNESS_GAIN = 1.0


def n_frames_for(n_samples: int, sample_rate: int, fps: int) -> int:
    """Frames the engine emits for ``n_samples`` (``ceil(n * fps / sr)``)."""
    return -(-int(n_samples) * int(fps) // int(sample_rate))


def batch_from_curves(curves: Mapping[str, np.ndarray], fps: int = 60,
                      n_frames: int | None = None) -> FrameBatch:
    """A FrameBatch whose named channels hold ``curves`` (all others 0)."""
    if n_frames is None:
        n_frames = max((len(v) for v in curves.values()), default=0)
    values = np.zeros((n_frames, len(CHANNELS)), np.float32)
    for name, v in curves.items():
        v = np.asarray(v, np.float32)
        values[: min(len(v), n_frames), CHANNEL_INDEX[name]] = v[:n_frames]
    return FrameBatch(values, 0, fps)


def _mono(samples: np.ndarray) -> np.ndarray:
    x = np.asarray(samples)
    if x.dtype.kind in "iu":
        from ..audio import to_mono_float

        return to_mono_float(x)
    x = x.astype(np.float64)
    if x.ndim == 2:
        x = x.mean(axis=1)
    return x


def loudness_db(samples: np.ndarray, sample_rate: int, fps: int = 60,
                n_frames: int | None = None) -> np.ndarray:
    """Loudness (dBFS) at frame times ``k / fps``: 40 ms Hann-window RMS of the DC-blocked signal."""
    from scipy.signal import butter, fftconvolve, sosfilt

    sr = int(sample_rate)
    x = _mono(samples)
    x = np.nan_to_num(np.asarray(x, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if n_frames is None:
        n_frames = n_frames_for(len(x), sr, fps)
    if len(x) == 0 or n_frames == 0:
        return np.full(n_frames, -120.0, np.float32)
    sos = butter(2, HIGHPASS_HZ / (sr / 2), btype="highpass", output="sos")
    y = sosfilt(sos, x)
    win = np.hanning(max(3, int(round(WINDOW_S * sr))))
    win /= win.sum()
    ms = fftconvolve(y * y, win, mode="same")
    idx = np.clip(np.round(np.arange(n_frames) * sr / fps).astype(np.int64), 0, len(x) - 1)
    return (10.0 * np.log10(np.maximum(ms[idx], 1e-12))).astype(np.float32)


def loudness_to_jaw(level_db: np.ndarray, gain: float) -> np.ndarray:
    return np.clip(gain * (level_db - FLOOR_DB) / -FLOOR_DB, 0.0, 1.0).astype(np.float32)


class LoudnessBaseline:
    """jawOpen follows the smoothed loudness; everything else stays at 0."""

    name = "baseline: jaw follows loudness"
    lookahead_ms = 1000.0 * WINDOW_S / 2

    def __init__(self, gain: float = DEFAULT_LOUDNESS_GAIN, fps: int = 60) -> None:
        self.gain = float(gain)
        self.fps = int(fps)

    def __call__(self, samples: np.ndarray, sample_rate: int) -> FrameBatch:
        n = n_frames_for(len(samples), sample_rate, self.fps)
        jaw = loudness_to_jaw(loudness_db(samples, sample_rate, self.fps, n), self.gain)
        return batch_from_curves({"jawOpen": jaw}, self.fps, n)


def tune_loudness_gain(shared: str | os.PathLike, clips: Sequence[str] | None = None,
                       grid: np.ndarray | None = None) -> tuple[float, dict]:
    """Fit the loudness baseline's gain on FACEGOOD training clips (least squares on jawOpen).

    ``clips`` defaults to every FACEGOOD clip except ``facegood.HELDOUT_CLIP``. Returns the gain
    and a note of what it was fitted on.
    """
    from . import facegood

    if clips is None:
        clips = [c for c in facegood.CLIPS if c != facegood.HELDOUT_CLIP]
    if facegood.HELDOUT_CLIP in clips:
        raise ValueError("the held-out FACEGOOD clip must not be used to tune a baseline")
    if grid is None:
        grid = np.round(np.arange(0.10, 3.0001, 0.02), 4)
    levels, targets = [], []
    for name in clips:
        clip = facegood.load_clip(Path(shared), name)
        n = clip.n_frames
        levels.append(loudness_db(clip.samples, clip.sample_rate, clip.fps, n))
        targets.append(clip.curves["jawOpen"][:n])
    lv, tg = np.concatenate(levels), np.concatenate(targets)
    errs = np.array([float(np.mean((loudness_to_jaw(lv, g) - tg) ** 2)) for g in grid])
    best = float(grid[int(np.argmin(errs))])
    return best, {"clips": list(clips), "mse": float(errs.min()), "frames": int(len(tg)),
                  "grid": [float(grid[0]), float(grid[-1])]}


class PhoneRulesBaseline:
    """pocketsphinx phone recognition -> phones -> ``visemes.phones_to_targets`` (Rhubarb-style)."""

    name = "baseline: phone recognition + rules"
    lookahead_ms = math.inf  # offline: the recogniser decodes the whole utterance first

    def __init__(self, cache_dir: str | os.PathLike | None = None, fps: int = 60) -> None:
        self.cache_dir = cache_dir
        self.fps = int(fps)

    def phones(self, samples: np.ndarray, sample_rate: int):
        from .align import recognize_phones

        return recognize_phones(samples, sample_rate, cache_dir=self.cache_dir)

    def __call__(self, samples: np.ndarray, sample_rate: int) -> FrameBatch:
        from . import visemes

        n = n_frames_for(len(samples), sample_rate, self.fps)
        phones = [visemes.Phone(p.start, p.end, p.label)
                  for p in self.phones(samples, sample_rate)]
        if n == 0:
            return FrameBatch.empty(self.fps)
        targets = np.asarray(visemes.phones_to_targets(phones, self.fps, n, inventory="arpabet"),
                             np.float32)
        if targets.shape != (n, len(MOUTH_CHANNELS)):
            raise ValueError(f"phones_to_targets returned {targets.shape}, "
                             f"expected {(n, len(MOUTH_CHANNELS))}")
        return batch_from_curves({c: targets[:, i] for i, c in enumerate(MOUTH_CHANNELS)},
                                 self.fps, n)
