"""Session options of the expressive layer: validation, defaults and the emotion keys format.

Everything here is a plain dict in and a plain dict out, so the same options travel through
``Session(options=...)``, the wire (``open`` / ``options`` requests), the CLI and the Blender
panel. :data:`OPTION_SPEC` describes every option (type, default, range, help) for UIs that
build their controls from it.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from ..errors import SessionError

#: Emotion names, in the order of the emotion weight vector.
EMOTIONS: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "surprised", "disgusted",
                             "afraid")
#: Layers with a gain and an on/off switch.
LAYERS: tuple[str, ...] = ("head", "blinks", "gaze", "brows", "emotion")

DEFAULT_TRANSITION_S = 0.6
MAX_GAIN = 3.0
MAX_KEYS = 10_000

#: Every option, for documentation and for UIs (the Blender panel builds its controls from it).
OPTION_SPEC: dict[str, dict[str, Any]] = {
    "expressive": {"type": "bool", "default": True, "live": False,
                   "help": "fill the non-mouth channels (head, eyes, brows, emotion); false = "
                           "mouth only, exactly the model's output"},
    "seed": {"type": "int", "default": 0, "min": 0, "max": 2**63 - 1, "live": False,
             "help": "seed of every random choice; same audio + seed = same frames"},
    "emotion": {"type": "emotion", "default": "neutral", "live": True,
                "help": "NAME[:INTENSITY] or {name, intensity (0..1), time (s, audio clock), "
                        "transition (s)}; names: " + ", ".join(EMOTIONS)},
    "emotion_keys": {"type": "list", "default": [], "live": True,
                     "help": "time-keyed emotions: list of {time, name, intensity, transition} "
                             "or [time, name, intensity(, transition)]"},
    "transition": {"type": "float", "default": DEFAULT_TRANSITION_S, "min": 0.0, "max": 10.0,
                   "live": True, "help": "default blend time between emotions, seconds"},
    "gains": {"type": "map", "default": {k: 1.0 for k in LAYERS}, "min": 0.0, "max": MAX_GAIN,
              "live": True, "help": "per-layer gain: " + ", ".join(LAYERS)},
    "enable": {"type": "map", "default": {k: True for k in LAYERS}, "live": True,
               "help": "per-layer on/off switch: " + ", ".join(LAYERS)},
    "auto_emotion": {"type": "bool", "default": False, "live": True,
                     "help": "infer arousal from the voice (loudness and pitch range) and let it "
                             "scale head energy, brows and eye opening"},
}

#: Options an open session accepts (``Session.set_options`` / the wire's ``options`` request).
LIVE_OPTIONS: tuple[str, ...] = tuple(k for k, v in OPTION_SPEC.items() if v["live"])


def default_options() -> dict[str, Any]:
    """A fresh copy of every option's default (the dict the Blender panel starts from)."""
    return json.loads(json.dumps({k: v["default"] for k, v in OPTION_SPEC.items()}))


@dataclass(frozen=True)
class EmotionKey:
    """From audio time ``time`` on, blend to ``name`` at ``intensity`` over ``transition`` s."""

    time: float
    name: str
    intensity: float
    transition: float | None = None

    def as_dict(self) -> dict[str, Any]:
        d = {"time": self.time, "name": self.name, "intensity": self.intensity}
        if self.transition is not None:
            d["transition"] = self.transition
        return d


@dataclass
class ExpressiveConfig:
    """Validated options of one session."""

    enabled: bool = True
    seed: int = 0
    keys: list[EmotionKey] = field(default_factory=list)
    transition: float = DEFAULT_TRANSITION_S
    gains: dict[str, float] = field(default_factory=lambda: {k: 1.0 for k in LAYERS})
    enable: dict[str, bool] = field(default_factory=lambda: {k: True for k in LAYERS})
    auto_emotion: bool = False

    def effective_gain(self, layer: str) -> float:
        return self.gains[layer] if self.enable[layer] else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"expressive": self.enabled, "seed": self.seed,
                "emotion_keys": [k.as_dict() for k in self.keys],
                "transition": self.transition, "gains": dict(self.gains),
                "enable": dict(self.enable), "auto_emotion": self.auto_emotion}


