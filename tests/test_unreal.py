"""The Unreal bridge (bridges/unreal, package facecast_unreal): Live Link Face v6 packets, the
relay from a runtime to UDP, the receiver/recorder and the two CLI subcommands.

Real UDP sockets on loopback with free ports; the relay runs against a fake frame publisher
(a ZeroMQ XPUB fed with the SDK's own frame encoder) for timing and robustness cases, and
against a real runtime server for the end-to-end case.
"""
from __future__ import annotations

import json
import math
import random
import socket
import struct
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import zmq

from conftest import require_shared
from facecast.client import RuntimeClient, Subscriber
from facecast.formats import read, read_livelink_csv, write_livelink_csv
from facecast.formats.livelink_csv import (
    LIVE_LINK_CSV_COLUMNS, format_timecode, livelink_values,
)
from facecast.schema import ARKIT52, CHANNEL_INDEX, CHANNELS, FrameBatch
from facecast.wire import FrameEncoder, encode_event, event_topic, frame_topic
from facecast_unreal import (
    PACKET_NAMES, LiveLinkPacket, LiveLinkReceiver, PacketEncoder, PacketError, TakeRecorder,
    UnrealRelay, decode_packet, encode_packet, from_livelink, mirror_livelink,
    sanitize_livelink, to_livelink,
)
from facecast_unreal.livelink import (
    MAX_NAME_BYTES, frame_time_to_seconds, packet_size, seconds_to_frame_time,
)
from facecast_unreal.relay import parse_target, truncate_utf8

LIVELINK = ("data", "livelink")
from helpers import SR, facecast_cli, one_line_error, speech_like
from helpers import free_port as free_tcp_port


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------
def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

def wait_udp_bound(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """Wait until another process has bound UDP ``port`` on 127.0.0.1 (our bind then fails)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"listener exited early: {proc.stderr.read()}")
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return
        finally:
            probe.close()
        time.sleep(0.05)
    raise AssertionError(f"nothing bound UDP port {port} within {timeout} s")



class UdpSink:
    """A UDP listener on loopback collecting (monotonic time, decoded packet) in a thread."""

    def __init__(self, port: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.packets: list[tuple[float, LiveLinkPacket]] = []
        self.raw: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65535)
            except (socket.timeout, OSError):
                continue
            self.raw.append(data)
            self.packets.append((time.monotonic(), decode_packet(data)))

    def values(self, subject: str | None = None) -> list[LiveLinkPacket]:
        return [p for _, p in list(self.packets)
                if p.values is not None and (subject is None or p.subject == subject)]

    def header_only(self, subject: str | None = None) -> list[tuple[float, LiveLinkPacket]]:
        return [(t, p) for t, p in list(self.packets)
                if p.values is None and (subject is None or p.subject == subject)]

    def wait_for(self, pred, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return
            time.sleep(0.01)
        raise AssertionError("condition not met within timeout")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def sink():
    s = UdpSink()
    yield s
    s.close()


class FakeRuntime:
    """A frame publisher speaking the runtime's frame protocol (XPUB + the SDK encoder)."""

    def __init__(self) -> None:
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.XPUB)
        self.sock.linger = 0
        port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{port}"
        self.subscriptions: set[bytes] = set()

    def wait_subscribed(self, topic: bytes, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while topic not in self.subscriptions:
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic!r} never subscribed")
            if self.sock.poll(20):
                msg = self.sock.recv()
                if msg[:1] == b"\x01":
                    self.subscriptions.add(msg[1:])

    def publish(self, subject: str, values: np.ndarray, start: int = 0, session: str = "s1",
                fps: int = 60, events: bool = True) -> None:
        enc = FrameEncoder(subject, session, fps)
        if events and start == 0:
            self.sock.send_multipart([event_topic(subject), encode_event(
                "start", subject, session, fps=fps, index=0, time=0.0)])
        for payload in enc.encode(FrameBatch(values, start, fps, subject)):
            self.sock.send_multipart([frame_topic(subject), payload])

    def end(self, subject: str, session: str = "s1", frames: int = 0) -> None:
        self.sock.send_multipart([event_topic(subject), encode_event(
            "end", subject, session, fps=60, index=frames, time=frames / 60, reason="close",
            frames=frames, frames_dropped=0, audio_s=frames / 60)])

    def close(self) -> None:
        self.sock.close(0)


@pytest.fixture
def fake():
    f = FakeRuntime()
    yield f
    f.close()


