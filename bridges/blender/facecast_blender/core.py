"""The Blender bridge's logic, without Blender: one data model between the SDK and the UI.

Nothing here imports ``bpy`` (or ``mathutils``), so all of it runs and is tested in plain Python;
the Blender modules (``live``, ``bake``, ``importer``, ``keying``) only read the scene, call into
this module and write what it returns. Data flows one way:

    frames (a stream, a bake, a file)
      -> :class:`Take`        times on the audio clock + channel values (facecast.schema order)
      -> :func:`resample`     one row per scene frame (scene fps, linear interpolation)
      -> :func:`make_plan`    shape-key curves through a RetargetMap (gains), head/eye angles
      -> Blender              keyframes (bake, import, record) or current values (live)

Axes (see README.md "Axes"): the schema's head frame is ARKit's (+X the subject's left, +Y up,
+Z out of the face); Blender's character convention is +Z up with the face looking down -Y (front
view). :data:`SCHEMA_TO_BLENDER` maps one onto the other (x, y, z) -> (x, -z, y), so yaw turns
about Blender +Z, pitch about +X (positive looks down) and roll about -Y.
"""
from __future__ import annotations

import collections
import itertools
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from facecast.retarget import PRESETS, RetargetMap, detect, from_preset, load_map
from facecast.schema import ARKIT52, CHANNEL_INDEX, CHANNELS, FrameBatch

__all__ = [
    "BridgeError", "PRESET_AUTO", "PRESET_CUSTOM", "build_map", "Take", "resample", "Plan",
    "make_plan", "smooth", "ExpSmoother", "SCHEMA_TO_BLENDER", "head_matrices", "eye_matrices",
    "local_quaternions", "Recorder", "LiveLink", "BakeJob", "InProcessJob", "SubprocessJob",
    "RemoteJob", "make_job", "find_facecast_executable", "runtime_importable", "read_audio",
    "ROTATION_ROLES", "EMOTIONS", "EXPRESSIVE_LAYERS", "Expression", "expression_options",
    "expression_flags", "expression_summary", "read_emotion_keys",
]


class BridgeError(Exception):
    """A problem the user can fix; the message is one line meant for the status bar."""


# ---------------------------------------------------------------------------------------------
# retargeting
# ---------------------------------------------------------------------------------------------
PRESET_AUTO = "AUTO"
PRESET_CUSTOM = "CUSTOM"


def build_map(shape_keys: Iterable[str], preset: str = PRESET_AUTO, map_file: str = "",
              gains: Mapping[str, float] | None = None, mesh_name: str = "the mesh"
              ) -> RetargetMap:
    """The RetargetMap for a mesh's shape keys (without its reference key "Basis").

    ``preset`` is ``AUTO`` (detect from the names), a name of :data:`facecast.retarget.PRESETS`
    or ``CUSTOM`` (``map_file``, a JSON map). ``gains`` (ARKit name -> gain) override the map's
    own. Raises BridgeError with a message for the user (no shape keys, unreadable map ...).
    """
    keys = list(shape_keys)
    if not keys:
        raise BridgeError(f"{mesh_name} has no shape keys, so there is nothing to drive: give it "
                          f"ARKit-style shape keys (jawOpen, eyeBlinkLeft, ...) or pick another "
                          f"mesh")
    try:
        if preset == PRESET_AUTO:
            rmap = detect(keys)
        elif preset == PRESET_CUSTOM:
            if not map_file:
                raise BridgeError("retarget preset is 'custom JSON' but no map file is set")
            path = os.path.abspath(map_file)
            if not os.path.isfile(path):
                raise BridgeError(f"retarget map file not found: {path}")
            rmap = load_map(path, keys)
        elif preset in PRESETS:
            rmap = from_preset(preset, keys)
        else:
            raise BridgeError(f"unknown retarget preset {preset!r}")
    except (ValueError, OSError) as exc:
        raise BridgeError(f"{mesh_name}: {exc}") from None
    if gains:
        bad = sorted(set(gains) - set(ARKIT52))
        if bad:
            raise BridgeError(f"gain set for unknown ARKit channel(s): {', '.join(bad)}")
        for name, g in gains.items():
            if not isinstance(g, (int, float)) or not math.isfinite(g):
                raise BridgeError(f"gain of {name} must be a finite number, not {g!r}")
        rmap.gains.update({k: float(v) for k, v in gains.items()})
    if len(rmap.missing) == len(ARKIT52):
        raise BridgeError(f"{mesh_name}: none of the 52 ARKit channels maps to a shape key with "
                          f"the '{rmap.preset}' map; pick another preset or a JSON map")
    return rmap


def missing_summary(rmap: RetargetMap, limit: int = 6) -> str:
    """'26/52 mapped, 26 missing: a, b, c, ... (+20 more)' for a one-line report."""
    n = len(ARKIT52) - len(rmap.missing)
    text = f"{rmap.preset}: {n}/{len(ARKIT52)} ARKit channels mapped"
    if rmap.missing:
        shown = ", ".join(rmap.missing[:limit])
        more = len(rmap.missing) - limit
        text += f"; {len(rmap.missing)} missing: {shown}" + (f" (+{more} more)" if more > 0 else "")
    return text


# ---------------------------------------------------------------------------------------------
# the take: what every source becomes
# ---------------------------------------------------------------------------------------------
@dataclass
class Take:
    """Frames on the audio clock: ``times`` (n,) seconds from the take's start (first = 0 for
    baked and imported takes), ``values`` (n, len(CHANNELS)) in :data:`facecast.schema.CHANNELS`
    order. ``fps`` is the source rate (informational)."""

    times: np.ndarray
    values: np.ndarray
    fps: float = 60.0
    name: str = ""

    def __post_init__(self) -> None:
        self.times = np.asarray(self.times, dtype=np.float64).reshape(-1)
        self.values = np.asarray(self.values, dtype=np.float64)
        if self.values.ndim != 2 or self.values.shape[1] != len(CHANNELS):
            raise ValueError(f"take values must have shape (n, {len(CHANNELS)}), "
                             f"got {self.values.shape}")
        if len(self.times) != len(self.values):
            raise ValueError(f"{len(self.times)} times for {len(self.values)} frames")
        if len(self.times) > 1 and np.any(np.diff(self.times) <= 0):
            raise ValueError("take times must increase")

    @classmethod
    def from_batch(cls, batch: FrameBatch, name: str = "") -> "Take":
        """A FrameBatch as a take whose first frame is at time 0."""
        n = len(batch)
        return cls(np.arange(n, dtype=np.float64) / batch.fps, batch.values, batch.fps, name)

    def __len__(self) -> int:
        return len(self.times)

    @property
    def duration(self) -> float:
        return float(self.times[-1] - self.times[0]) if len(self.times) else 0.0


