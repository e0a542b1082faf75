"""The expressive layer: a streaming, causal post-processing stage of the engine.

:class:`ExpressiveStage` receives the model-rate audio through :meth:`feed_audio` (the Session
calls it with exactly the samples the model sees) and the model's frames through
:meth:`process`; it adds head rotation, eye rotation and eyeLook*, blinks, upper-face motion and
emotion to every frame. It never changes the lip-sync channels (``jawOpen``, ``mouthClose``,
lip press/roll/funnel/pucker...); emotions add to the mouth corners only.

Determinism
-----------
The layer runs on its own 60 Hz clock whatever the output rate (a 30 fps session shows every
second internal frame, so 30 fps output equals 60 fps output at even frames). Internal frame
``j`` (time ``j / 60``) reads the prosody frame that ends at or before that time, and the
prosodic events since the previous internal frame. Every layer draws its random numbers from
its own generators (``numpy.random.Generator`` seeded from the session seed), a fixed number
per internal frame, used or not. So the same audio and seed give identical frames in a bake
and in a stream cut into any chunks, and switching one layer off or changing its gain leaves
the others unchanged.

Layers (all angles in degrees inside, radians on output)
--------------------------------------------------------
* **head**: three sources summed per axis (yaw, pitch, roll). (1) Sway: filtered noise
  (an Ornstein-Uhlenbeck process, tau 1.2 s, low-passed again at tau 0.35 s, plus a slow drift
  with tau 6 s) whose amplitude follows a speech-activity envelope. (2) Events, as in Hadar et
  al. (1983, 1984): a stressed-syllable onset (accent) triggers a nod, an impulse into a damped
  oscillator (1.8 Hz, damping 0.5), mostly downward, with random yaw/roll parts, and about one
  accent in four gets none; a phrase end (pause) brings a small slower nod and a tilt; speech
  after a pause often starts with a postural shift (a new rest pose reached by a critically
  damped spring). Posture also shifts now and then in silence. (3) Pitch: F0 over the
  speaker's median raises the head a little (Munhall et al. 2004; Yehia et al. 2002).
* **blinks**: a point process. Hazard = base rate (13/min at rest, 18/min speaking) times a
  refractory ramp after each blink, plus a boost right after each pause (phrase end) and a
  smaller one at speech onset (Nakano & Kitazawa 2010), plus gaze-evoked blinks on large
  saccades (Evinger et al. 1994). Shape: ease-in closing 70-100 ms, 0-50 ms closed, slower
  ease-out opening 140-240 ms (closing faster than opening, Sforza et al. 2008); 12 % partial.
  Right eye lags or leads by up to 8 ms with a slightly different amplitude.
* **gaze**: fixations and saccades on a listener straight ahead: short fixations within the
  listener's face, gaze aversion (5-14 deg) more likely at speech onset and drifting back to
  the listener at phrase ends (Kendon 1967; Argyle & Cook 1976), fixation durations log-normal,
  saccades on the main sequence (duration = 21 ms + 2.2 ms/deg, Bahill et al. 1975; Carpenter
  1988) with a minimum-jerk profile, fixational drift, a vestibulo-ocular counter-rotation of
  85 % of the head rotation, and 1 deg of convergence on the listener. eyeLook* channels are
  computed from the same eye rotations (30 deg = 1.0, as in Face Cap captures), and the lids
  follow vertical gaze.
* **brows** (upper face): brow flashes on accents with raised pitch, a slow brow raise with
  pitch, brow lowering on loud low-pitched accents, cheek and eye squint with loudness, a
  touch of nose sneer on strong accents; all scaled by the emotion's brow dynamics.
* **emotion**: time-keyed blend of :data:`emotion.OFFSETS` and :data:`emotion.BEHAVIOUR`
  (see :mod:`.emotion`); ``auto_emotion`` adds arousal inferred from the voice.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
from facecast.schema import CHANNEL_INDEX, FrameBatch

from ..errors import SessionError
from . import emotion as emo
from .options import EMOTIONS, ExpressiveConfig, apply_live, parse_options
from .prosody import ProsodyAnalyser

INTERNAL_FPS = 60
DT = 1.0 / INTERNAL_FPS
D2R = math.pi / 180.0
EYELOOK_RANGE_DEG = 30.0
VOR_GAIN = 0.85
VERGENCE_DEG = 1.0

# random numbers each layer draws per internal frame (uniform, normal)
_DRAWS = {"head": (6, 9), "blinks": (8, 0), "gaze": (8, 4), "brows": (5, 0)}



def _ch(name: str) -> int:
    return CHANNEL_INDEX[name]


class _Draws:
    """Per-frame random numbers of one layer: ``nu`` uniforms and ``nn`` normals per frame,
    from two generators, drawn in blocks (block boundaries never change the sequence)."""

    __slots__ = ("gu", "gn", "nu", "nn", "u", "z")

    def __init__(self, seq: np.random.SeedSequence, nu: int, nn: int) -> None:
        su, sn = seq.spawn(2)
        self.gu = np.random.Generator(np.random.PCG64(su))
        self.gn = np.random.Generator(np.random.PCG64(sn))
        self.nu, self.nn = nu, nn
        self.u: list = []
        self.z: list = []

    def draw(self, frames: int) -> None:
        self.u = self.gu.random(self.nu * frames).tolist() if self.nu else []
        self.z = self.gn.standard_normal(self.nn * frames).tolist() if self.nn else []


class _Ctx:
    """What one internal frame knows (shared by the layers)."""

    __slots__ = ("t", "speech", "loud", "pitch", "accent", "pause", "onset", "activity",
                 "beh", "auto", "hy", "hp", "saccade_blink")

    def __init__(self) -> None:
        self.t = 0.0
        self.speech = 0.0
        self.loud = 0.0
        self.pitch = 0.0
        self.accent = 0.0
        self.pause = 0.0
        self.onset = 0.0
        self.activity = 0.0
        self.beh = emo.BEHAVIOUR["neutral"]
        self.auto = 0.0
        self.hy = 0.0
        self.hp = 0.0
        self.saccade_blink = False


# --------------------------------------------------------------------------------------------
# head
# --------------------------------------------------------------------------------------------
class _Head:
    # sway std (deg) per axis: silence, speech; slow drift std (deg)
    SIGMA_REST = (0.45, 0.40, 0.40)
    SIGMA_SPEECH = (1.00, 1.00, 0.90)
    DRIFT = (0.8, 0.6, 1.0)
    NOD_HZ, NOD_DAMPING = 1.8, 0.5
    SLOW_HZ, SLOW_DAMPING = 0.9, 0.7
    POSTURE_HZ = 1.1
    POSTURE_RETURN_S = 15.0

    def __init__(self, draws: _Draws) -> None:
        self.d = draws
        a1 = math.exp(-DT / 1.2)
        a2 = math.exp(-DT / 0.35)
        self.a1, self.b1, self.a2 = a1, math.sqrt(1.0 - a1 * a1), a2
        var2 = (1 - a2) ** 2 * (1 + a2 * a1) / ((1 - a2 * a2) * (1 - a2 * a1))
        self.norm = 1.0 / math.sqrt(var2)
        self.ad = math.exp(-DT / 6.0)
        self.bd = math.sqrt(1.0 - self.ad * self.ad)
        self.keep = math.exp(-DT / self.POSTURE_RETURN_S)
        self.w_nod = 2 * math.pi * self.NOD_HZ
        self.w_slow = 2 * math.pi * self.SLOW_HZ
        self.w_post = 2 * math.pi * self.POSTURE_HZ
        # per axis state: sway x1, x2, drift, nod pos/vel, posture target/pos/vel
        self.s = [[0.0] * 9 for _ in range(3)]
        wn, wp = self.w_nod, self.w_post
        self._k = (a1, self.b1, a2, 1.0 - a2, self.ad, self.bd, self.norm, wn * wn * DT,
                   2.0 * self.NOD_DAMPING * wn * DT, wp * wp * DT, 2.0 * wp * DT)
        self._axes = [(self.s[a], self.SIGMA_REST[a], self.SIGMA_SPEECH[a] - self.SIGMA_REST[a],
                       self.DRIFT[a]) for a in range(3)]
        self.sp = 0.0      # slow phrase-end nod (pitch)
        self.sv = 0.0
        self.cz = 0.0      # pitch following F0

    def step(self, i: int, c: _Ctx, gain: float) -> tuple[float, float, float]:
        u = self.d.u
        z = self.d.z
        ui = 6 * i
        zi = 9 * i
        energy = c.beh[0] * (1.0 + 0.35 * c.auto)
        act = c.activity
        sy, spi, sr = self.s
        # events: nods on accents (about 1 in 4 weak ones skipped), a slower nod and a tilt
        # at phrase ends, postural shifts at speech onsets and now and then in silence
        acc = c.accent
        if acc > 0.0 and u[ui] < max(0.15, min(0.9, 1.2 * acc - 0.1)):
            amp = (1.2 + 3.0 * acc) * energy * (0.6 + 0.8 * u[ui + 1]) * self.w_nod
            spi[4] += amp
            sy[4] += amp * 0.35 * z[zi + 6]
            sr[4] += amp * 0.30 * z[zi + 7]
        if c.pause > 0.0 and u[ui + 2] < 0.6:
            self.sv += self.w_slow * (0.6 + 1.0 * u[ui + 3]) * energy
            sr[5] = 0.7 * sr[5] + 1.2 * z[zi + 8]
        shift = 0.0
        if c.onset > 0.6 and u[ui + 4] < 0.55:
            shift = 1.0
        elif c.speech == 0.0 and u[ui + 5] < DT / 10.0:
            shift = 0.65
        keep = self.keep
        sy[5] *= keep
        spi[5] *= keep
        sr[5] *= keep
        if shift:
            sy[5] = 0.4 * sy[5] + shift * 3.5 * z[zi + 6]
            spi[5] = 0.4 * spi[5] + shift * 2.0 * z[zi + 7]
            sr[5] = 0.4 * sr[5] + shift * 3.0 * z[zi + 8]
        # the head rises a little with F0 over the speaker's median
        p = c.pitch
        p = 6.0 if p > 6.0 else (-6.0 if p < -6.0 else p)
        self.cz += (-0.25 * p * act * energy - self.cz) * (DT / 0.25)
        a1, b1, a2, c2, ad, bd, nrm, k_nod, d_nod, k_p, d_p = self._k
        out = [0.0, 0.0, 0.0]
        for a, (st, lo, span, drift) in enumerate(self._axes):
            x1 = a1 * st[0] + b1 * z[zi + a]
            x2 = a2 * st[1] + c2 * x1
            dr = ad * st[2] + bd * z[zi + 3 + a]
            v = st[4] - k_nod * st[3] - d_nod * st[4]
            pn = st[3] + DT * v
            pv = st[8] + k_p * (st[5] - st[6]) - d_p * st[8]
            pp = st[6] + DT * pv
            st[0], st[1], st[2], st[3], st[4], st[6], st[8] = x1, x2, dr, pn, v, pp, pv
            out[a] = (lo + span * act) * energy * x2 * nrm + drift * dr + pn + pp
        ws = self.w_slow
        self.sv -= DT * (ws * ws * self.sp + 2.0 * self.SLOW_DAMPING * ws * self.sv)
        self.sp += DT * self.sv
        pitch = out[1] + self.sp + self.cz + c.beh[1]
        tanh = math.tanh
        return (25.0 * tanh(out[0] / 25.0) * gain, 20.0 * tanh(pitch / 20.0) * gain,
                20.0 * tanh(out[2] / 20.0) * gain)


# --------------------------------------------------------------------------------------------
# blinks
# --------------------------------------------------------------------------------------------
class _Blinks:
    RATE_REST = 0.26      # blinks per second before the refractory ramp
    RATE_SPEECH = 0.27
    PAUSE_BOOST, PAUSE_TAU = 1.2, 0.35
    ONSET_BOOST, ONSET_TAU = 0.4, 0.3
    REFRACTORY_S, RAMP_S = 0.40, 1.2

    def __init__(self, draws: _Draws) -> None:
        self.d = draws
        self.t0 = -10.0        # onset of the current/last blink
        self.tc = self.th = self.to = 0.1
        self.amp_l = self.amp_r = 0.0
        self.lag = 0.0
        self.t_pause = -10.0
        self.t_onset = -10.0
        self.count = 0

    def _shape(self, tau: float) -> float:
        """Lid closure at ``tau`` s after onset: ease-in-out closing, hold, ease-out opening."""
        if tau <= 0.0:
            return 0.0
        tc = self.tc
        if tau < tc:
            x = tau / tc
            return x * x * (3.0 - 2.0 * x)
        tau -= tc
        if tau < self.th:
            return 1.0
        tau -= self.th
        if tau < self.to:
            x = 1.0 - tau / self.to
            return x * x
        return 0.0

    def step(self, i: int, c: _Ctx, gain: float) -> tuple[float, float]:
        u = self.d.u
        ui = 8 * i
        t = c.t
        if c.pause > 0.0:
            self.t_pause = t
        if c.onset > 0.0:
            self.t_onset = t
        since = t - self.t0
        if since >= self.tc + self.th + self.to + 0.02:
            rate = (self.RATE_REST + (self.RATE_SPEECH - self.RATE_REST) * c.activity) \
                * c.beh[2] * (1.0 + 0.2 * c.auto)
            dp = t - self.t_pause
            if dp < 1.5:
                rate += self.PAUSE_BOOST * math.exp(-dp / self.PAUSE_TAU)
            do = t - self.t_onset
            if do < 1.0:
                rate += self.ONSET_BOOST * math.exp(-do / self.ONSET_TAU)
            refr = (since - self.REFRACTORY_S) / self.RAMP_S
            refr = 1.0 if refr > 1.0 else (0.0 if refr < 0.0 else refr)
            if u[ui] < rate * refr * DT or (c.saccade_blink and since > 0.6):
                self.t0 = t
                self.count += 1
                self.tc = 0.07 + 0.03 * u[ui + 1]
                self.th = 0.05 * u[ui + 2] * u[ui + 2]
                self.to = 0.14 + 0.10 * u[ui + 3]
                amp = 0.86 + 0.14 * u[ui + 4]
                if u[ui + 5] < 0.12:
                    amp = 0.5 + 0.25 * u[ui + 6]
                self.amp_l = amp
                self.amp_r = amp * (0.96 + 0.08 * u[ui + 6])
                self.lag = (u[ui + 7] - 0.5) * 0.016
                since = 0.0
        if since > 0.5:
            return 0.0, 0.0
        return (self.amp_l * self._shape(since) * gain,
                self.amp_r * self._shape(since - self.lag) * gain)


# --------------------------------------------------------------------------------------------
# gaze
# --------------------------------------------------------------------------------------------
class _Gaze:
    def __init__(self, draws: _Draws) -> None:
        self.d = draws
        self.gy = 0.0            # current gaze direction (deg, world, listener = 0, 0)
        self.gp = 0.0
        self.sy0 = self.sp0 = self.sy1 = self.sp1 = 0.0
        self.s_t0 = -1.0
        self.s_dur = 0.0
        self.away = False
        self.fix_end = 1.0
        self.dy = 0.0            # fixational drift
        self.dp = 0.0
        self.ad = math.exp(-DT / 0.5)
        self.bd = math.sqrt(1.0 - self.ad * self.ad)

    @staticmethod
    def _lognormal(median: float, u1: float, u2: float) -> float:
        # Box-Muller from two uniforms, sigma 0.5
        n = math.sqrt(-2.0 * math.log(max(u1, 1e-12))) * math.cos(2.0 * math.pi * u2)
        return median * math.exp(0.5 * n)

    def step(self, i: int, c: _Ctx, gain: float) -> tuple[float, float]:
        u = self.d.u
        z = self.d.z
        ui = 8 * i
        zi = 4 * i
        t = c.t
        beh = c.beh
        c.saccade_blink = False
        if t >= self.s_t0 + self.s_dur:
            choose = 0
            if c.onset > 0.4 and not self.away and u[ui] < min(0.9, 0.5 * beh[4]):
                choose = 1                                   # look away to plan speech
            elif c.pause > 0.0 and self.away and u[ui] < 0.75:
                choose = 2                                   # back to the listener
            elif t >= self.fix_end:
                if self.away:
                    choose = 2 if u[ui + 1] < 0.8 else 1
                else:
                    choose = 1 if u[ui + 1] < (0.15 + 0.2 * c.activity) * beh[4] else 3
            if choose:
                if choose == 1:
                    amp = 5.0 + 9.0 * u[ui + 2] ** 1.5
                    ang = 2.0 * math.pi * u[ui + 3]
                    y = amp * math.cos(ang)
                    p = 0.6 * amp * math.sin(ang) + beh[5]
                    self.away = True
                    med = 1.1
                elif choose == 2:
                    y = 1.2 * z[zi]
                    p = 0.8 * abs(z[zi + 1]) + 0.3 * beh[5]
                    self.away = False
                    med = 2.0 if c.activity > 0.5 else 3.0
                else:  # another point of the listener's face (eyes, mouth)
                    y = 1.5 * (1.0 if u[ui + 2] < 0.5 else -1.0) + 0.4 * z[zi]
                    p = 2.5 * u[ui + 3] * u[ui + 3] + 0.3 * beh[5]
                    med = 1.2
                amp = math.hypot(y - self.gy, p - self.gp)
                self.sy0, self.sp0, self.sy1, self.sp1 = self.gy, self.gp, y, p
                self.s_t0 = t
                self.s_dur = 0.021 + 0.0022 * amp          # main sequence
                self.fix_end = t + self.s_dur + self._lognormal(med, u[ui + 4], u[ui + 5])
                if amp > 10.0 and u[ui + 6] < 0.3:
                    c.saccade_blink = True
        if t < self.s_t0 + self.s_dur:
            x = (t - self.s_t0) / self.s_dur
            s = x * x * x * (10.0 - 15.0 * x + 6.0 * x * x)          # minimum jerk
            self.gy = self.sy0 + (self.sy1 - self.sy0) * s
            self.gp = self.sp0 + (self.sp1 - self.sp0) * s
        elif self.s_t0 >= 0.0:
            self.gy, self.gp = self.sy1, self.sp1
        self.dy = self.ad * self.dy + self.bd * z[zi + 2]
        self.dp = self.ad * self.dp + self.bd * z[zi + 3]
        # eye in head: gaze minus the vestibulo-ocular share of the head rotation
        ey = (self.gy + 0.15 * self.dy - VOR_GAIN * c.hy) * gain
        ep = (self.gp + 0.15 * self.dp - VOR_GAIN * c.hp) * gain
        return ey, ep


# --------------------------------------------------------------------------------------------
# upper face
# --------------------------------------------------------------------------------------------
class _Brows:
    def __init__(self, draws: _Draws) -> None:
        self.d = draws
        self.raise_ = self.raise_t = 0.0
        self.raise_until = -1.0
        self.down = self.down_t = 0.0
        self.down_until = -1.0
        self.sneer = self.sneer_t = 0.0
        self.sneer_until = -1.0
        self.slow = 0.0
        self.squint = 0.0
        self.asym = 0.0

    def step(self, i: int, c: _Ctx, gain: float) -> tuple[float, ...]:
        u = self.d.u
        ui = 5 * i
        t = c.t
        acc = c.accent
        if acc > 0.0:
            if (c.pitch > 1.5 and u[ui] < 0.3 + 0.5 * acc) or u[ui] < 0.1:   # brow flash
                self.raise_t = (0.12 + 0.30 * acc) * (0.7 + 0.6 * u[ui + 1])
                self.raise_until = t + 0.20 + 0.20 * u[ui + 2]
                self.asym = (u[ui + 3] - 0.5) * 0.2
            elif c.pitch < -0.5 and c.loud > 0.5:             # loud and low: brows down
                self.down_t = 0.10 + 0.15 * acc
                self.down_until = t + 0.25
            if acc > 0.6 and u[ui + 4] < 0.35:
                self.sneer_t = 0.04 + 0.06 * acc
                self.sneer_until = t + 0.2
        tg = self.raise_t if t < self.raise_until else 0.0
        self.raise_ += (tg - self.raise_) * (0.22 if tg > self.raise_ else 0.05)
        tg = self.down_t if t < self.down_until else 0.0
        self.down += (tg - self.down) * (0.15 if tg > self.down else 0.05)
        tg = self.sneer_t if t < self.sneer_until else 0.0
        self.sneer += (tg - self.sneer) * (0.2 if tg > self.sneer else 0.06)
        p = c.pitch
        p = 6.0 if p > 6.0 else (0.0 if p < 0.0 else p)
        self.slow += (0.035 * p * c.activity - self.slow) * (DT / 0.4)
        self.squint += (0.12 * c.loud * c.activity - self.squint) * (DT / 0.3)
        g = gain * c.beh[3] * (1.0 + 0.3 * c.auto)
        r = self.raise_ * g
        slow = self.slow * g
        return (r + slow, (0.8 + self.asym) * r + 0.6 * slow,
                (0.8 - self.asym) * r + 0.6 * slow, self.down * g, self.squint * g,
                self.sneer * g)


# --------------------------------------------------------------------------------------------
# the stage
# --------------------------------------------------------------------------------------------
#: The channels the layer writes, in the order of its per-frame rows.
OUT_CHANNELS: tuple[str, ...] = (
    "headYaw", "headPitch", "headRoll", "leftEyeYaw", "leftEyePitch", "rightEyeYaw",
    "rightEyePitch", "eyeLookOutLeft", "eyeLookInLeft", "eyeLookInRight", "eyeLookOutRight",
    "eyeLookDownLeft", "eyeLookDownRight", "eyeLookUpLeft", "eyeLookUpRight",
    "eyeBlinkLeft", "eyeBlinkRight", "eyeWideLeft", "eyeWideRight", "eyeSquintLeft",
    "eyeSquintRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight", "browDownLeft",
    "browDownRight", "cheekSquintLeft", "cheekSquintRight", "noseSneerLeft", "noseSneerRight",
    "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
)
_O = {n: i for i, n in enumerate(OUT_CHANNELS)}
_PUCKER_SCALED = frozenset(_O[n] for n in ("mouthSmileLeft", "mouthSmileRight",
                                           "mouthDimpleLeft", "mouthDimpleRight",
                                           "mouthStretchLeft", "mouthStretchRight"))


class ExpressiveStage:
    """PostProcessor filling every non-mouth channel; see the module docstring.

    Build it with :func:`make_stage` (validates options) or directly from an
    :class:`ExpressiveConfig`. ``feed_audio`` must receive the model-rate audio before the
    frames that depend on it are processed (the Session does this).
    """

    def __init__(self, config: ExpressiveConfig | None = None, fps: int = 60,
                 sample_rate: int = 16000) -> None:
        if fps <= 0 or INTERNAL_FPS % fps:
            raise SessionError(f"the expressive layer runs at {INTERNAL_FPS} fps and needs an "
                               f"output rate that divides it, got {fps}")
        self.config = config or ExpressiveConfig()
        self.fps = fps
        self.step = INTERNAL_FPS // fps
        self.prosody = ProsodyAnalyser(sample_rate)
        self.timeline = emo.EmotionTimeline(self.config.keys, self.config.transition)
        root = np.random.SeedSequence(self.config.seed)
        seqs = root.spawn(len(_DRAWS))
        self.draws = {name: _Draws(s, *_DRAWS[name]) for name, s in zip(_DRAWS, seqs)}
        self.head = _Head(self.draws["head"])
        self.blinks = _Blinks(self.draws["blinks"])
        self.gaze = _Gaze(self.draws["gaze"])
        self.brows = _Brows(self.draws["brows"])
        self.ctx = _Ctx()
        self.j = 0                       # next internal frame
        self.underruns = 0               # internal frames whose prosody had not arrived
        self._m_prev = 0
        self._cols = np.array([_ch(n) for n in OUT_CHANNELS], np.int64)
        # emotion offsets as (row position, value) per emotion
        self._offsets = [[(_O[n], v) for n, v in emo.OFFSETS[e].items()] for e in EMOTIONS]
        self._puck = (_ch("mouthPucker"), _ch("mouthFunnel"))

    # -- options ------------------------------------------------------------------------------
    @property
    def time(self) -> float:
        """Audio time of the next internal frame."""
        return self.j / INTERNAL_FPS

    def set_options(self, options: Mapping[str, Any], now: float | None = None) -> dict:
        """Change live options (emotion, emotion_keys, transition, gains, enable,
        auto_emotion). A key without a time applies at ``now`` (audio time), and no key
        applies before the next frame not yet produced."""
        now = self.time if now is None else max(float(now), 0.0)
        old_tr = self.config.transition
        added = apply_live(self.config, options, now=now)
        if self.config.transition != old_tr:
            self.timeline.transition = self.config.transition
            self.timeline._rebuild()
        if added:
            self.timeline.add(added, not_before=self.time)
            self.config.keys = list(self.timeline.keys)
        return self.current_options()

    def current_options(self) -> dict:
        d = self.config.as_dict()
        w = self.timeline.weights(self.time)
        name = max(range(1, len(EMOTIONS)), key=lambda i: w[i])
        d["emotion"] = ({"name": EMOTIONS[name], "intensity": round(w[name], 6)}
                        if w[name] > 0 else {"name": "neutral", "intensity": 0.0})
        return d

    # -- audio --------------------------------------------------------------------------------
    def feed_audio(self, samples: np.ndarray) -> None:
        self.prosody.feed(samples)

    # -- frames -------------------------------------------------------------------------------
    def process(self, batch: FrameBatch) -> FrameBatch:
        n = len(batch)
        if n == 0:
            return batch
        step = self.step
        k0 = batch.start_index
        if k0 * step > self.j + step:
            self.j = k0 * step      # frames were skipped (never by the Session)
        j_end = (k0 + n - 1) * step + 1          # internal frames up to the last shown one
        nj = j_end - self.j
        if nj <= 0:
            return batch
        for d in self.draws.values():
            d.draw(nj)
        cfg = self.config
        g_head = cfg.effective_gain("head")
        g_blink = cfg.effective_gain("blinks")
        g_gaze = cfg.effective_gain("gaze")
        g_brow = cfg.effective_gain("brows")
        g_emo = cfg.effective_gain("emotion")
        auto = cfg.auto_emotion
        pros = self.prosody
        m_last = pros.frame_at(j_end - 1, INTERNAL_FPS)
        avail = pros.ensure(m_last)
        j0 = self.j
        mp = self._m_prev
        m_hi = min(avail, m_last)
        m_lo = min(mp, m_hi)
        cols = {f: pros.column(f, m_lo, m_hi + 1) for f in
                ("speech", "loud", "pitch", "accent", "pause", "onset", "arousal")}
        speech_c, loud_c, pitch_c = cols["speech"], cols["loud"], cols["pitch"]
        acc_c, pause_c, onset_c, ar_c = (cols["accent"], cols["pause"], cols["onset"],
                                         cols["arousal"])
        vals = batch.values
        pf = (vals[:, self._puck[0]] + vals[:, self._puck[1]]).tolist()
        c = self.ctx
        head, gaze, blinks, brows = self.head, self.gaze, self.blinks, self.brows
        timeline = self.timeline
        offsets = self._offsets
        behaviour = emo.behaviour
        n_emo = len(EMOTIONS)
        rows = []
        frame_at = pros.frame_at
        R = 1.0 / EYELOOK_RANGE_DEG
        verg = VERGENCE_DEG * g_gaze
        for i in range(nj):
            j = j0 + i
            t = j * DT
            c.t = t
            m = frame_at(j, INTERNAL_FPS)
            if m > avail:
                self.underruns += 1
                m = avail
            k = m - m_lo
            c.speech = speech_c[k]
            c.loud = loud_c[k]
            c.pitch = pitch_c[k]
            acc = pa = on = 0.0
            if m > mp:
                for kk in range(mp - m_lo + 1, k + 1):
                    if acc_c[kk] > acc:
                        acc = acc_c[kk]
                    if pause_c[kk] > 0.0:
                        pa = 1.0
                    if onset_c[kk] > on:
                        on = onset_c[kk]
                mp = m
            c.accent, c.pause, c.onset = acc, pa, on
            c.auto = ar_c[k] if auto else 0.0
            sp = c.speech
            c.activity += (sp - c.activity) * (0.15 if sp > c.activity else 0.025)
            w = timeline.weights(t)
            c.beh = behaviour(w, g_emo) if any(w) else emo.NEUTRAL_BEHAVIOUR
            hy, hp, hr = head.step(i, c, g_head)
            c.hy, c.hp = hy, hp
            ey, ep = gaze.step(i, c, g_gaze)
            bl, br = blinks.step(i, c, g_blink)
            inner, out_l, out_r, bdown, sq, sneer = brows.step(i, c, g_brow)
            if j % step:
                continue
            ly = ey - verg        # converge on the listener: the left eye turns right
            ry = ey + verg
            down = ep * R if ep > 0.0 else 0.0
            up = -ep * R if ep < 0.0 else 0.0
            row = [hy * D2R, hp * D2R, hr * D2R, ly * D2R, ep * D2R, ry * D2R, ep * D2R,
                   ly * R if ly > 0.0 else 0.0, -ly * R if ly < 0.0 else 0.0,
                   ry * R if ry > 0.0 else 0.0, -ry * R if ry < 0.0 else 0.0,
                   down, down, up, up,
                   0.0, 0.0, 0.0, 0.0, 0.6 * sq, 0.6 * sq,
                   inner, out_l, out_r, bdown, bdown, sq, sq, sneer, 0.9 * sneer,
                   0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
            if g_emo > 0.0:
                ps = 1.0 - 0.6 * min(1.0, max(0.0, pf[(j - k0 * step) // step]))
                for e in range(1, n_emo):
                    we = w[e]
                    if we > 0.0:
                        we *= g_emo
                        for pos, val in offsets[e]:
                            row[pos] += we * val * (ps if pos in _PUCKER_SCALED else 1.0)
            # eyelids: blink over the resting lid (emotion, arousal, vertical gaze)
            au = c.auto
            lid_l = row[15] + 0.35 * down + (0.06 * -au if au < 0.0 else 0.0)
            lid_r = row[16] + 0.35 * down + (0.06 * -au if au < 0.0 else 0.0)
            bl = bl + lid_l * (1.0 - bl)
            br = br + lid_r * (1.0 - br)
            row[15] = bl
            row[16] = br
            wide = 0.5 * up + (0.12 * au if au > 0.0 else 0.0)
            row[17] = (row[17] + wide) * (1.0 - bl)
            row[18] = (row[18] + wide) * (1.0 - br)
            rows.append(row)
        self._m_prev = mp
        self.j = j_end       # at 30 fps the odd frame after the last shown one comes next call
        pros.forget_before(max(0, mp - 1))
        vals[:, self._cols] += np.array(rows, np.float32)
        return batch


def make_stage(options: Mapping[str, Any] | None, fps: int = 60,
               sample_rate: int = 16000) -> ExpressiveStage | None:
    """The stage for session ``options`` (validated; SessionError names a bad option), or
    None when ``{"expressive": false}``."""
    cfg = parse_options(options)
    if not cfg.enabled:
        return None
    return ExpressiveStage(cfg, fps=fps, sample_rate=sample_rate)