def random_frames(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = np.zeros((n, len(CHANNELS)), np.float32)
    v[:, :52] = rng.uniform(0, 1, (n, 52))
    v[:, 52:] = rng.uniform(-0.6, 0.6, (n, len(CHANNELS) - 52))
    return v


def expected_packet_values(frame_values: np.ndarray) -> np.ndarray:
    """What the relay must send for facecast values: the documented conversion as float32."""
    ll = to_livelink(frame_values)
    return ll.astype(np.float32)


def fixture_records() -> list[dict]:
    path = require_shared(*LIVELINK, "llv_dao_frames_decoded.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ------------------------------------------------------------------------------------------
# names and the codec against the real packets
# ------------------------------------------------------------------------------------------
def test_packet_order_is_the_spec_order():
    spec = require_shared("specs", "live_link_face_packet_order.txt").read_text().split()
    assert list(PACKET_NAMES) == spec
    csv_spec = require_shared("specs", "live_link_face_csv_order.txt").read_text().split()
    assert list(LIVE_LINK_CSV_COLUMNS) == csv_spec
    # derived from the schema, not a second copy: the first 52 are ARKit52 in PascalCase
    assert [n[0].lower() + n[1:] for n in PACKET_NAMES[:52]] == list(ARKIT52)


def test_encoder_reproduces_the_real_packet_byte_for_byte():
    real = require_shared(*LIVELINK, "llv_dao_frame0.bin").read_bytes()
    rec = fixture_records()[0]
    assert bytes.fromhex(rec["hex"]) == real and len(real) == 320
    values = [rec["values"][name] for name in PACKET_NAMES]
    out = encode_packet(rec["device_id"], rec["subject_name"], rec["frame_number"],
                        rec["sub_frame"], rec["rate_numerator"], rec["rate_denominator"],
                        values)
    assert out == real
    enc = PacketEncoder(rec["device_id"], rec["subject_name"], 60, 1)
    assert enc.encode(rec["frame_number"], rec["sub_frame"], values) == real
    assert enc.size == 320 == packet_size(rec["device_id"], rec["subject_name"])
    p = decode_packet(real)
    assert (p.device_id, p.subject, p.frame_number, p.rate_numerator, p.rate_denominator) == (
        "DEADC0DE-1337-1337-1337-CAFEBABE", "LLV Default Device", 5375735, 60, 1)
    assert p.sub_frame == pytest.approx(0.121925354, abs=1e-9) and p.extra_bytes == 0
    assert p.value("JawOpen") == pytest.approx(0.07732833921909332, rel=1e-7)
    assert p.value("HeadRoll") == pytest.approx(-0.11372824758291245, rel=1e-7)
    assert p.encode() == real


def test_decoder_reads_every_fixture_frame():
    hex_path = require_shared(*LIVELINK, "llv_dao_frames_first5.hex")
    lines = [ln.strip() for ln in hex_path.read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert len(lines) == 5
    records = {r["frame_number"]: r for r in fixture_records()}
    numbers = []
    for line in lines:
        raw = bytes.fromhex(line)
        p = decode_packet(raw)
        numbers.append(p.frame_number)
        rec = records[p.frame_number]
        assert p.subject == rec["subject_name"] and p.device_id == rec["device_id"]
        assert p.sub_frame == rec["sub_frame"]
        np.testing.assert_array_equal(
            p.values, np.array([rec["values"][n] for n in PACKET_NAMES], np.float32))
        assert p.encode() == raw
    assert numbers == list(range(5375735, 5375740))
    for rec in records.values():  # and the longer recording (it has a gap of dropped frames)
        p = decode_packet(bytes.fromhex(rec["hex"]))
        assert p.frame_number == rec["frame_number"] and p.version == rec["version"] == 6
        assert len(p.values) == rec["blendshape_count"] == 61


def test_header_only_packets_and_names():
    raw = encode_packet("dev", "alice", 42, 0.25, 60, 1)
    assert len(raw) == 25 + 3 + 5 == packet_size("dev", "alice", header_only=True)
    p = decode_packet(raw)
    assert p.header_only and p.values is None and p.frame_number == 42 and p.sub_frame == 0.25
    assert p.seconds == pytest.approx(42.25 / 60)
    # non-ASCII names travel as UTF-8 with their byte length
    name = "Zoë-顔-🙂"
    raw = encode_packet("dev", name, 1, 0.0, 60, 1, np.zeros(61))
    assert struct.unpack_from(">i", raw, 8)[0] == len(name.encode("utf-8"))
    assert decode_packet(raw).subject == name
    # the size limit is in bytes
    ok = "é" * (MAX_NAME_BYTES // 2)
    assert decode_packet(encode_packet("d", ok, 0, values=np.zeros(61))).subject == ok
    with pytest.raises(PacketError, match="at most 256"):
        encode_packet("d", ok + "x", 0)
    with pytest.raises(PacketError, match="empty"):
        PacketEncoder("d", "")
    with pytest.raises(PacketError, match="device id"):
        PacketEncoder("d" * 65, "a")
    with pytest.raises(PacketError, match="UTF-8"):
        PacketEncoder("d", "bad\udc80")
    with pytest.raises(PacketError, match="sub-frame"):
        encode_packet("d", "a", 0, 1.0)
    with pytest.raises(PacketError, match="rate"):
        encode_packet("d", "a", 0, 0.0, 0, 1)
    with pytest.raises(PacketError, match="int32"):
        encode_packet("d", "a", 2**31)
    with pytest.raises(PacketError, match="61 values"):
        PacketEncoder("d", "a").encode(0, 0.0, np.zeros(60))


@pytest.mark.parametrize("mutate, message", [
    (lambda b: b[:1].replace(b"\x06", b"\x05") + b[1:], "version 5"),
    (lambda b: b"", "empty"),
    (lambda b: b[:3], "device id length"),
    (lambda b: b[:1] + struct.pack(">i", -1) + b[5:], "negative device id length"),
    (lambda b: b[:1] + struct.pack(">i", 10_000) + b[5:], "runs past the end"),
    (lambda b: b[:1] + struct.pack(">i", 3) + b"\xff\xfe\xfd" + b[8:], "not valid UTF-8"),
    (lambda b: b[:38], "truncated"),
    (lambda b: b[:11] + struct.pack(">i", 300) + b[15:], "subject name length 300 .* runs past"),
    (lambda b: b[:36] + b"\x3c" + b[37:], "value count 60"),
    (lambda b: b[:-4], "truncated packet: 240 bytes of values"),
])
def test_decoder_rejects_malformed_packets(mutate, message):
    good = encode_packet("device", "alice", 7, 0.5, 60, 1, np.linspace(0, 1, 61))
    with pytest.raises(PacketError, match=message):
        decode_packet(mutate(good))


def test_decoder_counts_and_ignores_trailing_bytes_like_unreal():
    good = encode_packet("device", "alice", 7, 0.5, 60, 1, np.linspace(0, 1, 61))
    p = decode_packet(good + b"\x00" * 9)
    assert p.extra_bytes == 9 and p.values[60] == np.float32(1.0)
    bad_count = bytearray(good)
    bad_count[5 + 6 + 4 + 5 + 16] = 60
    with pytest.raises(PacketError, match="value count 60"):
        decode_packet(bytes(bad_count))


def test_fuzz_decoder_never_crashes_or_reads_past_the_buffer():
    """Random, truncated and mutated packets: a packet or PacketError, nothing else; a view of
    a prefix of a larger buffer decodes exactly like a copy of that prefix (no reading beyond
    the end)."""
    rng = random.Random(1234)
    valid = [
        encode_packet("DEADC0DE-1337", "alice", 5, 0.5, 60, 1, np.linspace(-1, 1, 61)),
        encode_packet("d", "Zoë 顔", 123456, 0.0, 30, 1),
        encode_packet("x" * 64, "y" * 256, -5, 0.99, 60000, 1001, np.zeros(61)),
    ]
    try:
        valid.append(require_shared(*LIVELINK, "llv_dao_frame0.bin").read_bytes())
    except pytest.skip.Exception:
        pass

    def check(buf: bytes) -> None:
        tail = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64)))
        big = bytearray(buf + tail)
        outcomes = []
        for view in (buf, bytearray(buf), memoryview(big)[:len(buf)]):
            try:
                p = decode_packet(view)
            except PacketError as e:
                outcomes.append(("error", str(e)))
                continue
            assert isinstance(p, LiveLinkPacket)
            consumed = len(buf) - p.extra_bytes
            assert consumed <= len(buf)
            if p.values is not None:
                assert p.values.shape == (61,) and p.values.dtype == np.float32
            outcomes.append(("ok", p.subject, p.device_id, p.frame_number, p.extra_bytes,
                             None if p.values is None else p.values.tobytes()))
        assert outcomes[0] == outcomes[1] == outcomes[2]

    cases = 0
    for _ in range(3000):  # random bytes, half of them with a plausible version byte
        n = rng.choice([0, 1, 2, 5, 9, 25, 40, 270, 320, rng.randint(0, 700)])
        buf = bytes(rng.getrandbits(8) for _ in range(n))
        if buf and rng.random() < 0.5:
            buf = b"\x06" + buf[1:]
        check(buf)
        cases += 1
    for v in valid:  # every truncation of every valid packet
        for k in range(len(v) + 1):
            check(v[:k])
            cases += 1
    for _ in range(3000):  # mutations: random bytes, length fields, insertions and deletions
        v = bytearray(rng.choice(valid))
        for _ in range(rng.randint(1, 4)):
            op = rng.random()
            i = rng.randrange(len(v))
            if op < 0.4:
                v[i] = rng.getrandbits(8)
            elif op < 0.6:
                pos = rng.choice([1, 5 + struct.unpack_from(">i", v, 1)[0]]) \
                    if len(v) > 9 else 1
                if pos + 4 <= len(v):
                    v[pos:pos + 4] = struct.pack(">i", rng.choice(
                        [-2**31, -1, 0, 1, len(v), len(v) * 2, 2**31 - 1, rng.randint(0, 400)]))
            elif op < 0.8:
                del v[i:i + rng.randint(1, 8)]
            else:
                v[i:i] = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 8)))
            if not v:
                break
        check(bytes(v))
        cases += 1
    assert cases > 6000


