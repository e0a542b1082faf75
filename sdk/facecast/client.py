"""facecast SDK clients: frame subscribers (blocking and asyncio) and the ingest client.

Subscribing (what a game loop or a bridge wants)::

    from facecast.client import Subscriber
    with Subscriber(subjects=["alice"]) as sub:      # tcp://127.0.0.1:5571 by default
        for frame in sub:                             # blocking iterator of StreamFrame
            print(frame.index, frame.time, frame["jawOpen"])

    sub = Subscriber(subjects=["alice"])
    frame = sub.latest(timeout=0.0)                   # newest new frame, or None (game tick)

    async with AsyncSubscriber(subjects=["alice"]) as sub:
        async for frame in sub:
            ...

Ingesting audio::

    from facecast.client import RuntimeClient
    with RuntimeClient() as rc:                       # tcp://127.0.0.1:5570 by default
        with rc.open("alice", sample_rate=16000) as session:
            session.push(samples)                     # float32/int16 numpy array
        # leaving the block closes the session (the server flushes the last frames)

ZeroMQ reconnects both sockets by itself: a subscriber keeps working across a runtime restart
(it resubscribes on reconnect); an ingest client's open sessions die with the runtime, so
further pushes raise :class:`~facecast.wire.RemoteError` ``unknown_session``.

Both clients accept CURVE keys (``curve=CurveKeys(...)`` or ``curve="DIR"`` as written by
``facecast keygen DIR``) for runtimes bound to non-loopback addresses.

Depends on numpy, pyzmq and msgpack only.
"""
from __future__ import annotations

import asyncio
import collections
import itertools
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Iterable, Iterator, Mapping

import numpy as np
import zmq

from .wire import (
    AUDIO_DTYPES, DEFAULT_CONTROL_ADDRESS, DEFAULT_FRAME_ADDRESS, EVENT_TOPIC_PREFIX,
    FRAME_TOPIC_PREFIX, HARD_MAX_MESSAGE_BYTES, ProtocolError, RemoteError, StreamEvent,
    StreamFrame, check_subject, decode_published, decode_reply, encode_audio, encode_message,
    make_request,
)

__all__ = [
    "CurveKeys", "load_client_keys", "Subscriber", "AsyncSubscriber", "RuntimeClient",
    "RemoteSession", "Sender", "RemoteError", "StreamFrame", "StreamEvent",
]


# --------------------------------------------------------------------------------------------
# CURVE keys
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CurveKeys:
    """A client's CURVE key pair plus the server's public key (Z85 text or bytes)."""

    public: bytes
    secret: bytes
    server_public: bytes

    @classmethod
    def from_dir(cls, directory: str | os.PathLike, name: str = "client") -> "CurveKeys":
        return load_client_keys(directory, name)

    def apply(self, sock: zmq.Socket) -> None:
        sock.curve_publickey = self.public
        sock.curve_secretkey = self.secret
        sock.curve_serverkey = self.server_public


def load_client_keys(directory: str | os.PathLike, name: str = "client") -> CurveKeys:
    """Load ``DIR/<name>.key_secret`` and ``DIR/server.key`` (the ``facecast keygen`` layout)."""
    import zmq.auth

    d = Path(directory)
    secret_file = d / f"{name}.key_secret"
    server_file = d / "server.key"
    for f in (secret_file, server_file):
        if not f.is_file():
            raise FileNotFoundError(f"CURVE key file {f} not found (create keys with "
                                    f"'facecast keygen {d}')")
    try:
        pub, sec = zmq.auth.load_certificate(str(secret_file))
        spub, _ = zmq.auth.load_certificate(str(server_file))
    except Exception as e:
        raise ValueError(f"cannot read CURVE keys in {d}: {e}") from None
    if not sec:
        raise ValueError(f"{secret_file} holds no secret key")
    return CurveKeys(pub, sec, spub)


