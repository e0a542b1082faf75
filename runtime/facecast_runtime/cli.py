"""The ``facecast`` command line.

Subcommands live in one table, :data:`COMMANDS`. Adding one takes a few lines::

    def _eval_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("data")

    @command("eval", "evaluate a model on a data set", _eval_args)
    def _eval(args: argparse.Namespace) -> int:
        ...
        return 0

Each run function returns the exit code (None means 0) and raises :class:`UsageError` (or a
``ValueError``/``FacecastError``) for bad input: :func:`main` prints ``facecast CMD: error:
REASON`` on one line to stderr and exits 2. Unreachable servers exit 1, Ctrl-C 130.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from facecast import __version__
from . import argtypes
from facecast.wire import (
    DEFAULT_CONTROL_PORT, DEFAULT_FRAME_PORT, DEFAULT_HOST, MAX_SUBJECT_LENGTH, RemoteError,
)

__all__ = ["main", "command", "Command", "COMMANDS", "UsageError"]

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(ValueError):
    """Bad input on the command line; exits 2 with this one-line message."""


class ConnectError(RuntimeError):
    """The runtime server could not be reached; exits 1."""


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], "int | None"]
    description: str = ""


#: The subcommand table, in ``--help`` order.
COMMANDS: list[Command] = []


def command(name: str, help: str, configure: Callable[[argparse.ArgumentParser], None]
            = lambda p: None, description: str = "") -> Callable:
    """Decorator registering ``run(args) -> exit code`` as ``facecast NAME``."""
    def deco(run: Callable[[argparse.Namespace], "int | None"]) -> Callable:
        global COMMANDS
        COMMANDS = [c for c in COMMANDS if c.name != name]
        COMMANDS.append(Command(name, help, configure, run, description or help))
        return run
    return deco


# ------------------------------------------------------------------------------------------
# argparse plumbing
# ------------------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {_one_line(message)} (see --help)\n")


_one_line = argtypes.one_line
_positive_float = argtypes.positive_float
_nonneg_int = argtypes.nonneg_int
_port = argtypes.port
_subject = argtypes.subject
_subject_filter = argtypes.subject_filter


def _fps(text: str) -> int:
    from facecast.schema import SUPPORTED_FPS

    try:
        v = int(text)
    except ValueError:
        v = -1
    if v not in SUPPORTED_FPS:
        raise argparse.ArgumentTypeError(
            f"fps {text!r} is not one of {', '.join(map(str, SUPPORTED_FPS))}")
    return v


def _add_connection_args(p: argparse.ArgumentParser, control: bool, frames: bool) -> None:
    g = p.add_argument_group("connection (defaults find a local 'facecast serve')")
    g.add_argument("--host", default=DEFAULT_HOST,
                   help=f"runtime host (default {DEFAULT_HOST})")
    if control:
        g.add_argument("--control-port", type=_port, default=DEFAULT_CONTROL_PORT,
                       help=f"control port (default {DEFAULT_CONTROL_PORT})")
        g.add_argument("--control", metavar="ENDPOINT",
                       help="full control endpoint, e.g. tcp://10.0.0.5:5570 (overrides "
                            "--host/--control-port)")
    if frames:
        g.add_argument("--frame-port", type=_port, default=DEFAULT_FRAME_PORT,
                       help=f"frame port (default {DEFAULT_FRAME_PORT})")
        g.add_argument("--frames", metavar="ENDPOINT",
                       help="full frame endpoint, e.g. tcp://10.0.0.5:5571")
    g.add_argument("--curve-dir", metavar="DIR",
                   help="CURVE key directory from 'facecast keygen' (needed when the runtime "
                        "uses CURVE)")
    g.add_argument("--client-name", default="client", metavar="NAME",
                   help="which client key pair in --curve-dir to use (default client)")


def _endpoint(host: str, port: int) -> str:
    h = "127.0.0.1" if host == "localhost" else host
    if ":" in h and not h.startswith("["):
        h = f"[{h}]"
    return f"tcp://{h}:{port}"


def _control_address(args: argparse.Namespace) -> str:
    return args.control or _endpoint(args.host, args.control_port)


def _frame_address(args: argparse.Namespace) -> str:
    return args.frames or _endpoint(args.host, args.frame_port)


def _client_keys(args: argparse.Namespace) -> Any:
    if not args.curve_dir:
        return None
    from facecast.client import load_client_keys

    try:
        return load_client_keys(args.curve_dir, args.client_name)
    except (OSError, ValueError) as e:
        raise UsageError(str(e)) from None


def _add_expressive_args(p: argparse.ArgumentParser) -> None:
    """Options of the expressive layer (head, eyes, blinks, brows, emotion)."""
    g = p.add_argument_group("expressive layer (head, gaze, blinks, brows, emotion; on by "
                             "default, see docs/expression.md)")
    g.add_argument("--no-expressive", action="store_true",
                   help="mouth only: the model's channels, everything else zero")
    g.add_argument("--seed", type=_nonneg_int, default=None,
                   help="seed of the random choices (default 0); same audio + seed = same "
                        "frames")
    g.add_argument("--emotion", metavar="NAME[:INTENSITY]", default=None,
                   help="emotion for the whole take, e.g. happy:0.7 (neutral, happy, sad, "
                        "angry, surprised, disgusted, afraid)")
    g.add_argument("--emotion-keys", metavar="FILE", default=None,
                   help="timed emotions: JSON list of {time, name, intensity, transition} or "
                        "CSV time,name,intensity[,transition]")
    g.add_argument("--transition", type=argtypes.nonneg_float, default=None, metavar="S",
                   help="blend time between emotions, seconds (default 0.6)")
    g.add_argument("--auto-emotion", action="store_true",
                   help="infer arousal from the voice (more energy when the voice rises)")
    for layer, flag in (("head", "head"), ("blinks", "blink"), ("gaze", "gaze"),
                        ("brows", "brow"), ("emotion", "emotion")):
        g.add_argument(f"--no-{layer}", action="store_true", help=f"turn the {layer} layer off")
        g.add_argument(f"--{flag}-gain", type=argtypes.nonneg_float, default=None,
                       metavar="G", help=f"{layer} gain (default 1, up to 3)")


def _expressive_options(args: argparse.Namespace) -> dict[str, Any]:
    """Session options from the expressive flags (only what was set); UsageError if bad."""
    from .errors import SessionError
    from .expressive import load_keys_file, parse_options

    opts: dict[str, Any] = {}
    if getattr(args, "no_expressive", False):
        opts["expressive"] = False
    if args.seed is not None:
        opts["seed"] = args.seed
    if args.transition is not None:
        opts["transition"] = args.transition
    if args.auto_emotion:
        opts["auto_emotion"] = True
    keys: list[Any] = []
    try:
        if args.emotion:
            opts["emotion"] = args.emotion
        if args.emotion_keys:
            if not Path(args.emotion_keys).is_file():
                raise UsageError(f"--emotion-keys {args.emotion_keys!r} is not a file")
            keys = load_keys_file(args.emotion_keys)
        if keys:
            opts["emotion_keys"] = keys
        gains = {}
        enable = {}
        for layer, flag in (("head", "head"), ("blinks", "blink"), ("gaze", "gaze"),
                            ("brows", "brow"), ("emotion", "emotion")):
            if getattr(args, f"no_{layer}"):
                enable[layer] = False
            g = getattr(args, f"{flag}_gain")
            if g is not None:
                gains[layer] = g
        if gains:
            opts["gains"] = gains
        if enable:
            opts["enable"] = enable
        parse_options(opts)
    except SessionError as e:
        raise UsageError(str(e)) from None
    return opts


def _check_output_paths(paths: Sequence[str],
                        allowed: Sequence[str] | None = None) -> list[Path]:
    from facecast.formats import SUPPORTED_EXTENSIONS

    allowed = tuple(allowed or SUPPORTED_EXTENSIONS)
    out = []
    for p in paths:
        path = Path(p)
        if path.suffix.lower() not in allowed:
            raise UsageError(f"output {p!r} has unsupported extension "
                             f"{path.suffix or '(none)'!r}; use one of "
                             f"{', '.join(allowed)}")
        if path.is_dir():
            raise UsageError(f"output {p!r} is a directory")
        out.append(path)
    return out


def _check_input_file(p: str) -> Path:
    path = Path(p)
    if not path.exists():
        raise UsageError(f"input {p!r} does not exist")
    if path.is_dir():
        raise UsageError(f"input {p!r} is a directory, not an audio file")
    return path


class _Progress:
    """Progress bar on stderr: redrawn in place on a TTY, a line per 10% on long input
    otherwise ('auto'); 'always' / 'never' force it."""

    def __init__(self, mode: str, label: str, long_s: float = 60.0) -> None:
        self.mode = mode
        self.label = label
        self.long_s = long_s
        self.tty = sys.stderr.isatty()
        self.last_decile = -1
        self.last_draw = 0.0
        self.drawn = False

    def _enabled(self, total: float | None) -> bool:
        if self.mode == "never":
            return False
        if self.mode == "always" or self.tty:
            return True
        return total is not None and total >= self.long_s

    def __call__(self, done: float, total: float | None) -> None:
        if not self._enabled(total):
            return
        if total:
            frac = min(1.0, done / total)
            if self.tty:
                now = time.monotonic()
                if now - self.last_draw < 0.1 and frac < 1.0:
                    return
                self.last_draw = now
                n = int(frac * 30)
                sys.stderr.write(f"\r{self.label} [{'#' * n}{'.' * (30 - n)}] "
                                 f"{frac * 100:5.1f}%  {done:.1f}/{total:.1f} s audio")
                self.drawn = True
            else:
                decile = int(frac * 10)
                if decile != self.last_decile:
                    self.last_decile = decile
                    sys.stderr.write(f"{self.label}: {frac * 100:3.0f}% "
                                     f"({done:.1f}/{total:.1f} s audio)\n")
        else:
            if self.tty:
                sys.stderr.write(f"\r{self.label}: {done:.1f} s audio")
                self.drawn = True
            elif done // 60 != self.last_decile:
                self.last_decile = int(done // 60)
                sys.stderr.write(f"{self.label}: {done:.1f} s audio\n")
        sys.stderr.flush()

    def finish(self) -> None:
        if self.drawn:
            sys.stderr.write("\n")
            sys.stderr.flush()


# ------------------------------------------------------------------------------------------
# bake
# ------------------------------------------------------------------------------------------
def _bake_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", metavar="IN", help="audio or video file (wav, flac, mp3, ogg, "
                                               "anything ffmpeg reads)")
    p.add_argument("-o", "--output", metavar="OUT", action="append", required=True,
                   help="output file: .csv (Live Link Face), .json or .npz, or the animation on "
                        "a head: .glb, .gltf, .usd/.usda/.usdc, .fbx; repeat for several")
    p.add_argument("--mesh", metavar="PATH",
                   help="head for .glb/.gltf/.usd*/.fbx outputs: a .glb, .gltf or .fbx with "
                        "ARKit-style shape keys (default: the built-in demo head)")
    p.add_argument("--retarget", metavar="PRESET|MAP.json",
                   help="how ARKit channels map to the mesh's shape keys: arkit, facecap, "
                        "livelink or a JSON map (default: detected from the shape-key names)")
    p.add_argument("--model", default="default", help="shipped model name or .onnx path "
                                                      "(default: default)")
    p.add_argument("--fps", type=_fps, default=60, help="output frame rate, 30 or 60 "
                                                        "(default 60)")
    p.add_argument("--subject", type=_subject, default=None,
                   help="subject name stored in JSON/NPZ (default: the input's file stem)")
    p.add_argument("--progress", choices=("auto", "always", "never"), default="auto",
                   help="progress bar on stderr: auto = on a terminal or for input over 60 s")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    _add_expressive_args(p)


def _default_subject(path: Path) -> str:
    import re

    s = re.sub(r"[^A-Za-z0-9_\-]+", "_", path.stem).strip("_") or "subject"
    return s[:MAX_SUBJECT_LENGTH]


def _bake_rig(args: argparse.Namespace, mesh_outs: Sequence[Path]) -> dict[str, Any]:
    """Mesh and retarget map for the mesh outputs; one warning line for unmapped channels."""
    if not mesh_outs:
        if args.mesh or args.retarget:
            raise UsageError("--mesh/--retarget apply to .glb/.gltf/.usd/.usda/.usdc/.fbx "
                             "outputs only")
        return {}
    from facecast.formats import read_mesh
    from facecast.formats.rig import resolve_rig

    mesh = None
    if args.mesh:
        if not Path(args.mesh).is_file():
            raise UsageError(f"--mesh {args.mesh!r} is not a file")
        mesh = read_mesh(args.mesh)
    mesh, rmap = resolve_rig(mesh, args.retarget)
    missing = list(rmap.missing)
    if not mesh.eye_pivots:
        missing += ["leftEyeYaw", "leftEyePitch", "rightEyeYaw", "rightEyePitch"]
    if missing:
        print(f"facecast bake: warning: {len(missing)} channel(s) have no target on "
              f"{mesh.name} ({rmap.preset}) and are left out of "
              f"{', '.join(o.name for o in mesh_outs)}: {', '.join(missing)}", file=sys.stderr)
    return {"mesh": mesh, "retarget": rmap}


@command("bake", "bake an audio file offline into an animation file", _bake_args,
         "Bake an audio file offline into ARKit-52 animation (CSV/JSON/NPZ), or onto a head "
         "(glTF/USD/FBX: the built-in demo head or --mesh). Memory stays bounded on long input "
         "for CSV/JSON; a progress bar goes to stderr.")
def _bake(args: argparse.Namespace) -> int:
    from facecast.formats import MESH_EXTENSIONS, WRITE_EXTENSIONS, open_writer

    from .engine import bake_iter

    src = _check_input_file(args.input)
    outs = _check_output_paths(args.output, WRITE_EXTENSIONS)
    rig = _bake_rig(args, [o for o in outs if o.suffix.lower() in MESH_EXTENSIONS])
    options = _expressive_options(args)
    subject = args.subject or _default_subject(src)
    for o in outs:
        o.parent.mkdir(parents=True, exist_ok=True)
    progress = _Progress(args.progress, f"bake {src.name}")
    t0 = time.monotonic()
    writers = []
    try:
        for o in outs:
            writers.append(open_writer(o, args.fps, subject,
                                       **(rig if o.suffix.lower() in MESH_EXTENSIONS else {})))
    except BaseException:
        for w in writers:
            w.abort()
        raise
    n = 0
    try:
        try:
            for batch in bake_iter(str(src), model=args.model, fps=args.fps, subject=subject,
                                   progress=progress, options=options):
                for w in writers:
                    w.write(batch)
                n += len(batch)
        finally:
            progress.finish()
        if n == 0:
            raise UsageError(f"input {args.input!r} produced no frames")
        for w in writers:
            w.close()
    except BaseException:
        for w in writers:
            w.abort()
        raise
    if not args.quiet:
        dur = n / args.fps
        print(f"baked {args.input} ({dur:.2f} s) into {n} frames at {args.fps} fps in "
              f"{time.monotonic() - t0:.2f} s: {', '.join(map(str, outs))}")
    return EXIT_OK


# ------------------------------------------------------------------------------------------
# serve
# ------------------------------------------------------------------------------------------
def _serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bind", default=DEFAULT_HOST, metavar="HOST",
                   help=f"address to bind (default {DEFAULT_HOST}); anything but loopback "
                        "requires --curve-dir")
    p.add_argument("--control-port", type=_port, default=DEFAULT_CONTROL_PORT,
                   help=f"control/ingest ROUTER port (default {DEFAULT_CONTROL_PORT}; 0 = any "
                        "free port)")
    p.add_argument("--frame-port", type=_port, default=DEFAULT_FRAME_PORT,
                   help=f"frame PUB port (default {DEFAULT_FRAME_PORT}; 0 = any free port)")
    p.add_argument("--curve-dir", metavar="DIR",
                   help="CURVE key directory from 'facecast keygen DIR': encrypts both sockets "
                        "and admits only clients listed in DIR/authorized_clients")
    p.add_argument("--model", default="default",
                   help="model for sessions that name none (default: default)")
    p.add_argument("--workers", type=_nonneg_int, default=0,
                   help="engine threads (default 0 = run the engine in the I/O thread, the "
                        "lowest latency; N > 0 helps only models whose inference dominates)")
    p.add_argument("--queue-frames", type=_nonneg_int, default=1024,
                   help="per-session outbound frame queue; the oldest frame is dropped and "
                        "counted when full (default 1024)")
    p.add_argument("--sndhwm", type=_nonneg_int, default=1000,
                   help="ZeroMQ per-subscriber send queue, messages (default 1000)")
    p.add_argument("--max-sessions", type=_nonneg_int, default=128,
                   help="concurrent sessions (default 128)")
    p.add_argument("--session-timeout", type=float, default=60.0,
                   help="close sessions idle this many seconds (default 60; 0 = never)")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                   default="info", help="stderr log level (default info)")
    _add_expressive_args(p)


@command("serve", "run the runtime server (ZeroMQ control + frame sockets)", _serve_args,
         "Run the facecast runtime: sessions are opened, fed and closed on the control "
         "socket; frames are published on face.<subject> on the frame socket "
         "(see docs/protocol.md). Stops on Ctrl-C or SIGTERM.")
def _serve(args: argparse.Namespace) -> int:
    import logging

    from .server import Server

    logging.basicConfig(level=getattr(logging, args.log_level.upper()), stream=sys.stderr,
                        format="%(asctime)s facecast %(levelname)s %(message)s")
    if args.curve_dir is not None and not Path(args.curve_dir).is_dir():
        raise UsageError(f"--curve-dir {args.curve_dir!r} is not a directory")
    session_options = _expressive_options(args)
    # shorter GIL hand-offs keep the I/O thread responsive next to busy engine threads
    sys.setswitchinterval(0.001)
    server = Server(args.bind, args.control_port, args.frame_port, curve_dir=args.curve_dir,
                    model=args.model, workers=args.workers, queue_frames=max(1, args.queue_frames),
                    max_sessions=max(1, args.max_sessions), session_timeout=args.session_timeout,
                    sndhwm=max(1, args.sndhwm), session_options=session_options)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.start()
        print(f"facecast serve: control {server.control_endpoint} frames "
              f"{server.frame_endpoint}{' (CURVE)' if args.curve_dir else ''}", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        server.stop()
    st = server.stats()
    print(f"facecast serve: stopped after {st['sessions_opened']} sessions, "
          f"{st['frames_published']} frames published, {st['frames_dropped']} dropped",
          file=sys.stderr)
    return EXIT_OK


# ------------------------------------------------------------------------------------------
# send
# ------------------------------------------------------------------------------------------
def _send_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="audio or video file to stream")
    p.add_argument("--subject", type=_subject,
                   help="subject to publish as (default: the file stem)")
    speed = p.add_mutually_exclusive_group()
    speed.add_argument("--realtime", dest="fast", action="store_false",
                       help="pace the audio at real time (default)")
    speed.add_argument("--fast", dest="fast", action="store_true",
                       help="send as fast as the runtime takes it")
    p.set_defaults(fast=False)
    p.add_argument("--chunk-ms", type=_positive_float, default=20.0,
                   help="chunk length in milliseconds (default 20)")
    p.add_argument("--fps", type=_fps, default=60, help="frame rate, 30 or 60 (default 60)")
    p.add_argument("--model", default=None, help="shipped model name (default: the server's)")
    p.add_argument("--replace", action="store_true",
                   help="take over the subject if another session publishes it")
    p.add_argument("--timeout", type=_positive_float, default=5.0,
                   help="seconds to wait for each reply (default 5)")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    _add_expressive_args(p)
    _add_connection_args(p, control=True, frames=False)


def _stream_file(client: Any, path: Path, subject: str, *, fast: bool, chunk_s: float,
                 fps: int, model: str | None, replace: bool,
                 on_push: Callable[[float, dict | int], None] | None = None,
                 on_open: Callable[[Any], None] | None = None,
                 options: dict[str, Any] | None = None) -> dict:
    """Stream a file into an open RuntimeClient; returns a summary dict."""
    import numpy as np

    from .audio import iter_audio_blocks

    sr, blocks = iter_audio_blocks(str(path), block_seconds=max(1.0, chunk_s))
    n = max(1, int(round(chunk_s * sr)))
    session = client.open(subject, sr, fps=fps, model=model, replace=replace,
                          options=options or None)
    if on_open is not None:
        on_open(session)
    t0 = time.monotonic()
    sent = 0
    chunks = 0
    frames = 0
    pending = np.zeros(0, np.float32)
    try:
        for block in blocks:
            pending = np.concatenate([pending, block]) if len(pending) else block
            while len(pending) >= n:
                chunk, pending = pending[:n], pending[n:]
                if not fast:
                    delay = t0 + sent / sr - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                t_send = time.monotonic()
                rep = session.push(chunk, wait=not fast)
                if isinstance(rep, dict):
                    frames += rep.get("frames", 0)
                if on_push is not None:
                    on_push(t_send, rep)
                sent += len(chunk)
                chunks += 1
        if len(pending):
            if not fast:
                delay = t0 + sent / sr - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            t_send = time.monotonic()
            rep = session.push(pending, wait=not fast)
            if on_push is not None:
                on_push(t_send, rep)
            sent += len(pending)
            chunks += 1
        if sent == 0:
            raise UsageError(f"{path}: contains no audio samples")
        rep = session.close()
    except BaseException:
        if not session.closed:
            try:
                session.closed = True
                client.request("close", session=session.id, timeout=1.0)
            except Exception:
                pass
        raise
    return {"session": session.id, "topic": session.topic, "sample_rate": sr,
            "samples": sent, "audio_s": sent / sr, "chunks": chunks,
            "frames": rep.get("frames_total", frames), "dropped": rep.get("frames_dropped", 0),
            "elapsed_s": time.monotonic() - t0, "latency_s": session.latency_s}


@command("send", "stream an audio file into a running server", _send_args,
         "Stream an audio file into a running 'facecast serve' as one session, at real time "
         "(default) or as fast as possible. Frames appear on face.<subject>.")
def _send(args: argparse.Namespace) -> int:
    from facecast.client import RuntimeClient

    from .audio import iter_audio_blocks

    path = _check_input_file(args.file)
    options = _expressive_options(args)
    iter_audio_blocks(str(path))  # unreadable audio fails here, before any connection
    subject = args.subject or _default_subject(path)
    address = _control_address(args)
    with RuntimeClient(address, curve=_client_keys(args), timeout=args.timeout) as client:
        _ping(client, address, args.timeout)
        summary = _stream_file(client, path, subject, fast=args.fast,
                               chunk_s=args.chunk_ms / 1000.0, fps=args.fps, model=args.model,
                               replace=args.replace, options=options)
    if not args.quiet:
        print(f"sent {path} ({summary['audio_s']:.2f} s, {summary['chunks']} chunks) to "
              f"{address} as subject {subject!r} in {summary['elapsed_s']:.2f} s: "
              f"{summary['frames']} frames on {summary['topic']}, "
              f"{summary['dropped']} dropped")
    return EXIT_OK


def _ping(client: Any, address: str, timeout: float) -> None:
    try:
        client.ping(timeout=timeout)
    except TimeoutError:
        raise ConnectError(f"no facecast runtime answered at {address} within {timeout:g} s "
                           "(start one with 'facecast serve')") from None


# ------------------------------------------------------------------------------------------
# listen
# ------------------------------------------------------------------------------------------
def _listen_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--subject", action="append", metavar="NAME", type=_subject_filter,
                   help="subject to listen to (repeatable; NAME.* for a group; default all)")
    p.add_argument("-o", "--output", metavar="OUT",
                   help="record one subject's frames to .csv/.json/.npz (missing frames are "
                        "filled by holding the previous frame); stops at the end of that "
                        "session")
    p.add_argument("--format", choices=("text", "jsonl"), default="text",
                   help="how to print frames when not recording (default text)")
    p.add_argument("--channels", metavar="A,B,...", default="jawOpen,mouthClose,headYaw",
                   help="channels shown by --format text (default jawOpen,mouthClose,headYaw)")
    p.add_argument("--count", type=_nonneg_int, help="stop after this many frames")
    p.add_argument("--duration", type=_positive_float, help="stop after this many seconds")
    p.add_argument("--wait", type=_positive_float,
                   help="give up (exit 1) if no frame arrives within this many seconds")
    p.add_argument("--until-end", action="store_true",
                   help="stop when the first session heard from ends (default with -o)")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary line on stderr")
    _add_connection_args(p, control=False, frames=True)


class _Recorder:
    """Collects one session's frames into a writer, holding the last frame over gaps."""

    def __init__(self, path: Path, fps: int, subject: str) -> None:
        from facecast.formats import open_writer

        self.writer = open_writer(path, fps, subject)
        self.fps = fps
        self.subject = subject
        self.next_index: int | None = None
        self.last_row: Any = None
        self.filled = 0
        self.frames = 0
        self.buf: list[Any] = []
        self.buf_start = 0

    def add(self, frame: Any) -> None:
        import numpy as np

        row = frame.vector()
        if self.next_index is None:
            self.next_index = frame.index
            self.buf_start = frame.index
        if frame.index < self.next_index:
            return  # duplicate or out of order
        while self.next_index < frame.index:  # gap: hold the previous frame
            self.buf.append(self.last_row if self.last_row is not None else row)
            self.next_index += 1
            self.filled += 1
        self.buf.append(row)
        self.last_row = row
        self.next_index += 1
        self.frames += 1
        if len(self.buf) >= 120:
            self._flush(np)

    def _flush(self, np: Any) -> None:
        from facecast.schema import FrameBatch

        if self.buf:
            self.writer.write(FrameBatch(np.stack(self.buf), self.buf_start, self.fps,
                                         self.subject))
            self.buf_start += len(self.buf)
            self.buf = []

    def close(self) -> None:
        import numpy as np

        self._flush(np)
        self.writer.close()

    def abort(self) -> None:
        self.writer.abort()