def resample(take: Take, scene_fps: float) -> tuple[np.ndarray, np.ndarray]:
    """One row per scene frame: ``(k, values)`` with ``k = 0..K`` the frame offsets from the
    take's start (time ``k / scene_fps`` after ``take.times[0]``) and ``values`` (K+1, C).

    Linear interpolation between source frames; a scene frame that falls on a source frame
    (within 1 microsecond) takes its values exactly. Rows stop at the last source frame.
    """
    if scene_fps <= 0 or not math.isfinite(scene_fps):
        raise ValueError(f"scene fps must be positive, got {scene_fps}")
    n = len(take)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros((0, len(CHANNELS)))
    t = take.times - take.times[0]
    last = int(math.floor(t[-1] * scene_fps + 1e-6))
    k = np.arange(last + 1, dtype=np.int64)
    tk = k / float(scene_fps)
    if n == 1:
        return k, np.repeat(take.values[:1], len(k), axis=0)
    j = np.clip(np.searchsorted(t, tk, side="right") - 1, 0, n - 2)
    span = t[j + 1] - t[j]
    w = np.clip((tk - t[j]) / span, 0.0, 1.0)
    # snap to a source frame when the scene frame falls on one (exact copies, no rounding)
    w = np.where(np.abs((tk - t[j])) < 1e-6, 0.0, w)
    w = np.where(np.abs((t[j + 1] - tk)) < 1e-6, 1.0, w)
    a = take.values[j]
    b = take.values[j + 1]
    out = np.where(w[:, None] == 0.0, a, np.where(w[:, None] == 1.0, b,
                                                   a + (b - a) * w[:, None]))
    return k, out


def smooth(values: np.ndarray, amount: float) -> np.ndarray:
    """Exponential smoothing along time: y[i] = a*y[i-1] + (1-a)*x[i], a = ``amount`` (0..1)."""
    a = float(amount)
    if a <= 0.0 or len(values) == 0:
        return np.asarray(values, dtype=np.float64)
    a = min(a, 0.99)
    out = np.array(values, dtype=np.float64, copy=True)
    for i in range(1, len(out)):
        out[i] = a * out[i - 1] + (1.0 - a) * out[i]
    return out


class ExpSmoother:
    """Online version of :func:`smooth` for a live stream (reset on a new session)."""

    def __init__(self, amount: float = 0.0) -> None:
        self.amount = float(amount)
        self._y: np.ndarray | None = None
        self._session: str | None = None

    def __call__(self, x: np.ndarray, session: str = "") -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        a = min(max(self.amount, 0.0), 0.99)
        if self._y is None or session != self._session or a <= 0.0:
            self._y = x.copy()
        else:
            self._y = a * self._y + (1.0 - a) * x
        self._session = session
        return self._y

    def reset(self) -> None:
        self._y = None


# ---------------------------------------------------------------------------------------------
# rotations (numpy only)
# ---------------------------------------------------------------------------------------------
#: Blender vector = SCHEMA_TO_BLENDER @ schema vector: schema +X (subject's left) -> +X,
#: schema +Y (up) -> +Z, schema +Z (out of the face) -> -Y (Blender's front view looks along +Y
#: at a face that looks along -Y). A rotation by +90 degrees about X.
SCHEMA_TO_BLENDER = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])

HEAD_CHANNELS = ("headYaw", "headPitch", "headRoll")
EYE_CHANNELS = {"eye_left": ("leftEyeYaw", "leftEyePitch"),
                "eye_right": ("rightEyeYaw", "rightEyePitch")}
#: roles a rotation target can play, with their channels (yaw, pitch[, roll])
ROTATION_ROLES: dict[str, tuple[str, ...]] = {"head": HEAD_CHANNELS, **EYE_CHANNELS}


