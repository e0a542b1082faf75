"""facecast wire protocol, version 1: constants, message codec and audio/frame encodings.

This module is shared by the runtime server and the SDK clients and is the executable form of
``docs/protocol.md``. It depends on numpy and msgpack only.

Two ZeroMQ sockets:

* **control** (server ROUTER, default port 5570): request/reply. Every message is one msgpack
  map with the protocol version ``v`` and a ``type`` (``open``, ``push``, ``close``, ``options``,
  ``ping``, ``stats``, ``schema``). Every request gets exactly one reply map with ``ok`` (bool)
  and, when ``ok`` is false, ``error = {"code": str, "message": str}``.
* **frames** (server PUB/XPUB, default port 5571): multipart ``[topic, payload]``. Topics are
  ``face.<subject>`` (one message per frame) and ``event.<subject>`` (session start/end).
  Frame channel values travel as raw little-endian float32 bytes in ``schema.CHANNELS`` order.
"""
from __future__ import annotations

import hashlib
import math
import re
import time as _time
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import msgpack
import numpy as np

from .schema import (
    ARKIT52, CHANNELS, EYE_ROTATION, HEAD_ROTATION, SCHEMA_VERSION, Frame, FrameBatch,
)

__all__ = [
    "PROTOCOL_VERSION", "DEFAULT_HOST", "DEFAULT_CONTROL_PORT", "DEFAULT_FRAME_PORT",
    "DEFAULT_CONTROL_ADDRESS", "DEFAULT_FRAME_ADDRESS", "FRAME_TOPIC_PREFIX",
    "EVENT_TOPIC_PREFIX", "SCHEMA_HASH", "MAX_MESSAGE_BYTES", "HARD_MAX_MESSAGE_BYTES",
    "MAX_CHUNK_SECONDS", "MIN_SAMPLE_RATE", "MAX_SAMPLE_RATE", "MAX_AUDIO_CHANNELS",
    "AUDIO_DTYPES", "ERROR_CODES", "REQUEST_TYPES", "ProtocolError", "RemoteError",
    "StreamFrame", "StreamEvent", "FrameEncoder", "frame_topic", "event_topic",
    "check_subject", "schema_hash", "encode_message", "decode_message", "decode_request",
    "decode_reply", "make_request", "ok_reply", "error_reply", "encode_audio", "decode_audio",
    "encode_event", "decode_frame", "decode_event", "decode_published", "channel_layout",
    "pack", "unpack",
]

#: Version of this protocol; every message carries it as ``v``. A server answers a message with
#: another version with the error ``version_mismatch``.
PROTOCOL_VERSION = 1

DEFAULT_HOST = "127.0.0.1"
DEFAULT_CONTROL_PORT = 5570
DEFAULT_FRAME_PORT = 5571
DEFAULT_CONTROL_ADDRESS = f"tcp://{DEFAULT_HOST}:{DEFAULT_CONTROL_PORT}"
DEFAULT_FRAME_ADDRESS = f"tcp://{DEFAULT_HOST}:{DEFAULT_FRAME_PORT}"

FRAME_TOPIC_PREFIX = "face."
EVENT_TOPIC_PREFIX = "event."

#: A control message larger than this is answered with ``too_large`` (not parsed).
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
#: ZeroMQ ``MAXMSGSIZE`` of the control socket: a peer sending more is disconnected by ZeroMQ.
HARD_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
#: Longest audio chunk accepted in one ``push`` (seconds at the session's sample rate).
MAX_CHUNK_SECONDS = 10.0
MIN_SAMPLE_RATE = 4_000
MAX_SAMPLE_RATE = 768_000
MAX_AUDIO_CHANNELS = 64
MAX_SUBJECT_LENGTH = 64

#: Audio sample encodings accepted at ``open`` (``dtype``): name -> numpy little-endian dtype.
AUDIO_DTYPES: dict[str, str] = {"float32": "<f4", "int16": "<i2"}

