"""The facecast runtime server: audio in over a ZeroMQ ROUTER, frames out over XPUB.

Protocol: ``docs/protocol.md`` (codec in ``facecast.wire``).

Threads
-------
* the **I/O thread** owns every ZeroMQ socket. It decodes and validates control messages,
  answers what needs no engine work (ping, stats, schema, options, errors), and sends replies
  and frames. Sends never block: the frame socket is an XPUB whose per-subscriber queues
  (SNDHWM) drop for slow or dead subscribers, and the control socket sends with NOBLOCK.
* with ``workers=0`` (the default) the I/O thread also runs the engine for pushes and closes,
  inline: no thread hand-off, so the lowest latency. The pushes that arrive in one poll
  iteration run in phases (features for each session, one batched model call per group of
  sessions with the same model and frame count, then post-stages and encoding), which keeps
  the model's weights in cache and amortises the ONNX call; frames are bitwise those of
  running each push alone. Measured on a 2-core VM with the load generator on the same cores,
  50 real-time 60 fps streams in 20 ms chunks (expressive layer on): push to frame received
  p50 ~1.3-2 ms, p99 ~12-24 ms, about one core (``docs/benchmarks.md``). Opens (which may load
  and warm up a model) and chunks longer than ``INLINE_MAX_SECONDS`` run on one background
  thread, so they never stall other sessions; a session's later requests follow its queued
  ones there, in order.
* with ``workers=N`` **engine threads** run the engine (open, push, flush) and encode frames.
  A session's jobs run in order, one at a time; different sessions run in parallel. This only
  pays off for models whose ONNX inference (which releases the GIL) dominates the engine's
  Python work; with the shipped models the GIL hand-offs cost more than they bring.

Each session has a bounded outbound queue (``queue_frames``) between the engine and the
frame socket; when it is full the oldest frame is dropped and counted (``frames_dropped``).
Per-subscriber drops inside ZeroMQ are invisible to the server; subscribers see them as gaps
in ``index`` (the SDK counts them in ``Subscriber.stats["missed"]``).

Several sessions run at once, isolated: one session's bad input, engine error or
overload is answered to that client and never affects another session.
"""
from __future__ import annotations

import collections
import ipaddress
import logging
import math
import os
import queue
import secrets
import threading
import time
import traceback
from typing import Any, Callable

import numpy as np
import zmq

from facecast import __version__ as _version
from facecast.schema import SCHEMA_VERSION, SUPPORTED_FPS
from facecast.wire import (
    AUDIO_DTYPES, DEFAULT_CONTROL_PORT, DEFAULT_FRAME_PORT, DEFAULT_HOST,
    HARD_MAX_MESSAGE_BYTES, MAX_AUDIO_CHANNELS, MAX_CHUNK_SECONDS, MAX_MESSAGE_BYTES,
    MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, PROTOCOL_VERSION, SCHEMA_HASH, FrameEncoder,
    ProtocolError, channel_layout, check_subject, decode_audio, decode_request, encode_event,
    encode_message, error_reply, event_topic, frame_topic, ok_reply,
)

from .errors import AudioError, ModelError, SessionError

__all__ = ["Server", "ServerError", "is_loopback"]

log = logging.getLogger("facecast.server")

#: With workers=0, chunks longer than this (seconds of audio) are processed off the I/O thread
#: so that one client's long chunk cannot stall every other session.
INLINE_MAX_SECONDS = 0.25

#: With workers=0, at most this many inline pushes are gathered into one phased run.
MAX_PUSH_BATCH = 64


class ServerError(ValueError):
    """The server cannot start as configured (one-line reason): public bind without CURVE
    keys, address in use, unusable model or key directory."""


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost'; everything else (0.0.0.0, '*', LAN
    addresses, host names) counts as public."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _endpoint(host: str, port: int) -> str:
    h = "127.0.0.1" if host == "localhost" else host
    if ":" in h and not h.startswith("["):
        h = f"[{h}]"
    return f"tcp://{h}:{'*' if port == 0 else port}"


def _pct(values: Any, q: float) -> float | None:
    if not len(values):
        return None
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


class _Live:
    """Server-side state of one session."""

    __slots__ = (
        "id", "subject", "fps", "sample_rate", "channels", "dtype", "model", "engine",
        "encoder", "lock", "outq", "jobs", "scheduled", "state", "opened", "last_active",
        "chunks", "samples", "frames_produced", "frames_published", "frames_dropped",
        "errors", "include_channels", "close_reason", "options", "latency_s",
    )

    def __init__(self, sid: str, subject: str, fps: int, sample_rate: int, channels: int,
                 dtype: str, model: str, include_channels: bool, options: dict) -> None:
        self.id = sid
        self.subject = subject
        self.fps = fps
        self.sample_rate = sample_rate
        self.channels = channels
        self.dtype = dtype
        self.model = model
        self.engine: Any = None
        self.include_channels = include_channels
        self.encoder = FrameEncoder(subject, sid, fps, include_channels)
        self.lock = threading.Lock()
        # outbound items: (topic, payload, is_frame, t_request or 0.0)
        self.outq: collections.deque = collections.deque()
        self.jobs: collections.deque = collections.deque()
        self.scheduled = False
        self.state = "opening"      # opening -> open -> closing -> closed
        self.opened = time.monotonic()
        self.last_active = self.opened
        self.chunks = 0
        self.samples = 0
        self.frames_produced = 0
        self.frames_published = 0
        self.frames_dropped = 0
        self.errors = 0
        self.close_reason = ""
        self.options = options
        self.latency_s = math.nan

    def stats(self) -> dict[str, Any]:
        now = time.monotonic()
        return {
            "session": self.id, "subject": self.subject, "state": self.state,
            "fps": self.fps, "sample_rate": self.sample_rate, "channels": self.channels,
            "dtype": self.dtype, "model": self.model, "chunks": self.chunks,
            "samples": self.samples, "audio_s": self.samples / self.sample_rate,
            "frames_produced": self.frames_produced,
            "frames_published": self.frames_published,
            "frames_dropped": self.frames_dropped, "queued_frames": len(self.outq),
            "pending_chunks": len(self.jobs), "errors": self.errors,
            "age_s": now - self.opened, "idle_s": now - self.last_active,
            "latency_s": self.latency_s,
        }


