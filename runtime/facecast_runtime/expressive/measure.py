"""Measurements behind ``docs/expression.md``: real captures vs the expressive layer.

* :func:`load_facecap` reads the 30 fps real capture embedded in
  ``../shared/data/meshes/facecap_arkit52.glb`` (head rotation from ``grp_transform``, eye
  rotations from ``grp_eyeLeft/Right``, morph weights in Face Cap names); :func:`load_livelink`
  reads the Live Link Face takes (blinks and gaze; their head channels are zero).
* :func:`blink_events`, :func:`head_stats`, :func:`gaze_stats` are the statistics, applied the
  same way to real and generated frames.
* ``python -m facecast_runtime.expressive.measure --out docs`` writes the figures and prints
  the tables of ``docs/expression.md``.

numpy and scipy only; nothing here runs in the engine.
"""
from __future__ import annotations

import argparse
import json
import math
import struct
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from facecast.schema import ARKIT52, FrameBatch

BANDS_HZ = ((0.0, 0.5), (0.5, 1.0), (1.0, 2.0), (2.0, 4.0), (4.0, 15.0))

# ------------------------------------------------------------------------------ real data


def _facecap_name(arkit: str) -> str:
    for side, suf in (("Left", "_L"), ("Right", "_R")):
        if arkit.endswith(side):
            return arkit[: -len(side)] + suf
    return arkit


