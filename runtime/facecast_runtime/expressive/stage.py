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

A call with a few internal frames (a live stream) runs them one by one (the layers' ``step``);
a larger one (a bake) runs as a block: each layer's recursions still go frame by frame on plain
floats (``run``), and what does not feed back (prosody lookup, emotion weights, behaviour,
targets, the output rows) is computed on whole arrays with the same float operations in the
same order, so both give the same values, bit for bit, and share one state.

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

# internal frames up to which a process() call runs frame by frame (beyond: as a block)
SMALL_BLOCK = 40

# random numbers each layer draws per internal frame (uniform, normal)
_DRAWS = {"head": (6, 9), "blinks": (8, 0), "gaze": (8, 4), "brows": (5, 0)}



def _ch(name: str) -> int:
    return CHANNEL_INDEX[name]


class _Draws:
    """Per-frame random numbers of one layer: ``nu`` uniforms and ``nn`` normals per frame,
    from two generators, drawn in blocks (block boundaries never change the sequence).
    ``u`` and ``z`` hold those of the current call's frames (frame ``i`` at ``nu * i`` ...),
    as arrays; ``ul`` and ``zl`` as lists once :meth:`as_lists` ran; :meth:`rows` gives them
    one row per frame. The generators run ahead by up to ``AHEAD`` frames (``_ub``/``_zb``
    hold the numbers drawn and not used yet), so a live stream's small calls draw once every
    few calls instead of twice per call."""

    __slots__ = ("gu", "gn", "nu", "nn", "u", "z", "ul", "zl", "_ub", "_zb")
    AHEAD = 32

    def __init__(self, seq: np.random.SeedSequence, nu: int, nn: int) -> None:
        su, sn = seq.spawn(2)
        self.gu = np.random.Generator(np.random.PCG64(su))
        self.gn = np.random.Generator(np.random.PCG64(sn))
        self.nu, self.nn = nu, nn
        self.u = self.z = np.zeros(0)
        self.ul: list = []
        self.zl: list = []
        self._ub = self._zb = np.zeros(0)

    def draw(self, frames: int) -> None:
        nu, nn = self.nu, self.nn
        short = frames - len(self._ub) // nu            # every layer draws uniforms
        if short > 0:
            more = max(short, self.AHEAD)
            self._ub = np.concatenate([self._ub, self.gu.random(nu * more)])
            if nn:
                self._zb = np.concatenate([self._zb, self.gn.standard_normal(nn * more)])
        self.u, self._ub = self._ub[: nu * frames], self._ub[nu * frames :]
        self.z, self._zb = self._zb[: nn * frames], self._zb[nn * frames :]

    def as_lists(self) -> None:
        self.ul = self.u.tolist()
        self.zl = self.z.tolist()

    def rows(self) -> tuple[np.ndarray, np.ndarray]:
        frames = len(self.u) // self.nu          # every layer draws uniforms
        return self.u.reshape(frames, self.nu), self.z.reshape(frames, self.nn)


class _Block:
    """What the internal frames of one ``process`` call know (shared by the layers): arrays
    with one value per internal frame, ``tl`` the frame times as a list, the frames with
    prosodic events, and ``shown``, the slice of the frames that are output."""

    __slots__ = ("n", "t", "tl", "speech", "loud", "pitch", "accent", "pause", "onset",
                 "accent_at", "pause_at", "onset_at", "auto", "act", "beh", "shown")


class _Ctx:
    """What one internal frame knows (shared by the layers' ``step``); ``activity`` (the speech
    activity envelope) carries over from frame to frame, in both paths."""

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


def _at(x, sl: slice):
    """``x[sl]`` for an array, ``x`` for a number (a value the same at every frame)."""
    return x[sl] if isinstance(x, np.ndarray) else x


def _listed(x, n: int) -> list:
    """Values at the ``n`` frames as a list (``x``: an array or a number)."""
    return x.tolist() if isinstance(x, np.ndarray) else [x] * n


def _tanh(x: np.ndarray) -> np.ndarray:
    """``math.tanh`` of every element (np.tanh may round differently)."""
    return np.array(list(map(math.tanh, x.tolist())))


def _clip(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``hi if x > hi else (lo if x < lo else x)`` per element."""
    return np.where(x > hi, hi, np.where(x < lo, lo, x))


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
        # per axis state: sway x1, x2, drift, nod pos/vel, posture target/pos/(unused)/vel
        self.s = [[0.0] * 9 for _ in range(3)]
        wn, wp = self.w_nod, self.w_post
        self._k = (a1, self.b1, a2, 1.0 - a2, self.ad, self.bd, self.norm, wn * wn * DT,
                   2.0 * self.NOD_DAMPING * wn * DT, wp * wp * DT, 2.0 * wp * DT)
        self._axes = [(self.s[a], self.SIGMA_REST[a], self.SIGMA_SPEECH[a] - self.SIGMA_REST[a],
                       self.DRIFT[a]) for a in range(3)]
        self.sp = 0.0      # slow phrase-end nod (pitch)
        self.sv = 0.0
        self.cz = 0.0      # pitch following F0

    def run(self, b: _Block, gain: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Advance over the block's frames; (yaw, pitch, roll) in degrees at the shown ones.

        Per frame: events (nods on accents, about 1 in 4 weak ones skipped; a slower nod and
        a tilt at phrase ends; postural shifts at speech onsets and now and then in silence),
        then the sway, drift, nod and posture filters per axis, the slow nod and the pitch
        following F0. The filters run on plain floats frame by frame; the per-frame targets
        and sway amplitudes are computed on whole arrays with the same float operations."""
        n = b.n
        U, Z = self.d.rows()
        energy = b.beh[0] * (1.0 + 0.35 * b.auto)
        # the head rises a little with F0 over the speaker's median: target of cz
        czt = (-0.25 * _clip(b.pitch, -6.0, 6.0) * b.act * energy).tolist()
        # frames that may hold an event (the exact tests run below)
        cand = ((b.accent > 0.0) | (b.pause > 0.0) | (b.onset > 0.6)
                | ((b.speech == 0.0) & (U[:, 5] < DT / 10.0)))
        ev = np.flatnonzero(cand)
        # per event: the draws and (accent, pause, onset, speech, energy)
        ev_u, ev_z = U[ev].tolist(), Z[ev].tolist()
        ev_c = np.stack([b.accent[ev], b.pause[ev], b.onset[ev], b.speech[ev],
                         energy[ev]], axis=1).tolist()
        evs = ev.tolist()
        evs.append(-1)
        a1, b1, a2, c2, ad, bd, nrm, k_nod, d_nod, k_p, d_p = self._k
        keep, w_nod, w_slow = self.keep, self.w_nod, self.w_slow
        ws2 = w_slow * w_slow
        wsd = 2.0 * self.SLOW_DAMPING * w_slow
        kcz = DT / 0.25
        sy, spi, sr = self.s
        x1y, x2y, dry, pny, vy, ty, ppy, _, pvy = sy
        x1p, x2p, drp, pnp, vp, tp, ppp, _, pvp = spi
        x1r, x2r, drr, pnr, vr, tr, ppr, _, pvr = sr
        sp, sv, cz = self.sp, self.sv, self.cz
        # sway amplitude per axis, (lo + span * activity) * energy, and the drift gains
        act = b.act
        amp_y, amp_p, amp_r = (((lo + (hi - lo) * act) * energy).tolist() for lo, hi in
                               zip(self.SIGMA_REST, self.SIGMA_SPEECH))
        fy, fp, fr = self.DRIFT
        bias = _listed(b.beh[1], n)
        OY, OP, OR = [0.0] * n, [0.0] * n, [0.0] * n
        nxt, ei = evs[0], 0
        for i, (z0, z1, z2, z3, z4, z5), ay, ap, ar, ct, bp in zip(
                range(n), Z[:, :6].tolist(), amp_y, amp_p, amp_r, czt, bias):
            if i == nxt:
                u, z = ev_u[ei], ev_z[ei]
                acc, pause, onset, speech, en = ev_c[ei]
                ei += 1
                nxt = evs[ei]
                if acc > 0.0 and u[0] < max(0.15, min(0.9, 1.2 * acc - 0.1)):
                    amp = (1.2 + 3.0 * acc) * en * (0.6 + 0.8 * u[1]) * w_nod
                    vp += amp
                    vy += amp * 0.35 * z[6]
                    vr += amp * 0.30 * z[7]
                if pause > 0.0 and u[2] < 0.6:
                    sv += w_slow * (0.6 + 1.0 * u[3]) * en
                    tr = 0.7 * tr + 1.2 * z[8]
                shift = 0.0
                if onset > 0.6 and u[4] < 0.55:
                    shift = 1.0
                elif speech == 0.0 and u[5] < DT / 10.0:
                    shift = 0.65
                ty *= keep
                tp *= keep
                tr *= keep
                if shift:
                    ty = 0.4 * ty + shift * 3.5 * z[6]
                    tp = 0.4 * tp + shift * 2.0 * z[7]
                    tr = 0.4 * tr + shift * 3.0 * z[8]
            else:
                ty *= keep
                tp *= keep
                tr *= keep
            cz += (ct - cz) * kcz
            # yaw
            x1y = a1 * x1y + b1 * z0
            x2y = a2 * x2y + c2 * x1y
            dry = ad * dry + bd * z3
            vy = vy - k_nod * pny - d_nod * vy
            pny = pny + DT * vy
            pvy = pvy + k_p * (ty - ppy) - d_p * pvy
            ppy = ppy + DT * pvy
            # pitch
            x1p = a1 * x1p + b1 * z1
            x2p = a2 * x2p + c2 * x1p
            drp = ad * drp + bd * z4
            vp = vp - k_nod * pnp - d_nod * vp
            pnp = pnp + DT * vp
            pvp = pvp + k_p * (tp - ppp) - d_p * pvp
            ppp = ppp + DT * pvp
            # roll
            x1r = a1 * x1r + b1 * z2
            x2r = a2 * x2r + c2 * x1r
            drr = ad * drr + bd * z5
            vr = vr - k_nod * pnr - d_nod * vr
            pnr = pnr + DT * vr
            pvr = pvr + k_p * (tr - ppr) - d_p * pvr
            ppr = ppr + DT * pvr
            # slow phrase-end nod
            sv -= DT * (ws2 * sp + wsd * sv)
            sp += DT * sv
            # sway + drift + nod + posture per axis; pitch adds the slow nod, F0 and the bias
            OY[i] = ay * x2y * nrm + fy * dry + pny + ppy
            OP[i] = ap * x2p * nrm + fp * drp + pnp + ppp + sp + cz + bp
            OR[i] = ar * x2r * nrm + fr * drr + pnr + ppr
        sy[:] = x1y, x2y, dry, pny, vy, ty, ppy, 0.0, pvy
        spi[:] = x1p, x2p, drp, pnp, vp, tp, ppp, 0.0, pvp
        sr[:] = x1r, x2r, drr, pnr, vr, tr, ppr, 0.0, pvr
        self.sp, self.sv, self.cz = sp, sv, cz
        sl = b.shown
        return (25.0 * _tanh(np.array(OY[sl]) / 25.0) * gain,
                20.0 * _tanh(np.array(OP[sl]) / 20.0) * gain,
                20.0 * _tanh(np.array(OR[sl]) / 20.0) * gain)

    def step(self, i: int, c: _Ctx, gain: float) -> tuple[float, float, float]:
        u = self.d.ul
        z = self.d.zl
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
def _blink_shape(tau: np.ndarray, tc: np.ndarray, th: np.ndarray, to: np.ndarray
                 ) -> np.ndarray:
    """Lid closure at ``tau`` s after onset: ease-in-out closing, hold, ease-out opening."""
    x = tau / tc
    closing = x * x * (3.0 - 2.0 * x)
    t1 = tau - tc
    t2 = t1 - th
    y = 1.0 - t2 / to
    opening = y * y
    return np.where(tau <= 0.0, 0.0,
                    np.where(tau < tc, closing,
                             np.where(t1 < th, 1.0, np.where(t2 < to, opening, 0.0))))


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

    def run(self, b: _Block, gain: float, saccades: list) -> tuple[np.ndarray, np.ndarray]:
        """Advance over the block's frames; (left, right) closure at the shown ones.

        A blink may start at a frame when the last one is over and a uniform draw falls
        under hazard x refractory ramp x DT (or a large saccade asks for one). The hazard
        is at most the base rate plus both boosts, so only the frames whose draw falls under
        that bound (or with a saccade) are examined, with the exact test."""
        U = self.d.rows()[0]
        T = b.tl
        rate0 = ((self.RATE_REST + (self.RATE_SPEECH - self.RATE_REST) * b.act) * b.beh[2]
                 * (1.0 + 0.2 * b.auto))
        bound = (rate0 + 2.0 * (self.PAUSE_BOOST + self.ONSET_BOOST)) * DT
        cand = np.flatnonzero(U[:, 0] < bound).tolist()
        sacc = set(saccades)
        if sacc:
            cand = sorted(set(cand) | sacc)
        pause_at, onset_at = b.pause_at, b.onset_at
        ip = io = 0
        t_pause, t_onset = self.t_pause, self.t_onset
        t0, tc, th, to = self.t0, self.tc, self.th, self.to
        end = tc + th + to + 0.02
        segs = [(0, t0, tc, th, to, self.amp_l, self.amp_r, self.lag)]
        if cand:
            exp = math.exp
            for i, u, rate in zip(cand, U[cand].tolist(), rate0[cand].tolist()):
                t = T[i]
                while ip < len(pause_at) and pause_at[ip] <= i:
                    t_pause = T[pause_at[ip]]
                    ip += 1
                while io < len(onset_at) and onset_at[io] <= i:
                    t_onset = T[onset_at[io]]
                    io += 1
                since = t - t0
                if since >= end:
                    dp = t - t_pause
                    if dp < 1.5:
                        rate += self.PAUSE_BOOST * exp(-dp / self.PAUSE_TAU)
                    do = t - t_onset
                    if do < 1.0:
                        rate += self.ONSET_BOOST * exp(-do / self.ONSET_TAU)
                    refr = (since - self.REFRACTORY_S) / self.RAMP_S
                    refr = 1.0 if refr > 1.0 else (0.0 if refr < 0.0 else refr)
                    if u[0] < rate * refr * DT or (i in sacc and since > 0.6):
                        t0 = t
                        self.count += 1
                        tc = 0.07 + 0.03 * u[1]
                        th = 0.05 * u[2] * u[2]
                        to = 0.14 + 0.10 * u[3]
                        amp = 0.86 + 0.14 * u[4]
                        if u[5] < 0.12:
                            amp = 0.5 + 0.25 * u[6]
                        segs.append((i, t0, tc, th, to, amp, amp * (0.96 + 0.08 * u[6]),
                                     (u[7] - 0.5) * 0.016))
                        end = tc + th + to + 0.02
        if pause_at:
            t_pause = T[pause_at[-1]]
        if onset_at:
            t_onset = T[onset_at[-1]]
        self.t_pause, self.t_onset = t_pause, t_onset
        _, self.t0, self.tc, self.th, self.to, self.amp_l, self.amp_r, self.lag = segs[-1]
        # closure at the shown frames, each with the parameters of the last blink that started
        # at or before it (0 more than 0.5 s after its onset)
        sl = b.shown
        ts = b.t[sl]
        first, step = sl.start, sl.step
        rows = [max(0, -(-(s[0] - first) // step)) for s in segs]    # first shown row of each
        rows.append(len(ts))
        par = np.repeat(np.array([s[1:] for s in segs]), np.diff(rows), axis=0)
        t0, tc, th, to, amp_l, amp_r, lag = par.T
        since = ts - t0
        on = since <= 0.5
        bl = np.where(on, amp_l * _blink_shape(since, tc, th, to) * gain, 0.0)
        br = np.where(on, amp_r * _blink_shape(since - lag, tc, th, to) * gain, 0.0)
        return bl, br

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
        u = self.d.ul
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

    def run(self, b: _Block, gain: float, hy: np.ndarray, hp: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, list]:
        """Advance over the block's frames; (yaw, pitch) of the eyes in the head at the shown
        frames (``hy``, ``hp``: the head's), and the frames whose saccade asks for a blink.

        A new fixation may be chosen when the current saccade is over and speech starts
        (look away), a phrase ends (look back) or the fixation has lasted its time; the
        frames where none of these can happen only move the saccade and the drift."""
        n = b.n
        U, Z = self.d.rows()
        T = b.tl
        evs = np.flatnonzero((b.onset > 0.4) | (b.pause > 0.0)).tolist()
        evs.append(-1)
        onset_l, pause_l, act_l = b.onset.tolist(), b.pause.tolist(), b.act.tolist()
        beh4, beh5 = _listed(b.beh[4], n), _listed(b.beh[5], n)
        gy, gp, dy, dp = self.gy, self.gp, self.dy, self.dp
        sy0, sp0, sy1, sp1 = self.sy0, self.sp0, self.sy1, self.sp1
        s_t0, s_dur, away, fix_end = self.s_t0, self.s_dur, self.away, self.fix_end
        s_end = s_t0 + s_dur
        ad, bd = self.ad, self.bd
        cos, sin, hypot, pi = math.cos, math.sin, math.hypot, math.pi
        GY, GP, DY, DP = [0.0] * n, [0.0] * n, [0.0] * n, [0.0] * n
        saccade_blinks = []
        nxt, ei = evs[0], 0
        for i, (z2, z3) in enumerate(Z[:, 2:4].tolist()):
            t = T[i]
            ev = i == nxt
            if ev:
                ei += 1
                nxt = evs[ei]
            if t >= s_end and (ev or t >= fix_end):
                u = U[i].tolist()
                act = act_l[i]
                choose = 0
                if onset_l[i] > 0.4 and not away and u[0] < min(0.9, 0.5 * beh4[i]):
                    choose = 1                               # look away to plan speech
                elif pause_l[i] > 0.0 and away and u[0] < 0.75:
                    choose = 2                               # back to the listener
                elif t >= fix_end:
                    if away:
                        choose = 2 if u[1] < 0.8 else 1
                    else:
                        choose = 1 if u[1] < (0.15 + 0.2 * act) * beh4[i] else 3
                if choose:
                    z = Z[i].tolist()
                    if choose == 1:
                        amp = 5.0 + 9.0 * u[2] ** 1.5
                        ang = 2.0 * pi * u[3]
                        y = amp * cos(ang)
                        p = 0.6 * amp * sin(ang) + beh5[i]
                        away = True
                        med = 1.1
                    elif choose == 2:
                        y = 1.2 * z[0]
                        p = 0.8 * abs(z[1]) + 0.3 * beh5[i]
                        away = False
                        med = 2.0 if act > 0.5 else 3.0
                    else:  # another point of the listener's face (eyes, mouth)
                        y = 1.5 * (1.0 if u[2] < 0.5 else -1.0) + 0.4 * z[0]
                        p = 2.5 * u[3] * u[3] + 0.3 * beh5[i]
                        med = 1.2
                    amp = hypot(y - gy, p - gp)
                    sy0, sp0, sy1, sp1 = gy, gp, y, p
                    s_t0 = t
                    s_dur = 0.021 + 0.0022 * amp          # main sequence
                    s_end = s_t0 + s_dur
                    fix_end = t + s_dur + self._lognormal(med, u[4], u[5])
                    if amp > 10.0 and u[6] < 0.3:
                        saccade_blinks.append(i)
            if t < s_end:
                x = (t - s_t0) / s_dur
                s = x * x * x * (10.0 - 15.0 * x + 6.0 * x * x)          # minimum jerk
                gy = sy0 + (sy1 - sy0) * s
                gp = sp0 + (sp1 - sp0) * s
            elif s_t0 >= 0.0:
                gy = sy1
                gp = sp1
            dy = ad * dy + bd * z2
            dp = ad * dp + bd * z3
            GY[i] = gy
            GP[i] = gp
            DY[i] = dy
            DP[i] = dp
        self.gy, self.gp, self.dy, self.dp = gy, gp, dy, dp
        self.sy0, self.sp0, self.sy1, self.sp1 = sy0, sp0, sy1, sp1
        self.s_t0, self.s_dur, self.away, self.fix_end = s_t0, s_dur, away, fix_end
        # eye in head: gaze minus the vestibulo-ocular share of the head rotation
        sl = b.shown
        ey = (np.array(GY[sl]) + 0.15 * np.array(DY[sl]) - VOR_GAIN * hy) * gain
        ep = (np.array(GP[sl]) + 0.15 * np.array(DP[sl]) - VOR_GAIN * hp) * gain
        return ey, ep, saccade_blinks

    def step(self, i: int, c: _Ctx, gain: float) -> tuple[float, float]:
        u = self.d.ul
        z = self.d.zl
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

    def run(self, b: _Block, gain: float) -> tuple[np.ndarray, ...]:
        """Advance over the block's frames; (browInnerUp, browOuterUpLeft, browOuterUpRight,
        browDown, squint, sneer) at the shown frames."""
        n = b.n
        U = self.d.rows()[0]
        T = b.tl
        ev = b.accent_at
        # per event: the draws and (accent, pitch, loudness)
        ev_u = U[ev].tolist()
        ev_c = np.stack([b.accent[ev], b.pitch[ev], b.loud[ev]], axis=1).tolist()
        evs = ev + [-1]
        slow_t = (0.035 * _clip(b.pitch, 0.0, 6.0) * b.act).tolist()
        squint_t = (0.12 * b.loud * b.act).tolist()
        k_slow, k_squint = DT / 0.4, DT / 0.3
        raise_, raise_t, raise_until = self.raise_, self.raise_t, self.raise_until
        down, down_t, down_until = self.down, self.down_t, self.down_until
        sneer, sneer_t, sneer_until = self.sneer, self.sneer_t, self.sneer_until
        slow, squint, asym = self.slow, self.squint, self.asym
        RA, DO, SN, SL, SQ, AS = ([0.0] * n for _ in range(6))
        nxt, ei = evs[0], 0
        for i, t in enumerate(T):
            if i == nxt:
                u = ev_u[ei]
                acc, pitch, loud = ev_c[ei]
                ei += 1
                nxt = evs[ei]
                if (pitch > 1.5 and u[0] < 0.3 + 0.5 * acc) or u[0] < 0.1:   # brow flash
                    raise_t = (0.12 + 0.30 * acc) * (0.7 + 0.6 * u[1])
                    raise_until = t + 0.20 + 0.20 * u[2]
                    asym = (u[3] - 0.5) * 0.2
                elif pitch < -0.5 and loud > 0.5:             # loud and low: brows down
                    down_t = 0.10 + 0.15 * acc
                    down_until = t + 0.25
                if acc > 0.6 and u[4] < 0.35:
                    sneer_t = 0.04 + 0.06 * acc
                    sneer_until = t + 0.2
            tg = raise_t if t < raise_until else 0.0
            raise_ += (tg - raise_) * (0.22 if tg > raise_ else 0.05)
            tg = down_t if t < down_until else 0.0
            down += (tg - down) * (0.15 if tg > down else 0.05)
            tg = sneer_t if t < sneer_until else 0.0
            sneer += (tg - sneer) * (0.2 if tg > sneer else 0.06)
            slow += (slow_t[i] - slow) * k_slow
            squint += (squint_t[i] - squint) * k_squint
            RA[i] = raise_
            DO[i] = down
            SN[i] = sneer
            SL[i] = slow
            SQ[i] = squint
            AS[i] = asym
        self.raise_, self.raise_t, self.raise_until = raise_, raise_t, raise_until
        self.down, self.down_t, self.down_until = down, down_t, down_until
        self.sneer, self.sneer_t, self.sneer_until = sneer, sneer_t, sneer_until
        self.slow, self.squint, self.asym = slow, squint, asym
        sl = b.shown
        g = gain * _at(b.beh[3], sl) * (1.0 + 0.3 * b.auto[sl])
        r = np.array(RA[sl]) * g
        slow_g = np.array(SL[sl]) * g
        asym_a = np.array(AS[sl])
        return (r + slow_g, (0.8 + asym_a) * r + 0.6 * slow_g, (0.8 - asym_a) * r + 0.6 * slow_g,
                np.array(DO[sl]) * g, np.array(SQ[sl]) * g, np.array(SN[sl]) * g)

    def step(self, i: int, c: _Ctx, gain: float) -> tuple[float, ...]:
        u = self.d.ul
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
        self.ctx = _Ctx()                # what the current frame knows (frame-by-frame path)
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
    def _block(self, j0: int, j_end: int, mp: int, avail: int, m_lo: int, m_hi: int,
               auto: bool, g_emo: float) -> tuple[_Block, int, np.ndarray | None]:
        """The inputs of internal frames j0 .. j_end - 1: prosody (the frame that ends at or
        before each one; the events since the previous one), activity, emotion weights and
        behaviour. Returns the block, the last prosody frame read and the weights (None: 0)."""
        pros = self.prosody
        n = j_end - j0
        b = _Block()
        b.n = n
        js = np.arange(j0, j_end, dtype=np.int64)
        b.t = js * DT
        b.tl = b.t.tolist()
        m = js * pros.sr // (INTERNAL_FPS * pros.hop)          # pros.frame_at(j, 60)
        if m[-1] > avail:
            self.underruns += int(np.count_nonzero(m > avail))
            m = np.minimum(m, avail)
        k = m - m_lo

        def col(name: str) -> np.ndarray:
            return np.array(pros.column(name, m_lo, m_hi + 1), np.float64)

        b.speech, b.loud, b.pitch = col("speech")[k], col("loud")[k], col("pitch")[k]
        b.auto = col("arousal")[k] if auto else np.zeros(n)
        # events of the prosody frames mp+1 .. m[-1], each at the first internal frame that
        # reads it or a later one (the largest accent/onset, any pause)
        acc, pause, onset = {}, {}, {}
        m_top = int(m[-1])
        if m_top > mp:
            q0 = mp + 1 - m_lo
            ev_acc = pros.column("accent", mp + 1, m_top + 1)
            ev_pause = pros.column("pause", mp + 1, m_top + 1)
            ev_onset = pros.column("onset", mp + 1, m_top + 1)
            a = np.array(ev_acc)
            nz = np.flatnonzero((a > 0.0) | (np.array(ev_pause) > 0.0)
                                | (np.array(ev_onset) > 0.0))
            if nz.size:
                at = np.searchsorted(k, nz + q0, side="left").tolist()
                for q, i in zip(nz.tolist(), at):
                    v = ev_acc[q]
                    if v > acc.get(i, 0.0):
                        acc[i] = v
                    if ev_pause[q] > 0.0:
                        pause[i] = 1.0
                    v = ev_onset[q]
                    if v > onset.get(i, 0.0):
                        onset[i] = v
        mp = max(mp, m_top)
        b.accent, b.pause, b.onset = np.zeros(n), np.zeros(n), np.zeros(n)
        for arr, d in ((b.accent, acc), (b.pause, pause), (b.onset, onset)):
            if d:
                arr[list(d)] = list(d.values())
        b.accent_at, b.pause_at, b.onset_at = sorted(acc), sorted(pause), sorted(onset)
        # speech activity (fast attack, slow release)
        act = self.ctx.activity
        A = [0.0] * n
        for i, s in enumerate(b.speech.tolist()):
            act += (s - act) * (0.15 if s > act else 0.025)
            A[i] = act
        self.ctx.activity = act
        b.act = np.array(A)
        W = self.timeline.weights_array(b.t)
        b.beh = (list(emo.NEUTRAL_BEHAVIOUR) if W is None
                 else emo.behaviour_array(W, g_emo))
        step = self.step
        b.shown = slice((-j0) % step, None, step)
        return b, mp, W

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
        gain = cfg.effective_gain
        gains = (gain("head"), gain("blinks"), gain("gaze"), gain("brows"), gain("emotion"))
        pros = self.prosody
        m_last = pros.frame_at(j_end - 1, INTERNAL_FPS)
        avail = pros.ensure(m_last)
        mp = self._m_prev
        m_hi = min(avail, m_last)
        m_lo = min(mp, m_hi)
        # a few frames (a live stream): frame by frame; more (a bake, a large push): the
        # block path. Both give the same values and share the layers' state.
        run = self._run_frames if nj <= SMALL_BLOCK else self._run_block
        rows, mp = run(batch, j_end, mp, avail, m_lo, m_hi, gains)
        self._m_prev = mp
        self.j = j_end       # at 30 fps the odd frame after the last shown one comes next call
        pros.forget_before(max(0, mp - 1))
        batch.values[:, self._cols] += rows
        return batch

    def _run_frames(self, batch: FrameBatch, j_end: int, mp: int, avail: int, m_lo: int,
                    m_hi: int, gains: tuple) -> tuple[np.ndarray, int]:
        """Internal frames self.j .. j_end - 1 one by one (the reference implementation of
        :meth:`_run_block`); the rows of the shown frames as float32, and the last prosody
        frame read."""
        g_head, g_blink, g_gaze, g_brow, g_emo = gains
        step = self.step
        k0 = batch.start_index
        nj = j_end - self.j
        for d in self.draws.values():
            d.as_lists()
        auto = self.config.auto_emotion
        pros = self.prosody
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
        j0 = self.j
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
        return np.array(rows, np.float32), mp

    def _run_block(self, batch: FrameBatch, j_end: int, mp: int, avail: int, m_lo: int,
                   m_hi: int, gains: tuple) -> tuple[np.ndarray, int]:
        """Internal frames self.j .. j_end - 1 as a block: each layer runs its recursions
        frame by frame on plain floats, and everything that does not feed back (prosody
        lookup, emotion weights and behaviour, the output rows) is computed on whole arrays
        with the same float operations as :meth:`_run_frames`, so the values are the same."""
        g_head, g_blink, g_gaze, g_brow, g_emo = gains
        b, mp, W = self._block(self.j, j_end, mp, avail, m_lo, m_hi, self.config.auto_emotion,
                               g_emo)
        hy, hp, hr = self.head.run(b, g_head)
        ey, ep, saccades = self.gaze.run(b, g_gaze, hy, hp)
        bl, br = self.blinks.run(b, g_blink, saccades)
        inner, out_l, out_r, bdown, sq, sneer = self.brows.run(b, g_brow)
        # the rows of the shown frames, one array per channel of OUT_CHANNELS
        vals = batch.values
        R = np.zeros((len(OUT_CHANNELS), len(hy)))
        Rg = 1.0 / EYELOOK_RANGE_DEG
        verg = VERGENCE_DEG * g_gaze
        ly = ey - verg        # converge on the listener: the left eye turns right
        ry = ey + verg
        down = np.where(ep > 0.0, ep * Rg, 0.0)
        up = np.where(ep < 0.0, -ep * Rg, 0.0)
        R[0], R[1], R[2] = hy * D2R, hp * D2R, hr * D2R
        R[3], R[4], R[5], R[6] = ly * D2R, ep * D2R, ry * D2R, ep * D2R
        R[7] = np.where(ly > 0.0, ly * Rg, 0.0)
        R[8] = np.where(ly < 0.0, -ly * Rg, 0.0)
        R[9] = np.where(ry > 0.0, ry * Rg, 0.0)
        R[10] = np.where(ry < 0.0, -ry * Rg, 0.0)
        R[11] = R[12] = down
        R[13] = R[14] = up
        R[19] = R[20] = 0.6 * sq
        R[21], R[22], R[23], R[24], R[25] = inner, out_l, out_r, bdown, bdown
        R[26], R[27], R[28], R[29] = sq, sq, sneer, 0.9 * sneer
        if g_emo > 0.0 and W is not None:
            Ws = W[b.shown]
            pf = (vals[:, self._puck[0]] + vals[:, self._puck[1]]).astype(np.float64)
            pf = np.where(pf > 0.0, pf, 0.0)                # min(1, max(0, pf))
            pf = np.where(pf < 1.0, pf, 1.0)
            ps = 1.0 - 0.6 * pf
            for e in range(1, len(EMOTIONS)):
                we = Ws[:, e]
                on = we > 0.0
                if not on.any():
                    continue
                we = we * g_emo
                for pos, val in self._offsets[e]:
                    add = we * val
                    if pos in _PUCKER_SCALED:
                        add = add * ps
                    R[pos] = np.where(on, R[pos] + add, R[pos])
        # eyelids: blink over the resting lid (emotion, arousal, vertical gaze)
        au = b.auto[b.shown]
        lid = np.where(au < 0.0, 0.06 * -au, 0.0)
        bl = bl + (R[15] + 0.35 * down + lid) * (1.0 - bl)
        br = br + (R[16] + 0.35 * down + lid) * (1.0 - br)
        R[15] = bl
        R[16] = br
        wide = 0.5 * up + np.where(au > 0.0, 0.12 * au, 0.0)
        R[17] = (R[17] + wide) * (1.0 - bl)
        R[18] = (R[18] + wide) * (1.0 - br)
        return R.T.astype(np.float32), mp


def make_stage(options: Mapping[str, Any] | None, fps: int = 60,
               sample_rate: int = 16000) -> ExpressiveStage | None:
    """The stage for session ``options`` (validated; SessionError names a bad option), or
    None when ``{"expressive": false}``."""
    cfg = parse_options(options)
    if not cfg.enabled:
        return None
    return ExpressiveStage(cfg, fps=fps, sample_rate=sample_rate)