def _schema_matrices(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """Ry(yaw) @ Rx(pitch) @ Rz(roll) in schema axes, (n, 3, 3); see facecast.mesh."""
    cy, sy = np.cos(yaw), np.sin(yaw)
    cp, sp = np.cos(pitch), np.sin(pitch)
    cr, sr = np.cos(roll), np.sin(roll)
    n = len(yaw)
    one, zero = np.ones(n), np.zeros(n)
    ry = np.stack([np.stack([cy, zero, sy], -1), np.stack([zero, one, zero], -1),
                   np.stack([-sy, zero, cy], -1)], -2)
    rx = np.stack([np.stack([one, zero, zero], -1), np.stack([zero, cp, -sp], -1),
                   np.stack([zero, sp, cp], -1)], -2)
    rz = np.stack([np.stack([cr, -sr, zero], -1), np.stack([sr, cr, zero], -1),
                   np.stack([zero, zero, one], -1)], -2)
    return ry @ rx @ rz


def to_blender(r_schema: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) from schema axes to Blender axes: M @ R @ M^T."""
    return SCHEMA_TO_BLENDER @ r_schema @ SCHEMA_TO_BLENDER.T


def head_matrices(angles: np.ndarray) -> np.ndarray:
    """(n, 3) yaw, pitch, roll (radians) -> (n, 3, 3) rotations in Blender axes."""
    a = np.asarray(angles, dtype=np.float64).reshape(-1, 3)
    return to_blender(_schema_matrices(a[:, 0], a[:, 1], a[:, 2]))


def eye_matrices(angles: np.ndarray) -> np.ndarray:
    """(n, 2) yaw, pitch (radians) -> (n, 3, 3) rotations in Blender axes."""
    a = np.asarray(angles, dtype=np.float64).reshape(-1, 2)
    return to_blender(_schema_matrices(a[:, 0], a[:, 1], np.zeros(len(a))))


def orthonormal(m: Any) -> np.ndarray:
    """The rotation part of a 3x3 (or 4x4) matrix: scale and shear removed (polar, via SVD)."""
    a = np.asarray(m, dtype=np.float64)[:3, :3]
    u, _, vt = np.linalg.svd(a)
    r = u @ vt
    if np.linalg.det(r) < 0:
        u[:, -1] *= -1
        r = u @ vt
    return r


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """(..., 4) unit quaternions (w, x, y, z) -> (..., 3, 3)."""
    q = np.asarray(q, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def matrix_to_quat(m: np.ndarray) -> np.ndarray:
    """(n, 3, 3) rotations -> (n, 4) unit quaternions (w, x, y, z), sign-continuous in time."""
    m = np.asarray(m, dtype=np.float64).reshape(-1, 3, 3)
    out = np.empty((len(m), 4))
    for i, r in enumerate(m):
        tr = r[0, 0] + r[1, 1] + r[2, 2]
        if tr > 0:
            s = math.sqrt(tr + 1.0) * 2
            q = (0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s,
                 (r[1, 0] - r[0, 1]) / s)
        elif r[0, 0] > r[1, 1] and r[0, 0] > r[2, 2]:
            s = math.sqrt(1.0 + r[0, 0] - r[1, 1] - r[2, 2]) * 2
            q = ((r[2, 1] - r[1, 2]) / s, 0.25 * s, (r[0, 1] + r[1, 0]) / s,
                 (r[0, 2] + r[2, 0]) / s)
        elif r[1, 1] > r[2, 2]:
            s = math.sqrt(1.0 + r[1, 1] - r[0, 0] - r[2, 2]) * 2
            q = ((r[0, 2] - r[2, 0]) / s, (r[0, 1] + r[1, 0]) / s, 0.25 * s,
                 (r[1, 2] + r[2, 1]) / s)
        else:
            s = math.sqrt(1.0 + r[2, 2] - r[0, 0] - r[1, 1]) * 2
            q = ((r[1, 0] - r[0, 1]) / s, (r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s,
                 0.25 * s)
        out[i] = q
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    if len(out):
        if out[0, 0] < 0:
            out[0] = -out[0]
        for i in range(1, len(out)):
            if np.dot(out[i], out[i - 1]) < 0:
                out[i] = -out[i]
    return out


def local_quaternions(r_character: np.ndarray, frame: Any, rest: Sequence[float] = (1, 0, 0, 0)
                      ) -> np.ndarray:
    """Rotations given in the character's axes, as the target's own rotation values.

    ``r_character`` (n, 3, 3) is a rotation delta in the character's axes (Blender axes: world
    for an object, the armature's space for a pose bone). ``frame`` is the rotation (3x3, any
    scale is removed) taking the target's local rotation axes to the character's: for an object
    the rotation of ``parent.matrix_world @ matrix_parent_inverse`` (identity without a parent),
    for a pose bone ``bone.matrix_local``. ``rest`` is the target's own rotation (quaternion w,
    x, y, z) the delta is applied on top of. Returns (n, 4) quaternions: F^T R F @ rest.
    """
    f = orthonormal(frame)
    r = np.asarray(r_character, dtype=np.float64).reshape(-1, 3, 3)
    local = f.T @ r @ f @ quat_to_matrix(np.asarray(rest, dtype=np.float64))
    return matrix_to_quat(local)


# ---------------------------------------------------------------------------------------------
# the plan: what gets keyed
# ---------------------------------------------------------------------------------------------
@dataclass
class Plan:
    """Per scene frame: shape-key values by the rig's key name and head/eye angles by role."""

    frames: np.ndarray                                    # absolute scene frames (int)
    shape_keys: dict[str, np.ndarray] = field(default_factory=dict)
    angles: dict[str, np.ndarray] = field(default_factory=dict)
    missing: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.frames)

    def matrices(self, role: str) -> np.ndarray:
        """(n, 3, 3) rotations in Blender axes for ``role`` (head, eye_left, eye_right)."""
        a = self.angles[role]
        return head_matrices(a) if role == "head" else eye_matrices(a)


def shape_key_values(values: np.ndarray, rmap: RetargetMap) -> dict[str, np.ndarray]:
    """Rig key name -> values, from rows of channel values (several ARKit channels that share a
    target add up, each times its gain)."""
    v = np.asarray(values, dtype=np.float64).reshape(-1, len(CHANNELS))
    out: dict[str, np.ndarray] = {}
    for name, target in rmap.mapped.items():
        col = rmap.gain(name) * v[:, CHANNEL_INDEX[name]]
        out[target] = out[target] + col if target in out else col
    return out


def role_angles(values: np.ndarray, role: str) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64).reshape(-1, len(CHANNELS))
    return v[:, [CHANNEL_INDEX[c] for c in ROTATION_ROLES[role]]]


def make_plan(take: Take, rmap: RetargetMap | None, scene_fps: float, start_frame: int = 1,
              smoothing: float = 0.0, roles: Iterable[str] = ()) -> Plan:
    """Resample ``take`` to the scene and map it: frame ``start_frame`` shows the take's first
    frame. ``roles`` lists the rotation roles that have a target."""
    k, rows = resample(take, scene_fps)
    rows = smooth(rows, smoothing)
    plan = Plan(frames=int(start_frame) + k)
    if rmap is not None:
        plan.shape_keys = shape_key_values(rows, rmap)
        plan.missing = rmap.missing
    for role in roles:
        plan.angles[role] = role_angles(rows, role)
    return plan


