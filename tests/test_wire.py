"""The wire codec (facecast.wire): exact byte layouts and every decoding error."""
from __future__ import annotations

import hashlib
import struct

import msgpack
import numpy as np
import pytest

from facecast.schema import ARKIT52, CHANNELS, SCHEMA_VERSION, FrameBatch
from facecast import wire
from facecast.wire import (
    PROTOCOL_VERSION, SCHEMA_HASH, FrameEncoder, ProtocolError, decode_audio, decode_frame,
    decode_message, decode_published, decode_request, encode_audio, encode_event,
    encode_message, error_reply, make_request, ok_reply,
)

N = len(CHANNELS)


def _batch(n=5, start=7, fps=60, subject="alice", seed=0, **kw):
    rng = np.random.default_rng(seed)
    vals = rng.uniform(-2, 2, size=(n, N)).astype(np.float32)
    return FrameBatch(vals, start, fps, subject, **kw)


def test_schema_hash_is_sha256_of_channel_names():
    expect = hashlib.sha256("\n".join(CHANNELS).encode("ascii")).hexdigest()[:16]
    assert SCHEMA_HASH == expect
    assert wire.schema_hash(list(CHANNELS)[::-1]) != SCHEMA_HASH


def test_frame_payload_layout_is_exact():
    b = _batch()
    payloads = FrameEncoder("alice", "s" * 32, 60).encode(b, wall=1234.5)
    assert len(payloads) == 5
    for i, p in enumerate(payloads):
        m = msgpack.unpackb(p, raw=False)
        assert m == {
            "v": PROTOCOL_VERSION, "type": "frame", "schema": SCHEMA_VERSION,
            "schema_hash": SCHEMA_HASH, "subject": "alice", "session": "s" * 32, "fps": 60,
            "index": 7 + i, "time": (7 + i) / 60, "values": m["values"], "wall": 1234.5,
        }
        raw = m["values"]
        assert isinstance(raw, bytes) and len(raw) == 4 * N
        # raw little-endian float32 in CHANNELS order, bit for bit
        assert raw == b.values[i].astype("<f4").tobytes()
        assert struct.unpack(f"<{N}f", raw) == tuple(float(v) for v in b.values[i])
        # time is a float64 msgpack value (0xcb), index an int
        assert isinstance(m["time"], float) and isinstance(m["index"], int)


def test_frame_round_trip_exact_values():
    b = _batch(n=3)
    enc = FrameEncoder("alice", "abc", 60)
    for i, p in enumerate(enc.encode(b)):
        f = decode_frame(p)
        assert f.index == 7 + i and f.time == (7 + i) / 60 and f.fps == 60
        assert f.subject == "alice" and f.session == "abc"
        assert f.vector().dtype == np.float32
        assert np.array_equal(f.vector(), b.values[i])  # exact, not approximately
        assert f["jawOpen"] == float(b.values[i, CHANNELS.index("jawOpen")])
        assert f.blendshapes.shape == (len(ARKIT52),)
        assert f.head_translation is None and f.blocks == {}


def test_frame_optional_fields_and_channels():
    ht = np.arange(9, dtype=np.float32).reshape(3, 3)
    b = _batch(n=3, head_translation=ht,
               blocks={"emotion": [{"joy": 0.5}, None, {"joy": 1.0}]})
    enc = FrameEncoder("bob", "x", 30, include_channels=True)
    ps = enc.encode(b)
    m0 = msgpack.unpackb(ps[0], raw=False)
    assert m0["channels"] == list(CHANNELS)
    assert m0["head_translation"] == ht[0].astype("<f4").tobytes()
    assert m0["blocks"] == {"emotion": {"joy": 0.5}}
    assert "blocks" not in msgpack.unpackb(ps[1], raw=False)
    f = decode_frame(ps[2])
    assert np.array_equal(f.head_translation, ht[2])
    assert f.blocks == {"emotion": {"joy": 1.0}}
    assert f.time == (7 + 2) / 30


def test_empty_batch_encodes_nothing():
    assert FrameEncoder("a", "b", 60).encode(FrameBatch.empty()) == []


def test_decode_maps_foreign_channel_order_by_name():
    names = list(CHANNELS)[::-1] + ["someFutureChannel"]
    vals = np.arange(len(names), dtype=np.float32)
    msg = {"v": 1, "type": "frame", "schema": 2, "schema_hash": "other", "subject": "a",
           "session": "s", "fps": 60, "index": 0, "time": 0.0, "channels": names,
           "values": vals.astype("<f4").tobytes()}
    f = decode_frame(msgpack.packb(msg, use_bin_type=True))
    for name, v in zip(names, vals):
        if name in CHANNELS:
            assert f[name] == v
    del msg["channels"]
    with pytest.raises(ProtocolError) as e:
        decode_frame(msgpack.packb(msg, use_bin_type=True))
    assert e.value.code == "bad_message"


def test_decode_frame_rejects_wrong_value_length():
    msg = {"v": 1, "type": "frame", "schema_hash": SCHEMA_HASH, "fps": 60, "index": 0,
           "values": b"\x00" * 12}
    with pytest.raises(ProtocolError, match="236 bytes"):
        decode_frame(msgpack.packb(msg, use_bin_type=True))


