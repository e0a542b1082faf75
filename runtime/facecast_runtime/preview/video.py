"""Preview videos: a head animated by facecast frames, with the audio, as H.264 + AAC.

:func:`render_preview` takes an audio (or video) file, baked on the fly by the engine, or an
already-baked facecast file (.json/.csv/.npz) plus an optional audio file, renders every frame
with :class:`~facecast_runtime.preview.raster.Renderer`, draws the overlay and pipes raw RGB
frames into ffmpeg, which encodes H.264 (yuv420p) and muxes the audio as AAC. Memory stays
bounded: frames are baked, rendered and written block by block; only the audio's display
envelope (a few floats per pixel column) is kept for the whole file. The output appears
atomically (a temporary file beside it, then ``os.replace``); on any failure nothing is left.
"""
from __future__ import annotations

import math
import os
import queue
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from facecast.mesh import HeadMesh

from ..errors import FacecastError

__all__ = [
    "PreviewError", "VIDEO_FORMATS", "render_preview", "load_mesh",
    "resolve_retarget", "iter_frame_values", "PreviewStats", "prepare_output_dir",
]

#: output extension -> ffmpeg muxer
VIDEO_FORMATS: dict[str, str] = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}

Progress = Callable[[float, "float | None"], None]


class PreviewError(FacecastError, ValueError):
    """Bad preview input or a failed encode; the message is one line."""


@dataclass
class PreviewStats:
    frames: int = 0
    fps: int = 30
    width: int = 0
    height: int = 0
    duration_s: float = 0.0
    audio: bool = False
    render_s: float = 0.0       # rasterising + overlay, summed over frames
    wall_s: float = 0.0         # everything, decoding and encoding included
    mesh: str = ""
    retarget: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def render_fps(self) -> float:
        return self.frames / self.render_s if self.render_s > 0 else float("inf")


# ----------------------------------------------------------------------------------- meshes
def load_mesh(path: str | os.PathLike[str]) -> HeadMesh:
    """Read a user's head (.glb/.gltf; .fbx through Blender) with :func:`facecast.formats.
    read_mesh`; every failure becomes a one-line :class:`PreviewError`."""
    from facecast.formats import read_mesh

    p = Path(path)
    if not p.is_file():
        raise PreviewError(f"mesh {os.fspath(path)!r} does not exist")
    try:
        return read_mesh(p)
    except ValueError as e:
        raise PreviewError(str(e)) from None


def resolve_retarget(mesh: HeadMesh | None, spec: Any = None) -> tuple[HeadMesh, Any]:
    """``(mesh, RetargetMap)`` as the exporters resolve them (:func:`facecast.formats.rig.
    resolve_rig`): mesh None is the demo head; ``spec`` a preset name, a JSON map path, a
    RetargetMap, or None to detect the preset from the shape-key names."""
    from facecast.formats.rig import resolve_rig

    return resolve_rig(mesh, spec)


# ----------------------------------------------------------------------------------- frames
def _is_baked(path: Path) -> bool:
    from facecast.formats import SUPPORTED_EXTENSIONS

    return path.suffix.lower() in SUPPORTED_EXTENSIONS


def _resampled(batch: Any, fps: int, chunk: int = 1024) -> Iterator[np.ndarray]:
    """Values of ``batch`` at video frames k/fps (k = 0 .. ceil(end * fps) - 1), linearly
    interpolated in time, the first/last frame held outside the batch; in chunks."""
    n = len(batch)
    end = (batch.start_index + n) / batch.fps
    total = max(1, int(math.ceil(end * fps - 1e-9)))
    if batch.fps == fps and batch.start_index == 0:
        for i in range(0, n, chunk):
            yield batch.values[i:i + chunk]
        return
    v = batch.values
    for k0 in range(0, total, chunk):
        k = np.arange(k0, min(total, k0 + chunk), dtype=np.float64)
        pos = np.clip(k / fps * batch.fps - batch.start_index, 0, n - 1)
        i0 = np.floor(pos).astype(np.int64)
        i1 = np.minimum(i0 + 1, n - 1)
        w = (pos - i0).astype(np.float32)[:, None]
        yield v[i0] * (1 - w) + v[i1] * w


