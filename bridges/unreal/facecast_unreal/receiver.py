"""Receiving Live Link Face packets (from the facecast relay or the iPhone app) and recording
them as facecast takes.

::

    from facecast_unreal import LiveLinkReceiver, TakeRecorder
    with LiveLinkReceiver(port=11111) as rx:
        rec = TakeRecorder(["take.csv", "take.json"])
        for packet, sender, when in rx.receive(timeout=1.0):
            rec.add(packet)
        rec.close()

:class:`LiveLinkReceiver` binds a UDP port and decodes every datagram with
:func:`~facecast_unreal.livelink.decode_packet`; malformed datagrams are counted (and reported
through ``on_message``), never raised. :class:`TakeRecorder` turns one subject's packets into
facecast frames (the inverse of the relay's conversion, the same as the Live Link CSV reader's)
and streams them to ``.csv`` (Live Link Face CSV), ``.json`` or ``.npz`` writers:

* the take's frame rate is the packets' rate (``num/den``, rounded when not whole); frame ``i``
  of the take is packet frame number ``first + i``, and the take's start timecode is the first
  packet's frame time (seconds since midnight), so a CSV take carries the sender's timecodes;
* a frame that never arrived (UDP loss, or header-only packets while the app saw no face) is
  filled by holding the previous frame, and counted; duplicates and packets that go back in
  time are dropped and counted; a jump of the sender's clock (back by more than a second, or
  forward by more than ``max_hold_s``, e.g. a restarted sender) continues the take at the next
  frame instead (counted as ``rebased``);
* NaN/inf values become 0 and negative weights 0 (counted); weights above 1 are kept (the app
  itself sends slightly more than 1 now and then); eye roll, which facecast has no channel for,
  is not stored.
"""
from __future__ import annotations

import collections
import errno
import math
import os
import re
import select
import socket
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from facecast.formats import SUPPORTED_EXTENSIONS, open_writer
from facecast.schema import FrameBatch

from .livelink import (
    DEFAULT_PORT, LiveLinkPacket, PacketError, decode_packet, from_livelink, mirror_livelink,
    sanitize_livelink,
)

__all__ = ["LiveLinkReceiver", "TakeRecorder", "subject_path"]

MessageCallback = Callable[[str, str], None]
_MAX_DATAGRAM = 65535
_BATCH_FRAMES = 120


