"""The ``facecast unreal`` and ``facecast livelink-listen`` subcommands.

They are registered in :mod:`facecast_runtime.cli` (which prints errors and picks exit codes);
this module holds their options and run functions. Bad input raises ``ValueError`` or fails in
argparse (exit 2, one line); a listener that hears nothing within ``--wait`` raises
``TimeoutError`` (exit 1).
"""
from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from facecast.wire import DEFAULT_FRAME_PORT, DEFAULT_HOST
from facecast_runtime import argtypes

from .livelink import (
    DEFAULT_PORT, MAX_DEVICE_ID_BYTES, MAX_NAME_BYTES, PACKET_NAMES, PacketError, check_name,
    from_livelink, mirror_livelink,
)

__all__ = ["configure_relay", "run_relay", "configure_listen", "run_listen"]


# ------------------------------------------------------------------------------------------
# argument types
# ------------------------------------------------------------------------------------------
def _udp_port(text: str) -> int:
    return argtypes.port(text, "UDP", allow_zero=False)


def _listen_port(text: str) -> int:
    return argtypes.port(text, "UDP", allow_zero=True)


_tcp_port = argtypes.port
_one_line = argtypes.one_line
_positive = argtypes.positive_float
_nonneg = argtypes.nonneg_float
_count = argtypes.nonneg_int
_runtime_subject = argtypes.subject_filter


def _live_link_name(text: str) -> str:
    try:
        check_name(text, "Live Link subject name", MAX_NAME_BYTES)
    except PacketError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _timecode_offset(text: str) -> float:
    from facecast.formats.livelink_csv import parse_timecode

    try:
        v = float(text)
    except ValueError:
        try:
            return parse_timecode(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"timecode offset {text!r} is neither seconds nor HH:MM:SS:FF[.fff]") from None
    if not math.isfinite(v) or v < 0:
        raise argparse.ArgumentTypeError(f"timecode offset {text!r} must be >= 0 seconds")
    return v


def _endpoint(host: str, port: int) -> str:
    h = "127.0.0.1" if host == "localhost" else host
    if ":" in h and not h.startswith("["):
        h = f"[{h}]"
    return f"tcp://{h}:{port}"


def _stop_on_sigterm() -> tuple[threading.Event, Any]:
    stop = threading.Event()
    try:
        old = signal.signal(signal.SIGTERM, lambda *a: stop.set())
    except ValueError:  # not the main thread
        old = None
    return stop, old


def _restore_sigterm(old: Any) -> None:
    if old is not None:
        signal.signal(signal.SIGTERM, old)