@command("listen", "print or record frames from a running server", _listen_args,
         "Subscribe to a running 'facecast serve' and print frames, or record one subject to a "
         "file. Stops on Ctrl-C, --count, --duration, or the end of the session (--until-end, "
         "default when recording).")
def _listen(args: argparse.Namespace) -> int:
    from facecast.client import StreamEvent, Subscriber
    from facecast.schema import CHANNEL_INDEX

    subjects = args.subject or None
    out = _check_output_paths([args.output])[0] if args.output else None
    if out is not None and (subjects is None or len(subjects) != 1 or subjects[0].endswith("*")):
        raise UsageError("recording with -o needs exactly one --subject NAME")
    show = [c.strip() for c in args.channels.split(",") if c.strip()]
    for c in show:
        if c not in CHANNEL_INDEX:
            raise UsageError(f"unknown channel {c!r} in --channels")
    until_end = args.until_end or out is not None
    address = _frame_address(args)
    rec: _Recorder | None = None
    session: str | None = None
    count = 0
    t_start = time.monotonic()
    deadline = None if args.duration is None else t_start + args.duration
    first_deadline = None if args.wait is None else t_start + args.wait
    stop = threading.Event()
    old = signal.signal(signal.SIGTERM, lambda *a: stop.set())
    ended = False
    with Subscriber(address, subjects, events=True, curve=_client_keys(args)) as sub:
        try:
            while not stop.is_set():
                if args.count is not None and count >= args.count:
                    break
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    break
                if count == 0 and first_deadline is not None and now >= first_deadline:
                    if rec is not None:
                        rec.abort()
                    raise ConnectError(f"no frames from {address} within {args.wait:g} s")
                try:
                    msg = sub.recv_message(timeout=0.25)
                except TimeoutError:
                    continue
                if isinstance(msg, StreamEvent):
                    if msg.event == "end" and until_end and session is not None \
                            and msg.session == session:
                        ended = True
                        break
                    if args.format == "jsonl" and out is None:
                        print(json.dumps({"event": msg.event, "subject": msg.subject,
                                          "session": msg.session, **_jsonable(msg.data)}),
                              flush=True)
                    continue
                if session is None:
                    session = msg.session
                if until_end and msg.session != session:
                    continue
                count += 1
                if out is not None:
                    if rec is None:
                        out.parent.mkdir(parents=True, exist_ok=True)
                        rec = _Recorder(out, msg.fps, msg.subject)
                    rec.add(msg)
                elif args.format == "jsonl":
                    print(json.dumps({"subject": msg.subject, "session": msg.session,
                                      "index": msg.index, "time": msg.time, "fps": msg.fps,
                                      **{k: round(v, 6) for k, v in msg.as_dict().items()}}),
                          flush=True)
                else:
                    vals = "  ".join(f"{c}={msg[c]:+.3f}" for c in show)
                    print(f"{msg.subject:<12} #{msg.index:<7d} {msg.time:9.3f}s  {vals}",
                          flush=True)
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, old)
        if rec is not None:
            rec.close()
        stats = dict(sub.stats)
    if not args.quiet:
        where = f", recorded to {out}" if rec is not None else ""
        held = f" ({rec.filled} missing frames held)" if rec is not None and rec.filled else ""
        print(f"facecast listen: {count} frames from {address}{where}{held}; "
              f"{stats['missed']} missed{', session ended' if ended else ''}",
              file=sys.stderr)
    if out is not None and rec is None:
        raise ConnectError(f"no frames recorded from {address}; nothing written to {out}")
    return EXIT_OK