class LiveLinkReceiver:
    """A UDP socket bound to ``bind:port`` that decodes Live Link Face packets.

    ``subjects``: keep only these subject names (None: all). ``port=0`` picks a free port
    (see :attr:`port`). Raises ValueError when the address is bad or the port is taken.
    """

    def __init__(self, bind: str = "0.0.0.0", port: int = DEFAULT_PORT,
                 subjects: Iterable[str] | None = None, *,
                 on_message: MessageCallback | None = None,
                 rcvbuf: int = 1 << 20) -> None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"bad port {port!r}: not a UDP port (0..65535)")
        try:
            infos = socket.getaddrinfo(bind, port, 0, socket.SOCK_DGRAM, 0,
                                       socket.AI_PASSIVE)
        except (socket.gaierror, UnicodeError) as e:
            raise ValueError(f"bad bind address {bind!r}: {getattr(e, 'strerror', None) or e}") \
                from None
        family, _, _, _, sockaddr = infos[0]
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            except OSError:
                pass
            self.sock.bind(sockaddr)
        except OSError as e:
            self.sock.close()
            hint = " (Unreal or another listener already uses it; pick another --port)" \
                if e.errno == errno.EADDRINUSE else ""
            raise ValueError(f"cannot listen on UDP {bind}:{port}: {e.strerror or e}{hint}") \
                from None
        self.sock.setblocking(False)
        self.bind = bind
        self.port: int = self.sock.getsockname()[1]
        self.subjects = None if subjects is None else set(subjects)
        self._callback = on_message
        self.counts: collections.Counter = collections.Counter()
        self.last_error = ""
        self._warned_at = -math.inf
        self._unwarned = 0
        #: Per subject: packets, header-only packets, last frame number, device id, sender.
        self.seen: dict[str, dict[str, Any]] = {}

    def _say(self, level: str, text: str) -> None:
        if self._callback is not None:
            try:
                self._callback(level, text)
            except Exception:
                pass

    def receive(self, timeout: float = 0.0, budget: int = 4096
                ) -> list[tuple[LiveLinkPacket, Any, float]]:
        """Wait up to ``timeout`` seconds for datagrams, then return every decoded packet
        available now as (packet, sender address, monotonic receive time)."""
        out: list[tuple[LiveLinkPacket, Any, float]] = []
        try:
            ready, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
        except (OSError, ValueError):
            return out
        if not ready:
            return out
        for _ in range(budget):
            try:
                data, sender = self.sock.recvfrom(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:  # e.g. an ICMP error queued on the socket
                self.counts["socket_errors"] += 1
                self.last_error = str(e)
                continue
            now = time.monotonic()
            self.counts["datagrams"] += 1
            self.counts["bytes"] += len(data)
            try:
                packet = decode_packet(data)
            except PacketError as e:
                self._bad(str(e), sender, now)
                continue
            if self.subjects is not None and packet.subject not in self.subjects:
                self.counts["filtered"] += 1
                continue
            self.counts["packets"] += 1
            s = self.seen.setdefault(packet.subject, collections.Counter())
            s["packets"] += 1
            if packet.header_only:
                self.counts["header_only"] += 1
                s["header_only"] += 1
            s["frame_number"] = packet.frame_number
            s["device_id"] = packet.device_id
            s["sender"] = f"{sender[0]}:{sender[1]}"
            out.append((packet, sender, now))
        return out

    def _bad(self, reason: str, sender: Any, now: float) -> None:
        self.counts["decode_errors"] += 1
        self.last_error = f"{sender[0]}:{sender[1]}: {reason}"
        self._unwarned += 1
        if now - self._warned_at >= 5.0:
            self._say("warning", f"{self._unwarned} undecodable datagram(s), last from "
                                 f"{self.last_error}")
            self._warned_at = now
            self._unwarned = 0

    def stats(self) -> dict[str, Any]:
        return {"port": self.port, **{k: self.counts[k] for k in (
            "datagrams", "bytes", "packets", "header_only", "decode_errors", "filtered",
            "socket_errors")}, "last_error": self.last_error,
            "subjects": {k: dict(v) for k, v in self.seen.items()}}

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "LiveLinkReceiver":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]")


def subject_path(template: str | os.PathLike[str], subject: str) -> Path:
    """``template`` with ``{subject}`` replaced by a file-name-safe form of ``subject``
    (path separators and control characters become ``_``; non-ASCII letters are kept)."""
    safe = _UNSAFE.sub("_", subject).strip(" .") or "subject"
    return Path(os.fspath(template).replace("{subject}", safe))


