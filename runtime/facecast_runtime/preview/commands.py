"""``facecast preview`` and ``facecast plot``: argument tables and run functions (cli.py
registers them). Importing this module is cheap; the work imports numba/matplotlib lazily."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable

_SIZE_HELP = "video width and height in pixels, even, 64..4096 (default 512)"


def _size(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = -1
    if v < 64 or v > 4096 or v % 2:
        raise argparse.ArgumentTypeError(f"size {text!r} must be an even number in 64..4096")
    return v


def _pixels(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = -1
    if v < 100 or v > 20000:
        raise argparse.ArgumentTypeError(f"{text!r} is not a pixel count in 100..20000")
    return v


def _supersample(text: str) -> int:
    if text not in ("1", "2", "3", "4"):
        raise argparse.ArgumentTypeError(f"supersample {text!r} must be 1, 2, 3 or 4")
    return int(text)


def _common(p: argparse.ArgumentParser, fps: Callable[[str], int], default_fps: int) -> None:
    p.add_argument("input", metavar="IN",
                   help="audio or video file (baked on the fly), or a baked facecast file "
                        "(.json, .csv, .npz)")
    p.add_argument("--audio", metavar="FILE",
                   help="the sound for a baked IN (an audio IN is its own sound)")
    p.add_argument("--model", default="default",
                   help="model for baking audio: shipped name or .onnx path (default: default)")
    p.add_argument("--fps", type=fps, default=default_fps,
                   help=f"frame rate, 30 or 60 (default {default_fps})")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")


def configure_preview(p: argparse.ArgumentParser, fps: Callable[[str], int]) -> None:
    _common(p, fps, 30)
    p.add_argument("-o", "--output", metavar="OUT", required=True,
                   help="output video: .mp4 (also .mov, .mkv); H.264 yuv420p + AAC")
    p.add_argument("--mesh", metavar="PATH",
                   help="head with ARKit-style shape keys: .glb, .gltf or .fbx (default: the "
                        "built-in demo head)")
    p.add_argument("--retarget", metavar="PRESET|MAP.json",
                   help="how ARKit channels map to the mesh's shape keys: arkit, facecap, "
                        "livelink or a JSON map (default: detected from the shape-key names)")
    p.add_argument("--size", type=_size, default=512, help=_SIZE_HELP)
    p.add_argument("--no-overlay", dest="overlay", action="store_false",
                   help="no time code or waveform strip")
    p.add_argument("--supersample", type=_supersample, default=2,
                   help="anti-aliasing samples per pixel side, 1..4 (default 2)")
    p.add_argument("--crf", type=int, default=20,
                   help="H.264 quality, lower is better (default 20)")
    p.add_argument("--progress", choices=("auto", "always", "never"), default="auto",
                   help="progress bar on stderr: auto = on a terminal or for input over 60 s")


def run_preview(args: argparse.Namespace, progress: Any) -> int:
    from .video import (
        PreviewError, check_output, load_mesh, prepare_output_dir, render_preview,
        resolve_retarget,
    )

    src = Path(args.input)
    if not src.exists():
        raise PreviewError(f"input {args.input!r} does not exist")
    if src.is_dir():
        raise PreviewError(f"input {args.input!r} is a directory, not a file")
    if not 0 <= args.crf <= 51:
        raise PreviewError(f"--crf {args.crf} must be in 0..51")
    check_output(args.output)
    prepare_output_dir(args.output)
    mesh = load_mesh(args.mesh) if args.mesh else None
    mesh, rmap = resolve_retarget(mesh, args.retarget)
    try:
        stats = render_preview(src, args.output, audio=args.audio, mesh=mesh, rmap=rmap,
                               fps=args.fps, size=args.size, model=args.model,
                               options=getattr(args, "expressive_options", None),
                               overlay=args.overlay, supersample=args.supersample,
                               crf=args.crf, progress=progress)
    finally:
        progress.finish()
    if not args.quiet:
        sound = "with audio" if stats.audio else "no audio"
        print(f"rendered {args.input} ({stats.duration_s:.2f} s, {sound}) into {stats.frames} "
              f"frames at {stats.fps} fps, {stats.width}x{stats.height}, in {stats.wall_s:.1f} s "
              f"(rendering {stats.render_fps:.0f} frames/s): {args.output}")
    return 0


def configure_plot(p: argparse.ArgumentParser, fps: Callable[[str], int]) -> None:
    _common(p, fps, 60)
    p.add_argument("-o", "--output", metavar="OUT", required=True,
                   help="output image: .png (also .svg, .pdf)")
    p.add_argument("--channels", metavar="LIST", default="auto",
                   help="auto (groups that carry signal; default), all, or a comma-separated "
                        "list of groups (jaw, rounding, smile, press, lips, tongue, blink, "
                        "brows, head, gaze) and/or channel names")
    p.add_argument("--width", type=_pixels, default=1600, help="image width in pixels "
                                                                "(default 1600)")
    p.add_argument("--height", type=_pixels, default=None,
                   help="image height in pixels (default: 110 + 150 per channel panel + 130 "
                        "for the waveform)")


def run_plot(args: argparse.Namespace) -> int:
    from facecast.formats import SUPPORTED_EXTENSIONS

    from .plot import PLOT_FORMATS, PlotError, plot_take

    src = Path(args.input)
    if not src.exists():
        raise PlotError(f"input {args.input!r} does not exist")
    if src.is_dir():
        raise PlotError(f"input {args.input!r} is a directory, not a file")
    out = Path(args.output)
    if out.suffix.lower() not in PLOT_FORMATS:
        raise PlotError(f"output {args.output!r} has unsupported extension "
                        f"{out.suffix or '(none)'!r}; use one of {', '.join(PLOT_FORMATS)}")
    from .video import prepare_output_dir

    prepare_output_dir(out, PlotError)
    if args.audio is not None and not Path(args.audio).is_file():
        raise PlotError(f"audio {args.audio!r} does not exist")
    baked = src.suffix.lower() in SUPPORTED_EXTENSIONS
    sound = args.audio if args.audio is not None else (None if baked else str(src))
    if baked:
        from facecast import formats

        batch = formats.read(src)
    else:
        from ..engine import bake

        batch = bake(str(src), model=args.model, fps=args.fps,
                     options=getattr(args, "expressive_options", None))
    if len(batch) == 0:
        raise PlotError(f"input {args.input!r} produced no frames")
    envelope = None
    if sound is not None:
        from ..audio import iter_audio_blocks
        from .overlay import Envelope

        duration = max((batch.start_index + len(batch)) / batch.fps, 1e-3)
        sr, blocks = iter_audio_blocks(sound, block_seconds=10.0)
        rate = min(float(sr), max(1.0, 2.0 * args.width / duration))
        lo, hi, _ = Envelope.from_blocks(sr, blocks, rate)
        envelope = (lo, hi, rate)
    model = "" if baked else f"  ·  model {args.model}"
    title = f"{src.name}{model}  ·  {batch.fps} fps  ·  {len(batch)} frames"
    info = plot_take(batch, out, envelope=envelope, channels=args.channels, width=args.width,
                     height=args.height, title=title)
    if not args.quiet:
        print(f"plotted {args.input} ({len(batch) / batch.fps:.2f} s; "
              f"{', '.join(info['panels'])}) into {info['width']}x{info['height']} px: "
              f"{args.output}", file=sys.stdout)
    return 0