# ---------------------------------------------------------------------------------------------
# recording a live stream
# ---------------------------------------------------------------------------------------------
class Recorder:
    """Collects every frame of a live stream and places it on one time line.

    The first frame recorded is at time 0; frames of the same session follow by their
    audio-clock ``time``. A later session starts where the wall clock says it arrived (so pauses
    between takes are kept), never before the previous session's last frame. Only the subject of
    the first frame is recorded (``ignored`` counts frames of other subjects).
    """

    def __init__(self) -> None:
        self.subject: str | None = None
        self.ignored = 0
        self._times: list[float] = []
        self._rows: list[np.ndarray] = []
        self._session: str | None = None
        self._offset = 0.0
        self._first_received: float | None = None
        self._fps = 60.0
        self.sessions = 0

    def add(self, frame: Any) -> None:
        subject = getattr(frame, "subject", "")
        if self.subject is None:
            self.subject = subject
        elif subject != self.subject:
            self.ignored += 1
            return
        received = frame.received if math.isfinite(getattr(frame, "received", math.nan)) \
            else time.monotonic()
        if self._first_received is None:
            self._first_received = received
        if frame.session != self._session:
            if self._session is None:
                self._offset = -float(frame.time)
            else:
                earliest = self._times[-1] + 1.0 / max(1.0, self._fps) if self._times else 0.0
                self._offset = max(earliest, received - self._first_received) - float(frame.time)
            self._session = frame.session
            self.sessions += 1
        self._fps = float(frame.fps or 60)
        t = float(frame.time) + self._offset
        if self._times and t <= self._times[-1]:
            return                                  # duplicate or out of order: keep the first
        self._times.append(t)
        self._rows.append(np.asarray(frame.vector(), dtype=np.float64))

    def __len__(self) -> int:
        return len(self._times)

    def take(self, name: str = "recording") -> Take:
        if not self._times:
            return Take(np.zeros(0), np.zeros((0, len(CHANNELS))), self._fps, name)
        return Take(np.array(self._times), np.stack(self._rows), self._fps, name)


# ---------------------------------------------------------------------------------------------
# addresses and keys
# ---------------------------------------------------------------------------------------------
def address_host(address: str) -> str:
    """The host of a ZeroMQ TCP endpoint (``tcp://HOST:PORT``; IPv6 in brackets)."""
    rest = address.split("://", 1)[-1]
    if rest.startswith("["):
        return rest[1:].split("]", 1)[0]
    return rest.rsplit(":", 1)[0]


def is_loopback(address: str) -> bool:
    """True for endpoints on this machine only (127.0.0.0/8, ::1, localhost, ipc/inproc)."""
    import ipaddress

    if not address.startswith("tcp://"):
        return address.startswith(("ipc://", "inproc://"))
    host = address_host(address)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def curve_keys(directory: str, name: str = "client") -> Any:
    """CURVE keys from a ``facecast keygen`` folder, or None when no folder is set."""
    if not directory:
        return None
    from facecast.client import load_client_keys

    try:
        return load_client_keys(directory, name or "client")
    except (OSError, ValueError) as exc:
        raise BridgeError(f"CURVE keys: {exc}") from None


# ---------------------------------------------------------------------------------------------
# live link: a non-blocking subscriber with a connection state
# ---------------------------------------------------------------------------------------------
STATE_CONNECTING = "connecting"
STATE_WAITING = "waiting"
STATE_CONNECTED = "connected"
STATE_RECONNECTING = "reconnecting"
STATE_CLOSED = "disconnected"


class LiveLink:
    """A facecast frame subscriber for a UI timer: :meth:`poll` never blocks.

    ``state`` is ``connecting`` (the runtime was never reached), ``waiting`` (connected, no
    frames in the last second), ``connected`` (frames arriving), ``reconnecting`` (the runtime
    went away; ZeroMQ retries by itself and resubscribes when it is back) or ``disconnected``.
    The socket state comes from a ZeroMQ socket monitor.
    """

    FRESH_S = 1.0

    def __init__(self, address: str, subject: str = "", *, clock: Callable[[], float]
                 = time.monotonic, rcvhwm: int = 100_000, curve: Any = None) -> None:
        try:
            import zmq
            from facecast.client import Subscriber
        except ImportError as exc:     # the extension's wheels are missing
            raise BridgeError(f"cannot load the facecast client ({exc}); reinstall the "
                              f"extension so that its bundled wheels are installed") from None
        address = (address or "").strip()
        if not address:
            raise BridgeError("no runtime address set (e.g. tcp://127.0.0.1:5571)")
        if "://" not in address:
            address = "tcp://" + address
        subject = (subject or "").strip()
        self.address = address
        self.subject = subject
        self._zmq = zmq
        self._clock = clock
        try:
            self.sub = Subscriber(address, [subject] if subject else None, events=True,
                                  rcvhwm=rcvhwm, curve=curve)
        except (zmq.ZMQError, ValueError) as exc:
            raise BridgeError(f"cannot subscribe to {address!r}: {exc}") from None
        # the SDK's transport state (socket monitor); an older SDK without it: frames only
        self._monitored = hasattr(self.sub, "connection")
        self.socket_connected = False
        self.ever_connected = False
        self.disconnects = 0
        self.frames = 0
        self.last_frame: Any = None
        self.last_event: Any = None
        self._recent: collections.deque[float] = collections.deque()
        self._last_frame_at: float | None = None
        self.closed = False

    # -- polling -------------------------------------------------------------------------------
    def _poll_monitor(self) -> None:
        if not self._monitored:
            return
        try:
            link = self.sub.connection()
        except Exception:  # noqa: BLE001 - a UI poll must never raise
            return
        self.socket_connected = bool(link["connected"])
        self.ever_connected = self.ever_connected or bool(link["ever"])
        self.disconnects = int(link["disconnects"])

    def poll(self, max_messages: int = 20_000, budget_s: float = 0.004) -> list:
        """Every frame received since the last call (oldest first), without waiting.

        Stops after ``max_messages`` or ``budget_s`` seconds so a flood never stalls the UI;
        what is left is read by the next call.
        """
        if self.closed:
            return []
        from facecast.wire import StreamEvent

        self._poll_monitor()
        frames = []
        start = time.perf_counter()
        for i in range(max_messages):
            try:
                msg = self.sub.recv_message(timeout=0)
            except TimeoutError:
                break
            if isinstance(msg, StreamEvent):
                self.last_event = msg
            else:
                frames.append(msg)
            if (i & 63) == 63 and time.perf_counter() - start > budget_s:
                break
        if frames:
            now = self._clock()
            self.frames += len(frames)
            self.last_frame = frames[-1]
            self._last_frame_at = now
            self._recent.extend([now] * len(frames))
            if not self._monitored:
                self.socket_connected = self.ever_connected = True
        self._trim()
        return frames

    def _trim(self) -> None:
        cutoff = self._clock() - 1.0
        while self._recent and self._recent[0] < cutoff:
            self._recent.popleft()

    # -- status --------------------------------------------------------------------------------
    @property
    def fps(self) -> float:
        """Frames received in the last second."""
        self._trim()
        return float(len(self._recent))

    @property
    def dropped(self) -> int:
        """Frames missing from the streams (gaps in frame indices), as the SDK counts them."""
        return int(self.sub.stats.get("missed", 0))

    @property
    def state(self) -> str:
        if self.closed:
            return STATE_CLOSED
        fresh = (self._last_frame_at is not None
                 and self._clock() - self._last_frame_at < self.FRESH_S)
        if self._monitored and not self.socket_connected:
            return STATE_RECONNECTING if self.ever_connected else STATE_CONNECTING
        if fresh:
            return STATE_CONNECTED
        return STATE_WAITING

    def status_text(self) -> str:
        state = self.state
        who = f"subject '{self.subject}'" if self.subject else "any subject"
        if state == STATE_CONNECTED:
            subj = getattr(self.last_frame, "subject", "") or "?"
            return (f"connected: {self.fps:.0f} frames/s from '{subj}', "
                    f"{self.dropped} dropped")
        if state == STATE_WAITING:
            return f"waiting: runtime reachable, no frames for {who}"
        if state == STATE_RECONNECTING:
            return f"reconnecting: runtime at {self.address} went away, retrying"
        if state == STATE_CONNECTING:
            return f"connecting: no runtime at {self.address} yet (is 'facecast serve' running?)"
        return "disconnected"

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.sub.close()