# ------------------------------------------------------------------------------------------
# conversion: the CSV convention, mirroring, sanitizing, frame time
# ------------------------------------------------------------------------------------------
def test_conversion_is_the_csv_conversion():
    v = random_frames(50, seed=3)
    batch = FrameBatch(v)
    csv_order = livelink_values(batch)  # the CSV writer's own conversion
    ll = to_livelink(v)
    for k, name in enumerate(PACKET_NAMES):
        np.testing.assert_array_equal(ll[:, k], csv_order[:, LIVE_LINK_CSV_COLUMNS.index(name)],
                                      err_msg=name)
    np.testing.assert_allclose(from_livelink(ll), v, rtol=0, atol=1e-7)
    one = np.zeros(len(CHANNELS), np.float32)
    for ch, val in (("headYaw", 0.3), ("headPitch", 0.2), ("headRoll", -0.1),
                    ("leftEyeYaw", 0.25), ("leftEyePitch", -0.15), ("rightEyeYaw", -0.05),
                    ("rightEyePitch", 0.1), ("jawOpen", 0.7), ("eyeBlinkLeft", 0.4)):
        one[CHANNEL_INDEX[ch]] = val
    got = dict(zip(PACKET_NAMES, to_livelink(one)))
    f32 = lambda x: float(np.float32(x))  # noqa: E731
    assert got["HeadYaw"] == pytest.approx(-f32(0.3) / math.pi)      # mirrored: negated
    assert got["HeadPitch"] == pytest.approx(f32(0.2) / math.pi)     # kept
    assert got["HeadRoll"] == pytest.approx(f32(0.1) / math.pi)      # negated
    assert got["LeftEyeYaw"] == pytest.approx(-f32(0.25) / math.pi)
    assert got["LeftEyePitch"] == pytest.approx(-f32(0.15) / math.pi)
    assert got["RightEyeYaw"] == pytest.approx(f32(0.05) / math.pi)
    assert got["RightEyePitch"] == pytest.approx(f32(0.1) / math.pi)
    assert got["LeftEyeRoll"] == 0.0 and got["RightEyeRoll"] == 0.0
    assert got["JawOpen"] == f32(0.7) and got["EyeBlinkLeft"] == f32(0.4)