def _jsonable(d: dict) -> dict:
    return json.loads(json.dumps(d, default=lambda o: repr(o)))


# ------------------------------------------------------------------------------------------
# demo
# ------------------------------------------------------------------------------------------
def _find_sample() -> Path | None:
    here = Path(__file__).resolve()
    for base in (Path.cwd(), here.parents[2], here.parent):
        p = base / "samples" / "demo.wav"
        if p.is_file():
            return p
    return None


def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sample", metavar="FILE",
                   help="audio to stream (default: samples/demo.wav)")
    p.add_argument("--out", metavar="DIR", default="facecast_demo_out",
                   help="where to write the recorded animation (default ./facecast_demo_out)")
    p.add_argument("--fast", action="store_true",
                   help="stream as fast as possible instead of at real time")
    p.add_argument("--model", default="default", help="model (default: default)")
    p.add_argument("--fps", type=_fps, default=60, help="frame rate, 30 or 60 (default 60)")
    p.add_argument("--subject", type=_subject, default="demo",
                   help="subject name (default demo)")
    _add_expressive_args(p)


@command("demo", "start a server, stream the sample, record and write CSV/JSON/glTF/mp4",
         _demo_args,
         "End-to-end demo on the embedded default model: starts a runtime on free loopback "
         "ports, streams samples/demo.wav into it, records the frames a subscriber receives, "
         "writes them as Live Link Face CSV, facecast JSON and a glTF of the built-in demo head, "
         "renders a preview video (with the preview extra), and checks the frames against an "
         "offline bake of the same audio.")