# ---------------------------------------------------------------------------------------------
# audio for the remote path (Blender's Python has no soundfile)
# ---------------------------------------------------------------------------------------------
def read_audio(path: str) -> tuple[np.ndarray, int, str]:
    """``(samples, sample_rate, dtype)``: (n, channels) int16 for 16-bit PCM WAV (exactly what
    the runtime would decode), else float32 through Blender's ``aud`` module."""
    import wave

    if not os.path.isfile(path):
        raise BridgeError(f"audio file not found: {path}")
    try:
        with wave.open(path, "rb") as w:
            ch, width, rate, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), \
                w.getnframes()
            data = w.readframes(n)
        if width == 2:
            return np.frombuffer(data, "<i2").reshape(-1, ch), rate, "int16"
        if width in (1, 3, 4):
            if width == 1:
                x = (np.frombuffer(data, np.uint8).astype(np.float32) - 128.0) / 128.0
            elif width == 3:
                b = np.frombuffer(data, np.uint8).reshape(-1, 3)
                i = (b[:, 0].astype(np.int32) | (b[:, 1].astype(np.int32) << 8)
                     | (b[:, 2].astype(np.int8).astype(np.int32) << 16))
                x = i.astype(np.float32) / float(1 << 23)
            else:
                x = np.frombuffer(data, "<i4").astype(np.float32) / float(1 << 31)
            return x.reshape(-1, ch), rate, "float32"
    except (wave.Error, EOFError):
        pass                                 # not plain PCM WAV: let Blender's reader try
    except OSError as exc:
        raise BridgeError(f"cannot read {path}: {exc}") from None
    try:
        import aud  # Blender's audio library (only inside Blender)
    except ImportError:
        raise BridgeError(f"cannot decode {os.path.basename(path)} here: only PCM WAV is read "
                          f"without Blender's audio module; convert it to WAV") from None
    try:
        snd = aud.Sound(path)
        rate = int(snd.specs[0])
        x = np.asarray(snd.data(), dtype=np.float32)
    except Exception as exc:  # aud.error
        raise BridgeError(f"cannot decode {os.path.basename(path)}: {exc}") from None
    if x.ndim == 1:
        x = x[:, None]
    return x, rate, "float32"


# ---------------------------------------------------------------------------------------------
# expression: the runtime's expressive-layer options (head, blinks, gaze, brows, emotion)
# ---------------------------------------------------------------------------------------------
#: The named emotions of ``facecast_runtime.expressive.EMOTIONS`` (a copy: the extension runs
#: without the runtime; tests/test_blender.py checks that both lists agree).
EMOTIONS: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "surprised", "disgusted",
                             "afraid")
#: Layers with an on/off switch and a gain (``facecast_runtime.expressive.LAYERS``).
EXPRESSIVE_LAYERS: tuple[str, ...] = ("head", "blinks", "gaze", "brows", "emotion")
#: The ``facecast`` command's flag stem of each layer: --no-LAYER, --STEM-gain.
LAYER_FLAG = {"head": "head", "blinks": "blink", "gaze": "gaze", "brows": "brow",
              "emotion": "emotion"}
DEFAULT_TRANSITION_S = 0.6
MAX_LAYER_GAIN = 3.0
MAX_TRANSITION_S = 10.0
MAX_SEED = 2**63 - 1
MAX_EMOTION_KEYS = 10_000


