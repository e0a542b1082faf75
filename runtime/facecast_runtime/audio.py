"""Audio in: file decoding, mono mixing, sample validation and exact streaming resampling.

Files are decoded with soundfile (wav, flac, ogg, mp3 through libsndfile) and, when soundfile
cannot read them (video containers, m4a, ...), with ffmpeg: the system's ``ffmpeg`` if present,
else the binary shipped by the ``imageio-ffmpeg`` wheel. Nothing is downloaded.

``StreamResampler`` converts any rate in [MIN_RATE, MAX_RATE] to the model's rate with a
Kaiser-windowed sinc polyphase filter. It is exact under any chunking: the samples it returns for
a stream do not depend on how the stream was cut into pushes.
"""
from __future__ import annotations

import math
import os
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import AudioError

MIN_RATE = 4_000
MAX_RATE = 768_000
MAX_CHANNELS = 64

_INT_SCALE = {np.dtype(np.int8): 128.0, np.dtype(np.int16): 32768.0,
              np.dtype(np.int32): 2147483648.0, np.dtype(np.uint8): 128.0}


def check_rate(sample_rate: object, what: str = "sample rate") -> int:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)):
        if isinstance(sample_rate, float) and sample_rate.is_integer():
            sample_rate = int(sample_rate)
        else:
            raise AudioError(f"{what} must be an integer number of Hz, got {sample_rate!r}")
    sr = int(sample_rate)
    if not MIN_RATE <= sr <= MAX_RATE:
        raise AudioError(f"{what} {sr} Hz is outside the supported {MIN_RATE}..{MAX_RATE} Hz")
    return sr


def to_mono_float(samples: object, what: str = "audio chunk") -> np.ndarray:
    """Validate samples and return them as float32 mono.

    Accepts 1-D (n,) or 2-D (n, channels) arrays of int8/uint8/int16/int32/float32/float64;
    integers are scaled to [-1, 1), channels are averaged. NaN or Inf raises AudioError.
    """
    a = np.asarray(samples)
    if a.dtype.kind not in "iuf":
        raise AudioError(f"{what} has dtype {a.dtype}; expected integer or float samples")
    if a.ndim == 2:
        if a.shape[1] < 1 or a.shape[1] > MAX_CHANNELS:
            raise AudioError(f"{what} has {a.shape[1]} channels; 1..{MAX_CHANNELS} are supported")
    elif a.ndim != 1:
        raise AudioError(f"{what} must be 1-D (samples) or 2-D (samples, channels), "
                         f"got shape {a.shape}")
    if a.dtype.kind in "iu":
        scale = _INT_SCALE.get(a.dtype)
        if scale is None:
            raise AudioError(f"{what} has unsupported integer dtype {a.dtype}")
        x = a.astype(np.float32)
        if a.dtype == np.uint8:
            x -= 128.0
        x /= scale
    else:
        x = a.astype(np.float32, copy=False)
        if not np.isfinite(x).all():
            bad = int(np.flatnonzero(~np.isfinite(x.reshape(-1)))[0])
            raise AudioError(f"{what} contains NaN or Inf (first at flat index {bad})")
    if x.ndim == 2:
        x = x.mean(axis=1, dtype=np.float32) if x.shape[1] > 1 else x[:, 0]
    return np.ascontiguousarray(x, dtype=np.float32)