def test_udp_and_csv_carry_the_same_numbers(tmp_path):
    v = random_frames(30, seed=5)
    path = tmp_path / "take.csv"
    write_livelink_csv(path, FrameBatch(v, 0, 60))
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    enc = PacketEncoder("dev", "alice", 60, 1)
    for i, line in enumerate(lines[1:]):
        row = line.split(",")
        number, sub = seconds_to_frame_time(i / 60, 60, 1)
        assert (number, sub) == (i, 0.0)
        assert row[0] == format_timecode(i / 60)  # the CSV's timecode of the same frame
        p = decode_packet(enc.encode(number, sub, to_livelink(v[i])))
        for k, name in enumerate(PACKET_NAMES):
            assert abs(float(row[header.index(name)]) - float(p.values[k])) < 1e-7, name


def test_our_csv_takes_match_the_app_takes_column_for_column(tmp_path):
    """The offline path: `facecast bake -o take.csv` files have the app's header, column for
    column, and rows of the same shape; our reader parses ours and the app's alike."""
    import re

    v = random_frames(90, seed=8)
    ours = tmp_path / "ours.csv"
    write_livelink_csv(ours, FrameBatch(v, 0, 60), start_timecode="13:13:04:31.652")
    our_lines = ours.read_text().splitlines()
    row_re = re.compile(r"\d\d:\d\d:\d\d:\d\d\.\d{3},61(,-?\d+\.\d{10}){61}")
    for name in ("alex_rom_3.csv", "alex_rom_4.csv"):
        app_lines = require_shared(*LIVELINK, name).read_text().splitlines()
        assert our_lines[0].split(",") == app_lines[0].split(",")
        assert len(our_lines[0].split(",")) == 63
        for line in app_lines[1:50]:
            assert row_re.fullmatch(line), line[:60]
        app = read_livelink_csv(require_shared(*LIVELINK, name), start_timecode="first")
        assert app.fps == 30 and len(app) > 1000
    for line in our_lines[1:]:
        assert row_re.fullmatch(line), line[:60]
    back = read_livelink_csv(ours, start_timecode="13:13:04:31.652")
    assert back.start_index == 0 and back.fps == 60 and len(back) == 90
    np.testing.assert_allclose(back.values, v, atol=1e-9 * math.pi)
    assert our_lines[1].startswith("13:13:04:31.652,61,")


def test_mirror_swaps_sides_and_negates_yaw_and_roll():
    ll = np.arange(61, dtype=np.float64) / 100
    m = dict(zip(PACKET_NAMES, mirror_livelink(ll)))
    src = dict(zip(PACKET_NAMES, ll))
    assert m["EyeBlinkLeft"] == src["EyeBlinkRight"] and m["JawLeft"] == src["JawRight"]
    assert m["MouthLeft"] == src["MouthRight"] and m["JawOpen"] == src["JawOpen"]
    assert m["HeadYaw"] == -src["HeadYaw"] and m["HeadRoll"] == -src["HeadRoll"]
    assert m["HeadPitch"] == src["HeadPitch"]
    assert m["LeftEyeYaw"] == -src["RightEyeYaw"] and m["LeftEyePitch"] == src["RightEyePitch"]
    np.testing.assert_array_equal(mirror_livelink(mirror_livelink(ll)), ll)


def test_sanitize_clamps_like_unreal_and_counts():
    ll = np.zeros(61)
    ll[0], ll[1], ll[2], ll[3], ll[4] = np.nan, -0.5, 1.5, np.inf, 0.5
    k = PACKET_NAMES.index
    ll[k("HeadYaw")], ll[k("HeadPitch")], ll[k("HeadRoll")] = 1.5, -2.5, -np.inf
    ll[k("LeftEyeYaw")] = 1.0
    out, nonfinite, clamped = sanitize_livelink(ll.copy())
    assert nonfinite == 3 and clamped == 4
    assert out[0] == 0 and out[1] == 0 and out[2] == 1 and out[3] == 0 and out[4] == 0.5
    assert out[k("HeadYaw")] == pytest.approx(-0.5) and out[k("HeadPitch")] == pytest.approx(-0.5)
    assert out[k("HeadRoll")] == 0 and out[k("LeftEyeYaw")] == 1.0
    out, nonfinite, clamped = sanitize_livelink(np.full(61, 0.5))
    assert (nonfinite, clamped) == (0, 0)
    out, _, clamped = sanitize_livelink(np.r_[np.full(52, 1.053), np.zeros(9)], max_weight=None)
    assert clamped == 0 and out[0] == 1.053  # the app itself sends a little above 1


def test_frame_time_from_the_audio_clock():
    for i in list(range(0, 5000)) + [10**6, 5_375_735, 2**30]:
        assert seconds_to_frame_time(i / 60, 60, 1) == (i, 0.0)
        assert seconds_to_frame_time(i / 30, 30, 1) == (i, 0.0)
    n, sub = seconds_to_frame_time(10.0 + 0.5 / 60, 60, 1)
    assert n == 600 and sub == pytest.approx(0.5)
    n, sub = seconds_to_frame_time(1.0, 30000, 1001)
    assert n == 29 and 0 <= sub < 1
    assert frame_time_to_seconds(n, sub, 30000, 1001) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    for t in rng.uniform(0, 90000, 2000):
        n, sub = seconds_to_frame_time(float(t), 60, 1)
        assert 0.0 <= sub < 1.0 and abs((n + sub) / 60 - t) < 1e-6