def _num(v: Any, what: str, lo: float, hi: float, exact: bool = False) -> float:
    """A number in [lo, hi]; rounded to 6 decimals (Blender's float properties are single
    precision: 0.8 comes back as 0.800000011920929) unless ``exact``."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise BridgeError(f"{what} must be a number, not {v!r:.40}")
    f = float(v)
    if not math.isfinite(f) or not lo <= f <= hi:
        raise BridgeError(f"{what} must be between {lo:g} and {hi:g}, not {v!r}")
    return f if exact else float(round(f, 6))


def _emotion(name: Any) -> str:
    n = name.strip().lower() if isinstance(name, str) else None
    if n not in EMOTIONS:
        raise BridgeError(f"unknown emotion {str(name)[:40]!r}; allowed: {', '.join(EMOTIONS)}")
    return n


def _emotion_key(spec: Any, where: str) -> dict[str, Any]:
    """One timed emotion as the runtime writes it: {time, name, intensity[, transition]}."""
    if isinstance(spec, (list, tuple)) and 2 <= len(spec) <= 4:
        spec = dict(zip(("time", "name", "intensity", "transition"), spec))
    if not isinstance(spec, Mapping):
        raise BridgeError(f"{where} must be a map or [time, name, intensity], not {spec!r:.60}")
    unknown = sorted(set(spec) - {"time", "name", "intensity", "transition"})
    if unknown:
        raise BridgeError(f"{where}: unknown field {str(unknown[0])[:40]!r} (fields: time, "
                          f"name, intensity, transition)")
    if "time" not in spec or "name" not in spec:
        raise BridgeError(f"{where} needs a time and a name")
    try:
        name = _emotion(spec["name"])
    except BridgeError as exc:
        raise BridgeError(f"{where}: {exc}") from None
    key = {"time": _num(spec["time"], f"{where}: time", 0.0, 1e7, exact=True), "name": name,
           "intensity": _num(spec.get("intensity", 1.0), f"{where}: intensity", 0.0, 1.0,
                             exact=True)}
    if spec.get("transition") is not None:
        key["transition"] = _num(spec["transition"], f"{where}: transition", 0.0,
                                 MAX_TRANSITION_S, exact=True)
    return key


def read_emotion_keys(path: str) -> list[dict[str, Any]]:
    """Timed emotions from a file, as ``facecast_runtime.expressive.load_keys_file`` reads it
    (and ``facecast bake --emotion-keys``): JSON, a list of {time, name, intensity,
    transition} or [time, name, intensity(, transition)] (or {"keys": [...]}); or CSV rows
    ``time,name,intensity[,transition]`` with an optional header and # comments. Sorted by time.
    """
    from facecast.formats.emotion_keys import read_key_rows

    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise BridgeError(f"emotion keys file not found: {path}")
    try:
        rows, wheres = read_key_rows(path, label=f"emotion keys {name}")
    except ValueError as exc:
        raise BridgeError(str(exc)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BridgeError(f"cannot read emotion keys {name}: {exc}") from None
    if len(rows) > MAX_EMOTION_KEYS:
        raise BridgeError(f"emotion keys {name}: {len(rows)} keys; at most {MAX_EMOTION_KEYS}")
    keys = [_emotion_key(r, w) for r, w in zip(rows, wheres)]
    return sorted(keys, key=lambda k: k["time"])


@dataclass
class Expression:
    """The panel's expression settings as plain values (see :func:`expression_options`)."""

    expressive: bool = True
    seed: int = 0
    emotion: str = "neutral"
    intensity: float = 1.0
    transition: float = DEFAULT_TRANSITION_S
    auto_emotion: bool = False
    gains: dict[str, float] = field(default_factory=dict)
    enable: dict[str, bool] = field(default_factory=dict)
    keys_file: str = ""

    def checked(self) -> "Expression":
        """A validated, normalised copy (BridgeError naming the bad value)."""
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) \
                or not 0 <= self.seed <= MAX_SEED:
            raise BridgeError(f"seed must be an integer 0..2^63-1, not {self.seed!r:.40}")
        gains, enable = {k: 1.0 for k in EXPRESSIVE_LAYERS}, {k: True for k in EXPRESSIVE_LAYERS}
        for what, given, out in (("gain", self.gains, gains), ("switch", self.enable, enable)):
            for layer, v in (given or {}).items():
                if layer not in EXPRESSIVE_LAYERS:
                    raise BridgeError(f"{what} for unknown layer {str(layer)[:40]!r}; layers: "
                                      f"{', '.join(EXPRESSIVE_LAYERS)}")
                out[layer] = (_num(v, f"{layer} gain", 0.0, MAX_LAYER_GAIN) if what == "gain"
                              else bool(v))
        keys_file = os.path.abspath(os.path.expanduser(self.keys_file)) if self.keys_file \
            else ""
        if keys_file and not os.path.isfile(keys_file):
            raise BridgeError(f"emotion keys file not found: {keys_file}")
        return Expression(bool(self.expressive), int(self.seed), _emotion(self.emotion),
                          _num(self.intensity, "emotion intensity", 0.0, 1.0),
                          _num(self.transition, "transition", 0.0, MAX_TRANSITION_S),
                          bool(self.auto_emotion), gains, enable, keys_file)

    @property
    def emotion_spec(self) -> str:
        """``NAME:INTENSITY`` (``neutral`` alone: its intensity means nothing)."""
        if self.emotion == "neutral":
            return "neutral"
        return f"{self.emotion}:{self.intensity!r}"


def expression_options(**values: Any) -> dict[str, Any]:
    """The runtime's session options (the keys of
    ``facecast_runtime.expressive.default_options()``) from the panel's plain values (the
    fields of :class:`Expression`). They go unchanged to ``bake(..., options=)`` and to the
    wire's ``open``. A keys file is read here (its keys in ``emotion_keys``). The emotion is
    keyed at 0 s; ``neutral`` is left out: it is where every take starts anyway, and a
    neutral key at 0 s would replace the keys file's own first key at 0 s."""
    e = Expression(**values).checked()
    out: dict[str, Any] = {"expressive": e.expressive, "seed": e.seed}
    if e.emotion != "neutral":
        out["emotion"] = e.emotion_spec
    out.update({"emotion_keys": read_emotion_keys(e.keys_file) if e.keys_file else [],
                "transition": e.transition, "gains": dict(e.gains), "enable": dict(e.enable),
                "auto_emotion": e.auto_emotion})
    return out


def expression_flags(**values: Any) -> list[str]:
    """The same options as ``facecast`` command-line flags (bake, send, serve), where they
    differ from the defaults; the runtime makes the same session options of them as of
    :func:`expression_options`."""
    e = Expression(**values).checked()
    flags = [] if e.expressive else ["--no-expressive"]
    if e.seed:
        flags += ["--seed", str(e.seed)]
    if e.emotion != "neutral":
        flags += ["--emotion", e.emotion_spec]
    if e.keys_file:
        read_emotion_keys(e.keys_file)              # the same errors, before anything runs
        flags += ["--emotion-keys", e.keys_file]
    if e.transition != DEFAULT_TRANSITION_S:
        flags += ["--transition", repr(e.transition)]
    if e.auto_emotion:
        flags.append("--auto-emotion")
    for layer in EXPRESSIVE_LAYERS:
        if not e.enable[layer]:
            flags.append(f"--no-{layer}")
        if e.gains[layer] != 1.0:
            flags += [f"--{LAYER_FLAG[layer]}-gain", repr(e.gains[layer])]
    return flags


def expression_summary(**values: Any) -> str:
    """A few words for the bake's report: 'happy:0.8, head off' ('' at the defaults)."""
    e = Expression(**values).checked()
    if not e.expressive:
        return "expression off"
    parts = [] if e.emotion == "neutral" else [e.emotion_spec]
    if e.keys_file:
        parts.append(f"keys {os.path.basename(e.keys_file)}")
    if e.seed:
        parts.append(f"seed {e.seed}")
    if e.auto_emotion:
        parts.append("auto emotion")
    for layer in EXPRESSIVE_LAYERS:
        if not e.enable[layer]:
            parts.append(f"{layer} off")
        elif e.gains[layer] != 1.0:
            parts.append(f"{layer} x{e.gains[layer]:g}")
    return ", ".join(parts)


