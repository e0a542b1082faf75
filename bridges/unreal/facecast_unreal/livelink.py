"""Live Link Face UDP packets (version 6): codec, channel mapping and frame time.

This is the protocol the Live Link Face iOS app sends and Unreal's *Apple ARKit Face Support*
plugin receives on UDP port 11111 (``shared/specs/live_link_face.md``). The module depends on the
standard library, numpy and the facecast SDK (schema and the Live Link CSV helpers) only.

Packet layout (every multi-byte field big-endian; a string is an int32 byte length followed by
that many UTF-8 bytes, no terminator)::

    u8   version = 6
    str  device id            (a UUID string in practice)
    str  subject name         (the Live Link subject shown in Unreal)
    i32  frame number         \\
    f32  sub-frame, [0, 1)     | the frame time, a qualified frame time
    i32  rate numerator        |
    i32  rate denominator     /
    u8   value count = 61     \\ absent in a header-only packet (the app sends one when it
    61 x f32 values           / tracks no face)

A full packet is ``270 + Ld + Ls`` bytes, a header-only one ``25 + Ld + Ls``.

Channel mapping
---------------
Values are mapped *by name* (:data:`PACKET_NAMES`: the 52 ARKit names of
:data:`facecast.schema.ARKIT52` in PascalCase, then the nine rotations). The conversion is the
one of the Live Link CSV format (:mod:`facecast.formats.livelink_csv`), so a CSV take and the
UDP stream of the same frames carry the same numbers: weights are copied, rotations are
``sign * radians / pi`` (Live Link's "degrees / 180") with ``HeadYaw``, ``HeadRoll`` and the
eye yaws negated (Unreal's mirrored, left-handed view of ARKit's right-handed face frame) and
pitches kept; eye roll (no facecast channel) is 0. :func:`to_livelink` is checked against the
CSV writer's own conversion; :func:`from_livelink` inverts it exactly like the CSV reader.

:func:`mirror_livelink` is the optional "mirror" of the Live Link Face app: it swaps every
Left/Right pair (shapes and eyes) and negates yaw and roll; applying it twice is a no-op.

Values Unreal could not use are made safe by :func:`sanitize_livelink`: NaN and infinities
become 0 (the rest pose), weights below 0 become 0 (Unreal clamps them on receipt) and weights
above ``max_weight`` (1, ARKit's range) become ``max_weight``; finite rotations outside
[-1, 1] (beyond +-180 degrees) are wrapped into it. Both kinds are counted.

Frame time
----------
A frame's time in seconds ``t`` is sent at rate ``num/den`` as frame number
``floor(t * num / den)`` and sub-frame ``t * num / den - frame number``
(:func:`seconds_to_frame_time`; the inverse is :func:`frame_time_to_seconds`).
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from facecast.formats.livelink_csv import (
    LIVE_LINK_CSV_COLUMNS, LIVE_LINK_ROTATIONS, livelink_values,
)
from facecast.schema import ARKIT52, CHANNELS, FrameBatch

__all__ = [
    "PACKET_VERSION", "VALUE_COUNT", "DEFAULT_PORT", "MAX_NAME_BYTES", "MAX_DEVICE_ID_BYTES",
    "MAX_PACKET_BYTES", "PACKET_NAMES", "BLENDSHAPE_COUNT", "PacketError", "LiveLinkPacket",
    "PacketEncoder", "encode_packet", "decode_packet", "packet_size", "check_name",
    "to_livelink", "from_livelink", "mirror_livelink", "sanitize_livelink",
    "seconds_to_frame_time", "frame_time_to_seconds",
]

#: The packet version this module reads and writes (Unreal drops any other).
PACKET_VERSION = 6
#: Number of values in a full packet (Unreal drops any other count).
VALUE_COUNT = 61
#: The port Unreal's Live Link Face source listens on.
DEFAULT_PORT = 11111
#: Longest subject name we send, in UTF-8 bytes. Unreal reserves 256 characters for each of
#: the two strings in its receive buffer; counting bytes (>= characters) keeps us inside it.
MAX_NAME_BYTES = 256
#: Longest device id we send, in UTF-8 bytes (a UUID string is 36).
MAX_DEVICE_ID_BYTES = 64
#: Largest packet we send: 270 + 64 + 256 = 590 bytes, below every Unreal receive buffer.
MAX_PACKET_BYTES = 270 + MAX_DEVICE_ID_BYTES + MAX_NAME_BYTES

#: Number of leading values that are ARKit blendshape weights.
BLENDSHAPE_COUNT = len(ARKIT52)


def _pascal(name: str) -> str:
    return name[0].upper() + name[1:]


#: The 61 value names in packet order: ARKit's 52 shapes (Apple's order, PascalCase), then
#: HeadYaw, HeadPitch, HeadRoll, LeftEye{Yaw,Pitch,Roll}, RightEye{Yaw,Pitch,Roll}.
PACKET_NAMES: tuple[str, ...] = tuple(_pascal(n) for n in ARKIT52) + tuple(LIVE_LINK_ROTATIONS)
assert len(PACKET_NAMES) == VALUE_COUNT and set(PACKET_NAMES) == set(LIVE_LINK_CSV_COLUMNS)

_HEADER = struct.Struct(">Bi")          # version, device id length
_LEN = struct.Struct(">i")
_FRAME_TIME = struct.Struct(">ifii")    # frame number, sub-frame, rate numerator, denominator
_VALUES_DTYPE = np.dtype(">f4")
_VALUES_BYTES = 4 * VALUE_COUNT
_I32_MAX = 2**31 - 1


class PacketError(ValueError):
    """A packet (or the fields to encode one) that is not a valid Live Link Face v6 packet."""


# ------------------------------------------------------------------------------------------
# Channel mapping, derived from the CSV format's own conversion
# ------------------------------------------------------------------------------------------
def _mapping() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per packet value: facecast source index, divisor (1 or pi), sign (+-1, or 0 for eye
    roll), and whether it is used. Read off the CSV writer's conversion of unit vectors, so the
    UDP stream follows exactly the sign table of :mod:`facecast.formats.livelink_csv`."""
    probe = livelink_values(FrameBatch(np.eye(len(CHANNELS), dtype=np.float32)))
    column = {name: k for k, name in enumerate(LIVE_LINK_CSV_COLUMNS)}
    src = np.zeros(VALUE_COUNT, np.int64)
    div = np.ones(VALUE_COUNT, np.float64)
    sign = np.zeros(VALUE_COUNT, np.float64)
    for k, name in enumerate(PACKET_NAMES):
        col = probe[:, column[name]]
        rows = np.flatnonzero(col)
        if len(rows) == 0:
            continue  # eye roll: no facecast channel
        if len(rows) != 1:
            raise AssertionError(f"Live Link value {name} mixes several facecast channels")
        c = int(rows[0])
        src[k] = c
        scale = float(col[c])
        if abs(abs(scale) - 1.0) < 1e-12:
            div[k] = 1.0
        elif abs(abs(scale) - 1.0 / math.pi) < 1e-12:
            div[k] = math.pi
        else:
            raise AssertionError(f"unexpected Live Link scale {scale} for {name}")
        sign[k] = math.copysign(1.0, scale)
    return src, div, sign, sign != 0