class StreamResampler:
    """Exact streaming rational resampler (polyphase FIR, Kaiser-windowed sinc).

    ``push(x)`` returns every output sample that the input so far fully determines; ``flush()``
    returns the rest, as if the stream were followed by silence, trimmed to
    ``ceil(n_in * out_rate / in_rate)`` samples in total. Output sample ``n`` is aligned with
    time ``n / out_rate`` (the filter's delay is compensated).
    """

    def __init__(self, in_rate: int, out_rate: int, zero_crossings: int = 16) -> None:
        self.in_rate = check_rate(in_rate, "input sample rate")
        self.out_rate = int(out_rate)
        ratio = Fraction(self.out_rate, self.in_rate)
        self.up, self.down = ratio.numerator, ratio.denominator
        self.passthrough = self.up == self.down == 1
        self.n_in = 0          # input samples received
        self.n_out = 0         # output samples returned
        if self.passthrough:
            return
        from scipy.signal import firwin

        span = max(self.up, self.down)
        # half length in upsampled samples, a multiple of `down` so the delay is whole outputs
        half = math.ceil(zero_crossings * span / self.down) * self.down
        self.delay_out = half // self.down
        taps = 2 * half + 1
        self.h = (firwin(taps, 0.94 / span, window=("kaiser", 8.6)) * self.up).astype(np.float64)
        self.taps = taps
        self.buf = np.zeros(0, np.float64)   # input history, global index of buf[0] = buf_start
        self.buf_start = 0
        self.raw_next = 0      # next raw (undelayed) output index to produce

    def _produce(self, n_avail_in: int) -> np.ndarray:
        from scipy.signal import upfirdn

        # raw output r needs input indices up to floor(r*down/up)
        last = (n_avail_in - 1) * self.up // self.down if n_avail_in > 0 else -1
        if last < self.raw_next:
            return np.zeros(0, np.float32)
        j0 = (self.raw_next * self.down - self.buf_start * self.up) // self.down
        j1 = (last * self.down - self.buf_start * self.up) // self.down
        y = upfirdn(self.h, self.buf, self.up, self.down)[j0 : j1 + 1]
        first = self.raw_next
        self.raw_next = last + 1
        # drop history no output needs any more; keep buf_start a multiple of `down`
        need = (self.raw_next * self.down - (self.taps - 1)) // self.up
        new_start = max(0, need // self.down * self.down)
        if new_start > self.buf_start:
            self.buf = self.buf[new_start - self.buf_start :]
            self.buf_start = new_start
        # compensate the filter delay: aligned output n = raw output n + delay_out
        skip = max(0, self.delay_out - first)
        return y[skip:].astype(np.float32)

    def push(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        self.n_in += len(x)
        if self.passthrough:
            self.n_out += len(x)
            return x
        if len(x) == 0:
            return np.zeros(0, np.float32)
        self.buf = np.concatenate([self.buf, x.astype(np.float64)])
        y = self._produce(self.buf_start + len(self.buf))
        self.n_out += len(y)
        return y

    def total_out(self) -> int:
        return -(-self.n_in * self.up // self.down)

    def flush(self) -> np.ndarray:
        total = self.total_out()
        if self.passthrough:
            return np.zeros(0, np.float32)
        missing = total - self.n_out
        if missing <= 0:
            return np.zeros(0, np.float32)
        pad_in = (missing + self.delay_out + 2) * self.down // self.up + self.taps // self.up + 2
        self.buf = np.concatenate([self.buf, np.zeros(pad_in, np.float64)])
        y = self._produce(self.buf_start + len(self.buf))[:missing]
        self.n_out += len(y)
        return y


def resample(x: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    """Resample a whole signal (same result as streaming it through StreamResampler)."""
    r = StreamResampler(in_rate, out_rate)
    return np.concatenate([r.push(to_mono_float(x, "audio")), r.flush()])


# ----------------------------------------------------------------------------------- files

def ffmpeg_exe() -> str | None:
    exe = shutil.which("ffmpeg")
    if exe:
        return exe
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:
        return None


def _check_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise AudioError(f"{p}: no such file")
    if p.is_dir():
        raise AudioError(f"{p}: is a directory, not an audio file")
    if p.stat().st_size == 0:
        raise AudioError(f"{p}: file is empty")
    return p


def _ffmpeg_cmd(p: Path, rate: int) -> list[str]:
    exe = ffmpeg_exe()
    if exe is None:
        raise AudioError(f"{p}: soundfile cannot read it and no ffmpeg is available "
                         "(install ffmpeg or the imageio-ffmpeg package)")
    return [exe, "-nostdin", "-v", "error", "-i", str(p), "-vn", "-map", "0:a:0",
            "-ac", "1", "-ar", str(rate), "-f", "f32le", "-"]


def iter_audio_blocks(path: str | os.PathLike, block_seconds: float = 30.0,
                      ffmpeg_rate: int = 16_000) -> tuple[int, Iterator[np.ndarray]]:
    """Open an audio (or video) file for block-wise decoding with bounded memory.

    Returns ``(sample_rate, blocks)`` where blocks yields float32 mono arrays. Files soundfile
    cannot read are decoded by ffmpeg, resampled by it to ``ffmpeg_rate``.
    """
    import soundfile as sf

    p = _check_path(path)
    try:
        info = sf.info(str(p))
        if info.frames == 0:
            raise AudioError(f"{p}: contains no audio samples")
        sr = check_rate(info.samplerate, f"{p}: sample rate")
        block = max(1, int(block_seconds * sr))

        def gen_sf() -> Iterator[np.ndarray]:
            try:
                with sf.SoundFile(str(p)) as f:
                    while True:
                        data = f.read(block, dtype="float32", always_2d=True)
                        if len(data) == 0:
                            break
                        yield to_mono_float(data, f"{p}")
            except sf.LibsndfileError as e:
                raise AudioError(f"{p}: truncated or corrupt audio ({e})") from None

        return sr, gen_sf()
    except AudioError:
        raise
    except Exception:
        pass  # not something libsndfile reads: try ffmpeg

    cmd = _ffmpeg_cmd(p, ffmpeg_rate)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.read(4 * 1024)  # type: ignore[union-attr]
    if not first:
        err = proc.stderr.read().decode(errors="replace").strip().splitlines()  # type: ignore
        proc.wait()
        reason = err[-1] if err else "no audio stream"
        raise AudioError(f"{p}: not a readable audio or video file ({reason})")

    def gen_ff() -> Iterator[np.ndarray]:
        nbytes = max(4, int(block_seconds * ffmpeg_rate) * 4)
        pending = first
        try:
            while True:
                chunk = proc.stdout.read(nbytes)  # type: ignore[union-attr]
                data = pending + (chunk or b"")
                usable = len(data) // 4 * 4
                if usable:
                    yield to_mono_float(np.frombuffer(data[:usable], "<f4").copy(), f"{p}")
                pending = data[usable:]
                if not chunk:
                    break
        finally:
            proc.stdout.close()  # type: ignore[union-attr]
            proc.kill()
            proc.wait()

    return ffmpeg_rate, gen_ff()


def load_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Decode a whole file to float32 mono; returns ``(samples, sample_rate)``."""
    sr, blocks = iter_audio_blocks(path)
    parts = list(blocks)
    x = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    if len(x) == 0:
        raise AudioError(f"{path}: contains no audio samples")
    return x, sr