def _demo(args: argparse.Namespace) -> int:
    import numpy as np

    from facecast.client import RuntimeClient, StreamEvent, Subscriber
    from facecast.formats import write
    from facecast.schema import FrameBatch

    from .engine import bake
    from .server import Server

    if args.sample:
        sample = _check_input_file(args.sample)
    else:
        found = _find_sample()
        if found is None:
            raise UsageError("no demo sample found at samples/demo.wav; pass --sample FILE")
        sample = found
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {args.out!r} exists and is not a directory")
    options = _expressive_options(args)

    def say(msg: str) -> None:
        print(f"demo: {msg}", flush=True)

    t0 = time.monotonic()
    server = Server("127.0.0.1", 0, 0, model=args.model)
    try:
        server.start()
    except ValueError as e:
        raise UsageError(str(e)) from None
    frames: dict[int, Any] = {}
    ended = threading.Event()
    session_id: list[str] = []
    try:
        say(f"started a runtime: control {server.control_endpoint}, frames "
            f"{server.frame_endpoint} (model {args.model!r})")
        sub = Subscriber(server.frame_endpoint, [args.subject], events=True)

        def listen() -> None:
            while not ended.is_set():
                try:
                    msg = sub.recv_message(timeout=0.2)
                except TimeoutError:
                    continue
                except Exception:
                    return
                if isinstance(msg, StreamEvent):
                    if msg.event == "end" and session_id and msg.session == session_id[0]:
                        ended.set()
                elif not session_id or msg.session == session_id[0]:
                    frames.setdefault(msg.index, msg)

        th = threading.Thread(target=listen, name="demo-listen", daemon=True)
        with RuntimeClient(server.control_endpoint, timeout=30.0) as client:
            client.ping()
            _wait_subscribed(client, f"face.{args.subject}")
            th.start()
            sends: list[tuple[float, Any]] = []
            say(f"streaming {sample} as subject {args.subject!r} "
                f"({'as fast as possible' if args.fast else 'at real time'})")
            summary = _stream_file(client, sample, args.subject, fast=args.fast,
                                   chunk_s=0.02, fps=args.fps, model=None, replace=True,
                                   on_push=lambda t, rep: sends.append((t, rep)),
                                   on_open=lambda s: session_id.append(s.id),
                                   options=options)
            async_replies = client.poll_replies()
        ended.wait(5.0)
        ended.set()
        th.join(2.0)
        sub.close()
        say(f"sent {summary['audio_s']:.2f} s of audio in {summary['chunks']} chunks "
            f"({summary['elapsed_s']:.2f} s); the runtime published {summary['frames']} frames "
            f"({summary['dropped']} dropped)")
        n_expected = summary["frames"]
        got = len(frames)
        if got == 0:
            raise ConnectError("the subscriber received no frames")
        idx = sorted(frames)
        first, last = idx[0], idx[-1]
        rows = []
        for i in range(first, last + 1):
            f = frames.get(i) or frames[max(j for j in idx if j < i)]
            rows.append(f.vector())
        batch = FrameBatch(np.stack(rows), first, args.fps, args.subject)
        out_dir.mkdir(parents=True, exist_ok=True)
        csv_path, json_path = out_dir / f"{args.subject}.csv", out_dir / f"{args.subject}.json"
        write(csv_path, batch)
        write(json_path, batch, subject=args.subject)
        say(f"received {got} of {n_expected} frames "
            f"({batch.times[-1] + 1 / args.fps:.2f} s of animation at {args.fps} fps)")
        lat = _push_latencies(sends, async_replies, frames)
        if lat:
            say(f"chunk pushed -> frame received over loopback: p50 {np.percentile(lat, 50):.2f}"
                f" ms, p99 {np.percentile(lat, 99):.2f} ms (on top of the model's algorithmic "
                f"latency of {summary['latency_s'] * 1000:.1f} ms: lookahead + frame-rate "
                "conversion)")
        ref = bake(str(sample), model=args.model, fps=args.fps, options=options)
        m = min(len(ref), len(batch))
        if m:
            diff = float(np.abs(ref.values[first:first + m] - batch.values[:m]).max()) \
                if first < len(ref) else float("nan")
            say(f"streamed frames vs offline bake of the same audio: max |difference| "
                f"{diff:.2e}")
        jaw = batch.channel("jawOpen")
        say(f"jawOpen ranges {jaw.min():.3f}..{jaw.max():.3f} (mean {jaw.mean():.3f})")
        say(f"wrote {csv_path.resolve()} (Live Link Face CSV)")
        say(f"wrote {json_path.resolve()} (facecast JSON)")
        glb_path = out_dir / f"{args.subject}.glb"
        write(glb_path, batch)
        say(f"wrote {glb_path.resolve()} (glTF 2.0: the built-in demo head carrying the "
            "animation; open it in Blender or any glTF viewer)")
        _demo_preview(json_path, sample, out_dir / f"{args.subject}.mp4", say)
        say(f"done in {time.monotonic() - t0:.2f} s")
    finally:
        server.stop()
    return EXIT_OK