# ------------------------------------------------------------------------------------------
# facecast unreal
# ------------------------------------------------------------------------------------------
def configure_relay(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("Unreal side")
    g.add_argument("--host", action="append", metavar="HOST[:PORT]",
                   help="Unreal machine to send to (repeatable; [IPV6]:PORT accepted; default "
                        "127.0.0.1)")
    g.add_argument("--port", type=_udp_port, default=DEFAULT_PORT,
                   help=f"UDP port for hosts given without one (default {DEFAULT_PORT}, "
                        "Unreal's Live Link Face port)")
    g.add_argument("--name", action="append", metavar="SUBJECT=NAME",
                   help="Live Link subject name for a runtime subject (repeatable; UTF-8, at "
                        f"most {MAX_NAME_BYTES} bytes; default: the runtime subject's name); a "
                        "bare NAME applies to the single --subject")
    g.add_argument("--name-format", default="{subject}", metavar="FORMAT",
                   help="Live Link name of subjects without --name, e.g. 'fc_{subject}' "
                        "(default {subject})")
    g.add_argument("--device-id", metavar="ID",
                   help="device id sent in every packet (default: a UUID derived from this "
                        "machine's name)")
    g.add_argument("--timecode-offset", type=_timecode_offset, default=0.0, metavar="T",
                   help="added to each frame's audio-clock time: seconds, or a timecode "
                        "HH:MM:SS:FF[.fff] at 60 frames/s (default 0)")
    g.add_argument("--mirror", action="store_true",
                   help="mirror the face (swap left/right, negate yaw and roll), like the app's "
                        "mirror setting")
    g.add_argument("--no-pace", dest="pace", action="store_false",
                   help="send frames as soon as they arrive instead of at the frame rate")
    g.add_argument("--idle-after", type=_positive, default=0.25, metavar="S",
                   help="a subject without frames for S seconds is idle (default 0.25)")
    g.add_argument("--idle-rate", type=_positive, default=10.0, metavar="HZ",
                   help="header-only keep-alive packets per second while idle (default 10)")
    g.add_argument("--forget-after", type=_nonneg, default=0.0, metavar="S",
                   help="stop keeping a subject alive after S idle seconds (default 0: never)")
    r = p.add_argument_group("runtime side (defaults find a local 'facecast serve')")
    r.add_argument("--subject", action="append", type=_runtime_subject, metavar="NAME",
                   help="runtime subject to relay (repeatable; NAME.* for a group; default "
                        "all)")
    r.add_argument("--runtime", default=DEFAULT_HOST, metavar="HOST",
                   help=f"runtime host (default {DEFAULT_HOST})")
    r.add_argument("--frame-port", type=_tcp_port, default=DEFAULT_FRAME_PORT,
                   help=f"runtime frame port (default {DEFAULT_FRAME_PORT})")
    r.add_argument("--frames", metavar="ENDPOINT",
                   help="full frame endpoint, e.g. tcp://10.0.0.5:5571 (overrides --runtime, "
                        "--frame-port)")
    r.add_argument("--curve-dir", metavar="DIR", help="CURVE key directory ('facecast keygen')")
    r.add_argument("--client-name", default="client", metavar="NAME",
                   help="client key pair in --curve-dir (default client)")
    o = p.add_argument_group("running")
    o.add_argument("--duration", type=_positive, metavar="S", help="stop after S seconds")
    o.add_argument("--count", type=_count, metavar="N", help="stop after N frame packets")
    o.add_argument("--stats-every", type=_positive, metavar="S",
                   help="print a status line every S seconds")
    o.add_argument("-q", "--quiet", action="store_true",
                   help="print warnings only (no start, progress or summary lines)")


def _names(args: argparse.Namespace) -> dict[str, str]:
    names: dict[str, str] = {}
    exact = [s for s in (args.subject or []) if s != "*" and not s.endswith(".*")]
    for item in args.name or []:
        if "=" in item:
            subject, name = item.split("=", 1)
            try:
                _runtime_subject(subject)
            except argparse.ArgumentTypeError as e:
                raise ValueError(f"--name {item!r}: {e}") from None
        elif len(exact) == 1 and len(args.subject) == 1:
            subject, name = exact[0], item
        else:
            raise ValueError(f"--name {item!r}: use SUBJECT=NAME (a bare NAME needs exactly one "
                             "--subject)")
        try:
            check_name(name, f"Live Link subject name for {subject!r}", MAX_NAME_BYTES)
        except PacketError as e:
            raise ValueError(str(e)) from None
        names[subject] = name
    return names


def run_relay(args: argparse.Namespace) -> int:
    from .relay import UnrealRelay, parse_target

    targets = [parse_target(h, args.port) for h in (args.host or ["127.0.0.1"])]
    names = _names(args)
    if args.device_id is not None:
        try:
            check_name(args.device_id, "device id", MAX_DEVICE_ID_BYTES)
        except PacketError as e:
            raise ValueError(str(e)) from None
    curve = None
    if args.curve_dir:
        from facecast.client import load_client_keys

        try:
            curve = load_client_keys(args.curve_dir, args.client_name)
        except (OSError, ValueError) as e:
            raise ValueError(str(e)) from None
    frames = args.frames or _endpoint(args.runtime, args.frame_port)
    prog = "facecast unreal"

    def say(level: str, text: str) -> None:
        if level != "info" or not args.quiet:
            print(f"{prog}: {'warning: ' if level == 'warning' else ''}{text}", file=sys.stderr,
                  flush=True)

    relay = UnrealRelay(frames, args.subject or None, targets, names=names,
                        name_format=args.name_format, device_id=args.device_id,
                        timecode_offset=args.timecode_offset, pace=args.pace,
                        idle_after=args.idle_after, idle_rate=args.idle_rate,
                        forget_after=args.forget_after, mirror=args.mirror, curve=curve,
                        on_message=say)
    stop, old = _stop_on_sigterm()
    try:
        if not args.quiet:
            what = ", ".join(args.subject) if args.subject else "every subject"
            print(f"{prog}: relaying {what} from {frames} to "
                  f"{', '.join(str(t) for t in relay.targets)} (device {relay.device_id}); "
                  "Ctrl-C stops", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        end = None if args.duration is None else t0 + args.duration
        next_stats = None if args.stats_every is None else t0 + args.stats_every
        try:
            while not stop.is_set():
                now = time.monotonic()
                if end is not None and now >= end:
                    break
                if args.count is not None and relay.packets_sent >= args.count:
                    break
                if next_stats is not None and now >= next_stats:
                    next_stats += args.stats_every
                    print(f"{prog}: {_relay_status(relay.stats())}", file=sys.stderr,
                          flush=True)
                relay.step(0.05 if end is None else max(0.0, min(0.05, end - now)))
        except KeyboardInterrupt:
            pass
        st = relay.stats()
    finally:
        _restore_sigterm(old)
        relay.close()
    if not args.quiet:
        print(f"{prog}: stopped: {_relay_status(st)}", file=sys.stderr, flush=True)
    return 0


def _relay_status(st: dict) -> str:
    errors: dict[str, int] = {}
    for t in st["targets"]:
        for k, v in t["errors"].items():
            errors[k] = errors.get(k, 0) + v
    err = ", ".join(f"{v} {k}" for k, v in sorted(errors.items())) or "none"
    subjects = ", ".join(f"{k}->{v['name']} ({v['state']}, {v['packets']} packets)"
                         for k, v in st["subjects"].items()) or "no subject yet"
    fixes = st["nonfinite_values"] + st["clamped_values"]
    return (f"{st['frames']} frames in, {st['packets']} packets + {st['keepalives']} "
            f"keep-alives out to {len(st['targets'])} host(s); send errors: {err}; "
            f"values fixed: {fixes}; missed: {st['subscriber'].get('missed', 0)}; {subjects}")


# ------------------------------------------------------------------------------------------
# facecast livelink-listen
# ------------------------------------------------------------------------------------------
def configure_listen(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bind", default="0.0.0.0", metavar="ADDR",
                   help="address to listen on (default 0.0.0.0: every interface, so the "
                        "iPhone app can reach it; 127.0.0.1 for this machine only)")
    p.add_argument("--port", type=_listen_port, default=DEFAULT_PORT,
                   help=f"UDP port (default {DEFAULT_PORT}; 0 = any free port, printed; "
                        "Unreal itself uses 11111 on its machine)")
    p.add_argument("--subject", action="append", metavar="NAME", type=_live_link_name,
                   help="keep only this Live Link subject (repeatable; default all)")
    p.add_argument("-o", "--output", action="append", metavar="OUT",
                   help="record to .csv (Live Link Face CSV), .json or .npz (repeatable); "
                        "'{subject}' in the path writes one file per subject, otherwise the "
                        "first subject heard is recorded")
    p.add_argument("--mirror", action="store_true",
                   help="the sender mirrors the face (undo it when recording/showing)")
    p.add_argument("--format", choices=("text", "jsonl", "none"), default="text",
                   help="what to print: text (a status line per subject, --print-rate times a "
                        "second), jsonl (every packet), none (default text)")
    p.add_argument("--channels", metavar="A,B,...",
                   default="jawOpen,mouthClose,headYaw,headPitch,leftEyeYaw",
                   help="facecast channels shown by --format text")
    p.add_argument("--print-rate", type=_positive, default=10.0, metavar="HZ",
                   help="status lines per second and subject for --format text (default 10)")
    p.add_argument("--count", type=_count, metavar="N", help="stop after N packets with values")
    p.add_argument("--duration", type=_positive, metavar="S", help="stop after S seconds")
    p.add_argument("--until-idle", type=_positive, metavar="S",
                   help="stop when no packet with values arrived for S seconds (after the "
                        "first one)")
    p.add_argument("--wait", type=_positive, metavar="S",
                   help="give up (exit 1) if no packet arrives within S seconds")
    p.add_argument("-q", "--quiet", action="store_true", help="no start and summary lines")


def _output_paths(outputs: list[str]) -> list[str]:
    from facecast.formats import SUPPORTED_EXTENSIONS

    for o in outputs:
        path = Path(o)
        if path.suffix.lower() not in SUPPORTED_EXTENSIONS:
            raise ValueError(f"output {o!r} has unsupported extension "
                             f"{path.suffix or '(none)'!r}; use one of "
                             f"{', '.join(SUPPORTED_EXTENSIONS)}")
        if "{subject}" not in o and path.is_dir():
            raise ValueError(f"output {o!r} is a directory")
    per_subject = ["{subject}" in o for o in outputs]
    if any(per_subject) and not all(per_subject):
        raise ValueError("either every -o has '{subject}' in it or none does")
    return outputs


def _timecode_text(seconds: float) -> str:
    from facecast.formats.livelink_csv import format_timecode

    if not math.isfinite(seconds):
        return "--:--:--:--.---"
    return format_timecode(seconds % 86400.0)


def run_listen(args: argparse.Namespace) -> int:
    from facecast.schema import CHANNEL_INDEX

    from .receiver import LiveLinkReceiver, TakeRecorder, subject_path

    outputs = _output_paths(args.output or [])
    per_subject = bool(outputs) and "{subject}" in outputs[0]
    show = [c.strip() for c in args.channels.split(",") if c.strip()]
    for c in show:
        if c not in CHANNEL_INDEX:
            raise ValueError(f"unknown channel {c!r} in --channels")
    prog = "facecast livelink-listen"

    def say(level: str, text: str) -> None:
        print(f"{prog}: {'warning: ' if level == 'warning' else ''}{text}", file=sys.stderr,
              flush=True)

    rx = LiveLinkReceiver(args.bind, args.port, args.subject, on_message=say)
    recorders: dict[str, TakeRecorder] = {}
    ignored: set[str] = set()
    last_print: dict[str, float] = {}
    values = 0
    t0 = time.monotonic()
    first_packet: float | None = None
    last_values: float | None = None
    stop, old = _stop_on_sigterm()
    period = 1.0 / args.print_rate
    finished = False
    try:
        if not args.quiet:
            print(f"{prog}: listening on UDP {args.bind}:{rx.port}", file=sys.stderr,
                  flush=True)
        try:
            while not stop.is_set():
                now = time.monotonic()
                if args.duration is not None and now - t0 >= args.duration:
                    break
                if args.count is not None and values >= args.count:
                    break
                if args.until_idle is not None and last_values is not None \
                        and now - last_values >= args.until_idle:
                    break
                if first_packet is None and args.wait is not None and now - t0 >= args.wait:
                    raise TimeoutError(f"no Live Link packet on UDP {args.bind}:{rx.port} "
                                       f"within {args.wait:g} s")
                for packet, sender, when in rx.receive(0.05):
                    if first_packet is None:
                        first_packet = when
                    if packet.values is not None:
                        if args.count is not None and values >= args.count:
                            break
                        values += 1
                        last_values = when
                    if outputs:
                        rec = recorders.get(packet.subject)
                        if rec is None and packet.values is not None and (
                                per_subject or not recorders):
                            paths = [subject_path(o, packet.subject) if per_subject else
                                     Path(o) for o in outputs]
                            rec = recorders[packet.subject] = TakeRecorder(
                                paths, packet.subject, mirror=args.mirror)
                            if not args.quiet:
                                say("info", f"recording subject {packet.subject!r} to "
                                            f"{', '.join(map(str, paths))}")
                        elif rec is None and packet.values is not None \
                                and packet.subject not in ignored:
                            ignored.add(packet.subject)
                            say("info", f"not recording subject {packet.subject!r} (only the "
                                        "first one; put {subject} in -o to record every one)")
                        if rec is not None:
                            rec.add(packet)
                    _show(args, packet, sender, when, show, last_print, period)
        except KeyboardInterrupt:
            pass
        finished = True
    finally:
        _restore_sigterm(old)
        rx.close()
        written: list[str] = []
        for rec in recorders.values():
            if finished:
                written += [f"{p} ({rec.frames} frames, {rec.counts['held']} held)"
                            for p in rec.close()]
            else:
                rec.abort()
    st = rx.stats()
    if not args.quiet:
        print(f"{prog}: {st['packets']} packets ({st['header_only']} header-only, "
              f"{st['decode_errors']} undecodable) from {len(st['subjects'])} subject(s)"
              + (f"; wrote {', '.join(written)}" if written else ""), file=sys.stderr,
              flush=True)
    if outputs and not recorders:
        raise TimeoutError(f"no packet with values arrived; nothing written to "
                           f"{', '.join(outputs)}")
    return 0


def _show(args: argparse.Namespace, packet: Any, sender: Any, when: float, show: list[str],
          last_print: dict[str, float], period: float) -> None:
    if args.format == "none":
        return
    from facecast.schema import CHANNEL_INDEX

    fc = None
    if packet.values is not None:
        ll = packet.values.astype("f8")
        fc = from_livelink(mirror_livelink(ll) if args.mirror else ll)
    if args.format == "jsonl":
        rec: dict[str, Any] = {
            "subject": packet.subject, "device_id": packet.device_id,
            "frame_number": packet.frame_number, "sub_frame": packet.sub_frame,
            "rate": [packet.rate_numerator, packet.rate_denominator],
            "timecode": _timecode_text(packet.seconds), "sender": f"{sender[0]}:{sender[1]}",
        }
        if packet.values is not None:
            rec["values"] = {n: round(float(v), 7) for n, v in zip(PACKET_NAMES, packet.values)
                             if math.isfinite(v)}
        print(json.dumps(rec, ensure_ascii=False), flush=True)
        return
    if when - last_print.get(packet.subject, -math.inf) < period:
        return
    last_print[packet.subject] = when
    if fc is None:
        vals = "(no face: header-only packet)"
    else:
        vals = "  ".join(f"{c}={float(fc[CHANNEL_INDEX[c]]):+.3f}" for c in show)
    print(f"{packet.subject:<16} #{packet.frame_number:<9d} {_timecode_text(packet.seconds)} "
          f"{packet.rate_numerator}/{packet.rate_denominator}  {vals}", flush=True)
