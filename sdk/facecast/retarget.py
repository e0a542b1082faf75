"""Retargeting: which shape key of a rig each ARKit-52 channel drives, and how strongly.

Rigs name the 52 ARKit blendshapes in a few common ways. A :class:`RetargetMap` records, for
every ARKit channel, the rig's shape-key name (or ``None`` when the rig lacks it) and a gain.
Nothing is dropped silently: :attr:`RetargetMap.missing` lists the ARKit channels with no target
and :attr:`RetargetMap.unused` the rig's shape keys that no channel drives.

Presets (:data:`PRESETS`):

=============  ============================  =====================================
preset         example                       used by
=============  ============================  =====================================
``arkit``      ``eyeBlinkLeft``, ``jawOpen``  Apple ARKit, facecast itself
``facecap``    ``eyeBlink_L``, ``jawOpen``    Face Cap, raw ARKit exports, three.js
``livelink``   ``EyeBlinkLeft``, ``JawOpen``  Unreal Live Link Face, MetaHuman curves
=============  ============================  =====================================

A user's own map is a JSON object ``{"jawOpen": "Jaw_Open", ...}``; a value may also be
``{"target": "Jaw_Open", "gain": 0.8}``, and ``null`` marks a channel the rig does not have.
:func:`detect` picks the preset that matches most of a mesh's shape-key names (case and common
prefixes such as ``blendShape1.`` are ignored). Pure Python; no Blender.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from .schema import ARKIT52

__all__ = [
    "PRESETS", "RetargetMap", "detect", "from_preset", "load_map", "preset_names",
]


#: ARKit names whose Left/Right is a direction, not a side: Face Cap keeps them unchanged
#: (``jawLeft``, not ``jaw_L``; as in the Face Cap head ``shared/data/meshes/facecap_arkit52.glb``).
_DIRECTIONAL = frozenset({"jawLeft", "jawRight", "mouthLeft", "mouthRight"})


def _facecap(name: str) -> str:
    if name in _DIRECTIONAL:
        return name
    if name.endswith("Left"):
        return name[:-4] + "_L"
    if name.endswith("Right"):
        return name[:-5] + "_R"
    return name


def _livelink(name: str) -> str:
    return name[0].upper() + name[1:]


#: preset name -> {ARKit name -> rig shape-key name}
PRESETS: dict[str, dict[str, str]] = {
    "arkit": {n: n for n in ARKIT52},
    "facecap": {n: _facecap(n) for n in ARKIT52},
    "livelink": {n: _livelink(n) for n in ARKIT52},
}

_PREFIX = re.compile(r"^(?:.*[.:|])?(?:blendshape\d*_|arkit_|bs_)?", re.IGNORECASE)


def _norm(name: str) -> str:
    """Comparison key of a shape-key name: prefixes such as ``blendShape1.`` dropped, lowercase."""
    return _PREFIX.sub("", name).lower()


def preset_names() -> tuple[str, ...]:
    return tuple(PRESETS)


@dataclass
class RetargetMap:
    """ARKit channel -> (rig shape key or None, gain)."""

    targets: dict[str, str | None]
    gains: dict[str, float] = field(default_factory=dict)
    preset: str = "custom"
    unused: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = sorted(set(self.targets) - set(ARKIT52))
        if unknown:
            raise ValueError(f"retarget map names unknown ARKit channels: {', '.join(unknown)}")
        for name in ARKIT52:
            self.targets.setdefault(name, None)
        for name, gain in self.gains.items():
            if name not in ARKIT52:
                raise ValueError(f"gain given for unknown ARKit channel {name!r}")
            if not isinstance(gain, (int, float)) or gain != gain:
                raise ValueError(f"gain for {name!r} must be a number, not {gain!r}")

    @property
    def mapped(self) -> dict[str, str]:
        """ARKit name -> rig shape key, for the channels that have a target (ARKit order)."""
        return {n: self.targets[n] for n in ARKIT52 if self.targets[n] is not None}

    @property
    def missing(self) -> tuple[str, ...]:
        """ARKit channels the rig has no shape key for, in ARKit order."""
        return tuple(n for n in ARKIT52 if self.targets[n] is None)

    def gain(self, name: str) -> float:
        return float(self.gains.get(name, 1.0))

    def weights(self, values: Mapping[str, float] | Iterable[float]) -> dict[str, float]:
        """Rig shape-key weights from ARKit values (a mapping by name, or 52 values in order)."""
        if not isinstance(values, Mapping):
            seq = list(values)
            if len(seq) != len(ARKIT52):
                raise ValueError(f"expected {len(ARKIT52)} ARKit values, got {len(seq)}")
            values = dict(zip(ARKIT52, seq))
        out: dict[str, float] = {}
        for name, target in self.mapped.items():
            if name in values:
                out[target] = out.get(target, 0.0) + self.gain(name) * float(values[name])
        return out

    def report(self) -> str:
        """One line for a UI or a log: how many channels map, which are missing."""
        n = len(ARKIT52) - len(self.missing)
        text = f"{self.preset}: {n}/{len(ARKIT52)} ARKit channels mapped"
        if self.missing:
            text += "; missing: " + ", ".join(self.missing)
        return text

    def to_json(self) -> str:
        doc = {n: ({"target": t, "gain": self.gains[n]} if n in self.gains else t)
               for n, t in self.targets.items()}
        return json.dumps(doc, indent=2)


def _resolve(wanted: Mapping[str, str], shape_keys: Iterable[str]) -> tuple[dict, tuple]:
    keys = list(shape_keys)
    by_exact = {k: k for k in keys}
    by_norm: dict[str, str] = {}
    for k in keys:
        by_norm.setdefault(_norm(k), k)
    targets: dict[str, str | None] = {}
    for arkit, want in wanted.items():
        targets[arkit] = by_exact.get(want) or by_norm.get(_norm(want))
    used = {t for t in targets.values() if t}
    return targets, tuple(k for k in keys if k not in used)


def from_preset(preset: str, shape_keys: Iterable[str] | None = None,
                gains: Mapping[str, float] | None = None) -> RetargetMap:
    """The map of a named preset; with ``shape_keys``, resolved against a real rig's names."""
    if preset not in PRESETS:
        raise ValueError(f"unknown retarget preset {preset!r}; choose one of: "
                         f"{', '.join(PRESETS)}, or a JSON map file")
    if shape_keys is None:
        return RetargetMap(dict(PRESETS[preset]), dict(gains or {}), preset)
    targets, unused = _resolve(PRESETS[preset], shape_keys)
    return RetargetMap(targets, dict(gains or {}), preset, unused)