# ---------------------------------------------------------------------------------------------
# bake jobs: in-process, subprocess, remote; polled from a UI timer
# ---------------------------------------------------------------------------------------------
def runtime_importable() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("facecast_runtime") is not None
    except (ImportError, ValueError):
        return False


def find_facecast_executable(configured: str = "") -> str | None:
    """The ``facecast`` command: the configured path if it exists, else one on PATH."""
    if configured:
        p = os.path.abspath(os.path.expanduser(configured))
        if os.path.isfile(p):
            return p
        return None
    return shutil.which("facecast")


class BakeJob:
    """A bake running in the background. :meth:`poll` returns None while it runs, the
    FrameBatch when done, and raises BridgeError when it failed."""

    kind = "?"

    def __init__(self, audio: str, fps: int) -> None:
        if not os.path.isfile(audio):
            raise BridgeError(f"audio file not found: {audio}")
        self.audio = audio
        self.fps = int(fps)
        self.started = time.monotonic()
        self.progress: float | None = None
        self.cancelled = False
        self._result: FrameBatch | None = None
        self._error: str | None = None
        self._done = threading.Event()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def describe(self) -> str:
        pct = f" {100 * self.progress:.0f}%" if self.progress is not None else ""
        return f"baking {os.path.basename(self.audio)} ({self.kind}){pct}, {self.elapsed:.1f} s"

    def poll(self) -> FrameBatch | None:
        if not self._done.is_set():
            return None
        if self._error is not None:
            raise BridgeError(self._error)
        return self._result

    def wait(self, timeout: float = 600.0, interval: float = 0.02) -> FrameBatch:
        deadline = time.monotonic() + timeout
        while True:
            r = self.poll()
            if r is not None:
                return r
            if time.monotonic() > deadline:
                self.cancel()
                raise BridgeError(f"bake did not finish within {timeout:g} s")
            time.sleep(interval)

    def cancel(self) -> None:
        self.cancelled = True

    def _finish(self, result: FrameBatch | None = None, error: str | None = None) -> None:
        if result is not None and len(result) == 0 and error is None:
            error = f"{os.path.basename(self.audio)} produced no frames (empty audio?)"
        self._result, self._error = result, error
        self._done.set()


class _ThreadJob(BakeJob):
    def start(self) -> "_ThreadJob":
        threading.Thread(target=self._guarded, name=f"facecast-bake-{self.kind}",
                         daemon=True).start()
        return self

    def _guarded(self) -> None:
        try:
            self._finish(self._run())
        except BridgeError as exc:
            self._finish(error=str(exc))
        except Exception as exc:  # noqa: BLE001 - shown to the user, never raised in a timer
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            self._finish(error=f"{type(exc).__name__}: {msg}"[:500])

    def _run(self) -> FrameBatch:
        raise NotImplementedError


class InProcessJob(_ThreadJob):
    """``facecast_runtime.engine.bake`` on a worker thread of Blender's own Python.
    ``options``: session options (:func:`expression_options`)."""

    kind = "in-process"

    def __init__(self, audio: str, fps: int, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(audio, fps)
        self.options = dict(options) if options else None

    def _run(self) -> FrameBatch:
        from facecast_runtime.engine import bake_iter

        batches = []
        for batch in bake_iter(self.audio, fps=self.fps, progress=self._progress,
                               options=self.options):
            if self.cancelled:
                raise BridgeError("bake cancelled")
            batches.append(batch)
        return FrameBatch.concat(batches)

    def _progress(self, done: float, total: float | None) -> None:
        if total:
            self.progress = min(1.0, done / total)


class SubprocessJob(BakeJob):
    """``facecast bake AUDIO -o TMP.json`` as a child process; ``flags`` are added to the
    command line (the expression flags, :func:`expression_flags`)."""

    kind = "subprocess"

    def __init__(self, audio: str, fps: int, executable: str, flags: Sequence[str] = ()
                 ) -> None:
        super().__init__(audio, fps)
        self.executable = executable
        self._tmpdir = tempfile.mkdtemp(prefix="facecast_bake_")
        self.output = os.path.join(self._tmpdir, "take.json")
        self._stderr = open(os.path.join(self._tmpdir, "stderr.txt"), "w+b")
        creation = getattr(subprocess, "CREATE_NO_WINDOW", 0) if sys.platform == "win32" else 0
        #: the command line (the expression flags last)
        self.command = [executable, "bake", audio, "-o", self.output, "--fps", str(self.fps),
                        "--progress", "never", "-q", *flags]
        try:
            self.proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=self._stderr,
                                         creationflags=creation)
        except OSError as exc:
            self._cleanup()
            raise BridgeError(f"cannot run {executable}: {exc.strerror or exc}") from None

    def poll(self) -> FrameBatch | None:
        if not self._done.is_set():
            rc = self.proc.poll()
            if rc is None:
                return None
            self._collect(rc)
        return super().poll()

    def _collect(self, rc: int) -> None:
        try:
            if self.cancelled:
                self._finish(error="bake cancelled")
                return
            if rc != 0:
                self._stderr.seek(0)
                lines = [ln.strip() for ln in
                         self._stderr.read().decode("utf-8", "replace").splitlines() if ln.strip()]
                why = lines[-1] if lines else f"exit status {rc}"
                self._finish(error=f"facecast bake failed: {why}"[:500])
                return
            from facecast.formats import read

            try:
                self._finish(read(self.output))
            except (OSError, ValueError) as exc:
                self._finish(error=f"cannot read the baked take: {exc}")
        finally:
            self._cleanup()

    def cancel(self) -> None:
        super().cancel()
        if self.proc.poll() is None:
            self.proc.kill()

    def _cleanup(self) -> None:
        try:
            self._stderr.close()
        except Exception:
            pass
        shutil.rmtree(self._tmpdir, ignore_errors=True)