def _demo_preview(take: Path, audio: Path, mp4: Path, say: Callable[[str], None]) -> None:
    """Render the recorded take on the demo head with its audio, when the preview extra is
    installed (``make demo`` installs it); otherwise say how to get it."""
    import importlib.util

    if importlib.util.find_spec("numba") is None:
        say("skipped the preview video: it needs the preview extra "
            "(pip install 'facecast[preview]')")
        return
    from .preview.video import render_preview

    stats = render_preview(take, mp4, audio=audio, fps=30)
    say(f"wrote {mp4.resolve()} (preview video, {stats.frames} frames at {stats.fps} fps "
        f"with the audio; rendered at {stats.render_fps:.0f} frames/s)")


def _wait_subscribed(client: Any, topic: str, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if topic in client.stats().get("subscriptions", []):
            return
        time.sleep(0.02)


def _push_latencies(sends: list, async_replies: list, frames: dict) -> list[float]:
    """Milliseconds from sending the chunk that produced a frame to receiving that frame."""
    pairs: list[tuple[float, dict]] = []
    ids: dict[int, float] = {}
    for t_send, rep in sends:
        if isinstance(rep, dict):
            pairs.append((t_send, rep))
        elif isinstance(rep, int):
            ids[rep] = t_send
    for _, rep in async_replies:
        t_send = ids.get(rep.get("id"))
        if t_send is not None and rep.get("ok"):
            pairs.append((t_send, rep))
    lat = []
    for t_send, rep in pairs:
        start = int(rep.get("start_index", 0))
        for i in range(start, start + int(rep.get("frames", 0))):
            f = frames.get(i)
            if f is not None and math.isfinite(f.received):
                lat.append((f.received - t_send) * 1000.0)
    return lat


# ------------------------------------------------------------------------------------------
# keygen
# ------------------------------------------------------------------------------------------
def _keygen_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", metavar="DIR", help="directory for the key files (created)")
    p.add_argument("--client", action="append", metavar="NAME",
                   help="client key pair(s) to create (repeatable; default: client)")
    p.add_argument("--add-client", action="append", metavar="NAME",
                   help="add and authorize a client key pair in an existing DIR")
    p.add_argument("--force", action="store_true", help="replace existing keys")


@command("keygen", "generate CURVE key pairs for serving beyond localhost", _keygen_args,
         "Generate ZeroMQ CURVE certificates: DIR/server.key(_secret) for 'facecast serve "
         "--curve-dir DIR', DIR/<client>.key(_secret) for clients, and "
         "DIR/authorized_clients/ listing the client public keys the server admits.")
def _keygen(args: argparse.Namespace) -> int:
    from .keys import AUTHORIZED_DIR, CurveKeyError, add_client, generate_keys

    try:
        if args.add_client:
            if args.client:
                raise UsageError("use either --client (new DIR) or --add-client (existing DIR)")
            for name in args.add_client:
                pub, sec = add_client(args.dir, name, force=args.force)
                print(f"added client {name!r}: {sec} (give to the client), {pub} authorized")
            return EXIT_OK
        files = generate_keys(args.dir, tuple(args.client or ["client"]), force=args.force)
    except CurveKeyError as e:
        raise UsageError(str(e)) from None
    d = Path(args.dir)
    print(f"wrote CURVE keys to {d}:")
    print(f"  server: {files['server_secret']} (keep on the server), {files['server']} "
          "(public, give to clients)")
    for name in args.client or ["client"]:
        print(f"  client {name!r}: {files[name + '_secret']} (give to that client), "
              f"authorized in {d / AUTHORIZED_DIR}")
    print(f"serve with:  facecast serve --bind 0.0.0.0 --curve-dir {d}")
    print(f"connect with: facecast listen --host HOST --curve-dir {d}")
    return EXIT_OK


# ------------------------------------------------------------------------------------------
# models / train / eval (training extra: torch, onnx, pocketsphinx)
# ------------------------------------------------------------------------------------------
def _models_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the contracts as JSON")


@command("models", "list the shipped models and their contracts", _models_args)
def _models(args: argparse.Namespace) -> int:
    from .model import ModelRunner, shipped_models

    infos = [ModelRunner(name).info.as_dict() | {"name": name}
             for name in shipped_models()]
    if args.json:
        print(json.dumps(infos, indent=2))
        return EXIT_OK
    for i in infos:
        print(f"{i['name']:10s} v{i['version']}  lookahead {i['lookahead_ms']:.1f} ms  "
              f"{i['sample_rate']} Hz, hop {i['hop']}  {len(i['channels'])} channels  "
              f"trained on {i['training_data']}")
    return EXIT_OK


def _need_training_extra(what: str) -> None:
    import importlib.util

    missing = [m for m in ("torch", "onnx") if importlib.util.find_spec(m) is None]
    if missing:
        raise UsageError(f"'{what}' needs the training extra ({', '.join(missing)} missing): "
                         "pip install 'facecast[train]'")


def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None, help="TOML config (default: the shipped "
                   "configs/default.toml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. lookahead_frames=5")
    p.add_argument("--name", default=None, help="model name")
    p.add_argument("-o", "--out", default=None, help="output .onnx path")