def _err(msg: str) -> SessionError:
    return SessionError(msg)


def _number(v: Any, what: str, lo: float, hi: float) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _err(f"{what} must be a number, got {type(v).__name__}")
    f = float(v)
    if not math.isfinite(f) or not lo <= f <= hi:
        raise _err(f"{what} must be between {lo:g} and {hi:g}, got {v!r}")
    return f


def _bool(v: Any, what: str) -> bool:
    if not isinstance(v, bool):
        raise _err(f"{what} must be true or false, got {v!r}")
    return v


def emotion_name(name: Any) -> str:
    """A known emotion name (case-insensitive); a SessionError naming the allowed ones."""
    if not isinstance(name, str):
        raise _err(f"emotion name must be a string, got {type(name).__name__}")
    n = name.strip().lower()
    if n not in EMOTIONS:
        raise _err(f"unknown emotion {name[:40]!r}; allowed: {', '.join(EMOTIONS)}")
    return n


def parse_emotion(spec: Any, default_time: float = 0.0) -> EmotionKey:
    """``"happy"``, ``"happy:0.7"``, ``{"name": "happy", "intensity": 0.7, "time": 2.0,
    "transition": 0.4}`` -> EmotionKey. Intensity defaults to 1 (0 for neutral's weight)."""
    if isinstance(spec, str):
        name, _, inten = spec.partition(":")
        name = emotion_name(name)
        intensity = 1.0
        if inten.strip():
            try:
                intensity = float(inten)
            except ValueError:
                raise _err(f"emotion intensity {inten[:20]!r} in {spec[:40]!r} is not a "
                           "number (use NAME:INTENSITY, e.g. happy:0.7)") from None
        intensity = _number(intensity, "emotion intensity", 0.0, 1.0)
        return EmotionKey(float(default_time), name, intensity)
    if isinstance(spec, Mapping):
        unknown = sorted(set(spec) - {"name", "intensity", "time", "transition"})
        if unknown:
            raise _err(f"unknown emotion field {str(unknown[0])[:40]!r} (fields: name, "
                       "intensity, time, transition)")
        if "name" not in spec:
            raise _err("emotion needs a 'name' (one of " + ", ".join(EMOTIONS) + ")")
        name = emotion_name(spec["name"])
        intensity = _number(spec.get("intensity", 1.0), "emotion intensity", 0.0, 1.0)
        t = spec.get("time")
        t = float(default_time) if t is None else _number(t, "emotion time", 0.0, 1e7)
        tr = spec.get("transition")
        tr = None if tr is None else _number(tr, "emotion transition", 0.0, 10.0)
        return EmotionKey(t, name, intensity, tr)
    raise _err(f"emotion must be NAME[:INTENSITY] or a map, got {type(spec).__name__}")


def parse_keys(keys: Any) -> list[EmotionKey]:
    """A list of keys: maps (``time``, ``name``, ``intensity``, ``transition``) or sequences
    ``[time, name, intensity(, transition)]``; sorted by time (stable)."""
    if not isinstance(keys, (list, tuple)):
        raise _err(f"emotion_keys must be a list, got {type(keys).__name__}")
    if len(keys) > MAX_KEYS:
        raise _err(f"emotion_keys holds {len(keys)} keys; at most {MAX_KEYS}")
    out = []
    for i, k in enumerate(keys):
        if isinstance(k, Mapping):
            if "time" not in k:
                raise _err(f"emotion key {i} has no 'time'")
            out.append(parse_emotion(k))
        elif isinstance(k, (list, tuple)) and 2 <= len(k) <= 4:
            d = {"time": k[0], "name": k[1]}
            if len(k) > 2:
                d["intensity"] = k[2]
            if len(k) > 3:
                d["transition"] = k[3]
            try:
                out.append(parse_emotion(d))
            except SessionError as e:
                raise _err(f"emotion key {i}: {e}") from None
        else:
            raise _err(f"emotion key {i} must be a map or [time, name, intensity], got {k!r:.60}")
    return sorted(out, key=lambda k: k.time)


