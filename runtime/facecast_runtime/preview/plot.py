"""Static plots of a take: the waveform on top, the main channel groups under it, one shared
time axis in seconds (matplotlib, Agg backend, imported only here).

Groups (:data:`GROUPS`) are shown when they carry signal (peak-to-peak above a small threshold),
or all of them, or the channels the caller names. Left/right pairs share a colour (left solid,
right dashed). Head and eye angles are drawn in degrees.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FacecastError

__all__ = ["GROUPS", "PLOT_FORMATS", "PlotError", "plot_take", "select_groups", "auto_height"]

#: output extension -> matplotlib format
PLOT_FORMATS: dict[str, str] = {".png": "png", ".svg": "svg", ".pdf": "pdf"}


class PlotError(FacecastError, ValueError):
    """Bad plot input; one-line message."""


@dataclass(frozen=True)
class Group:
    key: str
    title: str
    channels: tuple[str, ...]
    unit: str = "weight"          # "weight" (0..1) or "deg" (channel in radians, shown in degrees)


GROUPS: tuple[Group, ...] = (
    Group("jaw", "jaw / closure", ("jawOpen", "mouthClose")),
    Group("rounding", "rounding", ("mouthFunnel", "mouthPucker")),
    Group("smile", "smile / stretch", ("mouthSmileLeft", "mouthSmileRight",
                                       "mouthStretchLeft", "mouthStretchRight")),
    Group("press", "press / roll", ("mouthPressLeft", "mouthPressRight", "mouthRollLower",
                                    "mouthRollUpper")),
    Group("lips", "lips up / down", ("mouthUpperUpLeft", "mouthUpperUpRight",
                                     "mouthLowerDownLeft", "mouthLowerDownRight")),
    Group("tongue", "tongue", ("tongueOut",)),
    Group("blink", "blinks", ("eyeBlinkLeft", "eyeBlinkRight")),
    Group("brows", "brows", ("browInnerUp", "browDownLeft", "browDownRight", "browOuterUpLeft",
                             "browOuterUpRight")),
    Group("head", "head rotation", ("headYaw", "headPitch", "headRoll"), "deg"),
    Group("gaze", "eye rotation", ("leftEyeYaw", "leftEyePitch", "rightEyeYaw",
                                   "rightEyePitch"), "deg"),
)

#: peak-to-peak below which a channel counts as silent (weight units / degrees)
THRESHOLD = {"weight": 0.02, "deg": 0.5}

_PALETTE = ["#3b6fb6", "#d1603d", "#3a9a6a", "#8e5cb5", "#c9a227", "#4a9fb0", "#b5497a",
            "#6b7b8c"]
_WAVE = "#5b6b80"


def _unit_of(channel: str) -> str:
    from facecast.schema import ARKIT52

    return "weight" if channel in ARKIT52 else "deg"


def _pair_base(name: str) -> tuple[str, bool]:
    """('mouthSmile', True) for mouthSmileRight: the shared colour key and whether dashed."""
    for suffix, dashed in (("Left", False), ("Right", True)):
        if name.endswith(suffix):
            return name[: -len(suffix)], dashed
    for prefix, dashed in (("left", False), ("right", True)):
        if name.startswith(prefix):
            return name[len(prefix):], dashed
    return name, False


def select_groups(values: dict[str, np.ndarray], spec: str | None = None) -> list[Group]:
    """The panels to draw. ``spec`` None/"auto": groups with signal; "all": every group; else a
    comma-separated list of group keys (:data:`GROUPS`) and/or channel names."""
    from facecast.schema import CHANNELS

    if spec in (None, "", "auto"):
        out = []
        for g in GROUPS:
            scale = 180 / np.pi if g.unit == "deg" else 1.0
            if any(np.ptp(values[c]) * scale > THRESHOLD[g.unit] for c in g.channels
                   if len(values[c])):
                out.append(g)
        return out or [GROUPS[0]]
    if spec == "all":
        return list(GROUPS)
    by_key = {g.key: g for g in GROUPS}
    picked: dict[str, list[str]] = {}
    extra: dict[str, list[str]] = {"weight": [], "deg": []}
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        if item in by_key:
            picked.setdefault(item, [])
            picked[item] = list(by_key[item].channels)
            continue
        if item not in CHANNELS:
            raise PlotError(f"--channels: {item!r} is neither a channel nor a group "
                            f"({', '.join(by_key)}, auto, all)")
        home = next((g for g in GROUPS if item in g.channels), None)
        if home is None:
            if item not in extra[_unit_of(item)]:
                extra[_unit_of(item)].append(item)
        else:
            chans = picked.setdefault(home.key, [])
            if item not in chans:
                chans.append(item)
    out = [Group(g.key, g.title, tuple(c for c in g.channels if c in picked[g.key]), g.unit)
           for g in GROUPS if g.key in picked]
    if extra["weight"]:
        out.append(Group("other", "other channels", tuple(extra["weight"])))
    if extra["deg"]:
        out.append(Group("angles", "other angles", tuple(extra["deg"]), "deg"))
    if not out:
        raise PlotError("--channels names no channel")
    return out


def auto_height(n_panels: int, waveform: bool) -> int:
    """Default figure height in pixels: 110 + 150 per channel panel + 130 for the waveform."""
    return 110 + 150 * n_panels + (130 if waveform else 0)


def _decimate(t: np.ndarray, y: np.ndarray, columns: int) -> tuple[np.ndarray, np.ndarray]:
    """Min/max per column when there are far more points than pixels (keeps peaks)."""
    n = len(y)
    if n <= 4 * columns:
        return t, y
    edges = np.linspace(0, n, columns + 1).astype(np.int64)
    starts = edges[:-1]
    lo = np.minimum.reduceat(y, starts)
    hi = np.maximum.reduceat(y, starts)
    tt = np.repeat(t[starts], 2)
    yy = np.empty(2 * columns, y.dtype)
    yy[0::2] = lo
    yy[1::2] = hi
    return tt, yy


def plot_take(batch: Any, output: str | os.PathLike[str], *,
              envelope: tuple[np.ndarray, np.ndarray, float] | None = None,
              channels: str | None = None, width: int = 1600, height: int | None = None,
              title: str = "", dpi: int = 100) -> dict:
    """Draw ``batch`` (a FrameBatch) and optionally the audio ``envelope`` (lo, hi, columns
    per second) to ``output`` (.png/.svg/.pdf), atomically. Returns a small summary."""
    from facecast.formats import atomic_write
    from facecast.schema import CHANNELS

    out = Path(output)
    fmt = PLOT_FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise PlotError(f"output {os.fspath(output)!r} has unsupported extension "
                        f"{out.suffix or '(none)'!r}; use one of {', '.join(PLOT_FORMATS)}")
    if out.is_dir():
        raise PlotError(f"output {os.fspath(output)!r} is a directory")
    if len(batch) == 0:
        raise PlotError("nothing to plot: the take has no frames")
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    values = {c: batch.channel(c) for c in CHANNELS}
    groups = select_groups(values, channels)
    wave = envelope is not None and len(envelope[0]) > 0
    if height is None:
        height = auto_height(len(groups), wave)
    if width < 200 or height < 150 or width > 20000 or height > 20000:
        raise PlotError(f"plot size {width}x{height} px is out of range (200..20000 x 150..20000)")
    t = batch.times
    t_end = max(float(t[-1]) + 1.0 / batch.fps,
                (len(envelope[0]) / envelope[2]) if wave else 0.0)
    ratios = ([0.85] if wave else []) + [1.0] * len(groups)
    rc = {
        "font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "legend.fontsize": 8,
        "axes.spines.top": False, "axes.spines.right": False, "axes.edgecolor": "#9aa3ad",
        "axes.labelcolor": "#3c4651", "xtick.color": "#56606b", "ytick.color": "#56606b",
        "axes.titlelocation": "left", "axes.titleweight": "bold", "axes.titlecolor": "#2b333c",
        "grid.color": "#e3e7eb", "grid.linewidth": 0.8, "figure.facecolor": "white",
    }
    columns = max(100, width)
    with plt.rc_context(rc):
        fig, axes = plt.subplots(len(ratios), 1, sharex=True, figsize=(width / dpi, height / dpi),
                                 dpi=dpi, gridspec_kw={"height_ratios": ratios},
                                 layout="constrained", squeeze=False)
        axes = axes[:, 0]
        try:
            i = 0
            if wave:
                lo, hi, rate = envelope
                tw = np.arange(len(lo)) / rate
                peak = float(np.max(np.abs(np.concatenate([lo, hi])))) or 1.0
                ax = axes[0]
                ax.fill_between(tw, lo, hi, color=_WAVE, linewidth=0, step="mid")
                ax.axhline(0, color="#c3cad2", linewidth=0.6)
                ax.set_ylim(-1.05 * peak, 1.05 * peak)
                ax.set_ylabel("amplitude")
                ax.set_title("audio waveform")
                ax.grid(True, axis="x")
                i = 1
            for g, ax in zip(groups, axes[i:]):
                scale = 180 / np.pi if g.unit == "deg" else 1.0
                bases: dict[str, str] = {}
                top = 0.0
                low = 0.0
                for c in g.channels:
                    base, dashed = _pair_base(c)
                    color = bases.setdefault(base, _PALETTE[len(bases) % len(_PALETTE)])
                    y = values[c].astype(np.float64) * scale
                    tt, yy = _decimate(t, y, columns)
                    ax.plot(tt, yy, color=color, linewidth=1.3, linestyle="--" if dashed else "-",
                            label=c, solid_capstyle="round")
                    if len(y):
                        top = max(top, float(y.max()))
                        low = min(low, float(y.min()))
                if g.unit == "weight":
                    ax.set_ylim(-0.02, max(0.25, 1.1 * top))
                    ax.set_ylabel("weight")
                else:
                    span = max(2.0, 1.15 * max(abs(top), abs(low)))
                    ax.set_ylim(-span, span)
                    ax.axhline(0, color="#c3cad2", linewidth=0.6)
                    ax.set_ylabel("degrees")
                ax.set_title(g.title)
                ax.grid(True)
                ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), frameon=False,
                          handlelength=2.2, borderaxespad=0.0)
            axes[-1].set_xlim(0.0, t_end)
            axes[-1].set_xlabel("time (s)")
            if title:
                fig.suptitle(title, x=0.01, ha="left", fontsize=11, color="#2b333c")
            buf = io.BytesIO()
            fig.savefig(buf, format=fmt, dpi=dpi)
        finally:
            plt.close(fig)
    from .video import prepare_output_dir

    prepare_output_dir(out, PlotError)
    try:
        with atomic_write(out, "wb") as f:
            f.write(buf.getvalue())
    except OSError as e:
        raise PlotError(f"cannot write {os.fspath(output)!r}: {e.strerror or e}") from None
    return {"panels": [g.key for g in groups], "width": width, "height": height,
            "frames": len(batch), "waveform": wave}