@command("train", "train and export a model (needs the training extra)", _train_args,
         "Prepare data (FACEGOOD from ../shared and the generated TTS corpus), train, and "
         "export an ONNX model following the model contract. Deterministic for the config's "
         "seed.")
def _train(args: argparse.Namespace) -> int:
    _need_training_extra("facecast train")
    from .training import train as tr

    argv = [] if args.config is None else ["--config", args.config]
    for kv in args.set:
        argv += ["--set", kv]
    if args.name:
        argv += ["--name", args.name]
    if args.out:
        argv += ["-o", args.out]
    return tr.main(argv)


def _eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", nargs="*", default=None, metavar="MODEL",
                   help="model names or .onnx paths (default: every shipped model)")
    p.add_argument("--out", default=None, help="markdown file whose eval section is rewritten "
                   "(e.g. docs/model_card.md)")
    p.add_argument("--json", default=None, help="write all results as JSON")
    p.add_argument("--shared", default=None, help="reference data folder (default ../shared)")
    p.add_argument("--work", default=None, help="work folder with the TTS corpus and caches "
                   "(default work_data)")


@command("eval", "run the model evaluation suite (needs the training extra)", _eval_args,
         "Score models and the two baselines on the FACEGOOD held-out clip, phoneme-timed "
         "held-out TTS speech in many languages, real English speech aligned with "
         "pocketsphinx, robustness conditions and lookahead.")