_SRC, _DIV, _SIGN, _USED = _mapping()
#: facecast channel of each used packet value (for the inverse mapping).
_DST = _SRC[_USED]
assert sorted(_DST.tolist()) == list(range(len(CHANNELS)))


def _mirror_tables() -> tuple[np.ndarray, np.ndarray]:
    index = {n: k for k, n in enumerate(PACKET_NAMES)}
    perm = np.arange(VALUE_COUNT)
    sign = np.ones(VALUE_COUNT)
    for k, name in enumerate(PACKET_NAMES):
        if "Left" in name:
            other = name.replace("Left", "Right")
        elif "Right" in name:
            other = name.replace("Right", "Left")
        else:
            other = name
        perm[k] = index[other]
        if k >= BLENDSHAPE_COUNT and (name.endswith("Yaw") or name.endswith("Roll")):
            sign[k] = -1.0
    return perm, sign


_MIRROR_PERM, _MIRROR_SIGN = _mirror_tables()


def to_livelink(values: Any) -> np.ndarray:
    """facecast channel values (``CHANNELS`` order, shape (59,) or (n, 59)) -> Live Link
    values in packet order (float64, shape (61,) or (n, 61)). Same arithmetic as the CSV
    writer: ``value / divisor * sign``; eye roll is 0."""
    v = np.asarray(values, dtype=np.float64)
    out = v[..., _SRC] / _DIV * _SIGN
    out[..., ~_USED] = 0.0
    return out


