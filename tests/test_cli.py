"""The facecast CLI, run as subprocesses (real files, real servers, the shipped model)."""
from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from facecast.client import RuntimeClient
from facecast.formats import read
from facecast_runtime.cli import COMMANDS
from facecast_runtime.engine import bake

REPO = Path(__file__).resolve().parents[1]
from helpers import SR, Serve, facecast_cli as facecast, free_port, one_line_error, speech_like


@pytest.fixture(scope="module")
def wav(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("audio") / "voice.wav"
    sf.write(p, speech_like(1.5), SR, subtype="PCM_16")
    return p


def wait_subscribed(control: str, topic: str, curve=None, timeout: float = 20.0) -> None:
    with RuntimeClient(control, curve=curve) as rc:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if topic in rc.stats()["subscriptions"]:
                return
            time.sleep(0.05)
    raise AssertionError(f"{topic} never subscribed")


# ---------------------------------------------------------------------------------------------
# help and usage errors
# ---------------------------------------------------------------------------------------------
def test_help_on_every_command():
    p = facecast("--help")
    assert p.returncode == 0 and "usage: facecast" in p.stdout
    names = [c.name for c in COMMANDS]
    assert {"bake", "serve", "send", "listen", "demo", "keygen"} <= set(names)
    for name in names:
        assert name in p.stdout
        q = facecast(name, "--help")
        assert q.returncode == 0, q.stderr
        assert f"usage: facecast {name}" in q.stdout


def test_version_and_installed_script():
    p = facecast("--version")
    assert p.returncode == 0 and p.stdout.startswith("facecast ")
    script = Path(sys.executable).parent / "facecast"
    if script.exists():
        q = subprocess.run([str(script), "bake", "--help"], capture_output=True, text=True,
                           timeout=60)
        assert q.returncode == 0 and "usage: facecast bake" in q.stdout


def _write(tmp: Path, name: str, data: bytes) -> str:
    p = tmp / name
    p.write_bytes(data)
    return str(p)


def _wav_bytes(x: np.ndarray, sr: int, subtype: str = "FLOAT") -> bytes:
    import io

    b = io.BytesIO()
    sf.write(b, x, sr, format="WAV", subtype=subtype)
    return b.getvalue()


BAD_BAKE = {
    "missing": lambda t: (str(t / "nope.wav"), "does not exist"),
    "directory": lambda t: (str(t), "directory"),
    "empty_file": lambda t: (_write(t, "empty.wav", b""), ""),
    "truncated": lambda t: (_write(t, "trunc.wav", _wav_bytes(speech_like(0.5), SR)[:30]), ""),
    "corrupt": lambda t: (_write(t, "corrupt.wav", b"RIFF\x10\x00\x00\x00WAVEfmt " +
                                 os.urandom(400)), ""),
    "not_audio": lambda t: (_write(t, "notes.txt", b"hello, I am a text file\n" * 50), ""),
    "zero_samples": lambda t: (_write(t, "zero.wav", _wav_bytes(np.zeros(0, np.float32), SR)),
                               "no audio"),
    "nan_samples": lambda t: (_write(t, "nan.wav", _wav_bytes(
        np.where(np.arange(8000) == 100, np.nan, 0.1).astype(np.float32), SR)), "NaN"),
    "inf_samples": lambda t: (_write(t, "inf.wav", _wav_bytes(
        np.full(8000, np.inf, np.float32), SR)), "NaN or Inf"),
    "rate_1hz": lambda t: (_write(t, "r1.wav", _wav_bytes(np.zeros(100, np.float32), 1)),
                           "Hz"),
    "rate_10mhz": lambda t: (_write(t, "r10m.wav", _wav_bytes(np.zeros(1000, np.float32),
                                                               10_000_000)), "Hz"),
}


@pytest.mark.parametrize("case", sorted(BAD_BAKE))
def test_bake_bad_input_exits_2(tmp_path, case):
    path, expect = BAD_BAKE[case](tmp_path)
    out = tmp_path / "out.csv"
    p = facecast("bake", path, "-o", str(out))
    line = one_line_error(p)
    assert expect in line
    assert not out.exists()
    assert not [f for f in tmp_path.iterdir() if f.name.startswith(".out")], "temp file left"


@pytest.mark.parametrize("args, expect", [
    (["bake", "{wav}", "-o", "{tmp}/x.mp4"], "unsupported extension"),
    (["bake", "{wav}", "-o", "{tmp}"], ""),
    (["bake", "{wav}"], "required"),
    (["bake", "{wav}", "-o", "{tmp}/x.csv", "--fps", "45"], "fps"),
    (["bake", "{wav}", "-o", "{tmp}/x.csv", "--model", "no_such_model"], "no_such_model"),
    (["bake", "{wav}", "-o", "{tmp}/x.csv", "--subject", "two words"], "subject"),
    (["bake", "{wav}", "-o", "{tmp}/x.csv", "--bogus"], "unrecognized"),
    (["frobnicate"], "invalid choice"),
    ([], "no command"),
    (["serve", "--bind", "0.0.0.0"], "CURVE"),
    (["serve", "--bind", "10.1.2.3", "--control-port", "0", "--frame-port", "0"], "CURVE"),
    (["serve", "--curve-dir", "{tmp}/none"], "not a directory"),
    (["serve", "--control-port", "70000"], "TCP port"),
    (["serve", "--control-port", "5599", "--frame-port", "5599"], "differ"),
    (["send", "{tmp}/missing.wav"], "does not exist"),
    (["send", "{wav}", "--chunk-ms", "-5"], "positive"),
    (["send", "{wav}", "--subject", "a/b"], "subject"),
    (["listen", "-o", "{tmp}/rec.csv"], "--subject"),
    (["listen", "--subject", "a", "-o", "{tmp}/rec.xyz"], "unsupported extension"),
    (["listen", "--channels", "jawOpen,notAChannel"], "notAChannel"),
    (["listen", "--subject", "bad subject"], "subject"),
    (["keygen"], "required"),
    (["demo", "--sample", "{tmp}/missing.wav"], "does not exist"),
])
def test_usage_errors_exit_2_one_line(tmp_path, wav, args, expect):
    args = [a.format(tmp=tmp_path, wav=wav) for a in args]
    line = one_line_error(facecast(*args))
    assert expect in line, line


@pytest.mark.parametrize("case", ["empty_file", "corrupt", "not_audio", "zero_samples",
                                  "rate_1hz", "rate_10mhz"])
def test_send_bad_file_exits_2_before_connecting(tmp_path, case):
    path, expect = BAD_BAKE[case](tmp_path)
    p = facecast("send", path, "--control-port", str(free_port()), "--timeout", "0.5")
    assert expect in one_line_error(p)


def test_send_without_server_exits_1(wav):
    p = facecast("send", str(wav), "--control-port", str(free_port()), "--timeout", "0.5")
    line = one_line_error(p, code=1)
    assert "facecast serve" in line


def test_serve_port_in_use_exits_2():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    try:
        port = s.getsockname()[1]
        p = facecast("serve", "--control-port", str(port), "--frame-port", "0")
        assert "cannot bind" in one_line_error(p)
    finally:
        s.close()


# ---------------------------------------------------------------------------------------------
# bake
# ---------------------------------------------------------------------------------------------
def test_bake_writes_every_format(tmp_path, wav):
    outs = [tmp_path / "sub" / f"take.{ext}" for ext in ("csv", "json", "npz")]
    args = ["bake", str(wav)]
    for o in outs:
        args += ["-o", str(o)]
    p = facecast(*args, "--progress", "never")
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    assert "90 frames" in p.stdout
    ref = bake(str(wav))
    for o in outs:
        got = read(o)
        assert len(got) == len(ref) == 90 and got.fps == 60
        np.testing.assert_allclose(got.blendshapes, ref.blendshapes, atol=1e-4)
    assert read(outs[1]).subject == "voice"


def test_bake_30fps_and_eight_channels(tmp_path):
    x = speech_like(1.0)
    wav8 = tmp_path / "eight.wav"
    sf.write(wav8, np.repeat(x[:, None], 8, axis=1), SR, subtype="FLOAT")
    p = facecast("bake", str(wav8), "-o", str(tmp_path / "o.json"), "--fps", "30")
    assert p.returncode == 0, p.stderr
    got = read(tmp_path / "o.json")
    assert got.fps == 30 and len(got) == 30
    np.testing.assert_allclose(got.values, bake((x, SR), fps=30).values, atol=1e-4)


def test_bake_progress_bar(tmp_path, wav):
    p = facecast("bake", str(wav), "-o", str(tmp_path / "o.csv"), "--progress", "always")
    assert p.returncode == 0
    assert "100%" in p.stderr and "bake voice.wav" in p.stderr


def test_bake_long_input_shows_progress_without_tty(tmp_path):
    long = tmp_path / "long.wav"
    sf.write(long, np.tile(speech_like(5.0), 13), SR, subtype="PCM_16")  # 65 s
    p = facecast("bake", str(long), "-o", str(tmp_path / "o.npz"))
    assert p.returncode == 0, p.stderr
    assert "100%" in p.stderr and p.stderr.count("\n") >= 2
    assert len(read(tmp_path / "o.npz")) == 3900
    short = facecast("bake", str(long).replace("long", "long"), "-o", str(tmp_path / "o2.csv"),
                     "--progress", "never")
    assert short.stderr == ""


# ---------------------------------------------------------------------------------------------
# serve / send / listen
# ---------------------------------------------------------------------------------------------
def test_serve_send_listen_round_trip(tmp_path, wav):
    srv = Serve()
    try:
        rec = tmp_path / "rec.json"
        listen = subprocess.Popen(
            [sys.executable, "-m", "facecast_runtime.cli", "listen", "--frame-port",
             str(srv.fport), "--subject", "voice", "-o", str(rec)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        printer = subprocess.Popen(
            [sys.executable, "-m", "facecast_runtime.cli", "listen", "--frames", srv.frames,
             "--count", "5", "--format", "jsonl"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_subscribed(srv.control, "face.voice")
        wait_subscribed(srv.control, "face.")
        p = facecast("send", str(wav), *srv.ports(), "--fast")
        assert p.returncode == 0, p.stderr
        assert "90 frames on face.voice" in p.stdout
        out, err = listen.communicate(timeout=30)
        assert listen.returncode == 0, err
        assert "90 frames" in err and "session ended" in err
        got = read(rec)
        assert len(got) == 90 and got.subject == "voice"
        np.testing.assert_allclose(got.values, bake(str(wav)).values, atol=1e-4)
        pout, perr = printer.communicate(timeout=30)
        assert printer.returncode == 0, perr
        lines = [json.loads(ln) for ln in pout.splitlines()]
        frames = [ln for ln in lines if "event" not in ln]
        assert any(ln.get("event") == "start" for ln in lines)
        assert [f["index"] for f in frames] == [0, 1, 2, 3, 4]
        assert all("jawOpen" in f and f["subject"] == "voice" for f in frames)
        # real time pacing: 1.5 s of audio takes about 1.5 s
        t0 = time.monotonic()
        p = facecast("send", str(wav), *srv.ports(), "--subject", "paced", "--chunk-ms", "50")
        assert p.returncode == 0, p.stderr
        assert time.monotonic() - t0 >= 1.4
        # NaN samples in the middle of a file: exit 2, the session is closed, server unharmed
        nan = tmp_path / "nan.wav"
        y = speech_like(1.0)
        y[12000] = np.nan
        sf.write(nan, y, SR, subtype="FLOAT")
        p = facecast("send", str(nan), *srv.ports(), "--fast", "--chunk-ms", "100")
        assert "NaN" in one_line_error(p)
        with RuntimeClient(srv.control) as rc:
            assert [x for x in rc.stats()["sessions"] if x["subject"] == "nan"] == []
        # the subject is busy while a session holds it: the runtime's refusal exits 2
        with RuntimeClient(srv.control) as rc:
            rc.open("voice", SR)
            p = facecast("send", str(wav), *srv.ports())
            assert "subject_in_use" in one_line_error(p)
            p = facecast("send", str(wav), *srv.ports(), "--replace", "--fast", "-q")
            assert p.returncode == 0 and p.stdout == ""
    finally:
        code, err = srv.stop()
    assert code == 0, err
    assert "stopped after" in err


def test_listen_text_output_and_wait_timeout():
    srv = Serve()
    try:
        p = facecast("listen", "--frame-port", str(srv.fport), "--wait", "0.5")
        assert "no frames" in one_line_error(p, code=1)
        p = facecast("listen", "--frame-port", str(srv.fport), "--duration", "0.3", "-q")
        assert p.returncode == 0 and p.stdout == "" and p.stderr == ""
    finally:
        srv.stop()


def test_curve_keygen_serve_send_listen(tmp_path, wav):
    keys = tmp_path / "keys"
    p = facecast("keygen", str(keys), "--client", "studio")
    assert p.returncode == 0, p.stderr
    for f in ("server.key", "server.key_secret", "studio.key", "studio.key_secret",
              "authorized_clients/studio.key"):
        assert (keys / f).is_file(), f
    assert (keys / "server.key_secret").stat().st_mode & 0o077 == 0
    assert "secret-key" not in (keys / "server.key").read_text()
    again = facecast("keygen", str(keys))
    assert "already exists" in one_line_error(again)
    p = facecast("keygen", str(keys), "--add-client", "laptop")
    assert p.returncode == 0 and (keys / "authorized_clients" / "laptop.key").is_file()

    srv = Serve("--curve-dir", str(keys))
    try:
        from facecast.client import load_client_keys

        rec = tmp_path / "sec.csv"
        listen = subprocess.Popen(
            [sys.executable, "-m", "facecast_runtime.cli", "listen", "--frame-port",
             str(srv.fport), "--subject", "voice", "-o", str(rec), "--curve-dir", str(keys),
             "--client-name", "laptop"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_subscribed(srv.control, "face.voice", curve=load_client_keys(keys, "studio"))
        p = facecast("send", str(wav), *srv.ports(), "--fast", "--curve-dir", str(keys),
                     "--client-name", "studio")
        assert p.returncode == 0, p.stderr
        listen.communicate(timeout=30)
        assert listen.returncode == 0
        assert len(read(rec)) == 90
        # without keys the server never answers
        p = facecast("send", str(wav), *srv.ports(), "--timeout", "0.5")
        assert one_line_error(p, code=1)
        # keys of a client the server does not list
        p = facecast("send", str(wav), *srv.ports(), "--curve-dir", str(keys), "--client-name",
                     "nobody")
        assert "nobody.key_secret" in one_line_error(p)
    finally:
        code, err = srv.stop()
    assert code == 0, err


# ---------------------------------------------------------------------------------------------
# demo
# ---------------------------------------------------------------------------------------------
def test_demo_with_a_sample(tmp_path, wav):
    out = tmp_path / "demo_out"
    p = facecast("demo", "--sample", str(wav), "--out", str(out), "--fast")
    assert p.returncode == 0, p.stderr
    csv, js = out / "demo.csv", out / "demo.json"
    assert str(csv.resolve()) in p.stdout and str(js.resolve()) in p.stdout
    assert "received 90 of 90 frames" in p.stdout
    ref = bake(str(wav))
    for f in (csv, js):
        got = read(f)
        assert len(got) == 90
        np.testing.assert_allclose(got.blendshapes, ref.blendshapes, atol=1e-4)
    # the glTF carries the same animation on the built-in demo head
    from facecast.formats.gltf import read_gltf_animation

    anim = read_gltf_animation(out / "demo.glb")
    assert anim["weights"].shape[0] == 90
    jaw = anim["target_names"].index("jawOpen")
    np.testing.assert_allclose(anim["weights"][:, jaw], ref.channel("jawOpen"), atol=1e-4)
    # and, with the preview extra, a video of it with the sound
    mp4 = out / "demo.mp4"
    if importlib.util.find_spec("numba") is not None:
        assert str(mp4.resolve()) in p.stdout and mp4.stat().st_size > 10_000
    else:
        assert "preview extra" in p.stdout and not mp4.exists()


def test_demo_default_sample(tmp_path):
    sample = REPO / "samples" / "demo.wav"
    p = facecast("demo", "--out", str(tmp_path / "o"), "--fast", cwd=str(tmp_path))
    if sample.exists():
        assert p.returncode == 0, p.stderr
        assert (tmp_path / "o" / "demo.csv").is_file()
        assert (tmp_path / "o" / "demo.json").is_file()
    else:
        assert "samples/demo.wav" in one_line_error(p)