def iter_frame_values(source: str | os.PathLike[str], fps: int, model: str = "default",
                      options: dict | None = None) -> Iterator[np.ndarray]:
    """Channel vectors (blocks of shape (n, len(CHANNELS))) for video frames 0, 1, ... at
    ``fps``: baked on the fly from an audio file, or read from a baked facecast file."""
    from facecast import formats

    p = Path(source)
    if _is_baked(p):
        batch = formats.read(p)
        if len(batch) == 0:
            raise PreviewError(f"{p}: contains no frames")
        yield from _resampled(batch, fps)
        return
    from ..engine import bake_iter

    for batch in bake_iter(p, model=model, fps=fps, options=options):
        if len(batch):
            yield batch.values


# ----------------------------------------------------------------------------------- ffmpeg
class _Encoder:
    """ffmpeg reading raw RGB frames on stdin (fed from a writer thread so rendering and the
    pipe overlap) and muxing ``audio`` (its first audio stream) as AAC."""

    def __init__(self, target: str, fmt: str, width: int, height: int, fps: int,
                 audio: str | None, crf: int, preset: str) -> None:
        from ..audio import ffmpeg_exe

        exe = ffmpeg_exe()
        if exe is None:
            raise PreviewError("no ffmpeg found: install ffmpeg or the imageio-ffmpeg package")
        cmd = [exe, "-nostdin", "-hide_banner", "-nostats", "-v", "error", "-y",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
               "-framerate", str(fps), "-i", "pipe:0"]
        if audio:
            cmd += ["-i", audio, "-map", "0:v:0", "-map", "1:a:0",
                    "-c:a", "aac", "-b:a", "160k"]
        cmd += ["-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-pix_fmt", "yuv420p",
                "-g", str(2 * fps), "-movflags", "+faststart", "-f", fmt, target]
        self._err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stderr=self._err)
        self._q: queue.Queue = queue.Queue(maxsize=6)
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._pump, name="facecast-preview-pipe",
                                        daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        stdin = self.proc.stdin
        while True:
            frame = self._q.get()
            if frame is None:
                break
            if self.error is not None:
                continue  # drain so the producer never blocks
            try:
                stdin.write(memoryview(frame).cast("B"))  # type: ignore[union-attr]
            except (BrokenPipeError, OSError) as e:
                self.error = e
        try:
            stdin.close()  # type: ignore[union-attr]
        except OSError:
            pass

    def _stderr(self) -> str:
        try:
            self._err.seek(0)
            lines = self._err.read().decode(errors="replace").strip().splitlines()
        except OSError:
            lines = []
        return lines[-1] if lines else ""

    def write(self, frame: np.ndarray) -> None:
        while True:
            if self.error is not None:
                self.abort()
                raise PreviewError(f"ffmpeg stopped reading frames: "
                                   f"{self._stderr() or self.error}")
            try:
                self._q.put(frame, timeout=0.5)
                return
            except queue.Full:
                if self.proc.poll() is not None and self.error is None:
                    self.error = BrokenPipeError("ffmpeg exited")

    def close(self) -> None:
        self._q.put(None)
        self._thread.join()
        rc = self.proc.wait()
        msg = self._stderr()
        self._err.close()
        if rc != 0 or self.error is not None:
            raise PreviewError(f"ffmpeg failed (exit {rc}): {msg or self.error}")

    def abort(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            while True:
                self._q.get_nowait()
        except queue.Empty:
            pass
        self._q.put(None)
        self._thread.join(timeout=5)
        self.proc.wait()


# ----------------------------------------------------------------------------------- render
def _audio_envelope(path: str, rate: float) -> tuple[np.ndarray, np.ndarray, float]:
    from ..audio import iter_audio_blocks
    from .overlay import Envelope

    sr, blocks = iter_audio_blocks(path, block_seconds=10.0)
    return Envelope.from_blocks(sr, blocks, min(rate, sr))


def prepare_output_dir(output: str | os.PathLike[str], error: type = None) -> None:
    """Create the output's directory if needed and make sure a file can be created there
    (a probe file is made and removed); raises ``error`` (PreviewError) with one line."""
    error = error or PreviewError
    out = Path(output)
    parent = out.parent
    if parent.exists() and not parent.is_dir():
        raise error(f"cannot write {os.fspath(output)!r}: {os.fspath(parent)!r} is not a "
                    f"directory")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise error(f"cannot write {os.fspath(output)!r}: cannot create its directory "
                    f"({e.strerror or e})") from None
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".probe", dir=parent)
    except OSError as e:
        raise error(f"cannot write {os.fspath(output)!r}: directory not writable "
                    f"({e.strerror or e})") from None
    os.close(fd)
    os.unlink(probe)


