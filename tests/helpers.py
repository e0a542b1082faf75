"""Helpers shared by the end-to-end tests: test signals, free ports, running the CLI."""
from __future__ import annotations

import os
import select
import signal
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


class Serve:
    """``facecast serve`` in a subprocess on free loopback ports, started at construction;
    ``kill()`` then ``start()`` restarts it on the same ports."""

    def __init__(self, *extra: str) -> None:
        self.extra = extra
        self.cport, self.fport = free_port(), free_port()
        self.control = f"tcp://127.0.0.1:{self.cport}"
        self.frames = f"tcp://127.0.0.1:{self.fport}"
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> "Serve":
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "facecast_runtime.cli", "serve", "--control-port",
             str(self.cport), "--frame-port", str(self.fport), "--log-level", "warning",
             *self.extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        ready, _, _ = select.select([self.proc.stdout], [], [], 60)
        line = self.proc.stdout.readline() if ready else ""
        if "facecast serve: control" not in line:
            self.proc.kill()
            raise AssertionError(f"serve did not start: {line!r} {self.proc.stderr.read()}")
        return self

    def ports(self) -> list[str]:
        return ["--control-port", str(self.cport)]

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> tuple[int, str]:
        """SIGINT, then the exit code and stderr."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return self.proc.returncode, err