class Server:
    """The runtime server. ``start()`` binds and runs it in background threads; ``stop()``
    ends every session (publishing their last frames and end events) and closes the sockets.

    Binding anything but a loopback address requires ``curve_dir`` (see :mod:`.keys`):
    CURVE encryption on both sockets and ZAP authentication of client public keys.
    Port 0 picks a free port (see :attr:`control_endpoint`, :attr:`frame_endpoint`).
    """

    def __init__(self, host: str = DEFAULT_HOST, control_port: int = DEFAULT_CONTROL_PORT,
                 frame_port: int = DEFAULT_FRAME_PORT, *, curve_dir: str | os.PathLike | None = None,
                 model: str = "default", workers: int = 0, queue_frames: int = 1024,
                 max_sessions: int = 128, max_pending: int = 64,
                 session_timeout: float = 60.0, sndhwm: int = 1000,
                 max_message_bytes: int = MAX_MESSAGE_BYTES,
                 engine_factory: Callable[..., Any] | None = None,
                 preload: bool = True,
                 session_options: dict[str, Any] | None = None) -> None:
        if not is_loopback(host) and curve_dir is None:
            raise ServerError(
                f"refusing to bind {host}: binding a non-loopback address requires CURVE keys "
                "(create them with 'facecast keygen DIR' and pass --curve-dir DIR)")
        for name, port in (("control port", control_port), ("frame port", frame_port)):
            if not isinstance(port, int) or not 0 <= port <= 65535:
                raise ServerError(f"{name} {port!r} is not a TCP port (0..65535)")
        if control_port == frame_port and control_port != 0:
            raise ServerError(f"control and frame ports must differ (both {control_port})")
        self.host = host
        self.control_port = control_port
        self.frame_port = frame_port
        self.curve_dir = curve_dir
        self.model = model
        self.workers = max(0, int(workers))
        self.queue_frames = max(1, int(queue_frames))
        self.max_sessions = max(1, int(max_sessions))
        self.max_pending = max(1, int(max_pending))
        self.session_timeout = float(session_timeout)
        self.sndhwm = max(1, int(sndhwm))
        self.max_message_bytes = min(int(max_message_bytes), HARD_MAX_MESSAGE_BYTES)
        self.preload = preload
        #: engine options every session starts from (its own ``options`` override them)
        self.session_options = dict(session_options or {})
        if engine_factory is None:
            from .engine import Session as engine_factory  # noqa: N813
        self._engine_factory = engine_factory
        self._warm: set[str] = set()
        self._warm_lock = threading.Lock()
        self._curve_keys: tuple[bytes, bytes, Any] | None = None
        if curve_dir is not None:
            from .keys import CurveKeyError, load_server_keys
            try:
                self._curve_keys = load_server_keys(curve_dir)
            except CurveKeyError as e:
                raise ServerError(str(e)) from None

        self._ctx: zmq.Context | None = None
        self._auth: Any = None
        self._router: zmq.Socket | None = None
        self._pub: zmq.Socket | None = None
        self._wake_pull: zmq.Socket | None = None
        self._wake_addr = f"inproc://facecast-wake-{secrets.token_hex(6)}"
        self._tls = threading.local()
        self._wake_sockets: list[zmq.Socket] = []
        self._wake_lock = threading.Lock()

        self._lock = threading.Lock()  # guards the session tables
        self._lives: dict[str, _Live] = {}
        self._by_subject: dict[str, _Live] = {}
        self._dirty: collections.deque[_Live] = collections.deque()
        self._replies: collections.deque[tuple[list[bytes], bytes]] = collections.deque()
        self._ready: queue.SimpleQueue = queue.SimpleQueue()
        # inline pushes gathered by the I/O thread, run together by _run_pushes
        self._pushes: list[tuple[_Live, tuple]] = []
        self._pushing: set[str] = set()
        self._threads: list[threading.Thread] = []
        self._io_thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._started = False
        self._started_at = time.monotonic()
        self._subscriptions: set[bytes] = set()
        self._push_latency: collections.deque[float] = collections.deque(maxlen=20_000)
        # (wait for the engine, engine time) of recent pushes, seconds
        self._push_timing: collections.deque[tuple[float, float]] = collections.deque(
            maxlen=20_000)
        self.counters: dict[str, Any] = {
            "requests": 0, "sessions_opened": 0, "sessions_closed": 0,
            "frames_published": 0, "closed_dropped": 0, "replies_dropped": 0,
            "errors": collections.Counter(),
        }
        self.control_endpoint = ""
        self.frame_endpoint = ""

    # ---------------------------------------------------------------------------------------
    # lifecycle
    # ---------------------------------------------------------------------------------------
    def start(self) -> "Server":
        """Bind the sockets and start serving in background threads; returns self."""
        if self._started:
            return self
        if self.preload:
            self._preload_model()
        self._bind()
        self._started = True
        for i in range(max(1, self.workers)):
            t = threading.Thread(target=self._worker, name=f"facecast-engine-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        self._io_thread = threading.Thread(target=self._io_loop, name="facecast-io",
                                           daemon=True)
        self._io_thread.start()
        log.info("facecast serve: control %s, frames %s%s", self.control_endpoint,
                 self.frame_endpoint, " (CURVE)" if self._curve_keys else "")
        return self

    def _preload_model(self) -> None:
        try:
            self._warm_up(self.model)
        except (ModelError, AudioError, SessionError) as e:
            raise ServerError(f"model {self.model!r}: {e}") from None
        except Exception as e:  # a model that loads but cannot run
            raise ServerError(f"model {self.model!r} fails on audio: {e}") from None

    def _warm_up(self, model: str) -> None:
        """Load a model and run it on a few chunk sizes once: the first inference (and the first
        of each input length) is far slower than the rest and would otherwise land on the
        first sessions' latency, or stall the I/O thread when the engine runs inline."""
        with self._warm_lock:
            if model in self._warm:
                return
            eng = self._engine_factory(model=model, fps=60, sample_rate=16000, subject="")
            noise = (1e-3 * np.random.default_rng(0).standard_normal(16000 * 3)).astype(
                np.float32)
            pos = 0
            for n in (160, 320, 480, 640, 800, 1600, 3200, 8000, 16000):
                for _ in range(3):
                    eng.push(noise[pos:pos + n])
                    pos = (pos + n) % (len(noise) - 16000)
            eng.flush()
            self._warm.add(model)

    def _bind(self) -> None:
        ctx = zmq.Context()
        self._ctx = ctx
        try:
            if self._curve_keys is not None:
                from zmq.auth.thread import ThreadAuthenticator

                self._auth = ThreadAuthenticator(ctx, log=logging.getLogger("facecast.zap"))
                self._auth.start()
                self._auth.configure_curve(domain="*", location=str(self._curve_keys[2]))
            router = ctx.socket(zmq.ROUTER)
            pub = ctx.socket(zmq.XPUB)
            for s in (router, pub):
                s.linger = 0
                if self._curve_keys is not None:
                    s.curve_server = True
                    s.curve_publickey = self._curve_keys[0]
                    s.curve_secretkey = self._curve_keys[1]
                if ":" in self.host.strip("[]"):
                    s.setsockopt(zmq.IPV6, 1)
                s.setsockopt(zmq.HEARTBEAT_IVL, 2000)
                s.setsockopt(zmq.HEARTBEAT_TIMEOUT, 6000)
            router.setsockopt(zmq.MAXMSGSIZE, HARD_MAX_MESSAGE_BYTES)
            router.sndhwm = 10_000
            router.rcvhwm = 10_000
            router.setsockopt(zmq.ROUTER_MANDATORY, 0)
            pub.sndhwm = self.sndhwm
            pub.setsockopt(zmq.MAXMSGSIZE, 4096)  # subscribers only send subscriptions
            self._router, self._pub = router, pub
            for sock, port, what in ((router, self.control_port, "control"),
                                     (pub, self.frame_port, "frame")):
                ep = _endpoint(self.host, port)
                try:
                    sock.bind(ep)
                except zmq.ZMQError as e:
                    raise ServerError(f"cannot bind the {what} socket to {ep}: {e}") from None
            self.control_endpoint = router.getsockopt(zmq.LAST_ENDPOINT).decode()
            self.frame_endpoint = pub.getsockopt(zmq.LAST_ENDPOINT).decode()
            self._wake_pull = ctx.socket(zmq.PULL)
            self._wake_pull.linger = 0
            self._wake_pull.bind(self._wake_addr)
        except BaseException:
            self._close_sockets()
            raise

    def _close_sockets(self) -> None:
        for s, linger in ((self._router, 100), (self._pub, 300), (self._wake_pull, 0)):
            if s is not None:
                try:
                    s.close(linger)
                except Exception:
                    pass
        with self._wake_lock:
            for s in self._wake_sockets:
                try:
                    s.close(0)
                except Exception:
                    pass
            self._wake_sockets.clear()
        if self._auth is not None:
            try:
                self._auth.stop()
            except Exception:
                pass
            self._auth = None
        if self._ctx is not None:
            try:
                self._ctx.term()
            except Exception:
                pass
            self._ctx = None

    def serve_forever(self) -> None:
        """Start (if needed) and block until :meth:`stop` is called (from another thread or a
        signal handler); KeyboardInterrupt stops the server."""
        self.start()
        try:
            while not self._stopped.wait(0.2):
                pass
        except KeyboardInterrupt:
            self.stop()

    def stop(self, timeout: float = 5.0) -> None:
        """End every session (flushing frames, end events with reason 'shutdown'), close the
        sockets and join the threads. Idempotent."""
        if not self._started:
            return
        self._stop.set()
        if self._io_thread is not None and self._io_thread is not threading.current_thread():
            self._io_thread.join(timeout + 2.0)
        for _ in self._threads:
            self._ready.put(None)
        for t in self._threads:
            t.join(2.0)
        self._close_sockets()
        self._stopped.set()

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ---------------------------------------------------------------------------------------
    # worker side
    # ---------------------------------------------------------------------------------------
    def _wake(self) -> None:
        if threading.current_thread() is self._io_thread:
            return
        s = getattr(self._tls, "wake", None)
        if s is None:
            with self._wake_lock:
                if self._ctx is None:
                    return
                s = self._ctx.socket(zmq.PUSH)
                s.linger = 0
                s.sndhwm = 1
                s.connect(self._wake_addr)
                self._wake_sockets.append(s)
            self._tls.wake = s
        try:
            s.send(b"", zmq.NOBLOCK)
        except zmq.ZMQError:
            pass  # a wake-up is already pending, or shutting down

    def _submit(self, owner: _Live, job: tuple) -> None:
        """Queue a job on ``owner``'s ordered job queue. With workers=0, pushes and closes run
        in the I/O thread: a push is gathered with the other sessions' pushes that arrive in
        the same poll iteration (``_run_pushes`` runs them together, before anything else is
        handled), closes and options run here and now. Opens (which may load a model), chunks
        longer than INLINE_MAX_SECONDS and whatever a session sends behind them go to the one
        background thread, in order."""
        if self.workers == 0 and job[0] != "open":
            # inline unless this session already has work queued (order) or the chunk is long
            # enough to stall every other session (it goes to the background thread instead)
            big = job[0] == "push" and len(job[3]) > INLINE_MAX_SECONDS * owner.sample_rate
            with owner.lock:
                busy = owner.scheduled
            if not busy and not big:
                if job[0] == "push" and owner.id not in self._pushing \
                        and hasattr(owner.engine, "prepare_push") and owner.state != "closed":
                    # gathered: the I/O loop runs these pushes together (_run_pushes)
                    self._pushes.append((owner, job))
                    self._pushing.add(owner.id)
                    if len(self._pushes) >= MAX_PUSH_BATCH:
                        self._run_pushes()
                    return
                self._run_pushes()  # whatever was gathered goes first: order is kept
                self._run_job(owner, job)
                return
        self._run_pushes()
        with owner.lock:
            owner.jobs.append(job)
            if owner.scheduled:
                return
            owner.scheduled = True
        self._ready.put(owner)

    def _worker(self) -> None:
        while True:
            owner = self._ready.get()
            if owner is None:
                return
            with owner.lock:
                job = owner.jobs.popleft() if owner.jobs else None
            if job is not None:
                try:
                    self._run_job(owner, job)
                except Exception:  # never let a worker die
                    log.error("engine job failed:\n%s", traceback.format_exc())
            with owner.lock:
                if owner.jobs:
                    requeue = True
                else:
                    owner.scheduled = False
                    requeue = False
            if requeue:
                self._ready.put(owner)  # round-robin: other sessions get their turn
            self._wake()

    def _emit(self, live: _Live, items: list[tuple[bytes, bytes, bool, float]]) -> None:
        if not items:
            return
        with live.lock:
            q = live.outq
            for it in items:
                if len(q) >= self.queue_frames:
                    old = q.popleft()
                    if old[2]:
                        live.frames_dropped += 1
                q.append(it)
        self._dirty.append(live)

    def _reply(self, env: list[bytes] | None, rep: dict) -> None:
        if env is None:
            return
        if not rep.get("ok", False):
            self.counters["errors"][rep["error"]["code"]] += 1
        self._replies.append((env, encode_message(rep)))

    def _event(self, live: _Live, event: str, **fields: Any) -> tuple[bytes, bytes, bool, float]:
        return (event_topic(live.subject),
                encode_event(event, live.subject, live.id, fps=live.fps, **fields), False, 0.0)

    def _run_job(self, live: _Live, job: tuple) -> None:
        kind = job[0]
        if kind == "open":
            self._job_open(job[1], *job[2:])
        elif kind == "push":
            self._job_push(live, *job[1:])
        elif kind == "close":
            self._job_close(live, *job[1:])
        elif kind == "options":
            self._job_options(live, *job[1:])

    def _engine_error(self, live: _Live | None, env: list[bytes] | None, req: dict | None,
                      e: BaseException) -> None:
        if live is not None:
            live.errors += 1
        if isinstance(e, AudioError):
            code = "bad_audio"
        elif isinstance(e, ModelError):
            code = "bad_model"
        elif isinstance(e, SessionError):
            code = "session_error"
        else:
            code = "internal"
            log.error("unexpected engine error:\n%s", traceback.format_exc())
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        self._reply(env, error_reply(req, code, msg,
                                     session=live.id if live is not None else None))

    def _job_open(self, live: _Live, env: list[bytes], req: dict) -> None:
        try:
            if live.model not in self._warm:
                self._warm_up(live.model)
            live.engine = self._engine_factory(
                model=live.model, fps=live.fps, sample_rate=live.sample_rate,
                subject=live.subject, options=live.options or None)
        except Exception as e:
            with self._lock:
                self._lives.pop(live.id, None)
                if self._by_subject.get(live.subject) is live:
                    del self._by_subject[live.subject]
            live.state = "closed"
            self._engine_error(None, env, req, e)
            return
        try:
            info = dict(live.engine.model_info)
            latency = float(live.engine.latency_s)
        except Exception:
            info, latency = {}, math.nan
        info.pop("path", None)
        info.pop("channels", None)
        live.latency_s = latency
        with self._lock:
            cancelled = live.state != "opening"  # shut down (or dropped) while loading
            if not cancelled:
                live.state = "open"
        if cancelled:
            self._reply(env, error_reply(req, "shutting_down" if self._stop.is_set()
                                         else "unknown_session",
                                         "the session was closed while it was opening"))
            return
        with self._lock:
            self.counters["sessions_opened"] += 1
        self._emit(live, [self._event(live, "start", index=0, time=0.0,
                                      sample_rate=live.sample_rate, model=info,
                                      latency_s=latency)])
        self._reply(env, ok_reply(
            req, session=live.id, subject=live.subject, topic=frame_topic(live.subject).decode(),
            event_topic=event_topic(live.subject).decode(), fps=live.fps,
            sample_rate=live.sample_rate, channels=live.channels, dtype=live.dtype,
            latency_s=latency, model=info, schema=SCHEMA_VERSION, schema_hash=SCHEMA_HASH))

    def _job_push(self, live: _Live, env: list[bytes], req: dict, audio: np.ndarray,
                  t_req: float) -> None:
        if live.engine is None or live.state == "closed":
            self._reply(env, error_reply(req, "unknown_session",
                                         f"session {live.id} is {live.state}",
                                         session=live.id))
            return
        t_start = time.monotonic()
        try:
            batch = live.engine.push(audio)
        except Exception as e:
            self._engine_error(live, env, req, e)
            return
        self._push_timing.append((t_start - t_req, time.monotonic() - t_start))
        self._push_done(live, env, req, audio, t_req, batch)

    def _run_pushes(self) -> None:
        """Run the inline pushes gathered by the I/O thread (at most one per session) in
        phases: every session's features (``prepare_push``), the model steps batched across
        sessions of one model with equal frame counts (``run_model_steps``), then each
        session's frames (``finish_push``), encoding and reply in arrival order. Frames and
        replies are exactly those of running the pushes one by one; an error stays with its
        session."""
        if not self._pushes:
            return
        from .engine import run_model_steps

        pushes, self._pushes = self._pushes, []
        self._pushing.clear()
        staged: list[tuple[Any, BaseException | None, float, float]] = []
        for live, job in pushes:
            t_start = time.monotonic()
            try:
                prepared, err = live.engine.prepare_push(job[3]), None
            except Exception as e:
                prepared, err = None, e
            staged.append((prepared, err, t_start, time.monotonic() - t_start))
        t0 = time.monotonic()
        run_model_steps([p for p, _, _, _ in staged if p is not None])
        model_share = (time.monotonic() - t0) / len(pushes)
        for (live, job), (prepared, err, t_start, t_prep) in zip(pushes, staged):
            _, env, req, audio, t_req = job
            t1 = time.monotonic()
            try:
                if err is not None:
                    raise err
                batch = live.engine.finish_push(prepared)
            except Exception as e:
                self._engine_error(live, env, req, e)
                continue
            self._push_timing.append(
                (t_start - t_req, t_prep + model_share + time.monotonic() - t1))
            try:
                self._push_done(live, env, req, audio, t_req, batch)
            except Exception as e:  # as in _handle: a bug answers this request only
                log.error("request failed:\n%s", traceback.format_exc())
                self._reply(env, error_reply(req, "internal", f"{type(e).__name__}: {e}"))

    def _push_done(self, live: _Live, env: list[bytes], req: dict, audio: np.ndarray,
                   t_req: float, batch: Any) -> None:
        n = len(batch)
        live.chunks += 1
        live.samples += len(audio)
        live.frames_produced += n
        if n:
            payloads = live.encoder.encode(batch)
            topic = live.encoder.topic
            items = [(topic, p, True, 0.0) for p in payloads]
            items[0] = (topic, payloads[0], True, t_req)
            self._emit(live, items)
        rep = ok_reply(req, session=live.id, frames=n, start_index=batch.start_index,
                       time=batch.start_index / live.fps)
        if "seq" in req:
            rep["seq"] = req["seq"]
        self._reply(env, rep)

    def _job_options(self, live: _Live, env: list[bytes], req: dict, opts: dict) -> None:
        if live.engine is None or live.state == "closed":
            self._reply(env, error_reply(req, "unknown_session",
                                         f"session {live.id} is {live.state}",
                                         session=live.id))
            return
        setter = getattr(live.engine, "set_options", None)
        if setter is None:
            self._reply(env, error_reply(req, "session_error",
                                         "this engine has no changeable options",
                                         session=live.id))
            return
        try:
            current = setter(opts)
        except Exception as e:
            self._engine_error(live, env, req, e)
            return
        out = {"include_channels": live.include_channels}
        if isinstance(current, dict):
            out.update({k: current[k] for k in current if k != "emotion_keys"})
        self._reply(env, ok_reply(req, session=live.id, options=out))

    def _job_close(self, live: _Live, env: list[bytes] | None, req: dict | None,
                   reason: str) -> None:
        if live.state == "closed":
            self._reply(env, error_reply(req, "unknown_session",
                                         f"session {live.id} is already closed"))
            return
        items = []
        n = 0
        if live.engine is not None:
            try:
                batch = live.engine.flush()
                n = len(batch)
                live.frames_produced += n
                if n:
                    topic = live.encoder.topic
                    items = [(topic, p, True, 0.0) for p in live.encoder.encode(batch)]
            except Exception as e:
                log.error("flush of session %s failed: %s", live.id, e)
        live.state = "closed"
        live.close_reason = reason
        total = live.frames_produced
        items.append(self._event(
            live, "end", reason=reason, frames=total, index=total, time=total / live.fps,
            audio_s=live.samples / live.sample_rate, frames_dropped=live.frames_dropped))
        self._emit(live, items)
        with self._lock:
            self._lives.pop(live.id, None)
            if self._by_subject.get(live.subject) is live:
                del self._by_subject[live.subject]
            self.counters["sessions_closed"] += 1
            self.counters["closed_dropped"] += live.frames_dropped
        st = live.stats()
        self._reply(env, ok_reply(req, session=live.id, frames=n, frames_total=total,
                                  frames_dropped=st["frames_dropped"],
                                  audio_s=st["audio_s"], reason=reason))

    # ---------------------------------------------------------------------------------------
    # I/O thread
    # ---------------------------------------------------------------------------------------
    def _io_loop(self) -> None:
        router, pub, wake = self._router, self._pub, self._wake_pull
        assert router is not None and pub is not None and wake is not None
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        poller.register(pub, zmq.POLLIN)
        poller.register(wake, zmq.POLLIN)
        next_sweep = time.monotonic() + 1.0
        shutdown_deadline = None
        try:
            while True:
                if self._stop.is_set() and shutdown_deadline is None:
                    shutdown_deadline = time.monotonic() + 3.0
                    self._close_all("shutdown")
                if shutdown_deadline is not None:
                    self._flush_out()
                    with self._lock:
                        remaining = len(self._lives)
                    busy = any(lv.jobs for lv in list(self._lives.values()))
                    if (remaining == 0 and not busy and not self._dirty
                            and not self._replies) or time.monotonic() > shutdown_deadline:
                        break
                events = dict(poller.poll(20 if shutdown_deadline else 100))
                if router in events:
                    for _ in range(256):
                        try:
                            parts = router.recv_multipart(zmq.NOBLOCK, copy=True)
                        except zmq.Again:
                            break
                        self._handle(parts)
                        if self._dirty or self._replies:
                            self._flush_out()
                    self._run_pushes()
                if pub in events:
                    self._read_subscriptions()
                if wake in events:
                    while True:
                        try:
                            wake.recv(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                self._flush_out()
                now = time.monotonic()
                if now >= next_sweep:
                    next_sweep = now + 1.0
                    self._sweep_idle(now)
        except Exception:
            log.error("I/O loop failed:\n%s", traceback.format_exc())
        finally:
            try:
                self._run_pushes()
                self._flush_out()
            except Exception:
                pass

    def _read_subscriptions(self) -> None:
        assert self._pub is not None
        while True:
            try:
                msg = self._pub.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if not msg:
                continue
            topic = msg[1:]
            if msg[0] == 1:
                self._subscriptions.add(topic)
            elif msg[0] == 0:
                self._subscriptions.discard(topic)

    def _flush_out(self) -> None:
        router, pub = self._router, self._pub
        assert router is not None and pub is not None
        # Replies are taken before the frames are sent and sent after them: a push's frames
        # are queued before its reply, so they always leave before the reply does.
        replies = []
        while self._replies:
            replies.append(self._replies.popleft())
        seen: set[int] = set()
        while self._dirty:
            live = self._dirty.popleft()
            if id(live) in seen:
                continue
            seen.add(id(live))
            with live.lock:
                if not live.outq:
                    continue
                items = live.outq
                live.outq = collections.deque()
            sent = 0
            for topic, payload, is_frame, t_req in items:
                try:
                    # copied: for messages this small a copy is cheaper than zero-copy tracking
                    pub.send_multipart((topic, payload), zmq.NOBLOCK)
                except zmq.ZMQError:
                    if is_frame:
                        live.frames_dropped += 1
                    continue
                if is_frame:
                    sent += 1
                    if t_req:
                        self._push_latency.append(time.monotonic() - t_req)
            live.frames_published += sent
            self.counters["frames_published"] += sent
        for env, payload in replies:
            try:
                router.send_multipart(env + [payload], zmq.NOBLOCK)
            except zmq.ZMQError:
                self.counters["replies_dropped"] += 1

    def _sweep_idle(self, now: float) -> None:
        if self.session_timeout <= 0:
            return
        with self._lock:
            idle = [lv for lv in self._lives.values()
                    if lv.state == "open" and now - lv.last_active > self.session_timeout
                    and not lv.jobs]
        for lv in idle:
            lv.state = "closing"
            log.info("session %s (%s) timed out", lv.id, lv.subject)
            self._submit(lv, ("close", None, None, "timeout"))

    def _close_all(self, reason: str) -> None:
        with self._lock:
            lives = list(self._lives.values())
            for lv in lives:
                if lv.state == "opening":  # its open job will see this and refuse
                    lv.state = "closed"
                    self._lives.pop(lv.id, None)
                    if self._by_subject.get(lv.subject) is lv:
                        del self._by_subject[lv.subject]
        for lv in lives:
            if lv.state == "open":
                lv.state = "closing"
                self._submit(lv, ("close", None, None, reason))

    # ---------------------------------------------------------------------------------------
    # request handling (I/O thread)
    # ---------------------------------------------------------------------------------------
    def _handle(self, parts: list[bytes]) -> None:
        self.counters["requests"] += 1
        if len(parts) < 2:
            return  # cannot happen on a ROUTER; nothing to answer to
        env = parts[:-1]
        if len(env) > 3:  # identity + at most an empty delimiter and one extra frame
            self._run_pushes()
            self._reply(env[:1], error_reply(None, "bad_message",
                                             f"{len(parts) - 1} message frames; a request is "
                                             "one frame (optionally after an empty frame)"))
            return
        req: dict | None = None
        try:
            req = decode_request(parts[-1], self.max_message_bytes)
            if req["type"] != "push":
                # gathered pushes run first, so every reply leaves in request order
                self._run_pushes()
            self._dispatch(env, req, time.monotonic())
        except ProtocolError as e:
            self._run_pushes()
            self._reply(env, error_reply(req, e.code, e.message,
                                         protocol=PROTOCOL_VERSION))
        except Exception as e:  # a bug must never take the server down
            log.error("request failed:\n%s", traceback.format_exc())
            self._run_pushes()
            self._reply(env, error_reply(req, "internal", f"{type(e).__name__}: {e}"))

    def _session_of(self, req: dict) -> _Live:
        sid = req.get("session")
        if not isinstance(sid, str):
            raise ProtocolError("bad_field", "'session' must be the session id string from "
                                             "the open reply")
        live = self._lives.get(sid)
        if live is None or live.state not in ("open", "opening"):
            raise ProtocolError("unknown_session", f"no open session {sid[:64]!r}")
        live.last_active = time.monotonic()
        return live

    def _dispatch(self, env: list[bytes], req: dict, t_req: float) -> None:
        t = req["type"]
        if self._stop.is_set() and t in ("open", "push"):
            raise ProtocolError("shutting_down", "the server is shutting down")
        if t == "push":
            live = self._session_of(req)
            data = req.get("data")
            if not isinstance(data, (bytes, bytearray)):
                raise ProtocolError("bad_field", "'data' must be binary (raw audio bytes)")
            audio = decode_audio(bytes(data), live.dtype, live.channels)
            if len(audio) > MAX_CHUNK_SECONDS * live.sample_rate:
                raise ProtocolError(
                    "too_large", f"chunk of {len(audio)} samples exceeds "
                                 f"{MAX_CHUNK_SECONDS:g} s at {live.sample_rate} Hz")
            if len(live.jobs) >= self.max_pending:
                live.errors += 1
                raise ProtocolError("overloaded",
                                    f"{len(live.jobs)} chunks of session {live.id} are waiting;"
                                    " push slower or wait for replies")
            self._submit(live, ("push", env, req, audio, t_req))
        elif t == "open":
            self._open(env, req)
        elif t == "close":
            live = self._session_of(req)
            live.state = "closing"
            self._submit(live, ("close", env, req, "close"))
        elif t == "ping":
            self._reply(env, ok_reply(req, protocol=PROTOCOL_VERSION, server=_version,
                                      schema=SCHEMA_VERSION, schema_hash=SCHEMA_HASH,
                                      wall=time.time(), curve=self._curve_keys is not None))
        elif t == "schema":
            self._reply(env, ok_reply(req, **channel_layout()))
        elif t == "stats":
            if req.get("session") is not None:
                live = self._session_of(req)
                self._reply(env, ok_reply(req, **live.stats()))
            else:
                self._reply(env, ok_reply(req, **self.stats()))
        elif t == "options":
            live = self._session_of(req)
            opts = req.get("options")
            if not isinstance(opts, dict):
                raise ProtocolError("bad_field", "'options' must be a map")
            engine_opts = {}
            for k, v in opts.items():
                if k == "include_channels":
                    if not isinstance(v, bool):
                        raise ProtocolError("bad_field", "option 'include_channels' must be a "
                                                         "boolean")
                elif k in _live_engine_options():
                    engine_opts[k] = v
                else:
                    raise ProtocolError("bad_field", f"option {str(k)[:40]!r} cannot be changed"
                                                     " on an open session")
            if engine_opts:
                from .expressive import check_live
                try:
                    check_live(engine_opts)
                except SessionError as e:
                    raise ProtocolError("bad_field", str(e)) from None
            if "include_channels" in opts:
                with live.lock:  # encoder is used by the worker under the job order
                    live.include_channels = opts["include_channels"]
                    live.encoder.set_include_channels(live.include_channels)
            if engine_opts:
                # in order with the session's pushes: an emotion without a time applies at the
                # audio time pushed before this request
                self._submit(live, ("options", env, req, engine_opts))
                return
            self._reply(env, ok_reply(req, session=live.id,
                                      options={"include_channels": live.include_channels}))

    def _field(self, req: dict, name: str, kind: type | tuple, default: Any = None,
               required: bool = False) -> Any:
        if name not in req or req[name] is None:
            if required:
                raise ProtocolError("bad_field", f"'{name}' is required")
            return default
        v = req[name]
        if isinstance(v, bool) and kind is not bool and bool not in (
                kind if isinstance(kind, tuple) else (kind,)):
            raise ProtocolError("bad_field", f"'{name}' must be {self._kind_name(kind)}, got bool")
        if not isinstance(v, kind):
            raise ProtocolError("bad_field", f"'{name}' must be {self._kind_name(kind)}, "
                                             f"got {type(v).__name__}")
        return v

    @staticmethod
    def _kind_name(kind: type | tuple) -> str:
        names = {int: "an integer", str: "a string", bool: "a boolean", dict: "a map",
                 float: "a number"}
        kinds = kind if isinstance(kind, tuple) else (kind,)
        return " or ".join(names.get(k, k.__name__) for k in kinds)

    def _open(self, env: list[bytes], req: dict) -> None:
        subject = check_subject(self._field(req, "subject", str, required=True))
        sr = self._field(req, "sample_rate", int, required=True)
        if not MIN_SAMPLE_RATE <= sr <= MAX_SAMPLE_RATE:
            raise ProtocolError("bad_audio", f"sample rate {sr} Hz is outside the supported "
                                             f"{MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz")
        channels = self._field(req, "channels", int, 1)
        if not 1 <= channels <= MAX_AUDIO_CHANNELS:
            raise ProtocolError("bad_audio", f"{channels} audio channels; 1..{MAX_AUDIO_CHANNELS}"
                                             " are supported")
        dtype = self._field(req, "dtype", str, "float32")
        if dtype not in AUDIO_DTYPES:
            raise ProtocolError("bad_field", f"'dtype' {dtype[:20]!r} is not one of "
                                             f"{', '.join(AUDIO_DTYPES)}")
        fps = self._field(req, "fps", int, 60)
        if fps not in SUPPORTED_FPS:
            raise ProtocolError("bad_field", f"'fps' {fps} is not one of "
                                             f"{', '.join(map(str, SUPPORTED_FPS))}")
        model = self._field(req, "model", str, self.model)
        if model != self.model:
            self._check_model_name(model)
        options = self._field(req, "options", dict, {})
        if self.session_options:
            options = {**self.session_options, **options}
        include = self._field(req, "include_channels", bool, False)
        replace = self._field(req, "replace", bool, False)
        sid = secrets.token_hex(16)
        live = _Live(sid, subject, fps, sr, channels, dtype, model, include, options)
        with self._lock:
            old = self._by_subject.get(subject)
            if old is not None and not replace:
                raise ProtocolError("subject_in_use",
                                    f"subject {subject!r} is published by open session "
                                    f"{old.id} (close it or open with replace=true)")
            if len(self._lives) - (1 if old is not None else 0) >= self.max_sessions:
                raise ProtocolError("too_many_sessions",
                                    f"the server runs its maximum of {self.max_sessions} "
                                    "sessions")
            self._lives[sid] = live
            self._by_subject[subject] = live
        if old is not None:
            # close the old session first, then open the new one on the same ordered queue so
            # the subject's old frames and end event precede the new start event
            old.state = "closing"
            self._submit(old, ("close", None, None, "replaced"))
            self._submit(old, ("open", live, env, req))
        else:
            self._submit(live, ("open", live, env, req))

    @staticmethod
    def _check_model_name(model: str) -> None:
        if not model or "/" in model or "\\" in model or model.startswith(".") \
                or model.endswith(".onnx"):
            raise ProtocolError("bad_model", f"model {model[:60]!r} must be the name of a "
                                             "model shipped with the runtime")
        try:
            from .model import shipped_models
            names = shipped_models()
        except Exception:  # pragma: no cover - model module unavailable
            names = {}
        if model not in names:
            raise ProtocolError("bad_model", f"no shipped model named {model[:60]!r} "
                                             f"(shipped: {', '.join(names) or 'none'})")

    # ---------------------------------------------------------------------------------------
    # stats
    # ---------------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        with self._lock:
            lives = list(self._lives.values())
        lat = list(self._push_latency)
        timing = list(self._push_timing)
        wait = [t[0] for t in timing]
        eng = [t[1] for t in timing]
        dropped_live = sum(lv.frames_dropped for lv in lives)
        return {
            "server": _version, "protocol": PROTOCOL_VERSION, "schema": SCHEMA_VERSION,
            "schema_hash": SCHEMA_HASH, "uptime_s": time.monotonic() - self._started_at,
            "control": self.control_endpoint, "frames": self.frame_endpoint,
            "curve": self._curve_keys is not None, "workers": self.workers,
            "sessions": [lv.stats() for lv in lives],
            "sessions_open": len(lives),
            "sessions_opened": self.counters["sessions_opened"],
            "sessions_closed": self.counters["sessions_closed"],
            "frames_published": self.counters["frames_published"],
            "frames_dropped": dropped_live + self._closed_dropped(),
            "replies_dropped": self.counters["replies_dropped"],
            "requests": self.counters["requests"],
            "errors": dict(self.counters["errors"]),
            "subscriptions": self._subscription_list(),
            "push_to_publish_ms": {"p50": _ms(_pct(lat, 50)), "p99": _ms(_pct(lat, 99)),
                                   "n": len(lat)},
            "push_wait_ms": {"p50": _ms(_pct(wait, 50)), "p99": _ms(_pct(wait, 99))},
            "push_engine_ms": {"p50": _ms(_pct(eng, 50)), "p99": _ms(_pct(eng, 99))},
            "limits": {"max_sessions": self.max_sessions, "queue_frames": self.queue_frames,
                       "max_pending": self.max_pending, "sndhwm": self.sndhwm,
                       "max_message_bytes": self.max_message_bytes,
                       "max_chunk_seconds": MAX_CHUNK_SECONDS,
                       "session_timeout_s": self.session_timeout},
        }

    def _subscription_list(self) -> list[str]:
        for _ in range(3):
            try:
                return sorted(t.decode("utf-8", "replace") for t in list(self._subscriptions))
            except RuntimeError:  # mutated by the I/O thread while copying
                continue
        return []

    def _closed_dropped(self) -> int:
        return self.counters.get("closed_dropped", 0)


def _live_engine_options() -> tuple[str, ...]:
    from .expressive import LIVE_OPTIONS

    return LIVE_OPTIONS


def _ms(v: float | None) -> float | None:
    return None if v is None else v * 1000.0