def test_parse_target():
    assert parse_target("10.0.0.5") == ("10.0.0.5", 11111)
    assert parse_target("ue-box:12000") == ("ue-box", 12000)
    assert parse_target("[::1]:5000") == ("::1", 5000)
    assert parse_target("::1", 7) == ("::1", 7)
    for bad in ("", ":80", "host:0", "host:70000", "host:x", "[::1", "[::1]x"):
        with pytest.raises(ValueError):
            parse_target(bad)
    cut = truncate_utf8("é" * 200, 11)
    assert cut == "é" * 5 and len(cut.encode()) <= 11


# ------------------------------------------------------------------------------------------
# the relay, against a fake frame publisher
# ------------------------------------------------------------------------------------------
def start_relay(fake: FakeRuntime, subjects, targets, **kw) -> UnrealRelay:
    relay = UnrealRelay(fake.endpoint, subjects, targets, device_id="TEST-DEVICE", **kw).start()
    for s in ([subjects] if isinstance(subjects, str) else subjects or []):
        fake.wait_subscribed(frame_topic(s.rstrip("*").rstrip(".")))
    return relay


def test_relay_paces_bursts_and_keeps_idle_subjects_alive(fake, sink):
    with start_relay(fake, ["alice"], [("127.0.0.1", sink.port)]) as relay:
        # a subject named up front appears in Unreal at once: header-only keep-alives
        sink.wait_for(lambda: len(sink.header_only("alice")) >= 2, 3)
        assert not sink.values()
        v = random_frames(40, seed=1)
        t0 = time.monotonic()
        fake.publish("alice", v)  # a burst, as from a runtime fed faster than real time
        sink.wait_for(lambda: len(sink.values("alice")) == 40, 10)
        got = [(t, p) for t, p in list(sink.packets) if p.values is not None]
        span = got[-1][0] - got[0][0]
        assert 39 / 60 - 0.05 < span < 39 / 60 + 0.25, span  # sent at the frame rate
        assert got[0][0] - t0 < 0.2
        assert [p.frame_number for _, p in got] == list(range(40))
        assert all(p.sub_frame == 0.0 and p.rate_numerator == 60 and p.rate_denominator == 1
                   and p.device_id == "TEST-DEVICE" and p.subject == "alice" for _, p in got)
        np.testing.assert_array_equal(np.stack([p.values for _, p in got]),
                                      expected_packet_values(v))
        # idle: header-only packets at ~10 Hz, frame time advancing from the last frame's
        n_before = len(sink.header_only("alice"))
        time.sleep(1.0)
        keep = [(t, p) for t, p in sink.header_only("alice")[n_before:] if t > got[-1][0]]
        assert 5 <= len(keep) <= 14, len(keep)
        assert keep[0][0] - got[-1][0] < 0.25 + 0.15
        numbers = [p.frame_number for _, p in keep]
        assert numbers == sorted(numbers) and numbers[0] >= 39
        assert all(len(raw) in (25 + 11 + 5, 270 + 11 + 5) for raw in sink.raw)
        st = relay.stats()
        assert st["frames"] == 40 and st["packets"] == 40 and st["keepalives"] >= 9
        assert st["subjects"]["alice"]["state"] == "idle"
        assert any("streaming session" in text for _, text in relay.messages)


def test_relay_without_pacing_and_with_offset_mirror_and_names(fake, sink):
    v = random_frames(20, seed=2)
    names = {"bob": "Bób 顔"}
    with start_relay(fake, ["alice", "bob"], [f"127.0.0.1:{sink.port}"], pace=False,
                     timecode_offset=3600.5, mirror=True, names=names) as relay:
        fake.publish("alice", v)
        fake.publish("bob", v[:10], session="s2")
        sink.wait_for(lambda: len(sink.values("alice")) == 20
                      and len(sink.values("Bób 顔")) == 10, 5)
        a = sink.values("alice")
        assert [p.frame_number for p in a] == [216030 + i for i in range(20)]
        assert all(p.sub_frame == 0.0 for p in a)
        np.testing.assert_array_equal(
            np.stack([p.values for p in a]),
            mirror_livelink(to_livelink(v)).astype(np.float32))
        assert relay.live_link_name("bob") == "Bób 顔"
        assert relay.stats()["subjects"]["bob"]["name"] == "Bób 顔"


def test_relay_cleans_nan_and_out_of_range_values_and_says_so(fake, sink):
    v = random_frames(10, seed=4)
    v[3, CHANNEL_INDEX["jawOpen"]] = np.nan
    v[4, CHANNEL_INDEX["mouthClose"]] = 2.0
    v[5, CHANNEL_INDEX["eyeBlinkLeft"]] = -0.3
    v[6, CHANNEL_INDEX["headYaw"]] = 4.0  # radians, beyond 180 degrees: wrapped
    v[7, CHANNEL_INDEX["headPitch"]] = np.inf
    seen = []
    with start_relay(fake, ["alice"], [("127.0.0.1", sink.port)], pace=False,
                     on_message=lambda level, text: seen.append((level, text))) as relay:
        fake.publish("alice", v)
        sink.wait_for(lambda: len(sink.values("alice")) == 10, 5)
        p = sink.values("alice")
        k = PACKET_NAMES.index
        assert p[3].value("JawOpen") == 0.0 and p[4].value("MouthClose") == 1.0
        assert p[5].value("EyeBlinkLeft") == 0.0 and p[7].value("HeadPitch") == 0.0
        wrapped = -4.0 / math.pi
        wrapped = (wrapped + 1) % 2 - 1
        assert p[6].values[k("HeadYaw")] == pytest.approx(wrapped, abs=1e-6)
        assert all(np.isfinite(x.values).all() for x in p)
        st = relay.stats()
        assert st["nonfinite_values"] == 2 and st["clamped_values"] == 3
        assert st["subjects"]["alice"]["nonfinite_values"] == 2
    warnings = [t for level, t in seen if level == "warning"]
    assert any("NaN/infinite" in t for t in warnings)
    assert any("clamped" in t for t in warnings)