def test_events_round_trip():
    p = encode_event("end", "alice", "sid", reason="close", frames=10)
    e = decode_published(b"event.alice", p)
    assert e.event == "end" and e.subject == "alice" and e.session == "sid"
    assert e.data["reason"] == "close" and e.data["frames"] == 10


@pytest.mark.parametrize("data, code", [
    (b"\xc1", "bad_message"),                                   # never-used msgpack byte
    (b"\x92\x01", "bad_message"),                               # truncated array
    (msgpack.packb([1, 2]), "bad_message"),                     # not a map
    (msgpack.packb({"type": "ping"}), "version_mismatch"),      # no version
    (msgpack.packb({"v": 2, "type": "ping"}), "version_mismatch"),
    (msgpack.packb({"v": True, "type": "ping"}), "version_mismatch"),
    (msgpack.packb({"v": 1}), "bad_field"),                     # no type
    (msgpack.packb({"v": 1, "type": 5}), "bad_field"),
    (msgpack.packb({"v": 1, "type": "explode"}), "unknown_type"),
    (msgpack.packb({"v": 1, "type": "ping", "id": [1]}), "bad_field"),
    (msgpack.packb({"v": 1, "type": "ping"}) + b"\x00", "bad_message"),  # trailing bytes
    (b"\xa2\xff\xfe", "bad_message"),                           # invalid utf-8 string
    (msgpack.packb({1: 2}), "bad_message"),                     # non-string map key
])
def test_decode_request_errors(data, code):
    with pytest.raises(ProtocolError) as e:
        decode_request(data)
    assert e.value.code == code
    assert "\n" not in e.value.message


def test_decode_request_size_cap():
    big = encode_message(make_request("push", 1, session="x", data=b"\0" * 2000))
    with pytest.raises(ProtocolError) as e:
        decode_request(big, max_bytes=1000)
    assert e.value.code == "too_large"
    assert decode_request(big, max_bytes=4000)["type"] == "push"


def test_request_and_replies():
    req = make_request("open", 3, subject="a", sample_rate=16000, fps=None)
    assert req == {"v": 1, "type": "open", "id": 3, "subject": "a", "sample_rate": 16000}
    assert decode_request(encode_message(req)) == req
    ok = ok_reply(req, session="s")
    assert ok == {"v": 1, "ok": True, "type": "open", "id": 3, "session": "s"}
    err = error_reply(req, "bad_field", "two\nlines")
    assert err["ok"] is False and err["id"] == 3
    assert err["error"] == {"code": "bad_field", "message": "two lines"}
    assert set(wire.ERROR_CODES) >= {"bad_message", "version_mismatch", "unknown_type",
                                     "bad_field", "too_large", "unknown_session", "bad_audio"}


def test_audio_float32_layout():
    x = np.array([0.5, -1.0, 0.25], np.float32)
    raw = encode_audio(x, "float32")
    assert raw == struct.pack("<3f", 0.5, -1.0, 0.25)
    assert np.array_equal(decode_audio(raw, "float32", 1), x)


def test_audio_int16_layout_and_clipping():
    raw = encode_audio(np.array([0.5, -1.0, 2.0], np.float32), "int16")
    assert raw == struct.pack("<3h", 16384, -32767, 32767)
    assert np.array_equal(decode_audio(raw, "int16", 1), [16384, -32767, 32767])
    ints = np.array([1, -2], np.int16)
    assert encode_audio(ints, "int16") == struct.pack("<2h", 1, -2)


def test_audio_multichannel_is_interleaved():
    x = np.arange(16, dtype=np.float32).reshape(2, 8)  # 2 sample frames, 8 channels
    raw = encode_audio(x, "float32")
    assert raw == struct.pack("<16f", *range(16))
    assert np.array_equal(decode_audio(raw, "float32", 8), x)


@pytest.mark.parametrize("n, dtype, ch", [(3, "float32", 1), (6, "int16", 2), (1, "int16", 1)])
def test_audio_misaligned_bytes(n, dtype, ch):
    with pytest.raises(ProtocolError) as e:
        decode_audio(b"\0" * n, dtype, ch)
    assert e.value.code == "bad_audio"


def test_zero_length_audio():
    assert decode_audio(b"", "float32", 1).shape == (0,)
    assert decode_audio(b"", "int16", 8).shape == (0, 8)


@pytest.mark.parametrize("s", ["alice", "a.b.c", "A-1_x", "x" * 64])
def test_valid_subjects(s):
    assert wire.check_subject(s) == s
    assert wire.frame_topic(s) == b"face." + s.encode()
    assert wire.event_topic(s) == b"event." + s.encode()


@pytest.mark.parametrize("s", ["", "a b", "a..b", ".a", "a.", "x" * 65, "é", "a/b", 5, None])
def test_invalid_subjects(s):
    with pytest.raises(ProtocolError) as e:
        wire.check_subject(s)
    assert e.value.code == "bad_field"


def test_decode_message_rejects_other_version_frames():
    p = msgpack.packb({"v": 2, "type": "frame"}, use_bin_type=True)
    with pytest.raises(ProtocolError) as e:
        decode_message(p)
    assert e.value.code == "version_mismatch"