def _layer_map(v: Any, what: str, kind: str) -> dict[str, Any]:
    if not isinstance(v, Mapping):
        raise _err(f"option '{what}' must be a map of {', '.join(LAYERS)}")
    out = {}
    for k, x in v.items():
        if k not in LAYERS:
            raise _err(f"unknown layer {str(k)[:40]!r} in option '{what}'; layers: "
                       f"{', '.join(LAYERS)}")
        out[k] = (_number(x, f"option '{what}.{k}'", 0.0, MAX_GAIN) if kind == "gain"
                  else _bool(x, f"option '{what}.{k}'"))
    return out


def parse_options(options: Mapping[str, Any] | None) -> ExpressiveConfig:
    """Validate session options; SessionError ("unknown session option ...") for bad ones."""
    cfg = ExpressiveConfig()
    if not options:
        return cfg
    if not isinstance(options, Mapping):
        raise _err(f"session options must be a map, got {type(options).__name__}")
    for k in options:
        if k not in OPTION_SPEC:
            raise _err(f"unknown session option {str(k)[:40]!r} (known: "
                       f"{', '.join(OPTION_SPEC)})")
    if "expressive" in options:
        cfg.enabled = _bool(options["expressive"], "option 'expressive'")
    if "seed" in options:
        s = options["seed"]
        if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < 2**63:
            raise _err(f"option 'seed' must be an integer 0..2^63-1, got {s!r:.40}")
        cfg.seed = int(s)
    apply_live(cfg, {k: v for k, v in options.items() if k in LIVE_OPTIONS}, now=0.0)
    return cfg


def check_live(options: Mapping[str, Any]) -> None:
    """Validate options for an open session without applying them (SessionError if bad)."""
    apply_live(ExpressiveConfig(), options, now=0.0)


def apply_live(cfg: ExpressiveConfig, options: Mapping[str, Any], now: float
               ) -> list[EmotionKey]:
    """Apply changeable options to ``cfg``; returns the emotion keys added. ``now`` is the
    audio time a key without ``time`` takes."""
    bad = [k for k in options if k not in LIVE_OPTIONS]
    if bad:
        what = "cannot be changed on an open session" if bad[0] in OPTION_SPEC else "is unknown"
        raise _err(f"option {str(bad[0])[:40]!r} {what} (changeable: {', '.join(LIVE_OPTIONS)})")
    added: list[EmotionKey] = []
    if "transition" in options:
        cfg.transition = _number(options["transition"], "option 'transition'", 0.0, 10.0)
    if "gains" in options:
        cfg.gains.update(_layer_map(options["gains"], "gains", "gain"))
    if "enable" in options:
        cfg.enable.update(_layer_map(options["enable"], "enable", "bool"))
    if "auto_emotion" in options:
        cfg.auto_emotion = _bool(options["auto_emotion"], "option 'auto_emotion'")
    if "emotion_keys" in options:
        added += parse_keys(options["emotion_keys"])
    if "emotion" in options:
        added.append(parse_emotion(options["emotion"], default_time=now))
    if added:
        cfg.keys = sorted(cfg.keys + added, key=lambda k: k.time)
    return added


# ---------------------------------------------------------------------------- keys files

def load_keys_file(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a timed emotion keys file: JSON (a list of keys, or ``{"keys": [...]}``) or CSV
    (``time,name,intensity[,transition]``, optional header, ``#`` comments). Returns the keys as
    plain maps (validated)."""
    from facecast.formats.emotion_keys import read_key_rows

    p = os.fspath(path)
    try:
        rows, _ = read_key_rows(p)
    except ValueError as e:
        raise _err(str(e)) from None
    try:
        keys = parse_keys(rows)
    except SessionError as e:
        raise _err(f"{p}: {e}") from None
    return [k.as_dict() for k in keys]


def iter_option_help() -> Iterable[tuple[str, dict[str, Any]]]:
    return OPTION_SPEC.items()