def test_relay_survives_unreachable_hosts_and_a_host_that_comes_back(fake, sink):
    dead = free_udp_port()  # nothing listens there: loopback answers "connection refused"
    seen = []
    targets = [("127.0.0.1", dead), ("127.0.0.1", sink.port), ("192.0.2.1", 11111)]
    with start_relay(fake, ["alice"], targets, pace=False,
                     on_message=lambda level, text: seen.append((level, text))) as relay:
        v = random_frames(30, seed=6)
        for i in range(0, 30, 3):
            fake.publish("alice", v[i:i + 3], start=i, events=(i == 0))
            time.sleep(0.02)
        sink.wait_for(lambda: len(sink.values("alice")) == 30, 5)
        st = relay.stats()["targets"]
        assert st[1]["sent"] >= 30 and not st[1]["errors"]
        assert st[0]["errors"].get("refused", 0) >= 1 and not st[0]["healthy"]
        assert any("refused" in t.lower() and str(dead) in t for lv, t in seen
                   if lv == "warning")
        # the host comes back (Unreal restarted): it receives packets again
        back = UdpSink(dead)
        try:
            fake.publish("alice", random_frames(120, seed=7), start=30, events=False)
            back.wait_for(lambda: len(back.values("alice")) >= 60, 10)
            time.sleep(1.3)
            fake.publish("alice", random_frames(30, seed=8), start=150, events=False)
            back.wait_for(lambda: any("sending normally again" in t for _, t in seen), 5)
            assert relay.stats()["targets"][0]["healthy"]
        finally:
            back.close()
        sink.wait_for(lambda: len(sink.values("alice")) == 180, 5)
        assert relay._thread is not None and relay._thread.is_alive()


def test_relay_handles_oversize_and_non_ascii_names(fake, sink):
    seen = []
    fmt = "{subject}-" + "é" * 200  # 400+ bytes: cut to 256 at a character boundary
    with start_relay(fake, ["alice"], [("127.0.0.1", sink.port)], pace=False, name_format=fmt,
                     on_message=lambda level, text: seen.append((level, text))) as relay:
        fake.publish("alice", random_frames(3))
        sink.wait_for(lambda: len(sink.values()) == 3, 5)
        name = sink.values()[0].subject
        assert name.startswith("alice-é") and len(name.encode("utf-8")) <= MAX_NAME_BYTES
        assert len(name.encode("utf-8")) >= MAX_NAME_BYTES - 1
        assert relay.stats()["names_truncated"] == 1
    assert any("cut to 256" in t for _, t in seen)
    with pytest.raises(ValueError, match="at most 256"):
        UnrealRelay(fake.endpoint, ["alice"], [("127.0.0.1", sink.port)],
                    names={"alice": "x" * 257})
    with pytest.raises(ValueError, match="bad host"):
        UnrealRelay(fake.endpoint, ["alice"], ["no-such-host.invalid:11111"])
    with pytest.raises(ValueError, match="bad port"):
        UnrealRelay(fake.endpoint, ["alice"], [("127.0.0.1", 0)])


def test_relay_reanchors_after_a_stall_instead_of_bursting(fake, sink):
    with start_relay(fake, ["alice"], [("127.0.0.1", sink.port)]) as relay:
        v = random_frames(40, seed=9)
        fake.publish("alice", v[:10])
        sink.wait_for(lambda: len(sink.values()) == 10, 5)
        time.sleep(0.5)  # the runtime stalls; later frames are "late" by ~0.5 s
        fake.publish("alice", v[10:], start=10, events=False)
        sink.wait_for(lambda: len(sink.values()) == 40, 5)
        times = [t for t, p in list(sink.packets) if p.values is not None][10:]
        assert times[-1] - times[0] > 29 / 60 - 0.05  # still paced, not one burst
        assert relay.stats()["subjects"]["alice"]["reanchored"] == 1


# ------------------------------------------------------------------------------------------
# receiver and take recorder
# ------------------------------------------------------------------------------------------
def test_take_recorder_on_real_app_packets(tmp_path):
    records = fixture_records()
    packets = [decode_packet(bytes.fromhex(r["hex"])) for r in records]
    rec = TakeRecorder([tmp_path / "take.csv", tmp_path / "take.json"], "iphone")
    for p in packets + packets[2:4]:  # the repeats are dropped
        rec.add(p)
    rec.add(LiveLinkPacket("d", "iphone", 5375752, 0.0))  # header-only: not a frame
    assert rec.close() == [tmp_path / "take.csv", tmp_path / "take.json"]
    first, last = packets[0].frame_number, packets[-1].frame_number
    n = last - first + 1
    assert rec.frames == n == 17 and rec.counts["held"] == 7
    assert rec.counts["out_of_order"] == 2 and rec.counts["header_only"] == 1
    take = read_livelink_csv(tmp_path / "take.csv", start_timecode="first")
    assert len(take) == n and take.fps == 60
    by_index = {p.frame_number - first: p for p in packets}
    for i in range(n):
        src = by_index.get(i) or by_index[max(j for j in by_index if j < i)]
        np.testing.assert_allclose(take.values[i], src.facecast_values(), atol=5e-9 * math.pi)
    lines = (tmp_path / "take.csv").read_text().splitlines()
    assert lines[1].split(",")[0] == format_timecode(packets[0].seconds % 86400)
    js = read(tmp_path / "take.json")
    np.testing.assert_array_equal(js.values[0], packets[0].facecast_values())
    meta = json.loads((tmp_path / "take.json").read_text())
    assert meta["subject"] == "iphone" and meta["start_timecode"] == pytest.approx(
        packets[0].seconds % 86400)