def from_livelink(values: Any) -> np.ndarray:
    """Live Link values in packet order ((61,) or (n, 61)) -> facecast channel values (float32,
    ``CHANNELS`` order). Same arithmetic as the CSV reader: ``value * divisor * sign``; eye
    roll is ignored."""
    ll = np.asarray(values, dtype=np.float64)
    if ll.shape[-1] != VALUE_COUNT:
        raise ValueError(f"expected {VALUE_COUNT} Live Link values, got shape {ll.shape}")
    out = np.zeros(ll.shape[:-1] + (len(CHANNELS),), np.float64)
    out[..., _DST] = ll[..., _USED] * _DIV[_USED] * _SIGN[_USED]
    return out.astype(np.float32)


def mirror_livelink(values: Any) -> np.ndarray:
    """Mirror Live Link values (packet order): swap Left/Right shapes and eyes, negate yaw and
    roll. An involution: mirroring twice restores the input."""
    ll = np.asarray(values, dtype=np.float64)
    return ll[..., _MIRROR_PERM] * _MIRROR_SIGN


def sanitize_livelink(values: np.ndarray, max_weight: float | None = 1.0
                      ) -> tuple[np.ndarray, int, int]:
    """Make one packet's 61 values safe for Unreal; returns (values, non-finite, clamped).

    NaN/inf -> 0; weights < 0 -> 0 (as Unreal clamps them); weights > ``max_weight`` ->
    ``max_weight`` (None: no upper bound); finite rotations outside [-1, 1] are wrapped into
    [-1, 1) (the same angle). ``values`` (float64) is modified in place and returned.
    """
    finite = np.isfinite(values)
    bs = values[:BLENDSHAPE_COUNT]
    rot = values[BLENDSHAPE_COUNT:]
    if finite.all() and bs.min() >= 0.0 and (max_weight is None or bs.max() <= max_weight) \
            and np.abs(rot).max() <= 1.0:
        return values, 0, 0
    nonfinite = int((~finite).sum())
    values[~finite] = 0.0
    low = bs < 0.0
    clamped = int(low.sum())
    bs[low] = 0.0
    if max_weight is not None:
        high = bs > max_weight
        clamped += int(high.sum())
        bs[high] = max_weight
    out = np.abs(rot) > 1.0
    if out.any():
        clamped += int(out.sum())
        rot[out] = np.mod(rot[out] + 1.0, 2.0) - 1.0
    return values, nonfinite, clamped


# ------------------------------------------------------------------------------------------
# Frame time
# ------------------------------------------------------------------------------------------
def seconds_to_frame_time(seconds: float, numerator: int = 60, denominator: int = 1
                          ) -> tuple[int, float]:
    """(frame number, sub-frame in [0, 1)) of a time in seconds at rate num/den.

    Times that are whole frames up to float rounding (``index / fps`` at rate fps/1) give
    sub-frame exactly 0. Frame numbers wrap into int32 (never reached in practice: 2**31 frames
    at 60/1 are over a year).
    """
    x = float(seconds) * numerator / denominator
    n = math.floor(x)
    sub = x - n
    if sub > 1.0 - 1e-9:
        n, sub = n + 1, 0.0
    elif sub < 1e-9:
        sub = 0.0
    sub32 = float(np.float32(sub))
    if sub32 >= 1.0:
        n, sub32 = n + 1, 0.0
    n = (n + 2**31) % 2**32 - 2**31
    return int(n), sub32


def frame_time_to_seconds(frame_number: int, sub_frame: float, numerator: int,
                          denominator: int) -> float:
    """Seconds of a qualified frame time (NaN when the rate is not positive)."""
    if numerator <= 0 or denominator <= 0:
        return math.nan
    return (frame_number + float(sub_frame)) * denominator / numerator


# ------------------------------------------------------------------------------------------
# Packets
# ------------------------------------------------------------------------------------------
def check_name(name: Any, what: str = "subject name", limit: int = MAX_NAME_BYTES) -> bytes:
    """UTF-8 bytes of a subject name or device id; PacketError if empty, not text or longer
    than ``limit`` bytes."""
    if not isinstance(name, str):
        raise PacketError(f"{what} must be a string, got {type(name).__name__}")
    if not name:
        raise PacketError(f"{what} is empty")
    try:
        raw = name.encode("utf-8")
    except UnicodeEncodeError as e:
        raise PacketError(f"{what} {name[:40]!r} cannot be encoded as UTF-8 ({e.reason})") \
            from None
    if len(raw) > limit:
        raise PacketError(f"{what} {name[:40]!r}... is {len(raw)} bytes in UTF-8; at most "
                          f"{limit} are sent")
    return raw