def detect(shape_keys: Iterable[str]) -> RetargetMap:
    """The preset matching most of ``shape_keys``; raises ValueError if none matches any."""
    keys = list(shape_keys)
    if not keys:
        raise ValueError("the mesh has no shape keys, so there is nothing to drive; "
                         "it needs ARKit-style blendshapes (jawOpen, eyeBlinkLeft, ...)")
    exact = set(keys)

    def score(preset: str) -> tuple[int, int]:
        targets = _resolve(PRESETS[preset], keys)[0]
        return (sum(t is not None for t in targets.values()),
                sum(PRESETS[preset][a] in exact for a in targets))

    best = max(PRESETS, key=score)
    result = from_preset(best, keys)
    if len(result.missing) == len(ARKIT52):
        sample = ", ".join(keys[:5])
        raise ValueError(f"none of the mesh's {len(keys)} shape keys ({sample}, ...) matches an "
                         f"ARKit name in any preset ({', '.join(PRESETS)}); give a JSON map")
    return result


def load_map(path: str | os.PathLike[str], shape_keys: Iterable[str] | None = None) -> RetargetMap:
    """Read a user's JSON map; with ``shape_keys``, targets absent from the rig become missing."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{os.fspath(path)}: not valid JSON ({exc.msg} at line {exc.lineno})") \
            from None
    if not isinstance(doc, dict):
        raise ValueError(f"{os.fspath(path)}: a retarget map must be a JSON object "
                         f"{{\"jawOpen\": \"MyJawOpen\", ...}}")
    targets: dict[str, str | None] = {}
    gains: dict[str, float] = {}
    for arkit, value in doc.items():
        if isinstance(value, dict):
            if "gain" in value:
                gains[arkit] = value["gain"]
            value = value.get("target")
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{os.fspath(path)}: target of {arkit!r} must be a shape-key name "
                             f"or null, not {value!r}")
        targets[arkit] = value
    try:
        rmap = RetargetMap(targets, gains, os.path.basename(os.fspath(path)))
    except ValueError as exc:
        raise ValueError(f"{os.fspath(path)}: {exc}") from None
    if shape_keys is not None:
        key_list = list(shape_keys)
        keys = set(key_list)
        for arkit, t in rmap.targets.items():
            if t is not None and t not in keys:
                rmap.targets[arkit] = None
        used = {t for t in rmap.targets.values() if t}
        rmap.unused = tuple(k for k in key_list if k not in used)
    return rmap
