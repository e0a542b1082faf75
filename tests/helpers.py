"""Helpers shared by the end-to-end tests: test signals, free ports, running the CLI."""
from __future__ import annotations

import os
import socket
import subprocess
import sys

import numpy as np

SR = 16000


def speech_like(seconds: float, sr: int = SR, seed: int = 0) -> np.ndarray:
    """Voiced, syllable-modulated harmonic signal with a little noise (float32 mono)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 110 + 15 * seed + 20 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    src = sum(np.sin(k * phase) / k for k in range(1, 16))
    env = 0.5 * (1 + np.sin(2 * np.pi * (3.5 + seed) * t))
    return (0.15 * src * env + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def facecast_cli(*args: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    """Run ``facecast ARGS`` as a user does, as a subprocess."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "facecast_runtime.cli", *args],
                          capture_output=True, text=True, timeout=timeout, env=env, **kw)


def one_line_error(p: subprocess.CompletedProcess, code: int = 2) -> str:
    """Assert the command failed with ``code`` and exactly one stderr line; return it."""
    assert p.returncode == code, (p.returncode, p.stdout, p.stderr)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("facecast"), lines[0]
    assert "Traceback" not in p.stderr
    return lines[0]