def _quat_to_rotvec(q: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    R = Rotation.from_quat(q)
    mean = R.mean()
    return (R * mean.inv()).as_rotvec()


def load_facecap(path: str | Path) -> dict[str, Any]:
    """The embedded capture: ``fps``, ``times``, ``head`` (n, 3) yaw/pitch/roll radians about
    the mean pose, ``eyes`` (n, 4) left yaw/pitch, right yaw/pitch radians about their mean,
    ``weights`` (n, 52) in ARKit order.

    Axes: the capture's head frame has +Y up and +Z out of the face (checked on the mesh: the
    top of the head is at +Y, the face at +Z), so yaw is rotation about Y, pitch about X and
    roll about Z (small rotations, taken from the rotation vector relative to the mean pose;
    signs may differ from the schema's, which no statistic here depends on). The eye nodes are
    rotated about X for vertical gaze and about their Z for horizontal gaze (checked against
    eyeLookOut/In: 1.0 of eyeLook* = 30 degrees).
    """
    b = Path(path).read_bytes()
    jlen = struct.unpack("<I", b[12:16])[0]
    j = json.loads(b[20:20 + jlen])
    off = 20 + jlen
    blen = struct.unpack("<I", b[off:off + 4])[0]
    binb = b[off + 8:off + 8 + blen]
    ctypes = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16,
              5125: np.uint32, 5126: np.float32}
    ncomp = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}
    norm = {5120: 127.0, 5121: 255.0, 5122: 32767.0, 5123: 65535.0}

    def acc(i: int) -> np.ndarray:
        a = j["accessors"][i]
        bv = j["bufferViews"][a["bufferView"]]
        dt = np.dtype(ctypes[a["componentType"]])
        n = ncomp[a["type"]]
        start = bv.get("byteOffset", 0) + a.get("byteOffset", 0)
        stride = bv.get("byteStride", dt.itemsize * n)
        rows = [np.frombuffer(binb, dt, n, start + k * stride) for k in range(a["count"])]
        out = np.stack(rows).astype(np.float64)
        if a.get("normalized"):
            out = np.maximum(out / norm[a["componentType"]], -1.0)
        return out

    def anim(prefix: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        a = next(a for a in j["animations"] if a["name"].startswith(prefix))
        return {c["target"]["path"]: (acc(a["samplers"][c["sampler"]]["input"])[:, 0],
                                      acc(a["samplers"][c["sampler"]]["output"]))
                for c in a["channels"]}

    mesh = next(m for m in j["meshes"] if "targetNames" in (m.get("extras") or {}))
    names = mesh["extras"]["targetNames"]
    t, w = anim("Key|")["weights"]
    w = w.reshape(len(t), -1)
    _, q = anim("grp_transform|")["rotation"]
    rv = _quat_to_rotvec(q)
    head = np.stack([rv[:, 1], rv[:, 0], rv[:, 2]], axis=1)
    eyes = []
    for node in ("grp_eyeLeft|", "grp_eyeRight|"):
        e = _quat_to_rotvec(anim(node)["rotation"][1])
        eyes += [e[:, 2], e[:, 0]]
    weights = np.zeros((len(t), len(ARKIT52)))
    for i, n in enumerate(ARKIT52):
        fn = _facecap_name(n)
        if fn in names:
            weights[:, i] = w[:, names.index(fn)]
    fps = 1.0 / float(np.median(np.diff(t)))
    return {"fps": fps, "times": t - t[0], "head": head, "eyes": np.stack(eyes, axis=1),
            "weights": weights}


def load_livelink(path: str | Path) -> FrameBatch:
    from facecast.formats import read

    return read(path)


# ------------------------------------------------------------------------------ statistics


def blink_events(left: np.ndarray, right: np.ndarray, fps: float) -> dict[str, Any]:
    """Blinks in eyeBlink curves: peaks of the L/R mean with prominence >= 0.35 and a width at
    half prominence under 0.5 s (longer closures are deliberate, not blinks)."""
    from scipy.signal import find_peaks, peak_widths

    b = (np.asarray(left, np.float64) + np.asarray(right, np.float64)) / 2
    pk, props = find_peaks(b, prominence=0.35)
    if len(pk):
        w50 = peak_widths(b, pk, rel_height=0.5)[0] / fps
        keep = w50 < 0.5
        pk, w50, prom = pk[keep], w50[keep], props["prominences"][keep]
    else:
        w50 = prom = np.zeros(0)
    dur = len(b) / fps
    ibi = np.diff(pk) / fps
    return {"count": int(len(pk)), "seconds": dur, "rate_per_min": len(pk) / dur * 60.0,
            "peaks": pk, "width_s": w50, "amplitude": prom, "ibi_s": ibi,
            "lr_corr": float(np.corrcoef(left, right)[0, 1]) if np.std(left) > 0 else 1.0}


def poisson_rate_ci(count: int, seconds: float) -> tuple[float, float]:
    """95 % interval of a blink rate (per minute) from ``count`` events (exact Poisson)."""
    from scipy.stats import chi2

    lo = chi2.ppf(0.025, 2 * count) / 2 if count else 0.0
    hi = chi2.ppf(0.975, 2 * count + 2) / 2
    return lo / seconds * 60.0, hi / seconds * 60.0


def band_fractions(x: np.ndarray, fps: float, bands=BANDS_HZ) -> list[float]:
    """Share of the (linearly detrended) signal's power in each frequency band (Welch)."""
    from scipy.signal import welch

    nper = int(min(len(x), round(fps * 128 / 30)))
    f, P = welch(np.asarray(x, np.float64), fs=fps, nperseg=nper, detrend="linear")
    P = P[f > 0]
    f = f[f > 0]
    tot = P.sum()
    return [float(P[(f > lo) & (f <= hi)].sum() / tot) if tot > 0 else 0.0 for lo, hi in bands]


def head_stats(head: np.ndarray, fps: float) -> dict[str, Any]:
    """Per axis (yaw, pitch, roll): std in degrees, power share per band; angular speed
    percentiles (deg/s) of the 3-axis rotation."""
    h = np.degrees(np.asarray(head, np.float64))
    v = np.linalg.norm(np.diff(h, axis=0), axis=1) * fps
    return {"std_deg": h.std(axis=0).tolist(),
            "bands": [band_fractions(h[:, a], fps) for a in range(3)],
            "speed_pct": dict(zip(("p50", "p90", "p99"), np.percentile(v, [50, 90, 99]).tolist())),
            "speed": v}


def gaze_stats(eye_yaw: np.ndarray, eye_pitch: np.ndarray, fps: float,
               saccade_deg_s: float = 60.0) -> dict[str, Any]:
    """Eye-in-head std (deg), saccades (frames where angular speed > 60 deg/s, merged) per
    minute and fixation durations between them."""
    y, p = np.degrees(eye_yaw), np.degrees(eye_pitch)
    sp = np.hypot(np.diff(y), np.diff(p)) * fps
    fast = sp > saccade_deg_s
    starts = np.flatnonzero(fast & ~np.concatenate([[False], fast[:-1]]))
    fix = np.diff(starts) / fps
    dur = len(y) / fps
    return {"std_deg": [float(y.std()), float(p.std())],
            "saccades_per_min": len(starts) / dur * 60.0,
            "fixation_s_median": float(np.median(fix)) if len(fix) else float("nan")}


def pause_blink_share(blink_times: np.ndarray, spans: Sequence[tuple[float, float]],
                      duration: float, window: float = 1.0) -> dict[str, float]:
    """Share of phrase ends (ends of ``spans``) followed by a blink within ``window`` s, and
    the share expected by chance at the same overall blink rate (Poisson)."""
    ends = [e for _, e in spans if e < duration - window]
    bt = np.asarray(blink_times)
    hit = [bool(np.any((bt > e) & (bt <= e + window))) for e in ends]
    rate = len(bt) / duration
    return {"pause_share": float(np.mean(hit)) if hit else float("nan"),
            "chance_share": float(1 - math.exp(-rate * window)), "phrase_ends": len(ends)}


def frames_head(fb: FrameBatch) -> np.ndarray:
    return np.stack([fb.channel(c) for c in ("headYaw", "headPitch", "headRoll")], axis=1)


# ------------------------------------------------------------------------------ speech input

def speech_corpus(shared: Path, seconds: float = 600.0, seed: int = 0,
                  sr: int = 16000) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Real speech clips from ``shared/data/speech`` joined with pauses of 0.3-2.5 s (looped
    to ``seconds``); returns the samples and the (start, end) of every clip."""
    from ..audio import load_audio, resample

    files = sorted((shared / "data" / "speech").rglob("*.wav")) + \
        sorted((shared / "data" / "speech").rglob("*.flac"))
    clips = []
    for f in files:
        x, r = load_audio(f)
        if r != sr:
            x = resample(x, r, sr)
        clips.append(np.asarray(x, np.float32))
    if not clips:
        raise FileNotFoundError(f"no speech clips under {shared / 'data' / 'speech'}")
    rng = np.random.default_rng(seed)
    parts, spans, pos = [], [], 0
    order = rng.permutation(len(clips))
    i = 0
    while pos < seconds * sr:
        c = clips[order[i % len(clips)]]
        i += 1
        peak = float(np.max(np.abs(c))) or 1.0
        c = c * (0.5 / peak)
        # trim leading/trailing silence (20 ms frames under -40 dB re the clip's peak)
        fr = len(c) // 320
        if fr > 2:
            lv = np.sqrt(np.mean(c[: fr * 320].reshape(fr, 320) ** 2, axis=1))
            act = np.flatnonzero(lv > 0.5 * 10 ** (-40 / 20))
            if len(act):
                c = c[act[0] * 320 : (act[-1] + 1) * 320]
        gap = np.zeros(int(rng.uniform(0.3, 2.5) * sr), np.float32)
        parts += [gap, c]
        spans.append(((pos + len(gap)) / sr, (pos + len(gap) + len(c)) / sr))
        pos += len(gap) + len(c)
    x = np.concatenate(parts)[: int(seconds * sr)]
    return x, spans


def synthetic_speech(seconds: float, sr: int = 16000, seed: int = 0) -> np.ndarray:
    """Phrase-structured speech-like audio (voiced syllables 3-6/s with F0 contours and
    declination, 0.25-1.5 s pauses between phrases of 1-4 s) for tests without ../shared."""
    rng = np.random.default_rng(seed)
    out = []
    n_total = int(seconds * sr)
    pos = 0
    while pos < n_total:
        dur = rng.uniform(1.0, 4.0)
        n = int(dur * sr)
        t = np.arange(n) / sr
        rate = rng.uniform(3.0, 6.0)
        f0 = rng.uniform(100, 210) * (1 - 0.12 * t / dur) * (1 + 0.08 * np.sin(
            2 * np.pi * rng.uniform(0.5, 1.5) * t + rng.uniform(0, 6)))
        phase = 2 * np.pi * np.cumsum(f0) / sr
        src = sum(np.sin(k * phase) / k for k in range(1, 12))
        syl = np.clip(np.sin(2 * np.pi * rate * t + rng.uniform(0, 6)), 0, None) ** 0.7
        stress = 1 + 0.8 * (np.sin(2 * np.pi * rate / 3 * t) > 0.6)
        x = 0.1 * src * syl * stress + 0.003 * rng.standard_normal(n)
        out.append(x)
        gap = int(rng.uniform(0.25, 1.5) * sr)
        out.append(0.001 * rng.standard_normal(gap))
        pos += n + gap
    return np.concatenate(out)[:n_total].astype(np.float32)


# ------------------------------------------------------------------------------ report

def _generate(x: np.ndarray, sr: int, options: dict | None = None, model: str = "default"
              ) -> FrameBatch:
    from ..engine import bake

    return bake((x, sr), model=model, fps=60, options=options)


def report(shared: Path, out_dir: Path, seconds: float = 600.0) -> dict[str, Any]:
    """Compute every statistic of docs/expression.md and write ``expression_*.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res: dict[str, Any] = {}
    fc = load_facecap(shared / "data" / "meshes" / "facecap_arkit52.glb")
    real_head = head_stats(fc["head"], fc["fps"])
    res["real_head"] = {k: v for k, v in real_head.items() if k != "speed"}
    res["real_gaze_facecap"] = gaze_stats(fc["eyes"][:, 0], fc["eyes"][:, 1], fc["fps"])
    takes = {}
    for name in ("alex_rom_3", "alex_rom_4"):
        fb = load_livelink(shared / "data" / "livelink" / f"{name}.csv")
        ev = blink_events(fb.channel("eyeBlinkLeft"), fb.channel("eyeBlinkRight"), fb.fps)
        takes[name] = {"fps": fb.fps, "seconds": ev["seconds"], "count": ev["count"],
                       "rate_per_min": ev["rate_per_min"],
                       "rate_ci": poisson_rate_ci(ev["count"], ev["seconds"]),
                       "width_s": np.percentile(ev["width_s"], [10, 50, 90]).tolist(),
                       "lr_corr": ev["lr_corr"]}
        # gaze from eyeLook* (their eye rotation columns are not in radians): 1.0 = 30 deg
        r30 = math.radians(30.0)
        ey = (fb.channel("eyeLookOutLeft") - fb.channel("eyeLookInLeft")) * r30
        ep = (fb.channel("eyeLookDownLeft") - fb.channel("eyeLookUpLeft")) * r30
        takes[name]["gaze"] = gaze_stats(ey, ep, fb.fps)
    res["real_blinks"] = takes

    x, spans = speech_corpus(shared, seconds)
    sr = 16000
    gen = _generate(x, sr)
    fps = gen.fps
    gh = head_stats(frames_head(gen), fps)
    res["gen_head"] = {k: v for k, v in gh.items() if k != "speed"}
    gb = blink_events(gen.channel("eyeBlinkLeft"), gen.channel("eyeBlinkRight"), fps)
    res["gen_blinks"] = {"seconds": gb["seconds"], "count": gb["count"],
                         "rate_per_min": gb["rate_per_min"],
                         "width_s": np.percentile(gb["width_s"], [10, 50, 90]).tolist(),
                         "lr_corr": gb["lr_corr"]}
    res["gen_gaze"] = gaze_stats(gen.channel("leftEyeYaw"), gen.channel("leftEyePitch"), fps)
    # blinks right after phrase ends (the end of every clip's speech)
    res["gen_blinks"].update(pause_blink_share(gb["peaks"] / fps, spans, len(x) / sr))
    # silence: idle motion
    sil = _generate(np.zeros(sr * 60, np.float32), sr)
    sh = head_stats(frames_head(sil), fps)
    res["silence_head"] = {k: v for k, v in sh.items() if k != "speed"}
    sb = blink_events(sil.channel("eyeBlinkLeft"), sil.channel("eyeBlinkRight"), fps)
    res["silence_blinks_per_min"] = sb["rate_per_min"]
    # emotion
    clip = x[: sr * 60]
    neutral = _generate(clip, sr)
    happy = _generate(clip, sr, {"emotion": "happy:1"})
    res["emotion_means"] = {
        c: [float(neutral.channel(c).mean()), float(happy.channel(c).mean())]
        for c in ("mouthSmileLeft", "mouthSmileRight", "cheekSquintLeft", "cheekSquintRight")}

    out_dir.mkdir(parents=True, exist_ok=True)
    fig, axs = plt.subplots(2, 2, figsize=(12, 8))
    labels = [f"{lo:g}-{hi:g}" for lo, hi in BANDS_HZ]
    xs = np.arange(len(BANDS_HZ))
    for a, name in enumerate(("yaw", "pitch", "roll")):
        axs[0, 0].plot(xs + 0.05 * a, real_head["bands"][a], "o-", color=f"C{a}",
                       label=f"real {name}")
        axs[0, 0].plot(xs + 0.05 * a, gh["bands"][a], "s--", color=f"C{a}",
                       label=f"generated {name}")
    axs[0, 0].set_xticks(xs, labels)
    axs[0, 0].set_xlabel("band (Hz)")
    axs[0, 0].set_ylabel("share of power")
    axs[0, 0].set_title("head rotation: power per band")
    axs[0, 0].legend(fontsize=7)
    w = 0.35
    axs[0, 1].bar(xs[:3] - w / 2, real_head["std_deg"], w, label="real (Face Cap capture)")
    axs[0, 1].bar(xs[:3] + w / 2, gh["std_deg"], w, label="generated (10 min speech)")
    axs[0, 1].bar(xs[:3] + 1.5 * w, sh["std_deg"], w * 0.6, label="generated (silence)")
    axs[0, 1].set_xticks(xs[:3], ["yaw", "pitch", "roll"])
    axs[0, 1].set_ylabel("std (deg)")
    axs[0, 1].set_title("head rotation: standard deviation")
    axs[0, 1].legend(fontsize=7)
    bins = np.linspace(0, 60, 31)
    axs[1, 0].hist(real_head["speed"], bins, density=True, alpha=0.5, label="real")
    axs[1, 0].hist(gh["speed"], bins, density=True, alpha=0.5, label="generated")
    axs[1, 0].set_xlabel("head angular speed (deg/s)")
    axs[1, 0].set_title("head velocity distribution")
    axs[1, 0].legend(fontsize=7)
    t = gen.times
    sel = (t >= 20) & (t < 50)
    axs[1, 1].plot(t[sel], np.degrees(gen.channel("headYaw")[sel]), label="yaw")
    axs[1, 1].plot(t[sel], np.degrees(gen.channel("headPitch")[sel]), label="pitch")
    axs[1, 1].plot(t[sel], np.degrees(gen.channel("headRoll")[sel]), label="roll")
    axs[1, 1].plot(t[sel], 10 * gen.channel("eyeBlinkLeft")[sel] - 12, "k", lw=0.8,
                   label="blink (x10, -12)")
    for s0, s1 in spans:
        if s1 > 20 and s0 < 50:
            axs[1, 1].axvspan(max(s0, 20), min(s1, 50), color="0.9", zorder=0)
    axs[1, 1].set_xlabel("time (s); grey = speech")
    axs[1, 1].set_ylabel("deg")
    axs[1, 1].set_title("generated head motion and blinks")
    axs[1, 1].legend(fontsize=7, ncol=4)
    fig.tight_layout()
    fig.savefig(out_dir / "expression_head.png", dpi=80)
    plt.close(fig)
    return res


def _jsonable(o: Any) -> Any:
    if isinstance(o, dict):
        return {k: _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, float)):
        return round(float(o), 4)
    return o


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default=None, help="reference data folder (default ../shared)")
    ap.add_argument("--out", default="docs", help="folder for the figures (default docs)")
    ap.add_argument("--seconds", type=float, default=600.0)
    ap.add_argument("--json", default=None, help="write the statistics as JSON")
    args = ap.parse_args(argv)
    shared = Path(args.shared) if args.shared else Path(__file__).resolve().parents[3].parent \
        / "shared"
    res = _jsonable(report(shared, Path(args.out), args.seconds))
    demo = Path(__file__).resolve().parents[3] / "samples" / "demo.wav"
    if demo.is_file():
        png = stills(demo, Path(args.out) / "expression_stills.png",
                     times=(1.05, 2.75, 4.32, 5.5))
        res["stills"] = str(png) if png else "previewer not available"
    text = json.dumps(res, indent=1)
    if args.json:
        Path(args.json).write_text(text)
    sys.stdout.write(text + "\n")
    return 0


