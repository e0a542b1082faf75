"""Feature-domain (spectral) augmentation used in training: what each step does to log-mel."""
from __future__ import annotations

import numpy as np
import pytest

from facecast_runtime.features import LogMelConfig, compute_features
from facecast_runtime.training.augment import (_band_centres_hz, spectral_augment,
                                               warp_logmel)

FEAT = LogMelConfig()
SR = FEAT.sample_rate


def _tone(freq: float, seconds: float = 1.0, start_s: float = 0.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    x = 0.3 * np.sin(2 * np.pi * freq * t)
    x[t < start_s] = 0.0
    return x.astype(np.float32)


def _peak_hz(feats: np.ndarray) -> float:
    bands = feats.reshape(len(feats), -1, FEAT.n_mels)[10:-10].mean(axis=(0, 1))
    return float(_band_centres_hz(FEAT)[int(np.argmax(bands))])


@pytest.mark.parametrize("alpha", [0.88, 1.12])
def test_warp_moves_spectral_peaks_by_the_factor(alpha):
    f = compute_features(_tone(1500.0), FEAT)
    before, after = _peak_hz(f), _peak_hz(warp_logmel(f, FEAT, alpha))
    assert before == pytest.approx(1500.0, rel=0.04)
    assert after == pytest.approx(1500.0 * alpha, rel=0.04)
    assert np.array_equal(warp_logmel(f, FEAT, 1.0), f)


def test_spectral_augment_keeps_timing_and_silence_and_the_input():
    x = _tone(800.0, seconds=2.0, start_s=1.0)           # digital silence, then a tone
    f = compute_features(x, FEAT)
    keep = f.copy()
    info: dict = {}
    y = spectral_augment(f, FEAT, np.random.default_rng(3),
                         {"warp": [0.9, 1.1], "tilt_db": 6, "eq_db": 3, "masks": 2,
                          "mask_bands": 6}, info)
    assert np.array_equal(f, keep), "the caller's features must not change"
    assert y.shape == f.shape and y.dtype == np.float32 and np.isfinite(y).all()
    assert {"warp", "tilt_db", "eq_db", "masks"} <= set(info)
    energy = lambda a: a.reshape(len(a), -1, FEAT.n_mels).max(axis=(1, 2))  # noqa: E731
    silent = energy(f) <= np.log(FEAT.log_floor) + 1e-3
    assert silent[:40].all() and not silent[-40:].any()
    # silence is still silence (gains act above the log floor), sound is still sound, onset
    # frame unchanged
    assert np.allclose(energy(y)[silent], np.log(FEAT.log_floor), atol=1e-3)
    onset = lambda a: int(np.argmax(energy(a) > np.log(FEAT.log_floor) + 1.0))  # noqa: E731
    assert onset(y) == onset(f)


def test_spectral_augment_gain_is_within_the_stated_range():
    f = compute_features(_tone(300.0) + _tone(3000.0), FEAT)
    y = spectral_augment(f, FEAT, np.random.default_rng(0),
                         {"warp": [1.0, 1.0], "tilt_db": 6, "eq_db": 0, "masks": 0})
    d_db = (y - f)[20:-20] / (np.log(10) / 10)
    assert np.abs(d_db).max() <= 3.0 + 1e-3          # +-6 dB end to end is +-3 dB at an edge
    assert np.abs(d_db).max() > 0.01


def test_spectral_augment_is_deterministic_for_a_generator_state():
    f = compute_features(_tone(1000.0), FEAT)
    opts = {"warp": [0.9, 1.1], "tilt_db": 6, "eq_db": 3, "masks": 1}
    a = spectral_augment(f, FEAT, np.random.default_rng(7), opts)
    b = spectral_augment(f, FEAT, np.random.default_rng(7), opts)
    c = spectral_augment(f, FEAT, np.random.default_rng(8), opts)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
