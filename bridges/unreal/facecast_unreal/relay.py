"""Relay: facecast runtime frames -> Live Link Face UDP packets for Unreal Engine.

::

    from facecast_unreal import UnrealRelay
    with UnrealRelay(subjects=["alice"], targets=["127.0.0.1:11111"]) as relay:
        relay.run(duration=60)            # or relay.start() for a background thread

The relay subscribes to a runtime's frame socket (all subjects, or the ones named; ``NAME.*``
for a group) and sends one Live Link Face packet per frame to every target, each runtime
subject as its own Live Link subject (several subjects = several characters in Unreal).

* **Subject names**: ``names={"alice": "Alice_Face"}`` renames; otherwise ``name_format``
  (default ``"{subject}"``) builds the name. Names are UTF-8 (non-ASCII is fine); a formatted
  name longer than :data:`~facecast_unreal.livelink.MAX_NAME_BYTES` bytes is cut at a character
  boundary, with a warning.
* **Frame time** comes from the audio clock: the frame's ``time`` (``index / fps``) plus
  ``timecode_offset`` seconds, at rate ``fps/1``; wall time is never used for it.
* **Values** are converted as documented in :mod:`facecast_unreal.livelink` (same convention as
  the Live Link CSV files), optionally mirrored, and sanitized (NaN -> 0, weights clamped to
  [0, 1], rotations wrapped); every fix is counted and reported through ``on_message``
  (rate-limited).
* **Pacing**: frames are sent at the frame rate. A subject's first frame is sent at once and
  anchors the schedule (frame time -> wall time); later frames go out when due, so bursts (a
  runtime fed faster than real time, or chunked audio) come out evenly spaced. A frame that
  arrives more than ``max_late`` seconds after it was due re-anchors the schedule instead of
  causing a burst. ``pace=False`` sends every frame as soon as it arrives.
* **Idle**: when a subject has had no frame for ``idle_after`` seconds (session ended, runtime
  gone), header-only packets are sent at ``idle_rate`` Hz so the Live Link subject stays alive;
  their frame time keeps advancing from the last frame's. Subjects named explicitly are kept
  alive from the start, before any frame.
* **Never blocks on the network**: non-blocking UDP sockets, one per target (connected, so
  "connection refused" is reported on loopback and LANs); a packet that cannot be sent is
  dropped and counted by cause (``refused``, ``unreachable``, ``buffer_full``, ``error``), and
  the state changes of every target are reported. A runtime restart is handled by the SDK
  subscriber, which reconnects by itself.

Library code reports through the ``on_message(level, text)`` callback (level ``"info"`` or
``"warning"``), never by printing.
"""
from __future__ import annotations

import collections
import concurrent.futures
import errno
import math
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from facecast.client import StreamEvent, StreamFrame, Subscriber
from facecast.wire import DEFAULT_FRAME_ADDRESS

from .livelink import (
    DEFAULT_PORT, MAX_DEVICE_ID_BYTES, MAX_NAME_BYTES, PacketEncoder, PacketError, check_name,
    mirror_livelink, sanitize_livelink, seconds_to_frame_time, to_livelink,
)

__all__ = ["UnrealRelay", "Target", "parse_target", "default_device_id", "truncate_utf8"]

MessageCallback = Callable[[str, str], None]

_ERROR_KINDS = {
    errno.ECONNREFUSED: "refused",
    errno.EHOSTUNREACH: "unreachable",
    errno.ENETUNREACH: "unreachable",
    errno.EHOSTDOWN: "unreachable",
    errno.ENETDOWN: "unreachable",
    errno.EADDRNOTAVAIL: "unreachable",
    errno.EAGAIN: "buffer_full",
    errno.EWOULDBLOCK: "buffer_full",
    errno.ENOBUFS: "buffer_full",
}
_HEALTHY_AFTER_S = 1.0      # a target is "answering again" after this long without errors
_RECONNECT_EVERY_S = 1.0    # retry connect() of a target whose connect failed
_WARN_EVERY_S = 5.0         # rate limit of repeated value warnings per subject


def default_device_id() -> str:
    """A stable UUID string for this machine (what the app sends is also a UUID)."""
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"facecast.{socket.gethostname()}")).upper()