def stills(audio: str | Path, out: str | Path, times: Sequence[float] = (1.0, 3.2, 5.5, 8.0),
           size: int = 224) -> Path | None:
    """Before/after stills with the previewer (``runtime/facecast_runtime/preview``) on the demo
    head: mouth only, expressive (neutral), expressive happy, sad and surprised, at ``times``.
    Returns the PNG path, or None when the previewer (numba) is not available."""
    try:
        from facecast.demohead import demo_head

        from ..preview.raster import Renderer
        renderer = Renderer(demo_head(), size=size, supersample=2)
    except Exception:  # previewer missing or numba not installed
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..engine import bake

    rows = [("mouth only (before)", {"expressive": False}), ("expressive, neutral", None),
            ("happy 0.8", {"emotion": "happy:0.8"}), ("sad 0.8", {"emotion": "sad:0.8"}),
            ("surprised 0.8", {"emotion": "surprised:0.8"})]
    takes = [(label, bake(str(audio), options=opts)) for label, opts in rows]
    fig, axs = plt.subplots(len(rows), len(times), figsize=(2.2 * len(times), 2.3 * len(rows)))
    for r, (label, fb) in enumerate(takes):
        for c, t in enumerate(times):
            i = min(len(fb) - 1, int(round(t * fb.fps)))
            ax = axs[r, c]
            ax.imshow(renderer.render(fb.values[i]))
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"t = {t:.1f} s", fontsize=9)
            if c == 0:
                ax.set_ylabel(label, fontsize=9)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


__all__ = ["band_fractions", "blink_events", "gaze_stats", "head_stats", "load_facecap",
           "load_livelink", "pause_blink_share", "poisson_rate_ci", "report", "speech_corpus",
           "stills", "synthetic_speech"]

if __name__ == "__main__":
    sys.exit(main())