def _curve(curve: CurveKeys | str | os.PathLike | None) -> CurveKeys | None:
    if curve is None or isinstance(curve, CurveKeys):
        return curve
    return load_client_keys(curve)


def _tune(sock: zmq.Socket) -> None:
    sock.linger = 0
    sock.setsockopt(zmq.RECONNECT_IVL, 100)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
    sock.setsockopt(zmq.HEARTBEAT_IVL, 1000)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3000)
    sock.setsockopt(zmq.HEARTBEAT_TTL, 3000)


# --------------------------------------------------------------------------------------------
# subscribers
# --------------------------------------------------------------------------------------------
class _SubscriberCore:
    """Topic filtering, decoding and bookkeeping shared by the sync and async subscribers."""

    def _setup(self, subjects: str | Iterable[str] | None, events: bool) -> None:
        if isinstance(subjects, str):
            subjects = [subjects]
        subjects = list(subjects) if subjects is not None else []
        self.exact: set[bytes] = set()
        self.prefixes: list[bytes] = []
        subs: list[bytes] = []
        kinds = [FRAME_TOPIC_PREFIX] + ([EVENT_TOPIC_PREFIX] if events else [])
        if not subjects or "*" in subjects:
            for k in kinds:
                p = k.encode()
                self.prefixes.append(p)
                subs.append(p)
        else:
            for s in subjects:
                wildcard = s.endswith(".*")
                name = s[:-2] if wildcard else s
                check_subject(name)
                for k in kinds:
                    t = (k + name).encode()
                    subs.append(t)
                    if wildcard:
                        self.prefixes.append(t + b".")
                    else:
                        self.exact.add(t)
        self.subscriptions = subs
        self.subjects = subjects
        self.events_enabled = events
        #: Counters: frames received, gaps (frames missing by index within a session, e.g.
        #: dropped by a full queue), decode errors, events, messages ignored by topic filter.
        self.stats = {"frames": 0, "missed": 0, "decode_errors": 0, "events": 0, "ignored": 0}
        self._last_index: dict[str, tuple[str, int]] = {}
        self._last: dict[str, StreamFrame] = {}
        self._fresh: dict[str, StreamFrame] = {}
        self._fresh_order: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._events: collections.deque[StreamEvent] = collections.deque(maxlen=1000)

    def _wanted(self, topic: bytes) -> bool:
        if topic in self.exact:
            return True
        return any(topic.startswith(p) for p in self.prefixes)

    def _accept(self, parts: list[bytes]) -> StreamFrame | StreamEvent | None:
        if len(parts) != 2 or not self._wanted(parts[0]):
            self.stats["ignored"] += 1
            return None
        try:
            msg = decode_published(parts[0], parts[1], time.monotonic())
        except (ProtocolError, ValueError, TypeError):
            self.stats["decode_errors"] += 1
            return None
        if isinstance(msg, StreamEvent):
            self.stats["events"] += 1
            if msg.event == "start":
                self._last_index.pop(msg.subject, None)
            return msg if self.events_enabled else None
        self.stats["frames"] += 1
        prev = self._last_index.get(msg.subject)
        if prev is not None and prev[0] == msg.session and msg.index > prev[1] + 1:
            self.stats["missed"] += msg.index - prev[1] - 1
        self._last_index[msg.subject] = (msg.session, msg.index)
        self._last[msg.subject] = msg
        return msg

    def _stash(self, msg: StreamFrame | StreamEvent | None) -> None:
        """Keep a drained message: a frame as its subject's newest, an event in the queue."""
        if isinstance(msg, StreamFrame):
            self._note_fresh(msg)
        elif msg is not None:
            self._events.append(msg)

    def _note_fresh(self, frame: StreamFrame) -> None:
        self._fresh[frame.subject] = frame
        self._fresh_order.pop(frame.subject, None)
        self._fresh_order[frame.subject] = None

    def _take_fresh(self, subject: str | None) -> StreamFrame | None:
        if subject is None:
            if not self._fresh_order:
                return None
            subject = next(reversed(self._fresh_order))
        f = self._fresh.pop(subject, None)
        if f is not None:
            self._fresh_order.pop(subject, None)
        return f

    def last(self, subject: str | None = None) -> StreamFrame | None:
        """The most recent frame received so far (of ``subject``, or of any subject)."""
        if subject is not None:
            return self._last.get(subject)
        if not self._last:
            return None
        return max(self._last.values(), key=lambda f: f.received)

    @property
    def events(self) -> list[StreamEvent]:
        """Lifecycle events seen while draining in :meth:`latest` (``events=True`` only)."""
        return list(self._events)


