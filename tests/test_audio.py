"""Audio in: formats, decoders, resampling, bad files."""
from __future__ import annotations

import subprocess

import numpy as np
import pytest
import soundfile as sf

from facecast_runtime.audio import (StreamResampler, ffmpeg_exe, iter_audio_blocks, load_audio,
                                    resample, to_mono_float)
from facecast_runtime.errors import AudioError


def tone(sr: int, seconds: float = 1.0, f: float = 440.0) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (0.5 * np.sin(2 * np.pi * f * t)).astype(np.float32)


@pytest.mark.parametrize("ext, subtype", [("wav", "PCM_16"), ("wav", "FLOAT"), ("flac", None),
                                          ("ogg", None), ("mp3", None)])
def test_soundfile_formats(tmp_path, ext, subtype):
    x = tone(22050)
    p = tmp_path / f"a.{ext}"
    sf.write(p, np.stack([x, x], axis=1), 22050, subtype=subtype)
    y, sr = load_audio(p)
    assert sr == 22050
    assert abs(len(y) - len(x)) <= 2400  # mp3 encoders pad a little
    assert 0.3 < np.abs(y).max() < 0.7


def test_video_file_audio_track_through_ffmpeg(tmp_path):
    exe = ffmpeg_exe()
    if exe is None:
        pytest.skip("no ffmpeg available")
    wav = tmp_path / "a.wav"
    sf.write(wav, tone(44100, 2.0), 44100)
    mp4 = tmp_path / "clip.mp4"
    subprocess.run([exe, "-v", "error", "-f", "lavfi", "-i", "color=c=black:s=64x64:d=2",
                    "-i", str(wav), "-shortest", "-c:v", "libx264", "-c:a", "aac", str(mp4)],
                   check=True)
    y, sr = load_audio(mp4)
    assert sr == 16000
    assert abs(len(y) / sr - 2.0) < 0.1
    # the tone survives: dominant frequency near 440 Hz
    spec = np.abs(np.fft.rfft(y[: sr]))
    assert abs(np.argmax(spec) * sr / sr - 440) < 5


def test_empty_truncated_corrupt_and_non_audio_files(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioError, match="empty"):
        load_audio(empty)
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio\n" * 50)
    with pytest.raises(AudioError, match="not a readable audio"):
        load_audio(text)
    good = tmp_path / "good.flac"
    sf.write(good, tone(16000, 3.0), 16000)
    data = good.read_bytes()
    trunc = tmp_path / "trunc.flac"
    trunc.write_bytes(data[: len(data) // 3])
    try:
        y, _ = load_audio(trunc)  # libsndfile may decode the intact prefix...
        assert len(y) < 3 * 16000
    except AudioError as e:      # ...or refuse it; either way, a clear one-line error
        assert "trunc.flac" in str(e) and "\n" not in str(e)
    with pytest.raises(AudioError, match="no such file"):
        load_audio(tmp_path / "missing.wav")
    with pytest.raises(AudioError, match="directory"):
        load_audio(tmp_path)


def test_header_only_wav_has_no_samples(tmp_path):
    p = tmp_path / "zero.wav"
    sf.write(p, np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match="no audio samples"):
        load_audio(p)


def test_block_iteration_bounded(tmp_path):
    p = tmp_path / "long.wav"
    sf.write(p, tone(16000, 10.0), 16000)
    sr, blocks = iter_audio_blocks(p, block_seconds=1.0)
    sizes = [len(b) for b in blocks]
    assert sr == 16000 and max(sizes) == 16000 and sum(sizes) == 160000


def test_int_and_multichannel_conversion():
    x = np.array([[32767, -32768], [0, 0]], np.int16)
    y = to_mono_float(x)
    assert y.dtype == np.float32 and y.shape == (2,)
    assert abs(y[0] - (32767 - 32768) / 2 / 32768) < 1e-6
    assert to_mono_float(np.array([0, 255], np.uint8)).tolist() == pytest.approx([-1.0, 127 / 128])


@pytest.mark.parametrize("sr_in", [8000, 22050, 44100, 48000, 96000])
def test_resampler_is_exact_under_chunking_and_keeps_timing(sr_in):
    rng = np.random.default_rng(sr_in)
    x = tone(sr_in, 2.0, 300.0)
    whole = resample(x, sr_in, 16000)
    assert len(whole) == int(np.ceil(len(x) * 16000 / sr_in))
    r = StreamResampler(sr_in, 16000)
    parts, i = [], 0
    while i < len(x):
        n = int(rng.integers(1, 3000))
        parts.append(r.push(x[i : i + n]))
        i += n
    parts.append(r.flush())
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    ref = 0.5 * np.sin(2 * np.pi * 300 * np.arange(len(whole)) / 16000)
    assert np.abs(whole - ref)[400:-400].max() < 1e-3  # aligned, no delay, no aliasing


def test_resampler_rejects_aliasing_content():
    x = tone(48000, 1.0, 12000.0)  # above the 8 kHz Nyquist of 16 kHz
    y = resample(x, 48000, 16000)
    assert np.abs(y[200:-200]).max() < 0.01