REQUEST_TYPES: tuple[str, ...] = ("open", "push", "close", "options", "ping", "stats", "schema")

#: Every error code a server may reply, with its meaning.
ERROR_CODES: dict[str, str] = {
    "bad_message": "not a msgpack map, undecodable msgpack, or bad ZeroMQ framing",
    "version_mismatch": "the message's protocol version 'v' is missing or not supported",
    "unknown_type": "the message's 'type' is not a known request type",
    "bad_field": "a field is missing, has the wrong type or is out of range",
    "too_large": "the message or the audio chunk exceeds the server's limits",
    "unknown_session": "no open session has this id (never opened, closed, or timed out)",
    "subject_in_use": "another open session publishes this subject (use replace=true)",
    "too_many_sessions": "the server already runs its maximum number of sessions",
    "overloaded": "too many chunks of this session are waiting to be processed",
    "bad_audio": "audio that cannot be used (misaligned bytes, NaN/Inf, bad sample rate)",
    "bad_model": "the requested model does not exist or cannot be loaded",
    "session_error": "the engine refused the operation on this session",
    "shutting_down": "the server is stopping and accepts no new work",
    "internal": "an unexpected server error; the server keeps running",
}

_SUBJECT_RE = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$")


def schema_hash(channels: Iterable[str] = CHANNELS) -> str:
    """First 16 hex digits of SHA-256 over the channel names joined by ``\\n`` (ASCII)."""
    return hashlib.sha256("\n".join(channels).encode("ascii")).hexdigest()[:16]


#: Hash identifying the channel layout of ``values`` (see :func:`schema_hash`).
SCHEMA_HASH = schema_hash(CHANNELS)
_N = len(CHANNELS)
_ROW_BYTES = 4 * _N
_NB = len(ARKIT52)
_NH = len(HEAD_ROTATION)
_NE = len(EYE_ROTATION)


class ProtocolError(ValueError):
    """A message that breaks the protocol; ``code`` is one of :data:`ERROR_CODES`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class RemoteError(Exception):
    """An error reply from the server (``code`` from :data:`ERROR_CODES`, one-line ``message``)."""

    def __init__(self, code: str, message: str, reply: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.reply = dict(reply or {})


# --------------------------------------------------------------------------------------------
# msgpack helpers
# --------------------------------------------------------------------------------------------
def _default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"cannot encode {type(obj).__name__} in a facecast message")


def pack(obj: Any) -> bytes:
    """msgpack-encode with bin types for bytes, str for str (numpy scalars/arrays converted)."""
    return msgpack.packb(obj, use_bin_type=True, default=_default)


def unpack(data: bytes, max_bytes: int = HARD_MAX_MESSAGE_BYTES) -> Any:
    """Decode one msgpack object with size limits; raises ProtocolError('bad_message')."""
    try:
        return msgpack.unpackb(
            data, raw=False, strict_map_key=True, use_list=True,
            max_bin_len=max_bytes, max_str_len=min(max_bytes, 1 << 20),
            max_array_len=1 << 16, max_map_len=1 << 12, max_ext_len=1 << 10,
        )
    except Exception as e:  # ExtraData, UnpackValueError, UnicodeDecodeError, ...
        raise ProtocolError("bad_message", f"undecodable msgpack ({type(e).__name__})") from None


# --------------------------------------------------------------------------------------------
# topics and subjects
# --------------------------------------------------------------------------------------------
def check_subject(subject: Any, field_name: str = "subject") -> str:
    """Validate a subject name: 1..64 characters of ``[A-Za-z0-9_-]`` in dot-separated parts."""
    if not isinstance(subject, str):
        raise ProtocolError("bad_field", f"'{field_name}' must be a string, "
                                         f"got {type(subject).__name__}")
    if not subject or len(subject) > MAX_SUBJECT_LENGTH or not _SUBJECT_RE.match(subject):
        raise ProtocolError(
            "bad_field",
            f"'{field_name}' {subject[:80]!r} is not a valid subject (1..{MAX_SUBJECT_LENGTH} "
            "characters A-Z a-z 0-9 _ - in dot-separated parts)")
    return subject


def frame_topic(subject: str) -> bytes:
    """Topic of a subject's frames: ``b"face.<subject>"``."""
    return (FRAME_TOPIC_PREFIX + subject).encode("utf-8")


