"""The facecast channel schema: the single source of truth for every channel name.

No other module indexes channels by bare numbers; they look positions up here by name.

Coordinate conventions (all rotations in radians)
-------------------------------------------------
The head frame is ARKit's face frame, right-handed:

* +X points to the subject's own left (the viewer's right),
* +Y points up,
* +Z points forward, out of the face towards the viewer.

Head rotation is given as three angles applied intrinsically in the order yaw, pitch, roll
(R = Ry(yaw) @ Rx(pitch) @ Rz(roll)):

* ``headYaw``   rotation about +Y; positive turns the face towards the subject's own left;
* ``headPitch`` rotation about +X; positive tilts the face down (a nod down);
* ``headRoll``  rotation about +Z; positive tilts the head towards the subject's right shoulder.

Eye rotations use the same axes, per eye: ``*EyeYaw`` positive looks towards the subject's own
left, ``*EyePitch`` positive looks down. "Left" and "right" are always the subject's own sides
(Apple's convention), as in ``eyeBlinkLeft``.

Optional head translation ``headX, headY, headZ`` is in metres, in the same frame, relative to
the rest pose.

Time
----
Every frame carries ``index`` (0-based, at ``fps``) and ``time``: seconds since the first audio
sample of the stream, taken from the audio sample clock (``time == index / fps``), never wall time.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

#: Version of the frame schema. Bumped when the meaning of a channel changes.
SCHEMA_VERSION = 1

#: The 52 ARKit blendshape names in Apple's order (ARFaceAnchor.BlendShapeLocation).
ARKIT52: tuple[str, ...] = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
    "eyeSquintLeft", "eyeWideLeft",
    "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
    "eyeSquintRight", "eyeWideRight",
    "jawForward", "jawLeft", "jawRight", "jawOpen",
    "mouthClose", "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight",
    "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthUpperUpLeft", "mouthUpperUpRight",
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight",
    "noseSneerLeft", "noseSneerRight",
    "tongueOut",
)
assert len(ARKIT52) == 52

#: Head rotation channels (radians), see module docstring for axes.
HEAD_ROTATION: tuple[str, ...] = ("headYaw", "headPitch", "headRoll")
#: Optional head translation channels (metres).
HEAD_TRANSLATION: tuple[str, ...] = ("headX", "headY", "headZ")
#: Eye rotation channels (radians).
EYE_ROTATION: tuple[str, ...] = ("leftEyeYaw", "leftEyePitch", "rightEyeYaw", "rightEyePitch")

#: Every float channel of a frame, in the order used by flat vectors (``Frame.vector``).
CHANNELS: tuple[str, ...] = ARKIT52 + HEAD_ROTATION + EYE_ROTATION
#: Position of every channel in ``CHANNELS``; look positions up here, never hard-code them.
CHANNEL_INDEX: dict[str, int] = {name: i for i, name in enumerate(CHANNELS)}
BLENDSHAPE_INDEX: dict[str, int] = {name: i for i, name in enumerate(ARKIT52)}

#: The mouth-region channels that speech determines (the model issue's output set).
MOUTH_CHANNELS: tuple[str, ...] = (
    "jawForward", "jawLeft", "jawRight", "jawOpen",
    "mouthClose", "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight",
    "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthUpperUpLeft", "mouthUpperUpRight", "cheekPuff", "tongueOut",
)

#: Supported output frame rates.
SUPPORTED_FPS: tuple[int, ...] = (30, 60)
DEFAULT_FPS = 60

#: Names of optional blocks later schema users may attach (``Frame.blocks``).
KNOWN_BLOCKS: tuple[str, ...] = ("flame", "emotion")


def blendshape_index(name: str) -> int:
    """Position of an ARKit blendshape in ``ARKIT52``; raises KeyError naming the bad channel."""
    try:
        return BLENDSHAPE_INDEX[name]
    except KeyError:
        raise KeyError(f"unknown ARKit blendshape {name!r}") from None


def channel_index(name: str) -> int:
    """Position of a channel in ``CHANNELS``; raises KeyError naming the bad channel."""
    try:
        return CHANNEL_INDEX[name]
    except KeyError:
        raise KeyError(f"unknown facecast channel {name!r}") from None


@dataclass
class Frame:
    """One animation frame.

    ``blendshapes`` are the 52 ARKit weights (0..1) in ``ARKIT52`` order, ``head_rotation`` is
    (yaw, pitch, roll) in radians, ``eye_rotation`` is (leftYaw, leftPitch, rightYaw, rightPitch)
    in radians, ``head_translation`` is optional (metres). ``blocks`` holds optional named blocks
    (for example ``"emotion"``), each a mapping of plain values.
    """

    index: int
    time: float
    fps: int
    blendshapes: np.ndarray
    head_rotation: np.ndarray
    eye_rotation: np.ndarray
    head_translation: np.ndarray | None = None
    subject: str = ""
    blocks: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def __getitem__(self, name: str) -> float:
        """Value of a named channel: ``frame["jawOpen"]``, ``frame["headYaw"]``."""
        i = channel_index(name)
        nb = len(ARKIT52)
        if i < nb:
            return float(self.blendshapes[i])
        i -= nb
        if i < len(HEAD_ROTATION):
            return float(self.head_rotation[i])
        return float(self.eye_rotation[i - len(HEAD_ROTATION)])

    def as_dict(self) -> dict[str, float]:
        """All float channels by name."""
        return {name: float(v) for name, v in zip(CHANNELS, self.vector())}

    def vector(self) -> np.ndarray:
        """The float channels as one float32 vector in ``CHANNELS`` order."""
        return np.concatenate([self.blendshapes, self.head_rotation, self.eye_rotation]).astype(
            np.float32
        )


class FrameBatch:
    """A run of consecutive frames stored column-wise (what the engine and file formats pass).

    ``values`` is float32 of shape (n, len(CHANNELS)) in ``CHANNELS`` order; ``start_index`` is the
    index of the first frame; frame i has time ``(start_index + i) / fps``.
    """

    __slots__ = ("values", "start_index", "fps", "subject", "head_translation", "blocks")

    def __init__(
        self,
        values: np.ndarray,
        start_index: int = 0,
        fps: int = DEFAULT_FPS,
        subject: str = "",
        head_translation: np.ndarray | None = None,
        blocks: Mapping[str, Sequence[Any]] | None = None,
    ) -> None:
        values = np.asarray(values, dtype=np.float32)
        if values.ndim != 2 or values.shape[1] != len(CHANNELS):
            raise ValueError(
                f"frame values must have shape (n, {len(CHANNELS)}), got {values.shape}"
            )
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.values = values
        self.start_index = int(start_index)
        self.fps = int(fps)
        self.subject = subject
        if head_translation is not None:
            head_translation = np.asarray(head_translation, dtype=np.float32)
            if head_translation.shape != (len(values), 3):
                raise ValueError(
                    f"head_translation must have shape ({len(values)}, 3), "
                    f"got {head_translation.shape}"
                )
        self.head_translation = head_translation
        self.blocks = {k: list(v) for k, v in (blocks or {}).items()}
        for k, v in self.blocks.items():
            if len(v) != len(values):
                raise ValueError(f"block {k!r} has {len(v)} entries for {len(values)} frames")

    @classmethod
    def empty(cls, fps: int = DEFAULT_FPS, start_index: int = 0, subject: str = "") -> "FrameBatch":
        return cls(np.zeros((0, len(CHANNELS)), np.float32), start_index, fps, subject)

    @classmethod
    def from_frames(cls, frames: Sequence[Frame]) -> "FrameBatch":
        if not frames:
            return cls.empty()
        fps = frames[0].fps
        for a, b in zip(frames, frames[1:]):
            if b.index != a.index + 1 or b.fps != fps:
                raise ValueError(
                    f"frames are not consecutive at one fps (index {a.index} then {b.index})"
                )
        ht = None
        if any(f.head_translation is not None for f in frames):
            ht = np.stack([
                f.head_translation if f.head_translation is not None else np.zeros(3, np.float32)
                for f in frames
            ])
        keys = sorted({k for f in frames for k in f.blocks})
        blocks = {k: [f.blocks.get(k) for f in frames] for k in keys}
        return cls(np.stack([f.vector() for f in frames]), frames[0].index, fps,
                   frames[0].subject, ht, blocks)

    def __len__(self) -> int:
        return len(self.values)

    @property
    def times(self) -> np.ndarray:
        """Audio-clock time of every frame, seconds (float64)."""
        return (self.start_index + np.arange(len(self.values), dtype=np.float64)) / self.fps

    @property
    def indices(self) -> np.ndarray:
        return self.start_index + np.arange(len(self.values), dtype=np.int64)

    @property
    def blendshapes(self) -> np.ndarray:
        return self.values[:, : len(ARKIT52)]

    @property
    def head_rotation(self) -> np.ndarray:
        a = len(ARKIT52)
        return self.values[:, a : a + len(HEAD_ROTATION)]

    @property
    def eye_rotation(self) -> np.ndarray:
        a = len(ARKIT52) + len(HEAD_ROTATION)
        return self.values[:, a : a + len(EYE_ROTATION)]

    def channel(self, name: str) -> np.ndarray:
        """Column of one named channel."""
        return self.values[:, channel_index(name)]

    def frame(self, i: int) -> Frame:
        a = len(ARKIT52)
        b = a + len(HEAD_ROTATION)
        row = self.values[i]
        return Frame(
            index=self.start_index + i,
            time=(self.start_index + i) / self.fps,
            fps=self.fps,
            blendshapes=row[:a].copy(),
            head_rotation=row[a:b].copy(),
            eye_rotation=row[b:].copy(),
            head_translation=None if self.head_translation is None
            else self.head_translation[i].copy(),
            subject=self.subject,
            blocks={k: v[i] for k, v in self.blocks.items() if v[i] is not None},
        )

    def __iter__(self) -> Iterator[Frame]:
        for i in range(len(self.values)):
            yield self.frame(i)

    def __getitem__(self, s: slice) -> "FrameBatch":
        if not isinstance(s, slice) or s.step not in (None, 1):
            raise TypeError("FrameBatch supports contiguous slices only; use .frame(i) for one frame")
        start, stop, _ = s.indices(len(self.values))
        return FrameBatch(
            self.values[start:stop], self.start_index + start, self.fps, self.subject,
            None if self.head_translation is None else self.head_translation[start:stop],
            {k: v[start:stop] for k, v in self.blocks.items()},
        )

    @staticmethod
    def concat(batches: Sequence["FrameBatch"]) -> "FrameBatch":
        batches = [b for b in batches if b is not None]
        if not batches:
            return FrameBatch.empty()
        nonempty = [b for b in batches if len(b)]
        if not nonempty:
            return FrameBatch.empty(batches[0].fps, batches[0].start_index, batches[0].subject)
        first = nonempty[0]
        expect = first.start_index
        for b in nonempty:
            if b.fps != first.fps:
                raise ValueError(f"cannot concatenate batches at {first.fps} and {b.fps} fps")
            if b.start_index != expect:
                raise ValueError(f"batches are not consecutive: expected frame {expect}, "
                                 f"got {b.start_index}")
            expect += len(b)
        ht = None
        if any(b.head_translation is not None for b in nonempty):
            ht = np.concatenate([
                b.head_translation if b.head_translation is not None
                else np.zeros((len(b), 3), np.float32) for b in nonempty
            ])
        keys = sorted({k for b in nonempty for k in b.blocks})
        blocks = {k: sum((b.blocks.get(k, [None] * len(b)) for b in nonempty), []) for k in keys}
        return FrameBatch(np.concatenate([b.values for b in nonempty]), first.start_index,
                          first.fps, first.subject, ht, blocks)