class TakeRecorder:
    """Streams one subject's packets into facecast files (see the module docstring).

    ``paths``: output files; their extension picks the format (.csv, .json, .npz). ``mirror``
    undoes a mirrored sender. Writers open at the first packet with values; :meth:`close`
    finishes the files (atomically), :meth:`abort` leaves none.
    """

    def __init__(self, paths: Iterable[str | os.PathLike[str]], subject: str = "", *,
                 mirror: bool = False, max_hold_s: float = 5.0) -> None:
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise ValueError("no output file to record to")
        for p in self.paths:
            if p.suffix.lower() not in SUPPORTED_EXTENSIONS:
                raise ValueError(f"output {str(p)!r} has unsupported extension "
                                 f"{p.suffix or '(none)'!r}; use one of "
                                 f"{', '.join(SUPPORTED_EXTENSIONS)}")
        self.subject = subject
        self.mirror = mirror
        self.max_hold_s = max_hold_s
        self.writers: list[Any] = []
        self.fps = 0
        self.rate: tuple[int, int] | None = None
        self.first_number = 0
        self.first_seconds = 0.0
        self.start_timecode = 0.0
        self.next_index = 0
        self.counts: collections.Counter = collections.Counter()
        self._rows: list[np.ndarray] = []
        self._buf_start = 0
        self._last: np.ndarray | None = None
        self._state = "open"

    @property
    def frames(self) -> int:
        """Frames in the take so far (received + held)."""
        return self.next_index

    def _open(self, packet: LiveLinkPacket) -> None:
        num, den = packet.rate_numerator, packet.rate_denominator
        self.rate = (num, den)
        self.fps = num // den if num % den == 0 else max(1, round(num / den))
        self.first_number = packet.frame_number
        self.first_seconds = packet.seconds
        self.start_timecode = self.first_seconds % 86400.0
        for p in self.paths:
            p.parent.mkdir(parents=True, exist_ok=True)
        try:
            for p in self.paths:
                self.writers.append(open_writer(p, self.fps, self.subject, self.start_timecode))
        except BaseException:
            self.abort()
            raise

    def _index(self, packet: LiveLinkPacket) -> int:
        num, den = self.rate  # type: ignore[misc]
        if num == self.fps * den:
            return packet.frame_number - self.first_number
        return int(round((packet.seconds - self.first_seconds) * self.fps))

    def add(self, packet: LiveLinkPacket) -> bool:
        """Add one packet; True if it became a frame of the take."""
        if self._state != "open":
            raise ValueError("recorder is closed")
        if packet.values is None:
            self.counts["header_only"] += 1
            return False
        if packet.rate_numerator <= 0 or packet.rate_denominator <= 0:
            self.counts["bad_rate"] += 1
            return False
        if self.rate is None:
            self._open(packet)
        elif (packet.rate_numerator, packet.rate_denominator) != self.rate:
            self.counts["other_rate"] += 1
            return False
        index = self._index(packet)
        if index < self.next_index - self.fps or index > self.next_index + self.max_hold_s * \
                self.fps:
            # the sender restarted its clock (or jumped): continue the take from here
            self.counts["rebased"] += 1
            self.first_number = packet.frame_number - self.next_index
            self.first_seconds = packet.seconds - self.next_index / self.fps
            index = self.next_index
        if index < self.next_index:
            self.counts["out_of_order"] += 1
            return False
        ll = packet.values.astype(np.float64)
        if self.mirror:
            ll = mirror_livelink(ll)
        ll, nonfinite, clamped = sanitize_livelink(ll, max_weight=None)
        self.counts["nonfinite_values"] += nonfinite
        self.counts["clamped_values"] += clamped
        row = from_livelink(ll)
        while self.next_index < index:  # lost frames: hold the previous one
            self._rows.append(self._last if self._last is not None else row)
            self.next_index += 1
            self.counts["held"] += 1
        self._rows.append(row)
        self._last = row
        self.next_index += 1
        self.counts["frames"] += 1
        if len(self._rows) >= _BATCH_FRAMES:
            self._flush()
        return True

    def _flush(self) -> None:
        if not self._rows:
            return
        batch = FrameBatch(np.stack(self._rows), self._buf_start, self.fps, self.subject)
        self._rows = []
        self._buf_start += len(batch)
        try:
            for w in self.writers:
                w.write(batch)
        except BaseException:
            self.abort()
            raise

    def close(self) -> list[Path]:
        """Finish the files; returns the paths written (none when no frame arrived)."""
        if self._state != "open":
            return []
        self._flush()
        for w in self.writers:
            w.close()
        self._state = "closed"
        return list(self.paths) if self.writers else []

    def abort(self) -> None:
        if self._state == "closed":
            return
        self._state = "aborted"
        for w in self.writers:
            w.abort()

    def stats(self) -> dict[str, Any]:
        return {"subject": self.subject, "fps": self.fps, "frames": self.frames,
                "start_timecode_s": self.start_timecode, "received": self.counts["frames"],
                **{k: self.counts[k] for k in (
                    "held", "out_of_order", "header_only", "other_rate", "bad_rate", "rebased",
                    "nonfinite_values", "clamped_values")}}