class RemoteJob(_ThreadJob):
    """Stream the audio through a running ``facecast serve`` and collect every frame."""

    kind = "server"
    _ids = itertools.count(1)

    def __init__(self, audio: str, fps: int, control: str, frames: str,
                 timeout: float = 5.0, curve: Any = None,
                 options: Mapping[str, Any] | None = None) -> None:
        super().__init__(audio, fps)
        #: session options sent with ``open`` (:func:`expression_options`)
        self.options = dict(options) if options else None
        self.control = control
        self.frames_address = frames
        self.timeout = timeout
        self.curve = curve
        self.subject = f"blender-bake-{os.getpid()}-{next(self._ids)}"
        #: said when no runtime answers (e.g. why Auto ended up here)
        self.hint = ""

    def _run(self) -> FrameBatch:
        import zmq
        from facecast.client import RemoteError, RuntimeClient, Subscriber
        from facecast.wire import StreamEvent

        samples, rate, dtype = read_audio(self.audio)
        ctx = zmq.Context()                      # private: closed with this job
        got: dict[int, Any] = {}
        end = None
        try:
            with RuntimeClient(self.control, timeout=self.timeout, context=ctx,
                               curve=self.curve) as rc, \
                    Subscriber(self.frames_address, [self.subject], events=True, context=ctx,
                               rcvhwm=1_000_000, curve=self.curve) as sub:
                try:
                    rc.ping(timeout=self.timeout)
                except TimeoutError:
                    raise BridgeError(f"no facecast runtime answers at {self.control} "
                                      f"(start 'facecast serve' or pick another runtime)"
                                      + self.hint) from None

                def drain(wait: float = 0.0) -> None:
                    nonlocal end
                    deadline = time.monotonic() + wait
                    while True:
                        try:
                            msg = sub.recv_message(timeout=max(0.0, deadline - time.monotonic()))
                        except TimeoutError:
                            return
                        if isinstance(msg, StreamEvent):
                            if msg.event == "end":
                                end = msg
                                return
                        else:
                            got[msg.index] = msg

                topic = f"face.{self.subject}"
                deadline = time.monotonic() + self.timeout
                while topic not in rc.stats().get("subscriptions", []):
                    drain(0.02)
                    if time.monotonic() > deadline:
                        raise BridgeError(f"cannot subscribe to frames at {self.frames_address}")
                session = rc.open(self.subject, rate, channels=samples.shape[1], dtype=dtype,
                                  fps=self.fps, options=self.options)
                total = len(samples)
                chunk = max(1, rate // 2)
                for i in range(0, total, chunk):
                    if self.cancelled:
                        raise BridgeError("bake cancelled")
                    session.push(np.ascontiguousarray(samples[i:i + chunk]
                                                      if samples.shape[1] > 1
                                                      else samples[i:i + chunk, 0]), wait=False)
                    drain()
                    self.progress = min(1.0, (i + chunk) / total) * 0.95
                reply = session.close(timeout=max(self.timeout, 30.0))
                expected = int(reply.get("frames_total", 0))
                while end is None:
                    before = len(got)
                    drain(self.timeout)
                    if end is None and len(got) == before:
                        raise BridgeError(f"the runtime at {self.control} stopped sending "
                                          f"frames mid-bake ({len(got)} of {expected})")
        except RemoteError as exc:
            raise BridgeError(f"runtime refused the bake: {exc}") from None
        except TimeoutError as exc:
            raise BridgeError(f"runtime stopped answering mid-bake: {exc}") from None
        finally:
            ctx.destroy(linger=0)
        if len(got) != expected or (got and max(got) != expected - 1):
            raise BridgeError(f"{expected - len(got)} of {expected} frames were lost on the "
                              f"way; bake again (or use the in-process/subprocess runtime)")
        frames = [got[i] for i in range(expected)]
        return FrameBatch(np.stack([f.vector() for f in frames]) if frames
                          else np.zeros((0, len(CHANNELS)), np.float32), 0, self.fps,
                          self.subject)


RUNTIME_AUTO = "AUTO"
RUNTIME_IN_PROCESS = "IN_PROCESS"
RUNTIME_SUBPROCESS = "SUBPROCESS"
RUNTIME_SERVER = "SERVER"


def make_job(mode: str, audio: str, fps: int, *, executable: str = "", control: str = "",
             frames: str = "", curve: Any = None,
             expression: Mapping[str, Any] | None = None) -> BakeJob:
    """Start a bake with the chosen runtime (AUTO: in-process when facecast_runtime imports,
    else the facecast command, else a running server). ``expression``: the panel's plain
    expression values (:class:`Expression` fields), passed to the runtime as session options
    (in-process, server) or as the equivalent flags (the facecast command); None: the
    runtime's defaults."""
    audio = os.path.abspath(os.path.expanduser(audio)) if audio else ""
    if not audio:
        raise BridgeError("choose an audio file to bake")
    if not os.path.isfile(audio):
        raise BridgeError(f"audio file not found: {audio}")
    options: dict[str, Any] | None = None
    flags: list[str] = []
    if expression is not None:                 # validated here (the keys file too)
        options = expression_options(**expression)
        flags = expression_flags(**expression)
    hint = ""
    if mode == RUNTIME_AUTO:
        if runtime_importable():
            mode = RUNTIME_IN_PROCESS
        elif find_facecast_executable(executable):
            mode = RUNTIME_SUBPROCESS
        else:
            mode = RUNTIME_SERVER
            hint = ("; Auto found no facecast_runtime in Blender's Python and no facecast "
                    "command: set its path in the add-on preferences")
    if mode == RUNTIME_IN_PROCESS:
        if not runtime_importable():
            raise BridgeError("facecast_runtime is not installed in Blender's Python; use the "
                              "subprocess or server runtime")
        return InProcessJob(audio, fps, options).start()
    if mode == RUNTIME_SUBPROCESS:
        exe = find_facecast_executable(executable)
        if exe is None:
            where = executable or "PATH"
            raise BridgeError(f"facecast command not found ({where}); set its path in the "
                              f"add-on preferences")
        return SubprocessJob(audio, fps, exe, flags)
    if mode == RUNTIME_SERVER:
        job = RemoteJob(audio, fps, control, frames, curve=curve, options=options)
        job.hint = hint
        return job.start()
    raise BridgeError(f"unknown runtime {mode!r}")