def truncate_utf8(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, at a character boundary."""
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    return raw[:limit].decode("utf-8", errors="ignore")


def parse_target(text: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT``, ``[IPV6]:PORT`` or a bare IPv6 address -> (host, port).
    Raises ValueError for an empty host or a port outside 1..65535."""
    s = text.strip()
    host, port_text = s, None
    if s.startswith("["):
        end = s.find("]")
        if end < 0:
            raise ValueError(f"bad host {text!r}: missing ']'")
        host, rest = s[1:end], s[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"bad host {text!r}: expected [IPV6]:PORT")
            port_text = rest[1:]
    elif s.count(":") == 1:
        host, port_text = s.split(":")
    if not host:
        raise ValueError(f"bad host {text!r}: empty host name")
    port = default_port
    if port_text is not None:
        try:
            port = int(port_text)
        except ValueError:
            raise ValueError(f"bad port in {text!r}: {port_text!r} is not a number") from None
    if not 0 < port <= 65535:
        raise ValueError(f"bad port in {text!r}: {port} is not a UDP port (1..65535)")
    return host, port


def _resolve(host: str, port: int, timeout: float) -> tuple[int, Any]:
    """(family, sockaddr) of ``host``; ValueError when it cannot be resolved within timeout."""
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        fut = pool.submit(socket.getaddrinfo, host, port, 0, socket.SOCK_DGRAM)
        infos = fut.result(timeout)
    except concurrent.futures.TimeoutError:
        raise ValueError(f"bad host {host!r}: name not resolved within {timeout:g} s") \
            from None
    except (socket.gaierror, UnicodeError, OSError) as e:
        raise ValueError(f"bad host {host!r}: {getattr(e, 'strerror', None) or e}") from None
    finally:
        pool.shutdown(wait=False)
    if not infos:
        raise ValueError(f"bad host {host!r}: no address")
    family, _, _, _, sockaddr = infos[0]
    return family, sockaddr


class Target:
    """One Unreal host: a non-blocking UDP socket, send counters and reachability state."""

    def __init__(self, host: str, port: int = DEFAULT_PORT, *, resolve_timeout: float = 2.0,
                 on_message: MessageCallback | None = None) -> None:
        self.host = host
        self.port = int(port)
        self.family, self.sockaddr = _resolve(host, self.port, resolve_timeout)
        self.sock = socket.socket(self.family, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self._say = on_message or (lambda level, text: None)
        self.connected = False
        self.retry_at = 0.0
        self.sent = 0
        self.bytes = 0
        self.errors: dict[str, int] = collections.Counter()
        self.healthy = True
        self.failed_since_healthy = 0
        self.last_error = ""
        self.last_error_at = -math.inf
        self._connect(time.monotonic())

    def __str__(self) -> str:
        h = f"[{self.host}]" if ":" in self.host else self.host
        return f"{h}:{self.port}"

    def _connect(self, now: float) -> None:
        try:
            self.sock.connect(self.sockaddr)
            self.connected = True
        except OSError as e:
            self.connected = False
            self.retry_at = now + _RECONNECT_EVERY_S
            self._failed(e, now)

    def _failed(self, e: OSError, now: float) -> None:
        kind = _ERROR_KINDS.get(e.errno or 0, "error")
        self.errors[kind] += 1
        self.failed_since_healthy += 1
        self.last_error = f"{kind}: {e.strerror or e}"
        self.last_error_at = now
        if self.healthy:
            self.healthy = False
            hint = " (is Unreal running with a Live Link Face source on this port?)" \
                if kind == "refused" else ""
            self._say("warning", f"unreal {self}: {e.strerror or e}{hint}; packets to it are "
                                 "dropped until it answers, the relay keeps running")

    def send(self, data: bytes, now: float) -> bool:
        """Send one datagram without blocking; False (and counted) when it was not sent."""
        if not self.connected and now >= self.retry_at:
            self._connect(now)
        try:
            if self.connected:
                self.sock.send(data)
            else:
                self.sock.sendto(data, self.sockaddr)
        except OSError as e:
            self._failed(e, now)
            return False
        self.sent += 1
        self.bytes += len(data)
        if not self.healthy and now - self.last_error_at >= _HEALTHY_AFTER_S:
            self.healthy = True
            self._say("info", f"unreal {self}: sending normally again "
                              f"({self.failed_since_healthy} packets were lost)")
            self.failed_since_healthy = 0
        return True

    def stats(self) -> dict[str, Any]:
        return {"target": str(self), "sent": self.sent, "bytes": self.bytes,
                "errors": dict(self.errors), "healthy": self.healthy,
                "last_error": self.last_error}

    def close(self) -> None:
        self.sock.close()


@dataclass
class _Subject:
    """Relay state of one runtime subject."""

    runtime: str
    name: str
    encoder: PacketEncoder
    fps: int = 60
    session: str = ""
    last_index: int = -1
    queue: collections.deque = field(default_factory=collections.deque)
    anchor_wall: float | None = None
    anchor_time: float = 0.0
    clock_time: float = 0.0      # frame time (with offset) of the last packet sent...
    clock_wall: float = 0.0      # ...and when it was sent: keep-alives advance from here
    last_activity: float = 0.0
    idle: bool = True
    next_keepalive: float = 0.0
    streaming_reported: bool = False
    counts: collections.Counter = field(default_factory=collections.Counter)
    warned_at: dict[str, float] = field(default_factory=dict)
    pending_warn: collections.Counter = field(default_factory=collections.Counter)


class UnrealRelay:
    """Subscribes to a facecast runtime and sends Live Link Face packets to Unreal hosts.

    ``frames``: the runtime's frame endpoint. ``subjects``: runtime subjects (exact names,
    ``NAME.*``, or None/``"*"`` for all). ``targets``: ``"HOST[:PORT]"`` strings, (host, port)
    pairs or :class:`Target` objects (default ``127.0.0.1:11111``). See the module docstring
    for ``names``, ``name_format``, ``timecode_offset``, ``pace``, ``max_late``, ``idle_after``,
    ``idle_rate``, ``mirror``; ``max_weight`` is the upper clamp of weights (None: no clamp),
    ``max_queue_s`` bounds the frames held for pacing per subject (the oldest are dropped and
    counted beyond it), ``forget_after`` stops keep-alives of a subject idle that long
    (0: never). ``device_id`` defaults to :func:`default_device_id`.

    Raises ValueError for bad arguments (bad host or port, bad or oversize names).
    """

    def __init__(self, frames: str = DEFAULT_FRAME_ADDRESS,
                 subjects: str | Iterable[str] | None = None,
                 targets: Iterable[Any] | str | None = None, *,
                 names: Mapping[str, str] | None = None, name_format: str = "{subject}",
                 device_id: str | None = None, timecode_offset: float = 0.0,
                 pace: bool = True, max_late: float = 0.1, idle_after: float = 0.25,
                 idle_rate: float = 10.0, forget_after: float = 0.0, mirror: bool = False,
                 max_weight: float | None = 1.0, max_queue_s: float = 30.0,
                 curve: Any = None, on_message: MessageCallback | None = None,
                 resolve_timeout: float = 2.0, context: Any = None) -> None:
        self._callback = on_message
        #: The most recent messages (level, text), newest last.
        self.messages: collections.deque[tuple[str, str]] = collections.deque(maxlen=200)
        self.device_id = device_id or default_device_id()
        try:
            check_name(self.device_id, "device id", MAX_DEVICE_ID_BYTES)
        except PacketError as e:
            raise ValueError(str(e)) from None
        if not isinstance(timecode_offset, (int, float)) or not math.isfinite(timecode_offset) \
                or timecode_offset < 0:
            raise ValueError(f"timecode offset must be a finite number of seconds >= 0, got "
                             f"{timecode_offset!r}")
        for what, v in (("idle_after", idle_after), ("idle_rate", idle_rate),
                        ("max_late", max_late), ("max_queue_s", max_queue_s)):
            if not math.isfinite(v) or v <= 0:
                raise ValueError(f"{what} must be a positive number, got {v!r}")
        if not math.isfinite(forget_after) or forget_after < 0:
            raise ValueError(f"forget_after must be >= 0, got {forget_after!r}")
        self.timecode_offset = float(timecode_offset)
        self.pace = bool(pace)
        self.max_late = float(max_late)
        self.idle_after = float(idle_after)
        self.idle_interval = 1.0 / float(idle_rate)
        self.forget_after = float(forget_after)
        self.mirror = bool(mirror)
        self.max_weight = max_weight
        self.max_queue_s = float(max_queue_s)
        self.names: dict[str, str] = {}
        for runtime_subject, name in (names or {}).items():
            try:
                check_name(name, f"Live Link name for {runtime_subject!r}")
            except PacketError as e:
                raise ValueError(str(e)) from None
            self.names[runtime_subject] = name
        try:
            name_format.format(subject="x")
        except (KeyError, IndexError, ValueError, AttributeError) as e:
            raise ValueError(f"bad name format {name_format!r}: use {{subject}} for the "
                             f"runtime subject ({e})") from None
        subs = [subjects] if isinstance(subjects, str) else list(subjects or [])
        exact = [s for s in subs if s != "*" and not s.endswith(".*")]
        if "{subject}" not in name_format and not (len(subs) == 1 and exact):
            self._say("warning", f"name format {name_format!r} has no {{subject}}: every "
                                 "subject gets the same Live Link name")
        self.name_format = name_format

        if targets is None:
            targets = ["127.0.0.1"]
        elif isinstance(targets, (str, Target)):
            targets = [targets]
        self.targets: list[Target] = []
        try:
            for t in targets:
                if isinstance(t, Target):
                    self.targets.append(t)
                    continue
                host, port = parse_target(t) if isinstance(t, str) else (str(t[0]), int(t[1]))
                if not 0 < port <= 65535:
                    raise ValueError(f"bad port {port}: not a UDP port (1..65535)")
                self.targets.append(Target(host, port, resolve_timeout=resolve_timeout,
                                           on_message=self._say))
            if not self.targets:
                raise ValueError("no Unreal host to send to")
            self.subscriber = Subscriber(frames, subjects, events=True, curve=curve,
                                         context=context)
        except BaseException:
            for t in self.targets:
                t.close()
            raise
        self.frames_address = frames
        self._subjects: dict[str, _Subject] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.started = time.monotonic()
        self.counts: collections.Counter = collections.Counter()
        # keep named subjects alive from the start (they appear in Unreal at once)
        for s in exact:
            self._subject(s, self.started)

    # -- messages ----------------------------------------------------------------------------
    def _say(self, level: str, text: str) -> None:
        self.messages.append((level, text))
        if self._callback is not None:
            try:
                self._callback(level, text)
            except Exception:
                pass

    def _warn_values(self, st: _Subject, kind: str, n: int, now: float) -> None:
        st.counts[kind] += n
        self.counts[kind] += n
        st.pending_warn[kind] += n
        if now - st.warned_at.get(kind, -math.inf) >= _WARN_EVERY_S:
            what = {"nonfinite_values": "NaN/infinite values replaced by 0",
                    "clamped_values": "out-of-range values clamped (weights to [0, "
                                      f"{self.max_weight}], rotations wrapped to +-180 deg)"}[kind]
            self._say("warning", f"subject {st.runtime!r}: {st.pending_warn[kind]} {what} "
                                 f"({st.counts[kind]} so far)")
            st.warned_at[kind] = now
            st.pending_warn[kind] = 0

    # -- subjects ----------------------------------------------------------------------------
    def live_link_name(self, runtime_subject: str) -> str:
        """The Live Link subject name used for a runtime subject."""
        name = self.names.get(runtime_subject)
        if name is not None:
            return name
        name = self.name_format.format(subject=runtime_subject)
        cut = truncate_utf8(name, MAX_NAME_BYTES)
        if cut != name:
            self.counts["names_truncated"] += 1
            self._say("warning", f"Live Link name for {runtime_subject!r} is "
                                 f"{len(name.encode('utf-8'))} bytes; cut to {MAX_NAME_BYTES}: "
                                 f"{cut[:40]!r}...")
        return cut or runtime_subject

    def _subject(self, runtime: str, now: float) -> _Subject:
        st = self._subjects.get(runtime)
        if st is None:
            name = self.live_link_name(runtime)
            st = _Subject(runtime, name, PacketEncoder(self.device_id, name, 60, 1))
            st.clock_time = self.timecode_offset
            st.clock_wall = now
            st.last_activity = now - self.idle_after
            self._subjects[runtime] = st
        return st

    # -- frames in ---------------------------------------------------------------------------
    def _on_event(self, ev: StreamEvent, now: float) -> None:
        st = self._subject(ev.subject, now)
        if ev.event == "start":
            if ev.session != st.session:
                st.session = ev.session
                st.last_index = -1
                st.anchor_wall = None
                st.streaming_reported = False
        elif ev.event == "end" and ev.session == st.session:
            self._say("info", f"subject {ev.subject!r}: session ended "
                              f"({ev.data.get('reason', '?')}); Live Link subject "
                              f"{st.name!r} is kept alive with header-only packets")

    def accept_frame(self, frame: StreamFrame, now: float) -> None:
        """Convert one frame into a packet and queue it (sent by :meth:`flush`)."""
        st = self._subject(frame.subject, now)
        self.counts["frames"] += 1
        st.counts["frames"] += 1
        if frame.session != st.session:
            st.session = frame.session
            st.last_index = -1
            st.anchor_wall = None
            st.streaming_reported = False
        if frame.index <= st.last_index:
            st.counts["duplicates"] += 1
            return
        if st.last_index >= 0 and frame.index > st.last_index + 1:
            st.counts["missed"] += frame.index - st.last_index - 1
        st.last_index = frame.index
        fps = int(frame.fps) if frame.fps > 0 else 60
        if fps != st.encoder.rate_numerator:
            st.encoder = PacketEncoder(self.device_id, st.name, fps, 1)
        st.fps = fps
        if not st.streaming_reported:
            st.streaming_reported = True
            self._say("info", f"subject {frame.subject!r}: streaming session {frame.session} "
                              f"at {fps} fps to Live Link subject {st.name!r}")
        ll = to_livelink(frame.vector())
        if self.mirror:
            ll = mirror_livelink(ll)
        ll, nonfinite, clamped = sanitize_livelink(ll, self.max_weight)
        if nonfinite:
            self._warn_values(st, "nonfinite_values", nonfinite, now)
        if clamped:
            self._warn_values(st, "clamped_values", clamped, now)
        t = frame.time + self.timecode_offset
        number, sub = seconds_to_frame_time(t, fps, 1)
        packet = st.encoder.encode(number, sub, ll)
        if not self.pace:
            due = now
        else:
            if st.anchor_wall is None:
                st.anchor_wall, st.anchor_time = now, frame.time
            due = st.anchor_wall + (frame.time - st.anchor_time)
            if due < now - self.max_late:
                st.counts["reanchored"] += 1
                st.anchor_wall, st.anchor_time = now, frame.time
                due = now
        st.queue.append((due, packet, t))
        limit = max(1, int(self.max_queue_s * fps))
        while len(st.queue) > limit:
            st.queue.popleft()
            st.counts["dropped"] += 1
            self.counts["dropped"] += 1
        st.last_activity = max(st.last_activity, now)
        st.idle = False

    def _receive(self, wait: float, now: float, budget: int = 4096) -> int:
        n = 0
        try:
            msg = self.subscriber.recv_message(timeout=max(0.0, wait))
        except TimeoutError:
            return 0
        while True:
            now = time.monotonic()
            try:
                if isinstance(msg, StreamFrame):
                    self.accept_frame(msg, now)
                else:
                    self._on_event(msg, now)
            except Exception as e:  # a bug must not stop the relay
                self.counts["internal_errors"] += 1
                self._say("warning", f"could not relay a message from {msg.subject!r}: "
                                     f"{type(e).__name__}: {e}")
            n += 1
            if n >= budget:
                return n
            try:
                msg = self.subscriber.recv_message(timeout=0.0)
            except TimeoutError:
                return n

    # -- packets out -------------------------------------------------------------------------
    def _send(self, data: bytes, now: float) -> None:
        for t in self.targets:
            t.send(data, now)

    def flush(self, now: float, horizon: float = 0.002) -> int:
        """Send every queued packet due by ``now + horizon`` and the keep-alives that are due;
        returns how many packets went out (to each target)."""
        sent = 0
        for st in list(self._subjects.values()):
            q = st.queue
            while q and q[0][0] <= now + horizon:
                _, packet, t = q.popleft()
                self._send(packet, now)
                st.counts["packets"] += 1
                st.clock_time, st.clock_wall = t, now
                st.last_activity = now
                sent += 1
            if q:
                continue
            quiet = now - st.last_activity
            if quiet < self.idle_after:
                continue
            if not st.idle:
                st.idle = True
                st.next_keepalive = now
                if st.counts["packets"]:
                    self._say("info", f"subject {st.runtime!r}: no frames for "
                                      f"{self.idle_after:g} s; keeping Live Link subject "
                                      f"{st.name!r} alive at {1 / self.idle_interval:g} Hz")
            if self.forget_after and quiet >= self.forget_after:
                del self._subjects[st.runtime]
                self.counts["packets_forgotten"] += st.counts["packets"]
                self.counts["keepalives_forgotten"] += st.counts["keepalives"]
                self._say("info", f"subject {st.runtime!r}: idle for {quiet:.0f} s, no longer "
                                  "kept alive")
                continue
            if now >= st.next_keepalive:
                number, sub = seconds_to_frame_time(
                    st.clock_time + (now - st.clock_wall), st.fps, 1)
                self._send(st.encoder.header_only(number, sub), now)
                st.counts["keepalives"] += 1
                st.next_keepalive = max(st.next_keepalive + self.idle_interval, now)
                sent += 1
        self.counts["packets_out"] += sent
        return sent

    def _next_deadline(self, now: float) -> float:
        best = math.inf
        for st in self._subjects.values():
            if st.queue:
                best = min(best, st.queue[0][0] - 0.002)
            elif st.idle:
                best = min(best, st.next_keepalive)
            else:
                best = min(best, st.last_activity + self.idle_after)
        return best

    def step(self, max_wait: float = 0.05) -> int:
        """One round: wait (at most ``max_wait`` s, less when a packet is due) for frames,
        take every queued message, send what is due. Returns packets sent."""
        now = time.monotonic()
        wait = min(max_wait, max(0.0, self._next_deadline(now) - now))
        self._receive(wait, now)
        return self.flush(time.monotonic())

    # -- running -----------------------------------------------------------------------------
    def run(self, duration: float | None = None, stop: threading.Event | None = None,
            max_packets: int | None = None) -> None:
        """Relay until ``stop`` is set, ``duration`` seconds pass, :meth:`stop` is called, or
        ``max_packets`` frame packets were sent."""
        end = None if duration is None else time.monotonic() + duration
        while not self._stop.is_set() and not (stop is not None and stop.is_set()):
            now = time.monotonic()
            if end is not None and now >= end:
                break
            if max_packets is not None and self.packets_sent >= max_packets:
                break
            self.step(0.05 if end is None else max(0.0, min(0.05, end - now)))

    def start(self) -> "UnrealRelay":
        """Run in a background thread (until :meth:`close`)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self.run, name="facecast-unreal-relay",
                                            daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5.0)

    def close(self) -> None:
        if self._closed:
            return
        self.stop()
        self._closed = True
        self.subscriber.close()
        for t in self.targets:
            t.close()

    def __enter__(self) -> "UnrealRelay":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- reporting ---------------------------------------------------------------------------
    @property
    def packets_sent(self) -> int:
        """Frame packets sent (each one went to every target)."""
        return sum(st.counts["packets"] for st in list(self._subjects.values())) \
            + self.counts["packets_forgotten"]

    def stats(self) -> dict[str, Any]:
        subjects = {}
        for st in list(self._subjects.values()):
            subjects[st.runtime] = {
                "name": st.name, "session": st.session, "fps": st.fps,
                "state": "idle" if st.idle else "streaming", "queued": len(st.queue),
                **{k: st.counts[k] for k in ("frames", "packets", "keepalives", "missed",
                                             "duplicates", "reanchored", "dropped",
                                             "nonfinite_values", "clamped_values")},
            }
        sub = dict(self.subscriber.stats) if not self._closed else {}
        return {
            "device_id": self.device_id, "frames_address": self.frames_address,
            "uptime_s": time.monotonic() - self.started,
            "frames": self.counts["frames"], "packets": self.packets_sent,
            "keepalives": sum(s["keepalives"] for s in subjects.values())
            + self.counts["keepalives_forgotten"],
            "nonfinite_values": self.counts["nonfinite_values"],
            "clamped_values": self.counts["clamped_values"],
            "dropped": self.counts["dropped"], "names_truncated": self.counts["names_truncated"],
            "internal_errors": self.counts["internal_errors"],
            "subscriber": sub, "targets": [t.stats() for t in self.targets],
            "subjects": subjects,
        }