def packet_size(device_id: str, subject: str, header_only: bool = False) -> int:
    """Size in bytes of a packet with these strings."""
    n = 25 + len(device_id.encode("utf-8")) + len(subject.encode("utf-8"))
    return n if header_only else n + 1 + _VALUES_BYTES


@dataclass
class LiveLinkPacket:
    """One decoded (or to-be-encoded) packet. ``values`` is float32 (61,) in packet order, or
    None for a header-only packet. ``extra_bytes`` counts bytes after the values that a decoder
    ignored (Unreal ignores them too)."""

    device_id: str
    subject: str
    frame_number: int
    sub_frame: float = 0.0
    rate_numerator: int = 60
    rate_denominator: int = 1
    values: np.ndarray | None = None
    version: int = PACKET_VERSION
    extra_bytes: int = 0

    @property
    def header_only(self) -> bool:
        return self.values is None

    @property
    def rate(self) -> float:
        """Frames per second (NaN when the rate is not positive)."""
        if self.rate_numerator <= 0 or self.rate_denominator <= 0:
            return math.nan
        return self.rate_numerator / self.rate_denominator

    @property
    def seconds(self) -> float:
        """The frame time in seconds (frame number + sub-frame at the packet's rate)."""
        return frame_time_to_seconds(self.frame_number, self.sub_frame, self.rate_numerator,
                                     self.rate_denominator)

    def value(self, name: str) -> float:
        """A value by its Live Link name (``"JawOpen"``, ``"HeadYaw"``)."""
        if self.values is None:
            raise ValueError("header-only packet carries no values")
        try:
            return float(self.values[PACKET_NAMES.index(name)])
        except ValueError:
            raise KeyError(f"unknown Live Link value {name!r}") from None

    def as_dict(self) -> dict[str, float]:
        if self.values is None:
            return {}
        return {n: float(v) for n, v in zip(PACKET_NAMES, self.values)}

    def facecast_values(self) -> np.ndarray:
        """The values as facecast channels (float32, ``CHANNELS`` order, radians)."""
        if self.values is None:
            raise ValueError("header-only packet carries no values")
        return from_livelink(self.values)

    def encode(self) -> bytes:
        return encode_packet(self.device_id, self.subject, self.frame_number, self.sub_frame,
                             self.rate_numerator, self.rate_denominator, self.values)