_LINK_EVENTS = zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_CLOSED


def _make_sub(ctx: zmq.Context, address: str, core: _SubscriberCore,
              curve: CurveKeys | None, rcvhwm: int,
              monitor: bool = False) -> tuple[zmq.Socket, zmq.Socket | None]:
    """A SUB socket connected to ``address``, and (``monitor``) its monitor socket, attached
    before connecting so that the first connection is never missed."""
    sock = ctx.socket(zmq.SUB)
    _tune(sock)
    sock.rcvhwm = rcvhwm
    sock.setsockopt(zmq.MAXMSGSIZE, HARD_MAX_MESSAGE_BYTES)
    if curve is not None:
        curve.apply(sock)
    for t in core.subscriptions:
        sock.setsockopt(zmq.SUBSCRIBE, t)
    mon = sock.get_monitor_socket(_LINK_EVENTS) if monitor else None
    sock.connect(address)
    return sock, mon


class Subscriber(_SubscriberCore):
    """Blocking frame subscriber.

    ``subjects``: subject names (exact), ``"name.*"`` (every subject under ``name.``), or
    None / ``"*"`` for all. ``events=True`` also delivers :class:`StreamEvent` objects from
    :meth:`recv_message`. Not thread-safe: use one Subscriber per thread.
    """

    def __init__(self, address: str = DEFAULT_FRAME_ADDRESS,
                 subjects: str | Iterable[str] | None = None, *, events: bool = False,
                 curve: CurveKeys | str | os.PathLike | None = None,
                 context: zmq.Context | None = None, rcvhwm: int = 1000) -> None:
        self._setup(subjects, events)
        self.address = address
        self._ctx = context or zmq.Context.instance()
        self._sock, self._monitor = _make_sub(self._ctx, address, self, _curve(curve), rcvhwm,
                                              monitor=True)
        self._closed = False
        self._link = {"connected": False, "ever": False, "disconnects": 0}

    # -- connection state -----------------------------------------------------------------------
    def connection(self) -> dict[str, Any]:
        """The transport's state, read without blocking: ``{"connected": bool, "ever": bool,
        "disconnects": int}``. ``connected`` is True while a TCP connection to the runtime is
        up (ZeroMQ reconnects by itself; this tells "waiting for frames" from "the runtime is
        gone"), ``ever`` once one has been up, ``disconnects`` counts the losses. A socket
        monitor records the events; each call reads what arrived since the last."""
        if self._closed:
            raise RuntimeError("subscriber is closed")
        from zmq.utils.monitor import recv_monitor_message

        link = self._link
        while True:
            try:
                ev = recv_monitor_message(self._monitor, zmq.NOBLOCK)
            except zmq.ZMQError:        # zmq.Again: nothing new
                break
            kind = ev.get("event")
            if kind == zmq.EVENT_CONNECTED:
                link["connected"] = link["ever"] = True
            elif kind in (zmq.EVENT_DISCONNECTED, zmq.EVENT_CLOSED):
                if link["connected"]:
                    link["disconnects"] += 1
                link["connected"] = False
        return dict(link)

    @property
    def connected(self) -> bool:
        """Whether a connection to the runtime is up now (see :meth:`connection`)."""
        return bool(self.connection()["connected"])

    # -- receiving ------------------------------------------------------------------------------
    def _poll(self, timeout_ms: float | None) -> bool:
        if self._closed:
            raise RuntimeError("subscriber is closed")
        return bool(self._sock.poll(None if timeout_ms is None else max(0, int(timeout_ms))))

    def recv_message(self, timeout: float | None = None) -> StreamFrame | StreamEvent:
        """Next frame or event in arrival order; raises TimeoutError after ``timeout`` s."""
        if self._events:
            return self._events.popleft()
        return self._recv_frame_or_event(timeout)

    def recv(self, timeout: float | None = None) -> StreamFrame:
        """Next frame in arrival order (events are queued for recv_message); TimeoutError
        after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            msg = self._recv_frame_or_event(remaining)
            if isinstance(msg, StreamFrame):
                return msg
            self._events.append(msg)

    def _recv_frame_or_event(self, timeout: float | None) -> StreamFrame | StreamEvent:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else (deadline - time.monotonic()) * 1000
            if not self._poll(1000 if remaining is None else max(0.0, remaining)):
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"no frame within {timeout} s from {self.address}")
                continue
            while True:
                try:
                    parts = self._sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                msg = self._accept(parts)
                if msg is not None:
                    return msg

    def _drain(self) -> None:
        while True:
            try:
                parts = self._sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._stash(self._accept(parts))

    def latest(self, timeout: float = 0.0, subject: str | None = None) -> StreamFrame | None:
        """The newest frame that arrived since the last call (per subject), or None.

        Drains every queued message (older frames are discarded), returns the newest frame of
        ``subject`` (or of the subject heard from most recently) not yet returned, waiting up to
        ``timeout`` seconds when there is none. Never blocks longer than ``timeout``.
        """
        if self._closed:
            raise RuntimeError("subscriber is closed")
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            self._drain()
            f = self._take_fresh(subject)
            if f is not None:
                return f
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._poll(remaining * 1000):
                self._drain()
                return self._take_fresh(subject)

    def latest_all(self, timeout: float = 0.0) -> dict[str, StreamFrame]:
        """Newest new frame of every subject (drains the queue; waits up to timeout for one)."""
        first = self.latest(timeout)
        out = {} if first is None else {first.subject: first}
        while True:
            f = self._take_fresh(None)
            if f is None:
                return out
            out[f.subject] = f

    def __iter__(self) -> Iterator[StreamFrame]:
        while not self._closed:
            yield self.recv()

    # -- lifecycle --------------------------------------------------------------------------
    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._monitor is not None:
                try:
                    self._sock.disable_monitor()
                except zmq.ZMQError:
                    pass
                self._monitor.close(0)
            self._sock.close(0)

    def __enter__(self) -> "Subscriber":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if not self._closed:
                if self._monitor is not None:
                    self._monitor.close(0)
                self._sock.close(0)
        except Exception:
            pass


class AsyncSubscriber(_SubscriberCore):
    """asyncio frame subscriber: ``async for frame in sub``, ``await sub.recv(timeout)``,
    ``await sub.latest(timeout)``. Same arguments as :class:`Subscriber`."""

    def __init__(self, address: str = DEFAULT_FRAME_ADDRESS,
                 subjects: str | Iterable[str] | None = None, *, events: bool = False,
                 curve: CurveKeys | str | os.PathLike | None = None,
                 context: Any = None, rcvhwm: int = 1000) -> None:
        import zmq.asyncio

        self._setup(subjects, events)
        self.address = address
        self._ctx = context or zmq.asyncio.Context.instance()
        self._sock, _ = _make_sub(self._ctx, address, self, _curve(curve), rcvhwm)
        self._closed = False

    async def _recv_any(self, timeout: float | None) -> StreamFrame | StreamEvent:
        if self._closed:
            raise RuntimeError("subscriber is closed")
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                # last non-blocking attempt
                try:
                    parts = await self._sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    raise TimeoutError(f"no frame within {timeout} s from {self.address}") \
                        from None
            else:
                try:
                    parts = await asyncio.wait_for(self._sock.recv_multipart(), remaining)
                except asyncio.TimeoutError:
                    raise TimeoutError(f"no frame within {timeout} s from {self.address}") \
                        from None
            msg = self._accept(parts)
            if msg is not None:
                return msg

    async def recv_message(self, timeout: float | None = None) -> StreamFrame | StreamEvent:
        if self._events:
            return self._events.popleft()
        return await self._recv_any(timeout)

    async def recv(self, timeout: float | None = None) -> StreamFrame:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - loop.time())
            msg = await self._recv_any(remaining)
            if isinstance(msg, StreamFrame):
                return msg
            self._events.append(msg)

    async def _drain(self) -> None:
        while True:
            try:
                parts = await self._sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._stash(self._accept(parts))

    async def latest(self, timeout: float = 0.0, subject: str | None = None
                     ) -> StreamFrame | None:
        """Async :meth:`Subscriber.latest`."""
        if self._closed:
            raise RuntimeError("subscriber is closed")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout)
        while True:
            await self._drain()
            f = self._take_fresh(subject)
            if f is not None:
                return f
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            if not await self._sock.poll(max(1, int(remaining * 1000))):
                await self._drain()
                return self._take_fresh(subject)

    def __aiter__(self) -> AsyncIterator[StreamFrame]:
        return self._aiter()

    async def _aiter(self) -> AsyncIterator[StreamFrame]:
        while not self._closed:
            yield await self.recv()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._sock.close(0)

    async def __aenter__(self) -> "AsyncSubscriber":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()


# --------------------------------------------------------------------------------------------
# ingest client
# --------------------------------------------------------------------------------------------
class RuntimeClient:
    """Control/ingest client (a DEALER socket): open sessions, push audio, close, stats.

    Requests carry an ``id``; replies are matched by it, so pushes can be pipelined
    (``push(..., wait=False)``, at most ``max_in_flight`` unanswered). A request not answered
    within ``timeout`` seconds raises TimeoutError. Not thread-safe.
    """

    def __init__(self, address: str = DEFAULT_CONTROL_ADDRESS, *,
                 curve: CurveKeys | str | os.PathLike | None = None, timeout: float = 10.0,
                 context: zmq.Context | None = None, max_in_flight: int = 8) -> None:
        self.address = address
        self.timeout = timeout
        self.max_in_flight = max(1, int(max_in_flight))
        self._ctx = context or zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.DEALER)
        _tune(self._sock)
        self._sock.sndhwm = 1000
        keys = _curve(curve)
        if keys is not None:
            keys.apply(self._sock)
        self._sock.connect(address)
        self._ids = itertools.count(1)
        self._replies: dict[int, dict] = {}
        self._waiting: set[int] = set()
        #: id -> (session id, monotonic send time) of pushes sent with wait=False
        self._async: dict[int, tuple[str, float]] = {}
        self._async_errors: list[tuple[str, RemoteError]] = []
        self._async_replies: collections.deque[tuple[float, dict]] = collections.deque(
            maxlen=100_000)
        self._closed = False

    # -- plumbing ---------------------------------------------------------------------------
    def _send(self, msg: dict) -> None:
        data = encode_message(msg)
        try:
            self._sock.send(data, zmq.NOBLOCK)
        except zmq.Again:
            raise TimeoutError(f"cannot send to {self.address} (runtime not reachable)") \
                from None

    def _pump(self, timeout_ms: float) -> bool:
        """Receive replies for up to timeout_ms; True if at least one arrived."""
        if not self._sock.poll(max(0, int(timeout_ms))):
            return False
        while True:
            try:
                frames = self._sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return True
            try:
                rep = decode_reply(frames[-1])
            except ProtocolError:
                continue
            rid = rep.get("id")
            if rid in self._async:
                sid, _ = self._async.pop(rid)
                self._async_replies.append((time.monotonic(), rep))
                if not rep["ok"]:
                    err = rep.get("error") or {}
                    self._async_errors.append((sid, RemoteError(
                        str(err.get("code", "internal")), str(err.get("message", "")), rep)))
            elif rid in self._waiting:
                self._replies[rid] = rep

    def _raise_async(self, session: str | None = None) -> None:
        """Raise the first pending error of a wait=False request (of ``session``, or of any
        session); the other pending errors of that session are counted in ``err.more`` and
        forgotten."""
        mine = [(i, e) for i, (sid, e) in enumerate(self._async_errors)
                if session is None or sid == session]
        if not mine:
            return
        sid = self._async_errors[mine[0][0]][0]
        err = mine[0][1]
        before = len(self._async_errors)
        self._async_errors = [(s, e) for s, e in self._async_errors if s != sid]
        err.more = before - len(self._async_errors) - 1  # type: ignore[attr-defined]
        raise err

    def request(self, type: str, *, timeout: float | None = None, **fields: Any) -> dict:
        """Send one request and wait for its reply; raises RemoteError on an error reply."""
        if self._closed:
            raise RuntimeError("client is closed")
        rid = next(self._ids)
        self._send(make_request(type, rid, **fields))
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        self._waiting.add(rid)
        try:
            while rid not in self._replies:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no reply to {type!r} from {self.address} within "
                                       f"{timeout:g} s (is 'facecast serve' running?)")
                self._pump(remaining * 1000)
        finally:
            self._waiting.discard(rid)
        rep = self._replies.pop(rid)
        if not rep["ok"]:
            err = rep.get("error") or {}
            raise RemoteError(str(err.get("code", "internal")), str(err.get("message", "")),
                              rep)
        return rep

    def send_async(self, type: str, session: str = "", **fields: Any) -> int:
        """Send a request without waiting; its error (if any) is raised by a later call."""
        while len(self._async) >= self.max_in_flight:
            deadline = time.monotonic() + self.timeout
            while not self._pump(50):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{len(self._async)} requests unanswered by "
                                       f"{self.address} for {self.timeout:g} s")
        rid = next(self._ids)
        self._async[rid] = (session, time.monotonic())
        self._send(make_request(type, rid, session=session or None, **fields))
        return rid

    def wait_all(self, timeout: float | None = None, session: str | None = None) -> None:
        """Wait until every request sent with wait=False (of ``session``, or all) is
        answered; raise the first error among them as RemoteError."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout

        def pending() -> int:
            if session is None:
                return len(self._async)
            return sum(1 for sid, _ in self._async.values() if sid == session)

        while pending():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{pending()} requests unanswered by {self.address}")
            self._pump(remaining * 1000)
        self._raise_async(session)

    def poll_replies(self) -> list[tuple[float, dict]]:
        """Receive what has arrived; return and forget replies to wait=False requests
        as (monotonic receive time, reply) pairs."""
        self._pump(0)
        out = list(self._async_replies)
        self._async_replies.clear()
        return out

    # -- requests ----------------------------------------------------------------------------
    def ping(self, timeout: float | None = None) -> dict:
        return self.request("ping", timeout=timeout)

    def stats(self, session: str | None = None) -> dict:
        return self.request("stats", session=session)

    def schema(self) -> dict:
        return self.request("schema")

    def open(self, subject: str, sample_rate: int, *, channels: int = 1,
             dtype: str = "float32", fps: int | None = None, model: str | None = None,
             options: Mapping[str, Any] | None = None, include_channels: bool = False,
             replace: bool = False) -> "RemoteSession":
        """Open a streaming session; frames appear on ``face.<subject>``."""
        if dtype not in AUDIO_DTYPES:
            raise ValueError(f"dtype must be one of {sorted(AUDIO_DTYPES)}, got {dtype!r}")
        rep = self.request("open", subject=subject, sample_rate=sample_rate,
                           channels=channels, dtype=dtype, fps=fps, model=model,
                           options=dict(options) if options else None,
                           include_channels=include_channels or None,
                           replace=replace or None)
        return RemoteSession(self, rep, subject, int(sample_rate), int(channels), dtype)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._sock.close(0)

    def __enter__(self) -> "RuntimeClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class RemoteSession:
    """A session opened on the runtime by :meth:`RuntimeClient.open`."""

    def __init__(self, client: RuntimeClient, reply: dict, subject: str, sample_rate: int,
                 channels: int, dtype: str) -> None:
        self.client = client
        self.info = reply
        self.id: str = reply["session"]
        self.subject = subject
        self.topic: str = reply.get("topic", FRAME_TOPIC_PREFIX + subject)
        self.fps: int = int(reply.get("fps", 60))
        self.latency_s: float = float(reply.get("latency_s", math.nan))
        self.sample_rate = sample_rate
        self.channels = channels
        self.dtype = dtype
        self.closed = False
        self.samples_sent = 0

    def _encode(self, samples: Any) -> bytes:
        if isinstance(samples, (bytes, bytearray, memoryview)):
            return bytes(samples)
        a = np.asarray(samples)
        if self.channels > 1 and (a.ndim != 2 or a.shape[1] != self.channels):
            raise ValueError(f"samples must have shape (n, {self.channels}), got {a.shape}")
        if self.channels == 1 and a.ndim != 1:
            raise ValueError(f"mono samples must be 1-D, got shape {a.shape}")
        return encode_audio(a, self.dtype)

    def push(self, samples: Any, *, wait: bool = True, seq: int | None = None) -> dict | int:
        """Push a chunk (numpy array, or raw little-endian bytes in the session's dtype).

        ``wait=True`` returns the reply (``frames``: how many frames it produced,
        ``start_index``: the first one's index). ``wait=False`` pipelines: returns the request id
        at once (its reply is later listed by ``client.poll_replies()``); an error reply is
        raised as RemoteError by a later call.
        """
        if self.closed:
            raise RuntimeError(f"session {self.id} is closed")
        data = self._encode(samples)
        self.client._raise_async(self.id)
        item = 4 if self.dtype == "float32" else 2
        self.samples_sent += len(data) // (item * self.channels)
        if wait:
            return self.client.request("push", session=self.id, data=data, seq=seq)
        return self.client.send_async("push", session=self.id, data=data, seq=seq)

    def options(self, **options: Any) -> dict:
        return self.client.request("options", session=self.id, options=options)

    def set_emotion(self, name: str, intensity: float = 1.0, time: float | None = None,
                    transition: float | None = None) -> dict:
        """Blend to emotion ``name`` (neutral, happy, sad, angry, surprised, disgusted, afraid)
        at ``intensity`` 0..1 from audio time ``time`` (seconds on the session's audio clock;
        default: the audio pushed so far) over ``transition`` seconds. Ordered with pushes."""
        spec: dict[str, Any] = {"name": name, "intensity": float(intensity)}
        if time is not None:
            spec["time"] = float(time)
        if transition is not None:
            spec["transition"] = float(transition)
        return self.options(emotion=spec)

    def stats(self) -> dict:
        return self.client.request("stats", session=self.id)

    def close(self, timeout: float | None = None) -> dict:
        """Flush the remaining frames and end the session; returns the close reply."""
        if self.closed:
            return {}
        self.closed = True
        try:
            self.client.wait_all(timeout, session=self.id)
        finally:
            rep = self.client.request("close", session=self.id, timeout=timeout)
        return rep

    def __enter__(self) -> "RemoteSession":
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if not self.closed:
            try:
                self.close()
            except (RemoteError, TimeoutError):
                if exc_type is None:
                    raise


#: Alias: the ingest client.
Sender = RuntimeClient
