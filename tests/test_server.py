"""The runtime server and the SDK clients over real ZeroMQ sockets on loopback.

Every test runs the real engine with the shipped default model.
"""
from __future__ import annotations

import asyncio
import threading
import time

import msgpack
import numpy as np
import pytest
import zmq

from facecast.client import (
    AsyncSubscriber, CurveKeys, RemoteError, RuntimeClient, StreamEvent, Subscriber,
    load_client_keys,
)
from facecast.schema import CHANNELS, FrameBatch
from facecast.wire import encode_audio, encode_message, make_request
from facecast_runtime.engine import bake
from facecast_runtime.keys import generate_keys
from facecast_runtime.server import Server, ServerError, is_loopback

from helpers import SR, free_port, speech_like


def wait_subscribed(rc: RuntimeClient, topic: str, timeout: float = 5.0,
                    sub: Subscriber | None = None) -> None:
    """Wait until the server's XPUB has seen ``topic`` subscribed. A ZeroMQ SUB (re)sends its
    subscriptions from the thread that uses it, so pass ``sub`` to keep it polled meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if topic in rc.stats()["subscriptions"]:
            return
        if sub is not None:
            sub._sock.poll(10)
        else:
            time.sleep(0.01)
    raise AssertionError(f"subscription {topic} never reached the server")


def collect_session(sub: Subscriber, timeout: float = 10.0) -> tuple[list, StreamEvent]:
    """Frames of one session up to its end event (sub must have events=True)."""
    frames = []
    deadline = time.monotonic() + timeout
    while True:
        msg = sub.recv_message(timeout=max(0.01, deadline - time.monotonic()))
        if isinstance(msg, StreamEvent):
            if msg.event == "end":
                return frames, msg
            continue
        frames.append(msg)


def push_all(session, x: np.ndarray, chunk: int = 320, wait: bool = True) -> None:
    for i in range(0, len(x), chunk):
        session.push(x[i:i + chunk], wait=wait)


def raw_request(endpoint: str, payload: bytes | list[bytes], timeout: float = 5.0,
                kind: int = zmq.DEALER) -> dict | None:
    ctx = zmq.Context.instance()
    s = ctx.socket(kind)
    s.linger = 0
    s.connect(endpoint)
    try:
        if isinstance(payload, list):
            s.send_multipart(payload)
        else:
            s.send(payload)
        if not s.poll(int(timeout * 1000)):
            return None
        return msgpack.unpackb(s.recv_multipart()[-1], raw=False)
    finally:
        s.close(0)


@pytest.fixture(scope="module")
def server():
    srv = Server("127.0.0.1", 0, 0, session_timeout=60).start()
    yield srv
    srv.stop()


@pytest.fixture
def rc(server):
    with RuntimeClient(server.control_endpoint, timeout=10) as c:
        yield c


class Bystander:
    """A session streaming at real time in a thread while a test misbehaves elsewhere."""

    def __init__(self, server: Server, subject: str, seconds: float = 0.6) -> None:
        self.server = server
        self.subject = subject
        self.x = speech_like(seconds, seed=3)
        self.client = RuntimeClient(server.control_endpoint, timeout=10)
        self.sub = Subscriber(server.frame_endpoint, [subject], events=True)
        wait_subscribed(self.client, f"event.{subject}")
        self.session = self.client.open(subject, SR)
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        try:
            chunk = 320
            t0 = time.monotonic()
            for k, i in enumerate(range(0, len(self.x), chunk)):
                delay = t0 + k * chunk / SR - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                rep = self.session.push(self.x[i:i + chunk])
                assert rep["ok"]
            self.session.close()
        except BaseException as e:  # noqa: BLE001 - reported by check()
            self.errors.append(e)

    def __enter__(self) -> "Bystander":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.thread.join(30)

    def check(self) -> None:
        self.thread.join(30)
        assert not self.errors, self.errors
        frames, end = collect_session(self.sub)
        n = int(np.ceil(len(self.x) * 60 / SR))
        assert [f.index for f in frames] == list(range(n)), "bystander lost or reordered frames"
        assert end.data["reason"] == "close"
        self.sub.close()
        self.client.close()


# ---------------------------------------------------------------------------------------------
# basics
# ---------------------------------------------------------------------------------------------
def test_is_loopback():
    for h in ("127.0.0.1", "127.1.2.3", "::1", "localhost"):
        assert is_loopback(h)
    for h in ("0.0.0.0", "*", "10.0.0.5", "::", "example.com", "192.168.1.1"):
        assert not is_loopback(h)


def test_ping_and_schema(rc):
    rep = rc.ping()
    assert rep["ok"] and rep["protocol"] == 1 and rep["curve"] is False
    sch = rc.schema()
    assert sch["channels"] == list(CHANNELS) and sch["value_encoding"] == "float32le"


@pytest.mark.parametrize("workers", [0, 2])
def test_stream_round_trip_matches_bake(workers):
    x = speech_like(1.5)
    with Server("127.0.0.1", 0, 0, workers=workers).start() as srv, \
            RuntimeClient(srv.control_endpoint) as rc, \
            Subscriber(srv.frame_endpoint, ["alice"], events=True) as sub:
        wait_subscribed(rc, "face.alice")
        s = rc.open("alice", SR)
        assert s.topic == "face.alice" and s.fps == 60 and 0 < s.latency_s < 1
        start = sub.recv_message(timeout=5)
        assert isinstance(start, StreamEvent) and start.event == "start"
        assert start.session == s.id and start.data["model"]["name"] == "default"
        push_all(s, x, chunk=333)
        rep = s.close()
        frames, end = collect_session(sub)
        n = int(np.ceil(len(x) * 60 / SR))
        assert rep["frames_total"] == n and rep["frames_dropped"] == 0
        assert end.data["frames"] == n and end.data["reason"] == "close"
        assert [f.index for f in frames] == list(range(n))
        assert all(f.session == s.id and f.subject == "alice" for f in frames)
        assert all(abs(f.time - f.index / 60) < 1e-12 for f in frames)  # audio clock
        got = np.stack([f.vector() for f in frames])
        ref = bake((x, SR))
        assert len(ref) == n
        np.testing.assert_allclose(got, ref.values, atol=1e-4)
        st = srv.stats()
        assert st["frames_published"] == n and st["frames_dropped"] == 0


def test_pipelined_pushes_and_int16(server, rc):
    x = speech_like(1.0, seed=1)
    with Subscriber(server.frame_endpoint, ["pipe"], events=True) as sub:
        wait_subscribed(rc, "face.pipe")
        s = rc.open("pipe", SR, dtype="int16")
        ids = [s.push((x[i:i + 160] * 32767).astype(np.int16), wait=False)
               for i in range(0, len(x), 160)]
        assert all(isinstance(i, int) for i in ids)
        s.close()
        frames, _ = collect_session(sub)
        assert [f.index for f in frames] == list(range(60))
        replies = rc.poll_replies()
        assert {r["id"] for _, r in replies} == set(ids)
        assert sum(r["frames"] for _, r in replies) + 0 <= 60


def test_multi_session_isolation(server):
    subjects = ["iso.a", "iso.b", "iso.c"]
    audio = {s: speech_like(1.0, seed=i) for i, s in enumerate(subjects)}
    subs = {s: Subscriber(server.frame_endpoint, [s], events=True) for s in subjects}
    errors = []

    def run(subject):
        try:
            with RuntimeClient(server.control_endpoint) as c:
                wait_subscribed(c, f"face.{subject}")
                with c.open(subject, SR) as s:
                    push_all(s, audio[subject], chunk=480)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=run, args=(s,)) for s in subjects]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    results = {}
    for s in subjects:
        frames, end = collect_session(subs[s])
        assert {f.subject for f in frames} == {s}
        results[s] = np.stack([f.vector() for f in frames])
        subs[s].close()
    for s in subjects:
        np.testing.assert_allclose(results[s], bake((audio[s], SR)).values, atol=1e-4)
    # a wildcard subscriber would see all three; exact subscribers saw only their own
    assert not np.allclose(results["iso.a"], results["iso.b"])


def test_wildcard_subject_subscription(server, rc):
    with Subscriber(server.frame_endpoint, ["grp.*"]) as sub:
        wait_subscribed(rc, "face.grp")
        for name in ("grp.x", "grpx"):
            with rc.open(name, SR) as s:
                s.push(speech_like(0.2))
        f = sub.recv(timeout=5)
        assert f.subject == "grp.x"
        time.sleep(0.2)
        while True:
            try:
                assert sub.recv(timeout=0.2).subject == "grp.x"
            except TimeoutError:
                break
        assert sub.stats["ignored"] > 0  # grpx matched the ZeroMQ prefix but was filtered


# ---------------------------------------------------------------------------------------------
# bad input: an error to that client, every other session keeps streaming
# ---------------------------------------------------------------------------------------------
def _open_req(**over):
    base = dict(subject="victim", sample_rate=SR)
    base.update(over)
    return encode_message(make_request("open", 1, **{k: v for k, v in base.items()}))


def _push_req(session, data, **over):
    return encode_message(make_request("push", 2, session=session, data=data, **over))


BAD = {
    "malformed_msgpack": (lambda sid: b"\xc1\xc1garbage", "bad_message"),
    "truncated_msgpack": (lambda sid: msgpack.packb({"v": 1, "type": "ping"})[:-2],
                          "bad_message"),
    "not_a_map": (lambda sid: msgpack.packb([1, 2, 3]), "bad_message"),
    "no_version": (lambda sid: msgpack.packb({"type": "ping"}), "version_mismatch"),
    "version_mismatch": (lambda sid: msgpack.packb({"v": 99, "type": "ping", "id": 1}),
                         "version_mismatch"),
    "unknown_type": (lambda sid: msgpack.packb({"v": 1, "type": "explode"}), "unknown_type"),
    "type_not_string": (lambda sid: msgpack.packb({"v": 1, "type": 3}), "bad_field"),
    "subject_wrong_type": (lambda sid: _open_req(subject=5), "bad_field"),
    "subject_invalid": (lambda sid: _open_req(subject="two words"), "bad_field"),
    "subject_missing": (lambda sid: encode_message(make_request("open", 1, sample_rate=SR)),
                        "bad_field"),
    "sample_rate_wrong_type": (lambda sid: _open_req(sample_rate="16000"), "bad_field"),
    "sample_rate_bool": (lambda sid: _open_req(sample_rate=True), "bad_field"),
    "sample_rate_1hz": (lambda sid: _open_req(sample_rate=1), "bad_audio"),
    "sample_rate_10mhz": (lambda sid: _open_req(sample_rate=10_000_000), "bad_audio"),
    "channels_zero": (lambda sid: _open_req(channels=0), "bad_audio"),
    "channels_too_many": (lambda sid: _open_req(channels=1000), "bad_audio"),
    "dtype_unknown": (lambda sid: _open_req(dtype="float64"), "bad_field"),
    "fps_unsupported": (lambda sid: _open_req(fps=45), "bad_field"),
    "model_path": (lambda sid: _open_req(model="../../etc/evil.onnx"), "bad_model"),
    "model_unknown": (lambda sid: _open_req(model="no_such_model"), "bad_model"),
    "engine_option_unknown": (lambda sid: _open_req(options={"bogus": 1}), "session_error"),
    "options_not_map": (lambda sid: _open_req(options=[1]), "bad_field"),
    "unknown_session": (lambda sid: _push_req("0" * 32, b"\0" * 64), "unknown_session"),
    "session_wrong_type": (lambda sid: _push_req(12, b"\0" * 64), "bad_field"),
    "data_wrong_type": (lambda sid: _push_req(sid, "not bytes"), "bad_field"),
    "data_missing": (lambda sid: encode_message(make_request("push", 2, session=sid)),
                     "bad_field"),
    "nan_samples": (lambda sid: _push_req(sid, encode_audio(
        np.array([0.0, np.nan, 0.1], np.float32))), "bad_audio"),
    "inf_samples": (lambda sid: _push_req(sid, encode_audio(
        np.array([np.inf] * 10, np.float32))), "bad_audio"),
    "misaligned_chunk": (lambda sid: _push_req(sid, b"\0" * 7), "bad_audio"),
    "chunk_too_long": (lambda sid: _push_req(sid, b"\0" * (4 * SR * 11)), "too_large"),
    "oversize_message": (lambda sid: _push_req(sid, b"\0" * (5 * 1024 * 1024)), "too_large"),
    "stats_unknown_session": (lambda sid: encode_message(
        make_request("stats", 1, session="nope")), "unknown_session"),
    "close_unknown_session": (lambda sid: encode_message(
        make_request("close", 1, session="nope")), "unknown_session"),
    "option_unknown": (lambda sid: encode_message(make_request(
        "options", 1, session=sid, options={"frobnicate": True})), "bad_field"),
    "option_wrong_type": (lambda sid: encode_message(make_request(
        "options", 1, session=sid, options={"include_channels": "yes"})), "bad_field"),
    "multipart_garbage": (lambda sid: [b"a", b"b", b"c", b"d"], "bad_message"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_answers_error_and_others_keep_streaming(server, rc, case):
    build, code = BAD[case]
    victim = rc.open(f"victim.{case.replace('_', '-')}", SR)
    with Bystander(server, f"by.{case.replace('_', '-')}") as by:
        time.sleep(0.05)
        rep = raw_request(server.control_endpoint, build(victim.id))
        assert rep is not None, "no reply to bad input"
        assert rep["ok"] is False and rep["v"] == 1
        assert rep["error"]["code"] == code, rep
        msg = rep["error"]["message"]
        assert msg and "\n" not in msg and len(msg) <= 500
        if code == "version_mismatch":
            assert rep["protocol"] == 1
        # the victim's own session still works after its bad input
        ok = victim.push(speech_like(0.1))
        assert ok["ok"] and ok["frames"] >= 0
        assert rc.ping()["ok"]
    by.check()
    victim.close()


def test_nan_chunk_rejected_session_continues(server, rc):
    with Subscriber(server.frame_endpoint, ["nanfix"], events=True) as sub:
        wait_subscribed(rc, "face.nanfix")
        s = rc.open("nanfix", SR)
        x = speech_like(0.5)
        s.push(x[:4000])
        bad = x[4000:4320].copy()
        bad[5] = np.nan
        with pytest.raises(RemoteError) as e:
            s.push(bad)
        assert e.value.code == "bad_audio" and "NaN" in e.value.message
        s.push(x[4000:])
        s.close()
        frames, _ = collect_session(sub)
        # the rejected chunk never entered the stream: frames equal the bake of the good audio
        np.testing.assert_allclose(np.stack([f.vector() for f in frames]),
                                   bake((x, SR)).values, atol=1e-4)


def test_zero_length_chunk_is_a_noop(server, rc):
    s = rc.open("zero", SR)
    rep = s.push(np.zeros(0, np.float32))
    assert rep["ok"] and rep["frames"] == 0
    rep = s.push(b"")
    assert rep["ok"] and rep["frames"] == 0
    assert s.close()["frames_total"] == 0


def test_eight_channels_are_mixed_to_mono(server, rc):
    x = speech_like(0.5)
    multi = np.repeat(x[:, None], 8, axis=1)
    with Subscriber(server.frame_endpoint, ["eight"], events=True) as sub:
        wait_subscribed(rc, "face.eight")
        s = rc.open("eight", SR, channels=8, dtype="int16")
        for i in range(0, len(x), 800):
            s.push((multi[i:i + 800] * 32767).astype(np.int16))
        s.close()
        frames, _ = collect_session(sub)
    mono16 = (x * 32767).astype(np.int16)
    ref = bake((mono16, SR))
    np.testing.assert_allclose(np.stack([f.vector() for f in frames]), ref.values, atol=1e-4)


def test_other_sample_rates(server, rc):
    for sr in (8000, 44100, 48000):
        x = speech_like(0.3, sr=sr)
        with rc.open(f"rate{sr}", sr) as s:
            s.push(x)
            rep = s.close()
        assert rep["frames_total"] == int(np.ceil(len(x) * 60 / sr))


def test_oversize_beyond_zmq_cap_drops_only_that_connection(server, rc):
    with Bystander(server, "by.huge") as by:
        rep = raw_request(server.control_endpoint, b"\0" * (17 * 1024 * 1024), timeout=1.0)
        assert rep is None  # ZeroMQ MAXMSGSIZE: the connection is dropped, nothing parsed
        assert rc.ping()["ok"]
    by.check()


def test_req_socket_client(server):
    rep = raw_request(server.control_endpoint,
                      encode_message(make_request("ping", "req-1")), kind=zmq.REQ)
    assert rep["ok"] and rep["id"] == "req-1" and rep["type"] == "ping"


def test_subject_in_use_and_replace(server, rc):
    with Subscriber(server.frame_endpoint, ["dup"], events=True) as sub:
        wait_subscribed(rc, "event.dup")
        a = rc.open("dup", SR)
        with pytest.raises(RemoteError) as e:
            rc.open("dup", SR)
        assert e.value.code == "subject_in_use"
        a.push(speech_like(0.2))
        b = rc.open("dup", SR, replace=True)
        assert b.id != a.id
        with pytest.raises(RemoteError) as e:
            a.push(speech_like(0.1))
        assert e.value.code == "unknown_session"
        events = []
        deadline = time.monotonic() + 5
        while len(events) < 3 and time.monotonic() < deadline:
            m = sub.recv_message(timeout=5)
            if isinstance(m, StreamEvent):
                events.append((m.event, m.session, m.data.get("reason")))
        assert events == [("start", a.id, None), ("end", a.id, "replaced"), ("start", b.id, None)]
        b.close()


@pytest.mark.parametrize("workers", [0, 1])
def test_overloaded_session_is_refused_not_queued_forever(workers):
    with Server("127.0.0.1", 0, 0, workers=workers, max_pending=1).start() as srv, \
            RuntimeClient(srv.control_endpoint, max_in_flight=20, timeout=30) as rc:
        s = rc.open("busy", SR)
        chunk = speech_like(9.0)  # long chunks go to the background thread even with workers=0
        for _ in range(6):
            s.push(chunk, wait=False)
        with pytest.raises(RemoteError) as e:
            rc.wait_all()
        assert e.value.code == "overloaded"
        assert srv.stats()["errors"].get("overloaded", 0) >= 1
        # other sessions still work
        with rc.open("calm", SR) as c:
            assert c.push(speech_like(0.1))["ok"]


def test_long_chunks_do_not_stall_other_sessions(server):
    stop = threading.Event()

    def hog():
        with RuntimeClient(server.control_endpoint, max_in_flight=2, timeout=30) as c:
            s = c.open("hog", SR)
            x = speech_like(9.0)
            while not stop.is_set():
                s.push(x, wait=False)
            s.close()

    t = threading.Thread(target=hog)
    t.start()
    try:
        time.sleep(0.3)
        with RuntimeClient(server.control_endpoint) as c:
            s = c.open("nimble", SR)
            x = speech_like(0.02)
            rtt = []
            for _ in range(100):
                t0 = time.perf_counter()
                s.push(x)
                rtt.append(time.perf_counter() - t0)
                time.sleep(0.01)
            s.close()
    finally:
        stop.set()
        t.join(60)
    # a 9 s chunk takes the engine ~150 ms; run inline it would delay every other push by that
    assert np.percentile(rtt, 90) < 0.04, np.percentile(rtt, [50, 90, 100])


def test_max_sessions():
    with Server("127.0.0.1", 0, 0, max_sessions=2).start() as srv, \
            RuntimeClient(srv.control_endpoint) as rc:
        rc.open("m1", SR)
        rc.open("m2", SR)
        with pytest.raises(RemoteError) as e:
            rc.open("m3", SR)
        assert e.value.code == "too_many_sessions"


def test_idle_session_times_out():
    with Server("127.0.0.1", 0, 0, session_timeout=0.5).start() as srv, \
            RuntimeClient(srv.control_endpoint) as rc, \
            Subscriber(srv.frame_endpoint, ["idle"], events=True) as sub:
        wait_subscribed(rc, "event.idle")
        s = rc.open("idle", SR)
        s.push(speech_like(0.2))
        frames, end = collect_session(sub, timeout=5)
        assert end.data["reason"] == "timeout" and end.data["frames"] == 12
        with pytest.raises(RemoteError) as e:
            s.push(speech_like(0.1))
        assert e.value.code == "unknown_session"


# ---------------------------------------------------------------------------------------------
# bounded queues, slow and dead subscribers
# ---------------------------------------------------------------------------------------------
def test_internal_queue_drops_oldest_and_counts():
    with Server("127.0.0.1", 0, 0, queue_frames=50).start() as srv, \
            RuntimeClient(srv.control_endpoint) as rc, \
            Subscriber(srv.frame_endpoint, ["q"], events=True) as sub:
        wait_subscribed(rc, "face.q")
        s = rc.open("q", SR)
        s.push(speech_like(5.0))  # 300 frames in one batch into a 50-frame queue
        st = rc.stats(s.id)
        rep = s.close()
        assert 290 <= st["frames_produced"] <= 300  # the lookahead's last frames come at close
        assert st["frames_dropped"] >= st["frames_produced"] - 50
        assert rep["frames_dropped"] == st["frames_dropped"]
        frames, end = collect_session(sub)
        # the newest frames survived, in order
        idx = [f.index for f in frames]
        assert idx == sorted(idx) and idx[-1] == 299 and idx[0] >= 240
        assert len(idx) <= 50 + (300 - st["frames_produced"])
        assert end.data["frames_dropped"] == rep["frames_dropped"]
        assert srv.stats()["frames_dropped"] == rep["frames_dropped"]


def _stream_fast(endpoint: str, subject: str, x: np.ndarray) -> float:
    with RuntimeClient(endpoint, max_in_flight=4, timeout=30) as rc:
        t0 = time.perf_counter()
        with rc.open(subject, SR) as s:
            push_all(s, x, chunk=1600, wait=False)
        return time.perf_counter() - t0


def test_dead_subscriber_never_slows_the_runtime():
    x = speech_like(40.0)  # 2400 frames
    n = 2400
    with Server("127.0.0.1", 0, 0, sndhwm=200).start() as srv:
        ctx = zmq.Context.instance()
        live = Subscriber(srv.frame_endpoint, None, events=True, rcvhwm=100000)
        with RuntimeClient(srv.control_endpoint) as rc:
            wait_subscribed(rc, "face.")
        baseline = _stream_fast(srv.control_endpoint, "base", x)
        frames, _ = collect_session(live)
        assert len(frames) == n

        # a subscriber that never reads: tiny queues, tiny kernel buffer
        dead = ctx.socket(zmq.SUB)
        dead.linger = 0
        dead.rcvhwm = 1
        dead.setsockopt(zmq.RCVBUF, 4096)
        dead.setsockopt(zmq.SUBSCRIBE, b"")
        dead.connect(srv.frame_endpoint)
        time.sleep(0.3)
        try:
            slow = _stream_fast(srv.control_endpoint, "slowtest", x)
            frames, end = collect_session(live)
            # the reading subscriber got every frame, the runtime dropped nothing of its own
            assert [f.index for f in frames] == list(range(n))
            assert live.stats["missed"] == 0
            assert end.data["frames_dropped"] == 0
            assert slow < 2 * baseline + 1.0, (slow, baseline)
            assert dead.poll(1000)  # it was connected and subscribed all along
        finally:
            dead.close(0)
            live.close()


# ---------------------------------------------------------------------------------------------
# SDK semantics: latest(), asyncio, reconnect
# ---------------------------------------------------------------------------------------------
def test_latest_semantics(server, rc):
    with Subscriber(server.frame_endpoint, ["late"]) as sub:
        t0 = time.monotonic()
        assert sub.latest(timeout=0.2) is None
        el = time.monotonic() - t0
        assert 0.18 <= el < 1.0
        assert sub.latest(timeout=0) is None
        wait_subscribed(rc, "face.late")
        with rc.open("late", SR) as s:
            s.push(speech_like(1.0))
        time.sleep(0.3)
        f = sub.latest(timeout=0)
        assert f is not None and f.index == 59  # the newest; older ones were skipped
        assert sub.latest(timeout=0) is None    # nothing new since
        assert sub.last("late").index == 59 and sub.last().index == 59
        # latest waits for a frame that arrives within the timeout
        with rc.open("late", SR) as s:
            s.push(speech_like(0.1))
            g = sub.latest(timeout=2.0)
        assert g is not None and g.session == s.id


def test_recv_timeout(server):
    with Subscriber(server.frame_endpoint, ["nobody"]) as sub:
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            sub.recv(timeout=0.2)
        assert time.monotonic() - t0 < 1.0


def test_async_subscriber(server, rc):
    x = speech_like(0.5)

    async def main():
        async with AsyncSubscriber(server.frame_endpoint, ["asy"]) as sub:
            assert await sub.latest(timeout=0.05) is None
            wait_subscribed(rc, "face.asy")
            with rc.open("asy", SR) as s:
                s.push(x)
            got = []
            async for f in sub:
                got.append(f.index)
                if len(got) == 30:
                    break
            with pytest.raises(TimeoutError):
                for _ in range(100):
                    await sub.recv(timeout=0.3)
            return got

    assert asyncio.run(main()) == list(range(30))


def test_subscriber_reconnects_after_runtime_restart():
    cport, fport = free_port(), free_port()
    with Subscriber(f"tcp://127.0.0.1:{fport}", ["phoenix"], events=True) as sub:
        ids = []
        for round_ in range(2):
            srv = Server("127.0.0.1", cport, fport).start()
            try:
                with RuntimeClient(srv.control_endpoint) as rc:
                    wait_subscribed(rc, "face.phoenix", sub=sub)
                    with rc.open("phoenix", SR) as s:
                        s.push(speech_like(0.3))
                    ids.append(s.id)
                frames, end = collect_session(sub)
                assert len(frames) == 18 and end.session == s.id
            finally:
                srv.stop()
        assert ids[0] != ids[1]


def test_runtime_client_times_out_without_server():
    with RuntimeClient(f"tcp://127.0.0.1:{free_port()}", timeout=0.3) as rc:
        with pytest.raises(TimeoutError, match="facecast serve"):
            rc.ping()


# ---------------------------------------------------------------------------------------------
# security
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("host", ["0.0.0.0", "*", "10.1.2.3"])
def test_public_bind_without_keys_is_refused(host):
    with pytest.raises(ServerError, match="CURVE"):
        Server(host, 0, 0)


def test_curve_round_trip_and_unauthorized_clients(tmp_path):
    generate_keys(tmp_path / "keys", ["client", "other"])
    generate_keys(tmp_path / "stranger")
    # revoke "other": only listed public keys are admitted
    (tmp_path / "keys" / "authorized_clients" / "other.key").unlink()
    keys = load_client_keys(tmp_path / "keys")
    with Server("127.0.0.1", 0, 0, curve_dir=tmp_path / "keys").start() as srv:
        with RuntimeClient(srv.control_endpoint, curve=tmp_path / "keys") as rc, \
                Subscriber(srv.frame_endpoint, ["sec"], events=True, curve=keys) as sub:
            assert rc.ping()["curve"] is True
            wait_subscribed(rc, "face.sec")
            with rc.open("sec", SR) as s:
                s.push(speech_like(0.5))
            frames, _ = collect_session(sub)
            assert len(frames) == 30
        # no keys, revoked keys, keys of another installation: no reply at all
        for curve in (None, load_client_keys(tmp_path / "keys", "other"),
                      load_client_keys(tmp_path / "stranger")):
            with RuntimeClient(srv.control_endpoint, curve=curve, timeout=0.5) as bad:
                with pytest.raises(TimeoutError):
                    bad.ping()
        with Subscriber(srv.frame_endpoint, ["sec"], curve=None) as eavesdropper:
            with RuntimeClient(srv.control_endpoint, curve=keys) as rc:
                with rc.open("sec", SR) as s:
                    s.push(speech_like(0.3))
            with pytest.raises(TimeoutError):
                eavesdropper.recv(timeout=0.5)


def test_curve_keys_must_exist(tmp_path):
    with pytest.raises(ServerError, match="server.key_secret"):
        Server("0.0.0.0", 0, 0, curve_dir=tmp_path)
    assert isinstance(load_client_keys(generate_keys(tmp_path / "k")["server"].parent),
                      CurveKeys)


def test_address_in_use_is_a_clean_error(server):
    port = int(server.control_endpoint.rsplit(":", 1)[1])
    with pytest.raises(ServerError, match="cannot bind"):
        Server("127.0.0.1", port, 0).start()


def test_stats_report_sessions(server, rc):
    s = rc.open("stat", SR)
    s.push(speech_like(0.5))
    st = rc.stats()
    mine = [x for x in st["sessions"] if x["session"] == s.id]
    assert mine and mine[0]["frames_produced"] >= 25 and mine[0]["subject"] == "stat"
    assert mine[0]["frames_published"] == mine[0]["frames_produced"]
    assert "frames_dropped" in mine[0] and st["protocol"] == 1
    one = s.stats()
    assert one["session"] == s.id and one["audio_s"] == pytest.approx(0.5)
    s.close()


def test_options_include_channels_live(server, rc):
    with Subscriber(server.frame_endpoint, ["opt"]) as sub:
        wait_subscribed(rc, "face.opt")
        s = rc.open("opt", SR)
        s.push(speech_like(0.2))
        raw = sub._sock.recv_multipart()
        assert "channels" not in msgpack.unpackb(raw[1], raw=False)
        rep = s.options(include_channels=True)
        assert rep["options"] == {"include_channels": True}
        time.sleep(0.1)
        while sub._sock.poll(0):
            sub._sock.recv_multipart()
        s.push(speech_like(0.2))
        m = msgpack.unpackb(sub._sock.recv_multipart()[1], raw=False)
        assert m["channels"] == list(CHANNELS)
        s.close()


def test_frames_precede_their_push_reply(server, rc):
    with Subscriber(server.frame_endpoint, ["order"]) as sub:
        wait_subscribed(rc, "face.order")
        s = rc.open("order", SR)
        x = speech_like(1.0)
        for i in range(0, len(x), 800):
            rep = s.push(x[i:i + 800])
            for idx in range(rep["start_index"], rep["start_index"] + rep["frames"]):
                # already on the wire when the reply arrived: receivable almost at once
                assert sub.recv(timeout=0.5).index == idx
        s.close()


def test_raw_client_written_from_the_spec(server):
    """docs/protocol.md §8 with nothing but pyzmq, msgpack and struct (no SDK code)."""
    import struct

    ctx = zmq.Context.instance()
    dealer = ctx.socket(zmq.DEALER)
    sub = ctx.socket(zmq.SUB)
    for s in (dealer, sub):
        s.linger = 0
    dealer.connect(server.control_endpoint)
    sub.connect(server.frame_endpoint)
    sub.setsockopt(zmq.SUBSCRIBE, b"face.rawclient")
    sub.setsockopt(zmq.SUBSCRIBE, b"event.rawclient")

    def call(msg):
        dealer.send(msgpack.packb(msg, use_bin_type=True))
        assert dealer.poll(5000)
        return msgpack.unpackb(dealer.recv(), raw=False)

    try:
        deadline = time.monotonic() + 5
        while "face.rawclient" not in call({"v": 1, "type": "stats"})["subscriptions"]:
            sub.poll(10)
            assert time.monotonic() < deadline
        rep = call({"v": 1, "type": "open", "id": 1, "subject": "rawclient",
                    "sample_rate": 16000})
        assert rep["ok"] and rep["id"] == 1
        sid = rep["session"]
        x = speech_like(0.5)
        for k, i in enumerate(range(0, len(x), 320)):
            chunk = x[i:i + 320]
            data = struct.pack(f"<{len(chunk)}f", *chunk.tolist())
            r = call({"v": 1, "type": "push", "id": 100 + k, "session": sid, "data": data})
            assert r["ok"] and r["id"] == 100 + k
        r = call({"v": 1, "type": "close", "id": 2, "session": sid})
        assert r["ok"] and r["frames_total"] == 30
        got, events = [], []
        while len(events) < 2:
            assert sub.poll(5000)
            topic, body = sub.recv_multipart()
            m = msgpack.unpackb(body, raw=False)
            assert m["v"] == 1
            if topic == b"event.rawclient":
                events.append(m["event"])
            elif topic == b"face.rawclient":
                assert m["schema_hash"] == "c949302ab8109b70"
                vals = struct.unpack("<59f", m["values"])
                got.append((m["index"], m["time"], vals))
        assert events == ["start", "end"]
        assert [g[0] for g in got] == list(range(30))
        assert all(t == i / 60 for i, t, _ in got)
        ref = bake((x, SR)).values
        np.testing.assert_allclose(np.array([g[2] for g in got]), ref, atol=1e-4)
    finally:
        dealer.close(0)
        sub.close(0)


def test_subscriber_reports_the_connection_state():
    fport = free_port()
    sub = Subscriber(f"tcp://127.0.0.1:{fport}", ["x"])

    def wait_for(connected: bool) -> dict:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            link = sub.connection()
            if link["connected"] == connected:
                return link
            time.sleep(0.02)
        raise AssertionError(f"connected never became {connected}: {sub.connection()}")

    try:
        time.sleep(0.2)
        assert sub.connection() == {"connected": False, "ever": False, "disconnects": 0}
        assert sub.connected is False
        with Server("127.0.0.1", 0, fport).start():
            assert wait_for(True) == {"connected": True, "ever": True, "disconnects": 0}
            assert sub.connected is True
        assert wait_for(False) == {"connected": False, "ever": True, "disconnects": 1}
        with Server("127.0.0.1", 0, fport).start():        # ZeroMQ reconnects by itself
            assert wait_for(True)["disconnects"] == 1
    finally:
        sub.close()
    with pytest.raises(RuntimeError, match="closed"):
        sub.connection()


def test_concurrent_pushes_are_batched_and_equal_each_session_alone(monkeypatch):
    """Pushes of many sessions that arrive together run in phases with the model batched
    across sessions; every session's frames are bitwise those of its chunks pushed to a
    Session alone, with per-session rates, models and options, and a bad chunk fails only
    its own push."""
    from facecast_runtime.engine import Session
    from facecast_runtime.model import ModelRunner

    sizes: list[int] = []
    run_batch = ModelRunner.run_batch

    def spy(runners, features):
        sizes.append(len(runners))
        return run_batch(runners, features)

    monkeypatch.setattr(ModelRunner, "run_batch", staticmethod(spy))
    cases = [{"subject": f"bat.{i}", "sr": SR, "model": "default", "options": {"seed": i}}
             for i in range(7)]
    cases += [{"subject": "bat.hi", "sr": 48000, "model": "default", "options": {}},
              {"subject": "bat.la", "sr": SR, "model": "la120", "options": {}},
              {"subject": "bat.plain", "sr": SR, "model": "default",
               "options": {"expressive": False}}]
    n_chunks, bad_at, emotion_at = 40, 17, 23
    for i, c in enumerate(cases):
        x = speech_like(n_chunks * 0.02, sr=c["sr"], seed=10 + i)
        c["chunks"] = np.array_split(x, n_chunks)
    with Server("127.0.0.1", 0, 0).start() as srv, \
            RuntimeClient(srv.control_endpoint, max_in_flight=1000) as rc, \
            Subscriber(srv.frame_endpoint, [c["subject"] for c in cases], events=True) as sub:
        for c in cases:
            wait_subscribed(rc, f"event.{c['subject']}", sub=sub)
        sessions = [rc.open(c["subject"], c["sr"], model=c["model"], options=c["options"])
                    for c in cases]
        for k in range(n_chunks):
            if k == emotion_at:  # a non-push request between pipelined pushes keeps its place
                sessions[1].set_emotion("happy", 0.8)
            for s, c in zip(sessions, cases):
                chunk = c["chunks"][k]
                if k == bad_at and s is sessions[2]:
                    chunk = chunk.copy()
                    chunk[3] = np.nan
                rc.send_async("push", session=s.id, data=encode_audio(chunk))
        with pytest.raises(RemoteError) as e:
            rc.wait_all()
        assert e.value.code == "bad_audio" and e.value.more == 0
        rc.wait_all()  # the only error was that one
        for s in sessions:
            s.close()
        got: dict[str, list] = {c["subject"]: [] for c in cases}
        ended = 0
        while ended < len(cases):
            msg = sub.recv_message(timeout=10)
            if isinstance(msg, StreamEvent):
                ended += msg.event == "end"
            else:
                got[msg.subject].append(msg)
    assert max(sizes, default=0) > 1, "no model call was batched across sessions"
    for i, c in enumerate(cases):
        ref = Session(c["model"], sample_rate=c["sr"], subject=c["subject"],
                      options=c["options"] or None)
        parts = []
        for k, chunk in enumerate(c["chunks"]):
            if k == emotion_at and i == 1:
                ref.set_options({"emotion": {"name": "happy", "intensity": 0.8}})
            if not (k == bad_at and i == 2):  # the rejected chunk never entered the stream
                parts.append(ref.push(chunk))
        parts.append(ref.flush())
        want = FrameBatch.concat(parts)
        frames = got[c["subject"]]
        assert [f.index for f in frames] == list(range(len(want))), c["subject"]
        np.testing.assert_array_equal(np.stack([f.vector() for f in frames]), want.values,
                                      err_msg=c["subject"])