def _eval(args: argparse.Namespace) -> int:
    import importlib.util

    if importlib.util.find_spec("pocketsphinx") is None:
        raise UsageError("'facecast eval' needs pocketsphinx: pip install 'facecast[train]'")
    from .model import resolve_model
    from .training import evaluate as ev

    argv: list[str] = []
    if args.models:
        argv += ["--models", *[str(resolve_model(m)) for m in args.models]]
    for flag in ("out", "json", "shared", "work"):
        v = getattr(args, flag)
        if v:
            argv += [f"--{flag}", v]
    return ev.main(argv)


# ------------------------------------------------------------------------------------------
# unreal / livelink-listen (bridges/unreal: the facecast_unreal package)
# ------------------------------------------------------------------------------------------
def _unreal_args(p: argparse.ArgumentParser) -> None:
    from facecast_unreal.cli import configure_relay

    configure_relay(p)


@command("unreal", "relay runtime frames to Unreal Engine as Live Link Face UDP packets",
         _unreal_args,
         "Subscribe to a running 'facecast serve' and send every frame to Unreal Engine as a "
         "Live Link Face packet (UDP port 11111, received by the stock Apple ARKit Face "
         "Support plugin; nothing to compile). Each runtime subject becomes a Live Link "
         "subject; idle subjects are kept alive. See bridges/unreal/README.md.")