def event_topic(subject: str) -> bytes:
    """Topic of a subject's lifecycle events: ``b"event.<subject>"``."""
    return (EVENT_TOPIC_PREFIX + subject).encode("utf-8")


def channel_layout() -> dict[str, Any]:
    """The ``schema`` reply body: channel names and how ``values`` is laid out."""
    return {
        "schema": SCHEMA_VERSION, "schema_hash": SCHEMA_HASH, "channels": list(CHANNELS),
        "value_encoding": "float32le", "blendshapes": list(ARKIT52),
        "head_rotation": list(HEAD_ROTATION), "eye_rotation": list(EYE_ROTATION),
    }


# --------------------------------------------------------------------------------------------
# control messages
# --------------------------------------------------------------------------------------------
def make_request(type: str, id: int | None = None, **fields: Any) -> dict[str, Any]:
    """A request map: ``{"v": 1, "type": type, "id": id, **fields}`` (None fields dropped)."""
    msg: dict[str, Any] = {"v": PROTOCOL_VERSION, "type": type}
    if id is not None:
        msg["id"] = id
    msg.update({k: v for k, v in fields.items() if v is not None})
    return msg


def encode_message(msg: Mapping[str, Any]) -> bytes:
    """Encode a message map; adds ``v`` when missing."""
    if "v" not in msg:
        msg = {"v": PROTOCOL_VERSION, **msg}
    return pack(dict(msg))