def test_receiver_counts_garbage_and_filters_subjects():
    seen = []
    with LiveLinkReceiver("127.0.0.1", 0, subjects=["alice"],
                          on_message=lambda lv, t: seen.append(t)) as rx, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        for payload in (b"junk", encode_packet("d", "alice", 1, values=np.zeros(61)),
                        encode_packet("d", "bob", 1), b"\x06\x00", encode_packet("d", "alice", 2)):
            tx.sendto(payload, ("127.0.0.1", rx.port))
        got = []
        deadline = time.monotonic() + 3
        while len(got) < 2 and time.monotonic() < deadline:
            got += rx.receive(0.1)
        st = rx.stats()
        assert [p.frame_number for p, _, _ in got] == [1, 2]
        assert st["decode_errors"] == 2 and st["filtered"] == 1 and st["header_only"] == 1
    assert any("undecodable" in t for t in seen)
    with LiveLinkReceiver("127.0.0.1", 0) as rx:
        with pytest.raises(ValueError, match="cannot listen"):
            LiveLinkReceiver("127.0.0.1", rx.port)
    with pytest.raises(ValueError, match="bad bind address"):
        LiveLinkReceiver("no-such-host.invalid", 0)


# ------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args, expect", [
    (["unreal", "--port", "70000"], "not a UDP port"),
    (["unreal", "--port", "x"], "not a number"),
    (["unreal", "--host", "host:0"], "bad port"),
    (["unreal", "--host", "no-such-host.invalid"], "bad host"),
    (["unreal", "--subject", "a" * 65], "not a valid subject"),
    (["unreal", "--subject", "alice", "--name", "é" * 129], "at most 256"),
    (["unreal", "--name", "x=" + "y" * 300], "at most 256"),
    (["unreal", "--name", "lonely"], "SUBJECT=NAME"),
    (["unreal", "--timecode-offset", "25:00:00:00"], "timecode offset"),
    (["unreal", "--device-id", "d" * 65], "device id"),
    (["livelink-listen", "--port", "-1"], "not a UDP port"),
    (["livelink-listen", "--bind", "no-such-host.invalid"], "bad bind address"),
    (["livelink-listen", "-o", "take.txt"], "unsupported extension"),
    (["livelink-listen", "--channels", "nope"], "unknown channel"),
    (["livelink-listen", "--subject", "z" * 257], "at most 256"),
])
def test_cli_bad_input_exits_2_with_one_line(args, expect):
    line = one_line_error(facecast_cli(*args, "--duration", "0.2"))
    assert expect in line, line


def test_cli_listen_port_in_use_and_wait_timeout():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        line = one_line_error(facecast_cli("livelink-listen", "--bind", "127.0.0.1", "--port",
                                           str(s.getsockname()[1])))
        assert "cannot listen" in line and "in use" in line
    p = facecast_cli("livelink-listen", "--bind", "127.0.0.1", "--port", "0", "--wait", "0.3",
                     "-q")
    assert "within 0.3 s" in one_line_error(p, 1)


