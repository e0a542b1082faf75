"""Emotions: what each one does to the face and the motion, and how they blend over time.

Each emotion at intensity 1 adds **offsets** to blendshapes (upper face, eyelids and the mouth
corners) and sets **behaviour** parameters (head energy, head pitch bias, blink rate, brow
dynamics, gaze aversion, gaze pitch bias). The offsets follow the action units of the Facial
Action Coding System prototypes (Ekman & Friesen 1978; EMFACS), mapped to ARKit channels:

* happy: AU6 cheek raiser + AU12 lip corner puller (Duchenne smile) -> cheekSquint, eyeSquint,
  mouthSmile, mouthDimple;
* sad: AU1 inner brow raiser + AU4 brow lowerer + AU15 lip corner depressor -> browInnerUp,
  browDown, mouthFrown, drooping upper lids;
* angry: AU4 + AU5 upper lid raiser + AU7 lid tightener + AU9/10 -> browDown, eyeWide,
  eyeSquint, noseSneer;
* surprised: AU1 + AU2 outer brow raiser + AU5 -> browInnerUp, browOuterUp, eyeWide (AU26 jaw drop
  is left to the lip-sync model);
* disgusted: AU9 nose wrinkler + AU4 + AU6/7 + AU15 -> noseSneer, browDown, cheekSquint,
  eyeSquint, mouthFrown;
* afraid: AU1 + AU2 + AU4 + AU5 + AU20 lip stretcher -> brows, eyeWide, mouthStretch.

Lip sync is never overridden: emotions touch no channel that opens or closes the lips
(``jawOpen``, ``mouthClose``, ``mouthPress*``, ``mouthRoll*``, ``mouthFunnel``, ``mouthPucker``,
``mouthLowerDown*``, ``mouthUpperUp*``, ``mouthShrug*``), only the corners (smile, frown,
dimple, stretch), so bilabials still close while smiling.

Head behaviour follows Busso et al. (2007, IEEE TASLP 15(3)): emotional speech differs from
neutral speech in head-motion activation, range and velocity (sadness lower, anger and happiness
higher). Blink rate rises with anxiety and falls with surprise/attention.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .options import EMOTIONS, EmotionKey

#: Blendshape offsets of each emotion at intensity 1.
OFFSETS: dict[str, dict[str, float]] = {
    "neutral": {},
    "happy": {"mouthSmileLeft": 0.55, "mouthSmileRight": 0.55, "mouthDimpleLeft": 0.12,
              "mouthDimpleRight": 0.12, "cheekSquintLeft": 0.45, "cheekSquintRight": 0.45,
              "eyeSquintLeft": 0.28, "eyeSquintRight": 0.28},
    "sad": {"browInnerUp": 0.55, "browDownLeft": 0.18, "browDownRight": 0.18,
            "mouthFrownLeft": 0.40, "mouthFrownRight": 0.40, "eyeBlinkLeft": 0.12,
            "eyeBlinkRight": 0.12, "eyeSquintLeft": 0.05, "eyeSquintRight": 0.05},
    "angry": {"browDownLeft": 0.60, "browDownRight": 0.60, "eyeSquintLeft": 0.25,
              "eyeSquintRight": 0.25, "eyeWideLeft": 0.15, "eyeWideRight": 0.15,
              "noseSneerLeft": 0.20, "noseSneerRight": 0.20, "mouthFrownLeft": 0.15,
              "mouthFrownRight": 0.15, "cheekSquintLeft": 0.08, "cheekSquintRight": 0.08},
    "surprised": {"browInnerUp": 0.65, "browOuterUpLeft": 0.70, "browOuterUpRight": 0.70,
                  "eyeWideLeft": 0.55, "eyeWideRight": 0.55},
    "disgusted": {"noseSneerLeft": 0.55, "noseSneerRight": 0.50, "browDownLeft": 0.30,
                  "browDownRight": 0.30, "cheekSquintLeft": 0.30, "cheekSquintRight": 0.28,
                  "eyeSquintLeft": 0.25, "eyeSquintRight": 0.25, "mouthFrownLeft": 0.20,
                  "mouthFrownRight": 0.20},
    "afraid": {"browInnerUp": 0.60, "browOuterUpLeft": 0.35, "browOuterUpRight": 0.35,
               "browDownLeft": 0.12, "browDownRight": 0.12, "eyeWideLeft": 0.55,
               "eyeWideRight": 0.55, "mouthStretchLeft": 0.30, "mouthStretchRight": 0.30},
}

#: Mouth-corner channels an emotion may add to (never one that opens or closes the lips).
CORNER_CHANNELS = ("mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight",
                   "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft",
                   "mouthStretchRight")

#: Behaviour parameters: (head energy, head pitch bias deg (+ = down), blink rate factor,
#: brow dynamics, gaze aversion factor, gaze pitch bias deg (+ = down)).
BEHAVIOUR: dict[str, tuple[float, float, float, float, float, float]] = {
    "neutral": (1.00, 0.0, 1.00, 1.00, 1.00, 0.0),
    "happy": (1.25, -1.5, 1.05, 1.20, 0.90, -1.0),
    "sad": (0.55, 5.0, 0.80, 0.70, 1.40, 6.0),
    "angry": (1.35, 2.0, 0.90, 1.30, 0.70, 1.0),
    "surprised": (1.15, -3.0, 0.55, 1.40, 0.90, -2.0),
    "disgusted": (1.00, -1.0, 1.00, 1.10, 1.30, 1.0),
    "afraid": (1.30, 1.5, 1.40, 1.10, 1.50, 0.0),
}

N = len(EMOTIONS)
_INDEX = {e: i for i, e in enumerate(EMOTIONS)}


def _target(key: EmotionKey) -> tuple[float, ...]:
    t = [0.0] * N
    if key.name != "neutral":
        t[_INDEX[key.name]] = key.intensity
    return tuple(t)


def _smooth(x: float) -> float:
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    return x * x * (3.0 - 2.0 * x)


class EmotionTimeline:
    """Emotion weights (one per non-neutral emotion, 0..1; index 0 unused) as a pure function
    of audio time: each key blends from the weights at its time to its target over its
    transition with a smoothstep. Keys may be added while streaming; a key for a time already
    shown takes effect from the next frame."""

    def __init__(self, keys: Sequence[EmotionKey] = (), transition: float = 0.6) -> None:
        self.transition = transition
        self.keys: list[EmotionKey] = []
        self._segs: list[tuple[float, float, tuple[float, ...], tuple[float, ...]]] = []
        self._cursor = 0
        self.add(keys)

    def add(self, keys: Sequence[EmotionKey], not_before: float = 0.0) -> None:
        for k in keys:
            if k.time < not_before:
                k = EmotionKey(not_before, k.name, k.intensity, k.transition)
            self.keys.append(k)
        self.keys.sort(key=lambda k: k.time)
        self._rebuild()

    def _rebuild(self) -> None:
        segs = []
        w: tuple[float, ...] = (0.0,) * N
        for i, k in enumerate(self.keys):
            if segs:
                w = self._eval_seg(segs[-1], k.time)
            T = self.transition if k.transition is None else k.transition
            segs.append((k.time, T, w, _target(k)))
        self._segs = segs
        self._t0s = np.array([seg[0] for seg in segs], np.float64)
        self._cursor = 0

    @staticmethod
    def _eval_seg(seg, t: float) -> tuple[float, ...]:
        t0, T, w0, w1 = seg
        a = 1.0 if T <= 0.0 else _smooth((t - t0) / T)
        if a >= 1.0:
            return w1
        return tuple(x + (y - x) * a for x, y in zip(w0, w1))

    def weights(self, t: float) -> tuple[float, ...]:
        segs = self._segs
        if not segs or t < segs[0][0]:
            self._cursor = 0
            return (0.0,) * N
        c = self._cursor
        if c >= len(segs) or segs[c][0] > t:
            c = 0
        while c + 1 < len(segs) and segs[c + 1][0] <= t:
            c += 1
        self._cursor = c
        return self._eval_seg(segs[c], t)

    def weights_array(self, ts: np.ndarray) -> np.ndarray | None:
        """:meth:`weights` at every time of the increasing array ``ts``, as rows of an
        ``(len(ts), N)`` array (the same float operations, so the same values), or None where
        every weight is 0 (no key yet)."""
        segs = self._segs
        if not segs or not len(ts) or ts[-1] < segs[0][0]:
            return None
        W = np.zeros((len(ts), N))
        # the segment of each time: the last key at or before it (-1: before the first key)
        idx = np.searchsorted(self._t0s, ts, side="right") - 1
        bounds = np.flatnonzero(np.diff(idx)) + 1
        starts = [0] + bounds.tolist()
        ends = bounds.tolist() + [len(ts)]
        for lo, hi in zip(starts, ends):
            c = int(idx[lo])
            if c < 0:
                continue
            t0, T, w0, w1 = segs[c]
            if T <= 0.0:
                W[lo:hi] = w1
                continue
            x = (ts[lo:hi] - t0) / T
            # _smooth, then x + (y - x) * a per weight unless a >= 1
            a = np.where(x <= 0.0, 0.0, np.where(x >= 1.0, 1.0, x * x * (3.0 - 2.0 * x)))
            full = a >= 1.0
            for e in range(N):
                W[lo:hi, e] = np.where(full, w1[e], w0[e] + (w1[e] - w0[e]) * a)
        return W


def behaviour_array(W: np.ndarray, gain: float = 1.0) -> list[np.ndarray]:
    """:func:`behaviour` of every row of ``W`` (weights, as from
    :meth:`EmotionTimeline.weights_array`): the six behaviour parameters as arrays, with the
    same float operations in the same order (so the same values)."""
    n = len(W)
    cols = W.T[1:]                                  # weights of the emotions, row per emotion
    # sum(w[1:]) as sum() adds; only rows whose total may reach 1 need it exactly (the
    # others keep scale 1 whatever the rounding), and those are rare
    tot = cols[0] + 0.0
    for c in cols[1:]:
        tot = tot + c
    tot = tot * gain
    near = np.flatnonzero(tot > 0.999999)
    scale = np.ones(n)
    if near.size:
        rows = W[near, 1:].tolist()
        for r, i in zip(rows, near.tolist()):
            t = sum(r) * gain
            scale[i] = 1.0 if t <= 1.0 else 1.0 / t
    neutral = BEHAVIOUR["neutral"]
    out = [np.full(n, neutral[j]) for j in range(6)]
    for i in range(1, N):
        if not cols[i - 1].any():
            continue                                # adds (+-)0.0 only
        wi = cols[i - 1] * gain * scale
        b = BEHAVIOUR[EMOTIONS[i]]
        for j in range(6):
            # wi == 0 adds (+-)0.0, which leaves these sums (never -0.0) as they are
            out[j] = out[j] + wi * (b[j] - neutral[j])
    return out


def behaviour(w: Sequence[float], gain: float = 1.0) -> tuple[float, ...]:
    """Blend behaviour parameters for weights ``w`` (the neutral share is what is left)."""
    tot = sum(w[1:]) * gain
    scale = 1.0 if tot <= 1.0 else 1.0 / tot
    out = list(BEHAVIOUR["neutral"])
    for i in range(1, N):
        wi = w[i] * gain * scale
        if wi:
            b = BEHAVIOUR[EMOTIONS[i]]
            for j in range(6):
                out[j] += wi * (b[j] - BEHAVIOUR["neutral"][j])
    return tuple(out)


NEUTRAL_BEHAVIOUR = BEHAVIOUR["neutral"]