def decode_message(data: bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> dict[str, Any]:
    """Decode a message map and check its version; raises :class:`ProtocolError`."""
    if len(data) > max_bytes:
        raise ProtocolError("too_large",
                            f"message of {len(data)} bytes exceeds the {max_bytes}-byte limit")
    msg = unpack(data, max_bytes)
    if not isinstance(msg, dict):
        raise ProtocolError("bad_message",
                            f"a message must be a msgpack map, got {type(msg).__name__}")
    if "v" not in msg:
        raise ProtocolError("version_mismatch",
                            f"message has no protocol version 'v' (this side speaks "
                            f"v{PROTOCOL_VERSION})")
    v = msg["v"]
    if isinstance(v, bool) or not isinstance(v, int) or v != PROTOCOL_VERSION:
        raise ProtocolError("version_mismatch",
                            f"protocol version {v!r} is not supported (this side speaks "
                            f"v{PROTOCOL_VERSION})")
    return msg


def decode_request(data: bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> dict[str, Any]:
    """Decode a control request; checks ``v`` and ``type``; raises :class:`ProtocolError`."""
    msg = decode_message(data, max_bytes)
    t = msg.get("type")
    if not isinstance(t, str):
        raise ProtocolError("bad_field", "'type' must be a string naming the request")
    if t not in REQUEST_TYPES:
        raise ProtocolError("unknown_type",
                            f"unknown request type {t[:40]!r} (expected one of "
                            f"{', '.join(REQUEST_TYPES)})")
    rid = msg.get("id")
    if rid is not None and (isinstance(rid, bool) or not isinstance(rid, (int, str))):
        raise ProtocolError("bad_field", "'id' must be an integer or a string")
    return msg


def decode_reply(data: bytes) -> dict[str, Any]:
    """Decode a reply (no size limit beyond ZeroMQ's); raises :class:`ProtocolError`."""
    msg = decode_message(data, HARD_MAX_MESSAGE_BYTES)
    if not isinstance(msg.get("ok"), bool):
        raise ProtocolError("bad_message", "reply has no boolean 'ok'")
    return msg


def ok_reply(request: Mapping[str, Any] | None, **fields: Any) -> dict[str, Any]:
    rep: dict[str, Any] = {"v": PROTOCOL_VERSION, "ok": True}
    if request:
        if isinstance(request.get("type"), str):
            rep["type"] = request["type"]
        if "id" in request:
            rep["id"] = request["id"]
    rep.update(fields)
    return rep


def error_reply(request: Mapping[str, Any] | None, code: str, message: str,
                **fields: Any) -> dict[str, Any]:
    rep: dict[str, Any] = {"v": PROTOCOL_VERSION, "ok": False}
    if request:
        if isinstance(request.get("type"), str):
            rep["type"] = request["type"]
        rid = request.get("id")
        if isinstance(rid, (int, str)) and not isinstance(rid, bool):
            rep["id"] = rid
    rep["error"] = {"code": code, "message": " ".join(str(message).split())[:500]}
    rep.update(fields)
    return rep


# --------------------------------------------------------------------------------------------
# audio chunks
# --------------------------------------------------------------------------------------------
def encode_audio(samples: Any, dtype: str = "float32") -> bytes:
    """Raw interleaved little-endian bytes of ``samples`` ((n,) or (n, channels)) in ``dtype``.

    Float input is converted to int16 by scaling by 32767 and clipping; int16 input is scaled
    by 1/32768 for float32.
    """
    if dtype not in AUDIO_DTYPES:
        raise ValueError(f"dtype must be one of {sorted(AUDIO_DTYPES)}, got {dtype!r}")
    a = np.asarray(samples)
    if dtype == "float32":
        if a.dtype.kind in "iu":
            if a.dtype != np.int16:
                raise ValueError(f"integer samples must be int16, got {a.dtype}")
            a = a.astype(np.float32) / 32768.0
        return np.ascontiguousarray(a, dtype="<f4").tobytes()
    if a.dtype.kind == "f":
        a = np.clip(np.round(a * 32767.0), -32768, 32767)
    elif a.dtype != np.int16:
        raise ValueError(f"integer samples must be int16, got {a.dtype}")
    return np.ascontiguousarray(a, dtype="<i2").tobytes()


def decode_audio(data: bytes, dtype: str, channels: int) -> np.ndarray:
    """Samples from a ``push`` chunk: (n,) for mono, (n, channels) otherwise (a view on data).

    Raises ProtocolError('bad_audio') when the byte count is not whole frames of samples.
    """
    item = 4 if dtype == "float32" else 2
    frame = item * channels
    if len(data) % frame:
        raise ProtocolError(
            "bad_audio",
            f"chunk of {len(data)} bytes is not a whole number of {channels}-channel {dtype} "
            f"sample frames ({frame} bytes each)")
    a = np.frombuffer(data, dtype=AUDIO_DTYPES[dtype])
    return a if channels == 1 else a.reshape(-1, channels)


# --------------------------------------------------------------------------------------------
# frames and events
# --------------------------------------------------------------------------------------------
@dataclass
class StreamFrame(Frame):
    """A :class:`~facecast.schema.Frame` received from a stream, with where it came from."""

    session: str = ""
    #: Server wall clock (``time.time()``) when the frame was published; NaN when absent.
    wall: float = float("nan")
    #: Local ``time.monotonic()`` when the subscriber received it; NaN when unknown.
    received: float = float("nan")


@dataclass
class StreamEvent:
    """A session lifecycle event (``event`` is ``"start"`` or ``"end"``)."""

    event: str
    subject: str
    session: str
    data: dict[str, Any] = field(default_factory=dict)
    received: float = float("nan")


def _map_header(n: int) -> bytes:
    return bytes([0x80 | n]) if n < 16 else b"\xde" + n.to_bytes(2, "big")


_K_INDEX = pack("index")
_K_TIME = pack("time")
_K_VALUES = pack("values")
_K_WALL = pack("wall")
_K_HT = pack("head_translation")
_K_BLOCKS = pack("blocks")
_VALUES_HDR = b"\xc4" + bytes([_ROW_BYTES]) if _ROW_BYTES < 256 else b"\xc5" + _ROW_BYTES.to_bytes(
    2, "big")
_HT_HDR = b"\xc4\x0c"


class FrameEncoder:
    """Encodes a session's frames into publish payloads (the constant part is packed once).

    Each payload is a msgpack map ``{v, type="frame", schema, schema_hash, subject, session,
    fps, [channels], index, time, values, wall, [head_translation], [blocks]}``.
    """

    def __init__(self, subject: str, session: str, fps: int, include_channels: bool = False,
                 extra: Mapping[str, Any] | None = None) -> None:
        self.subject = subject
        self.session = session
        self.fps = int(fps)
        self.topic = frame_topic(subject)
        # packs the per-frame numbers (index, time, wall): the same bytes as pack(), without
        # building a packer per call (one per encoder: a session's frames are encoded in order)
        self._pack_number = msgpack.Packer(use_bin_type=True).pack
        self.set_include_channels(include_channels, extra)

    def set_include_channels(self, include: bool,
                             extra: Mapping[str, Any] | None = None) -> None:
        self.include_channels = bool(include)
        static: dict[str, Any] = {
            "v": PROTOCOL_VERSION, "type": "frame", "schema": SCHEMA_VERSION,
            "schema_hash": SCHEMA_HASH, "subject": self.subject, "session": self.session,
            "fps": self.fps,
        }
        if include:
            static["channels"] = list(CHANNELS)
        for k, v in (extra or {}).items():
            static.setdefault(k, v)
        # one tuple, assigned at once: an encode running in another thread sees old or new
        self._prefix = (len(static), b"".join(pack(k) + pack(v) for k, v in static.items()))

    def encode(self, batch: FrameBatch, wall: float | None = None) -> list[bytes]:
        """One payload per frame of ``batch`` (frame index = ``batch.start_index + i``)."""
        n = len(batch)
        if n == 0:
            return []
        if wall is None:
            wall = _time.time()
        raw = np.ascontiguousarray(batch.values, dtype="<f4").tobytes()
        ht = batch.head_translation
        htraw = None if ht is None else np.ascontiguousarray(ht, dtype="<f4").tobytes()
        blocks = batch.blocks
        fps = self.fps
        static_n, static = self._prefix
        base_n = static_n + 4
        pack_number = self._pack_number
        wall_b = pack_number(float(wall))
        out = []
        start = batch.start_index
        for i in range(n):
            idx = start + i
            parts = [b"", static, _K_INDEX, pack_number(idx), _K_TIME, pack_number(idx / fps),
                     _K_VALUES, _VALUES_HDR, raw[i * _ROW_BYTES:(i + 1) * _ROW_BYTES],
                     _K_WALL, wall_b]
            nk = base_n
            if htraw is not None:
                parts += [_K_HT, _HT_HDR, htraw[i * 12:(i + 1) * 12]]
                nk += 1
            if blocks:
                b = {k: v[i] for k, v in blocks.items() if v[i] is not None}
                if b:
                    parts += [_K_BLOCKS, pack(b)]
                    nk += 1
            parts[0] = _map_header(nk)
            out.append(b"".join(parts))
        return out


def encode_event(event: str, subject: str, session: str, **fields: Any) -> bytes:
    """Payload of a lifecycle event published on ``event.<subject>``."""
    msg = {"v": PROTOCOL_VERSION, "type": "event", "event": event, "subject": subject,
           "session": session, "wall": _time.time()}
    msg.update(fields)
    return pack(msg)


def _f32(data: Any, n: int, what: str) -> np.ndarray:
    if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) != 4 * n:
        got = len(data) if isinstance(data, (bytes, bytearray, memoryview)) else type(data)
        raise ProtocolError("bad_message", f"'{what}' must be {4 * n} bytes, got {got}")
    return np.frombuffer(data, dtype="<f4").astype(np.float32)


def decode_frame(payload: bytes | Mapping[str, Any], received: float = float("nan")
                 ) -> StreamFrame:
    """Decode a frame payload into a :class:`StreamFrame`; raises :class:`ProtocolError`.

    When the payload's ``schema_hash`` differs from this SDK's, its ``channels`` list (sent when
    the session was opened with ``include_channels``) is used to map values by name; channels
    this SDK does not know are ignored and missing ones are 0.
    """
    msg = payload if isinstance(payload, Mapping) else decode_message(bytes(payload),
                                                                      HARD_MAX_MESSAGE_BYTES)
    if msg.get("type") != "frame":
        raise ProtocolError("bad_message", f"not a frame message (type {msg.get('type')!r})")
    try:
        index = int(msg["index"])
        fps = int(msg["fps"])
        values_raw = msg["values"]
    except (KeyError, TypeError, ValueError) as e:
        raise ProtocolError("bad_message", f"frame lacks a valid field ({e})") from None
    if msg.get("schema_hash") == SCHEMA_HASH:
        vals = _f32(values_raw, _N, "values")
    else:
        names = msg.get("channels")
        if not isinstance(names, list) or not all(isinstance(c, str) for c in names):
            raise ProtocolError(
                "bad_message",
                f"frame schema_hash {msg.get('schema_hash')!r} differs from this SDK's "
                f"{SCHEMA_HASH} and the frame carries no 'channels' list")
        theirs = _f32(values_raw, len(names), "values")
        vals = np.zeros(_N, np.float32)
        pos = {c: i for i, c in enumerate(CHANNELS)}
        for c, v in zip(names, theirs):
            if c in pos:
                vals[pos[c]] = v
    ht = msg.get("head_translation")
    blocks = msg.get("blocks")
    t = msg.get("time")
    return StreamFrame(
        index=index,
        time=float(t) if isinstance(t, (int, float)) else index / fps,
        fps=fps,
        blendshapes=vals[:_NB],
        head_rotation=vals[_NB:_NB + _NH],
        eye_rotation=vals[_NB + _NH:_NB + _NH + _NE],
        head_translation=None if ht is None else _f32(ht, 3, "head_translation"),
        subject=str(msg.get("subject", "")),
        blocks=dict(blocks) if isinstance(blocks, dict) else {},
        schema_version=int(msg.get("schema", SCHEMA_VERSION)),
        session=str(msg.get("session", "")),
        wall=float(msg["wall"]) if isinstance(msg.get("wall"), (int, float)) else math.nan,
        received=received,
    )


def decode_event(payload: bytes | Mapping[str, Any], received: float = float("nan")
                 ) -> StreamEvent:
    msg = payload if isinstance(payload, Mapping) else decode_message(bytes(payload),
                                                                      HARD_MAX_MESSAGE_BYTES)
    if msg.get("type") != "event" or not isinstance(msg.get("event"), str):
        raise ProtocolError("bad_message", "not an event message")
    data = {k: v for k, v in msg.items() if k not in ("v", "type", "event", "subject", "session")}
    return StreamEvent(event=msg["event"], subject=str(msg.get("subject", "")),
                       session=str(msg.get("session", "")), data=data, received=received)


def decode_published(topic: bytes, payload: bytes, received: float = float("nan")
                     ) -> StreamFrame | StreamEvent:
    """Decode one ``[topic, payload]`` message from the frames socket."""
    msg = decode_message(payload, HARD_MAX_MESSAGE_BYTES)
    if msg.get("type") == "frame":
        return decode_frame(msg, received)
    if msg.get("type") == "event":
        return decode_event(msg, received)
    raise ProtocolError("bad_message", f"unknown published message type {msg.get('type')!r} "
                                       f"on topic {topic[:80]!r}")