def _unreal(args: argparse.Namespace) -> int:
    from facecast_unreal.cli import run_relay

    return run_relay(args)


def _livelink_listen_args(p: argparse.ArgumentParser) -> None:
    from facecast_unreal.cli import configure_listen

    configure_listen(p)


@command("livelink-listen", "receive Live Link Face packets (relay or iPhone app): show or "
         "record takes", _livelink_listen_args,
         "Listen for Live Link Face UDP packets from 'facecast unreal' or the Live Link Face "
         "iPhone app, show live values and record takes as Live Link Face CSV, facecast JSON "
         "or NPZ (in facecast's channels).")
def _livelink_listen(args: argparse.Namespace) -> int:
    from facecast_unreal.cli import run_listen

    return run_listen(args)


# ------------------------------------------------------------------------------------------
# preview / plot (runtime/facecast_runtime/preview)
# ------------------------------------------------------------------------------------------
def _preview_args(p: argparse.ArgumentParser) -> None:
    from .preview import commands

    commands.configure_preview(p, _fps)
    _add_expressive_args(p)


@command("preview", "render a video of the head animated by the runtime, with the audio",
         _preview_args,
         "Render IN (audio/video, baked on the fly, or a baked .json/.csv/.npz plus --audio) "
         "as an H.264 + AAC video of a head animated by the frames: the built-in demo head or "
         "--mesh HEAD.glb. Needs numba (the 'preview' extra) and ffmpeg.")
def _preview(args: argparse.Namespace) -> int:
    from .preview import commands

    args.expressive_options = _expressive_options(args)
    return commands.run_preview(args, _Progress(args.progress, f"preview {Path(args.input).name}"))


def _plot_args(p: argparse.ArgumentParser) -> None:
    from .preview import commands

    commands.configure_plot(p, _fps)
    _add_expressive_args(p)


@command("plot", "plot the waveform and the main channels of a take (PNG/SVG/PDF)", _plot_args,
         "Plot IN (audio, baked on the fly, or a baked .json/.csv/.npz plus --audio): the "
         "waveform on top and the main channel groups under it on one time axis in seconds. "
         "Needs matplotlib.")
def _plot(args: argparse.Namespace) -> int:
    from .preview import commands

    args.expressive_options = _expressive_options(args)
    return commands.run_plot(args)


# ------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="facecast",
                     description="Speech to ARKit-52 facial animation: offline baking, a "
                                 "real-time ZeroMQ runtime and its clients.")
    parser.add_argument("--version", action="version", version=f"facecast {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for c in COMMANDS:
        p = sub.add_parser(c.name, help=c.help, description=c.description)
        c.configure(p)
        p.set_defaults(_run=c.run, _name=c.name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        print("facecast: error: no command given; choose one of "
              f"{', '.join(c.name for c in COMMANDS)} (see --help)", file=sys.stderr)
        return EXIT_USAGE
    prog = f"facecast {args._name}"
    from .errors import FacecastError

    try:
        code = args._run(args)
        return EXIT_OK if code is None else int(code)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `facecast listen | head`: the reader left, not an error
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except OSError:
            pass
        return EXIT_OK
    except (ConnectError, TimeoutError, ConnectionError) as e:
        print(f"{prog}: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_FAIL
    except RemoteError as e:
        print(f"{prog}: error: the runtime refused: {_one_line(e)}", file=sys.stderr)
        return EXIT_USAGE
    except (UsageError, FacecastError, ValueError, OSError, argparse.ArgumentTypeError) as e:
        msg = _one_line(e) or type(e).__name__
        if isinstance(e, OSError) and e.filename and str(e.filename) not in msg:
            msg = f"{e.filename}: {msg}"
        print(f"{prog}: error: {msg}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