def test_cli_relay_and_listen_round_trip(fake, tmp_path):
    """`facecast unreal` and `facecast livelink-listen` as subprocesses: fake runtime ->
    relay -> UDP -> listener -> CSV/JSON files our readers parse."""
    port = free_udp_port()
    listen = subprocess.Popen(
        [sys.executable, "-m", "facecast_runtime.cli", "livelink-listen", "--bind", "127.0.0.1",
         "--port", str(port), "-o", str(tmp_path / "{subject}.csv"),
         "-o", str(tmp_path / "{subject}.json"), "--until-idle", "1.0", "--wait", "30",
         "--format", "jsonl"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_udp_bound(port, listen)
    relay = subprocess.Popen(
        [sys.executable, "-m", "facecast_runtime.cli", "unreal", "--frames", fake.endpoint,
         "--host", f"127.0.0.1:{port}", "--subject", "alice", "--subject", "bob",
         "--name", "bob=Bób", "--duration", "20", "--stats-every", "0.5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        fake.wait_subscribed(b"face.alice", 20)
        fake.wait_subscribed(b"face.bob", 5)
        v = random_frames(45, seed=11)
        fake.publish("alice", v)
        fake.publish("bob", v[:30], session="s2")
        out, err = listen.communicate(timeout=30)
    finally:
        relay.terminate()
        r_out, r_err = relay.communicate(timeout=10)
        if listen.poll() is None:
            listen.kill()
    assert listen.returncode == 0, err
    assert relay.returncode == 0, r_err
    assert "relaying alice, bob" in r_err and "stopped:" in r_err and "Traceback" not in r_err
    a = read_livelink_csv(tmp_path / "alice.csv", start_timecode="first")
    assert len(a) == 45
    np.testing.assert_allclose(a.values, from_livelink(to_livelink(v).astype(np.float32)),
                               atol=1e-8 * math.pi)
    b = read(tmp_path / "Bób.json")
    assert len(b) == 30 and b.subject == "Bób"
    np.testing.assert_array_equal(b.values, from_livelink(to_livelink(v[:30]).astype(np.float32)))
    records = [json.loads(line) for line in out.splitlines()]
    assert {r["subject"] for r in records} == {"alice", "Bób"}
    assert any("values" not in r for r in records)  # the idle keep-alives were heard
    assert "wrote" in err


# ------------------------------------------------------------------------------------------
# end to end with a real runtime
# ------------------------------------------------------------------------------------------
def wait_topic(rc: RuntimeClient, topic: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while topic not in rc.stats()["subscriptions"]:
        if time.monotonic() > deadline:
            raise AssertionError(f"{topic} never subscribed")
        time.sleep(0.02)


def test_relay_against_a_real_runtime_and_a_runtime_restart(tmp_path, sink):
    from facecast_runtime.server import Server

    cport, fport = free_tcp_port(), free_tcp_port()
    listen_port = free_udp_port()
    listener = subprocess.Popen(
        [sys.executable, "-m", "facecast_runtime.cli", "livelink-listen", "--bind", "127.0.0.1",
         "--port", str(listen_port), "-o", str(tmp_path / "take.csv"), "--subject", "alice",
         "--until-idle", "1.5", "--wait", "60", "--format", "none"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_udp_bound(listen_port, listener)  # a slow interpreter start must not lose frames
    relay = None
    try:
        with Server("127.0.0.1", cport, fport) as srv:
            with RuntimeClient(srv.control_endpoint, timeout=30) as rc, \
                    Subscriber(srv.frame_endpoint, ["alice", "bob"]) as truth:
                wait_topic(rc, "face.alice")
                wait_topic(rc, "face.bob")
                relay = UnrealRelay(srv.frame_endpoint, ["alice", "bob"],
                                    [("127.0.0.1", sink.port), ("127.0.0.1", listen_port)],
                                    names={"bob": "Bob_顔"}, device_id="E2E").start()
                wait_topic(rc, "event.alice")  # only the relay subscribes to events
                wait_topic(rc, "event.bob")
                xa, xb = speech_like(1.0), speech_like(0.5, seed=1)
                with rc.open("alice", SR) as sa, rc.open("bob", SR) as sb:
                    for i in range(0, len(xa), 320):
                        sa.push(xa[i:i + 320], wait=False)
                        if i < len(xb):
                            sb.push(xb[i:i + 320], wait=False)
                frames: dict[str, list] = {"alice": [], "bob": []}
                deadline = time.monotonic() + 20
                while (len(frames["alice"]) < 60 or len(frames["bob"]) < 30) \
                        and time.monotonic() < deadline:
                    try:
                        f = truth.recv(timeout=0.5)
                    except TimeoutError:
                        continue
                    frames[f.subject].append(f)
                assert len(frames["alice"]) == 60 and len(frames["bob"]) == 30
                sink.wait_for(lambda: len(sink.values("alice")) == 60
                              and len(sink.values("Bob_顔")) == 30, 10)
                for subject, name in (("alice", "alice"), ("bob", "Bob_顔")):
                    got = sink.values(name)
                    ref = frames[subject]
                    assert [p.frame_number for p in got] == [f.index for f in ref] \
                        == list(range(len(ref)))
                    assert all(p.device_id == "E2E" and p.rate_numerator == 60
                               and p.sub_frame == 0.0 for p in got)
                    np.testing.assert_array_equal(
                        np.stack([p.values for p in got]),
                        expected_packet_values(np.stack([f.vector() for f in ref])))
                    # and by hand, for two channels: weights copied, yaw negated / pi
                    assert got[30 % len(got)].value("JawOpen") == ref[30 % len(ref)]["jawOpen"]
                    assert got[5].value("HeadYaw") == pytest.approx(
                        -ref[5]["headYaw"] / math.pi, abs=1e-7)
                # the stream is idle: keep-alives keep both subjects alive
                sink.wait_for(lambda: len(sink.header_only("Bob_顔")) >= 3
                              and len(sink.header_only("alice")) >= 3, 5)
        alice_ref = np.stack([f.vector() for f in frames["alice"]])
        out, err = listener.communicate(timeout=30)
        assert listener.returncode == 0, err
        take = read_livelink_csv(tmp_path / "take.csv", start_timecode="first")
        assert len(take) == 60
        np.testing.assert_allclose(take.values, alice_ref, atol=1e-7)

        # the runtime restarts on the same ports: the relay picks the new session up
        n_before = len(sink.values("alice"))
        with Server("127.0.0.1", cport, fport) as srv2, \
                RuntimeClient(srv2.control_endpoint, timeout=30) as rc2:
            wait_topic(rc2, "event.alice", 15)
            with rc2.open("alice", SR) as s2:
                s2.push(speech_like(0.3, seed=2))
            sink.wait_for(lambda: len(sink.values("alice")) == n_before + 18, 10)
        again = sink.values("alice")[n_before:]
        assert [p.frame_number for p in again] == list(range(18))
        assert relay._thread.is_alive()
        st = relay.stats()
        assert st["subjects"]["alice"]["packets"] == 78 and st["internal_errors"] == 0
    finally:
        if relay is not None:
            relay.close()
        if listener.poll() is None:
            listener.kill()
            listener.communicate()