def check_output(output: str | os.PathLike[str]) -> tuple[Path, str]:
    """The output path and its ffmpeg muxer; raises PreviewError for a bad extension or a
    directory."""
    out = Path(output)
    fmt = VIDEO_FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise PreviewError(f"output {os.fspath(output)!r} has unsupported extension "
                           f"{out.suffix or '(none)'!r}; use one of "
                           f"{', '.join(VIDEO_FORMATS)}")
    if out.is_dir():
        raise PreviewError(f"output {os.fspath(output)!r} is a directory")
    return out, fmt


def render_preview(source: str | os.PathLike[str], output: str | os.PathLike[str], *,
                   audio: str | os.PathLike[str] | None = None, mesh: HeadMesh | None = None,
                   rmap: Any = None, fps: int = 30, size: int = 512, model: str = "default",
                   options: dict | None = None,
                   overlay: bool = True, supersample: int = 2, crf: int = 20,
                   preset: str = "veryfast", caption: str | None = None,
                   progress: Progress | None = None) -> PreviewStats:
    """Render ``source`` (audio/video file, or a baked .json/.csv/.npz) to ``output`` (.mp4).

    ``audio`` is the sound for a baked source (an audio source is its own sound). ``mesh``
    defaults to the demo head; ``rmap`` (a RetargetMap, preset name or JSON map path) to the
    preset detected from its shape keys. ``options`` are the session options of an audio
    source's bake (expressive layer: emotion, seed, gains; see docs/expression.md).
    """
    from facecast.formats import AtomicFile

    from .overlay import Overlay
    from .raster import Renderer, require_numba

    t_start = time.perf_counter()
    src = Path(source)
    if not src.exists():
        raise PreviewError(f"input {os.fspath(source)!r} does not exist")
    if src.is_dir():
        raise PreviewError(f"input {os.fspath(source)!r} is a directory")
    out, fmt = check_output(output)
    if size < 64 or size > 4096 or size % 2:
        raise PreviewError(f"size {size} must be an even number of pixels in 64..4096")
    baked = _is_baked(src)
    sound = None
    if audio is not None:
        if not Path(audio).is_file():
            raise PreviewError(f"audio {os.fspath(audio)!r} does not exist")
        sound = os.fspath(audio)
    elif not baked:
        sound = os.fspath(src)
    require_numba()
    mesh, rmap = resolve_retarget(mesh, rmap)
    if caption is None:
        caption = src.name
    prepare_output_dir(out)
    try:
        af = AtomicFile(out, "wb")  # claims a temporary name beside the output first
    except OSError as e:
        raise PreviewError(f"cannot write {os.fspath(output)!r}: "
                           f"{e.strerror or e}") from None
    enc = None
    stats = PreviewStats(fps=fps, width=size, height=size, audio=sound is not None,
                         mesh=mesh.name, retarget=rmap.report() if rmap is not None else "")
    try:
        window_s = 4.0
        env = None
        env_rate = size / window_s
        duration = None
        if sound is not None:
            lo, hi, duration = _audio_envelope(sound, env_rate)
            env = (lo, hi)
        renderer = Renderer(mesh, size, rmap=rmap, supersample=supersample,
                            reserve_bottom=0.11 if (overlay and env is not None) else 0.0)
        ov = Overlay(size, size, fps, env, env_rate, window_s, caption=caption,
                     long=(duration or 0) >= 3600) if overlay else None
        enc = _Encoder(af.temp_path, fmt, size, size, fps, sound, crf, preset)
        k = 0
        for block in iter_frame_values(src, fps, model, options):
            for row in block:
                t0 = time.perf_counter()
                img = renderer.render(row)
                if ov is not None:
                    ov.draw(img, k / fps)
                stats.render_s += time.perf_counter() - t0
                enc.write(img)
                k += 1
                if progress is not None and k % fps == 0:
                    progress(k / fps, duration)
        if progress is not None:
            progress(k / fps, duration)
        if k == 0:
            raise PreviewError(f"input {os.fspath(source)!r} produced no frames")
        enc.close()
        enc = None
        af.commit()
    except BaseException:
        if enc is not None:
            enc.abort()
        af.abort()
        raise
    stats.frames = k
    stats.duration_s = k / fps
    stats.wall_s = time.perf_counter() - t_start
    return stats