def _check_frame_time(frame_number: Any, sub_frame: Any, num: Any, den: Any) -> None:
    for what, v in (("frame number", frame_number), ("rate numerator", num),
                    ("rate denominator", den)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise PacketError(f"{what} must be an integer, got {v!r}")
    if not -2**31 <= int(frame_number) <= _I32_MAX:
        raise PacketError(f"frame number {frame_number} does not fit in int32")
    if not 0 < int(num) <= _I32_MAX or not 0 < int(den) <= _I32_MAX:
        raise PacketError(f"frame rate {num}/{den} must have positive int32 terms")
    if not isinstance(sub_frame, (int, float, np.floating)) or not 0.0 <= sub_frame < 1.0:
        raise PacketError(f"sub-frame must be in [0, 1), got {sub_frame!r}")


class PacketEncoder:
    """Encodes the packets of one (device id, subject) pair; the strings are packed once.

    ``encode(frame_number, sub_frame, values)`` takes 61 values in packet order (anything
    numpy converts to float; they are written as float32 big-endian as given: sanitize them
    first); ``header_only(frame_number, sub_frame)`` builds the packet the app sends when no face
    is tracked.
    """

    __slots__ = ("device_id", "subject", "rate_numerator", "rate_denominator", "_prefix",
                 "size")

    def __init__(self, device_id: str, subject: str, rate_numerator: int = 60,
                 rate_denominator: int = 1) -> None:
        dev = check_name(device_id, "device id", MAX_DEVICE_ID_BYTES)
        sub = check_name(subject, "subject name", MAX_NAME_BYTES)
        _check_frame_time(0, 0.0, rate_numerator, rate_denominator)
        self.device_id = device_id
        self.subject = subject
        self.rate_numerator = int(rate_numerator)
        self.rate_denominator = int(rate_denominator)
        self._prefix = _HEADER.pack(PACKET_VERSION, len(dev)) + dev + _LEN.pack(len(sub)) + sub
        self.size = len(self._prefix) + 16 + 1 + _VALUES_BYTES

    def _time(self, frame_number: int, sub_frame: float) -> bytes:
        return _FRAME_TIME.pack(frame_number, sub_frame, self.rate_numerator,
                                self.rate_denominator)

    def encode(self, frame_number: int, sub_frame: float, values: Any) -> bytes:
        v = np.asarray(values, dtype=_VALUES_DTYPE)
        if v.shape != (VALUE_COUNT,):
            raise PacketError(f"expected {VALUE_COUNT} values, got shape {v.shape}")
        return b"".join((self._prefix, self._time(frame_number, sub_frame),
                         b"\x3d", v.tobytes()))

    def header_only(self, frame_number: int, sub_frame: float = 0.0) -> bytes:
        return self._prefix + self._time(frame_number, sub_frame)


def encode_packet(device_id: str, subject: str, frame_number: int, sub_frame: float = 0.0,
                  rate_numerator: int = 60, rate_denominator: int = 1,
                  values: Any = None) -> bytes:
    """One packet; ``values`` None gives a header-only packet. Raises PacketError."""
    _check_frame_time(frame_number, sub_frame, rate_numerator, rate_denominator)
    enc = PacketEncoder(device_id, subject, rate_numerator, rate_denominator)
    if values is None:
        return enc.header_only(int(frame_number), float(sub_frame))
    return enc.encode(int(frame_number), float(sub_frame), values)


def _read_string(buf: bytes, pos: int, what: str) -> tuple[str, int]:
    n = len(buf)
    if n - pos < 4:
        raise PacketError(f"truncated packet: {n} bytes end inside the {what} length at "
                          f"offset {pos}")
    (length,) = _LEN.unpack_from(buf, pos)
    pos += 4
    if length < 0:
        raise PacketError(f"negative {what} length {length} at offset {pos - 4}")
    if length > n - pos:
        raise PacketError(f"{what} length {length} at offset {pos - 4} runs past the end of "
                          f"the {n}-byte packet")
    try:
        text = buf[pos:pos + length].decode("utf-8")
    except UnicodeDecodeError as e:
        raise PacketError(f"{what} is not valid UTF-8 ({e.reason} at byte {e.start})") \
            from None
    return text, pos + length


def decode_packet(data: bytes | bytearray | memoryview) -> LiveLinkPacket:
    """Decode one UDP payload; raises PacketError (a ValueError) for anything that is not a
    complete version-6 packet. Never reads outside ``data``; bytes after the 61 values are
    ignored and counted in ``extra_bytes`` (Unreal ignores them too)."""
    buf = bytes(data)
    n = len(buf)
    if n == 0:
        raise PacketError("empty packet")
    if buf[0] != PACKET_VERSION:
        raise PacketError(f"packet version {buf[0]}, expected {PACKET_VERSION}")
    device, pos = _read_string(buf, 1, "device id")
    subject, pos = _read_string(buf, pos, "subject name")
    if n - pos < _FRAME_TIME.size:
        raise PacketError(f"truncated packet: {n} bytes end inside the frame time at offset "
                          f"{pos}")
    frame_number, sub_frame, num, den = _FRAME_TIME.unpack_from(buf, pos)
    pos += _FRAME_TIME.size
    packet = LiveLinkPacket(device, subject, frame_number, sub_frame, num, den)
    if pos == n:
        return packet  # header-only: no face tracked
    count = buf[pos]
    pos += 1
    if count != VALUE_COUNT:
        raise PacketError(f"value count {count}, expected {VALUE_COUNT}")
    if n - pos < _VALUES_BYTES:
        raise PacketError(f"truncated packet: {n - pos} bytes of values, expected "
                          f"{_VALUES_BYTES}")
    packet.values = np.frombuffer(buf, _VALUES_DTYPE, VALUE_COUNT, pos).astype(np.float32)
    packet.extra_bytes = n - pos - _VALUES_BYTES
    return packet
