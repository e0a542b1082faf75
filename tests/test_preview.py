"""Preview videos and plots (runtime/facecast_runtime/preview): rasteriser, renderer, video,
plot and the CLI's error handling."""
from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import facecast_cli, one_line_error
from preview_mesh import make_quad, make_test_head

pytest.importorskip("numba", reason="the preview renderer needs numba (facecast[preview])")

from facecast_runtime import cli  # noqa: E402
from facecast_runtime.preview.raster import Camera, Renderer, rasterize  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEMO_WAV = REPO / "samples" / "demo.wav"


def _ffmpeg() -> str:
    from facecast_runtime.audio import ffmpeg_exe

    exe = ffmpeg_exe()
    if exe is None:
        pytest.skip("no ffmpeg")
    return exe


def _probe(path: Path) -> dict:
    """Frame count (decoded), duration and stream kinds of a video, from ffmpeg's own output."""
    p = subprocess.run([_ffmpeg(), "-nostdin", "-hide_banner", "-i", str(path), "-map", "0:v:0",
                        "-f", "null", "-"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    err = p.stderr
    frames = [int(m) for m in re.findall(r"frame=\s*(\d+)", err)]
    dur = re.search(r"Duration: (\d+):(\d+):(\d+\.\d+)", err)
    h, m, s = int(dur.group(1)), int(dur.group(2)), float(dur.group(3))
    return {"frames": frames[-1], "duration": h * 3600 + m * 60 + s,
            "video_line": next(ln for ln in err.splitlines() if "Video:" in ln),
            "audio_line": next((ln for ln in err.splitlines() if "Audio:" in ln), None)}


def _clip(tmp_path: Path, seconds: float, start: float = 0.0) -> tuple[Path, int]:
    import soundfile as sf

    x, sr = sf.read(DEMO_WAV, dtype="float32")
    x = x[int(start * sr):int((start + seconds) * sr)]
    p = tmp_path / "clip.wav"
    sf.write(p, x, sr)
    return p, len(x)


def _mouth_box(r: Renderer, centre, half_w: float, half_h: float) -> tuple[slice, slice]:
    pts = np.array([[centre[0] - half_w, centre[1] - half_h, centre[2]],
                    [centre[0] + half_w, centre[1] + half_h, centre[2]]])
    x, y, _ = r.camera.project(pts)
    return (slice(int(min(y)), int(math.ceil(max(y)))), slice(int(min(x)), int(math.ceil(max(x)))))


# ------------------------------------------------------------------------------- rasteriser
def test_rasterizer_covers_exactly_the_projected_quad():
    quad = make_quad(half=0.1)
    cam = Camera(eye=[0, 0, 1.0], target=[0, 0, 0], fov_deg=30.0, width=101, height=81)
    zinv, tid, bary = rasterize(cam, quad.positions, quad.triangles)
    f = 0.5 * 81 / math.tan(math.radians(15))
    half_px = f * 0.1  # distance 1: the quad spans +-half_px around the image centre
    cx, cy = 101 / 2, 81 / 2
    xs = np.arange(101) + 0.5
    ys = np.arange(81) + 0.5
    inside = (np.abs(ys - cy)[:, None] < half_px) & (np.abs(xs - cx)[None, :] < half_px)
    assert 0.0 < half_px < 40 and inside.sum() > 400
    covered = tid >= 0
    np.testing.assert_array_equal(covered, inside)
    assert set(np.unique(tid[covered])) == {0, 1}
    np.testing.assert_allclose(zinv[covered], 1.0, rtol=1e-5)   # depth 1 everywhere
    assert np.all(zinv[~covered] == 0)
    b = bary[covered]
    assert np.all(b >= -1e-5) and np.all(b.sum(1) <= 1 + 1e-5)


def test_rasterizer_z_buffer_keeps_the_nearer_surface():
    back = make_quad(half=0.1, z=0.0)
    front = make_quad(half=0.05, z=0.2)
    pos = np.concatenate([front.positions, back.positions])
    tris = np.concatenate([front.triangles, back.triangles + 4])
    cam = Camera(eye=[0, 0, 1.0], target=[0, 0, 0], fov_deg=30.0, width=64, height=64)
    # draw order must not matter: front first, then back
    zinv, tid, _ = rasterize(cam, pos, tris)
    assert tid[32, 32] in (0, 1) and zinv[32, 32] == pytest.approx(1 / 0.8, rel=1e-5)
    assert tid[32, 4] == -1
    assert tid[32, 22] in (2, 3) and zinv[32, 22] == pytest.approx(1.0, rel=1e-5)


def test_renderer_draws_a_lit_quad_over_the_background():
    # half-width 0.104 puts the quad's edges mid-pixel, so 2x2 supersampling gives partial pixels
    r = Renderer(make_quad(half=0.104), 64,
                 camera=Camera([0, 0, 1.0], [0, 0, 0], 30.0, 64, 64), supersample=2)
    img = r.render()
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    centre = img[28:36, 28:36].astype(float).mean()
    corner = img[:4, :4].astype(float).mean()
    assert centre > corner + 60      # lit grey quad over a dark background
    cov = r.coverage()
    assert cov[32, 32] == 1.0 and cov[0, 0] == 0.0
    row = cov[32]
    edge = np.flatnonzero((row > 0) & (row < 1))
    assert len(edge) == 2 and np.allclose(row[edge], 0.5)   # anti-aliased left/right edges
    lum = img[32].astype(float).mean(1)
    for x in edge:                   # an edge pixel lies between background and quad
        assert min(lum[x - 1], lum[x + 1]) < lum[x] < max(lum[x - 1], lum[x + 1])


# ------------------------------------------------------------------------------- mouth
def _mouth_difference(mesh, open_values, closed_values, centre, hw, hh, forehead):
    r = Renderer(mesh, 256)
    a = r.render(open_values).astype(np.float32)
    b = r.render(closed_values).astype(np.float32)
    box = _mouth_box(r, centre, hw, hh)
    fore = _mouth_box(r, forehead, hw, hh)
    lum = lambda im: im @ np.array([0.2126, 0.7152, 0.0722], np.float32)  # noqa: E731
    mouth_diff = np.abs(a[box] - b[box]).mean()
    fore_diff = np.abs(a[fore] - b[fore]).mean()
    return mouth_diff, fore_diff, lum(a[box]).mean(), lum(b[box]).mean()


def test_open_mouth_differs_from_closed_test_head():
    mesh = make_test_head()
    d, fore, lum_open, lum_closed = _mouth_difference(
        mesh, {"jawOpen": 0.8}, {"mouthClose": 0.5}, (0, -0.035, 0.09), 0.025, 0.015,
        (0, 0.09, 0.05))
    assert d > 12 and fore < 1.0
    assert lum_open < lum_closed - 10    # the open mouth reads dark


def test_open_mouth_differs_from_closed_demo_head():
    demohead = pytest.importorskip("facecast.demohead")
    mesh = demohead.demo_head()
    lm = demohead.demo_landmarks()
    centre = mesh.positions[lm["lip_upper_mid"]].mean(0)
    d, fore, lum_open, lum_closed = _mouth_difference(
        mesh, {"jawOpen": 0.8}, {"jawOpen": 0.0, "mouthClose": 0.0}, centre - [0, 0.01, 0],
        0.02, 0.012, centre + [0, 0.11, -0.01])
    assert d > 12 and fore < 1.0
    assert lum_open < lum_closed - 10


@pytest.mark.parametrize("which", ["test_head", "demo_head"])
def test_bake_extremes_render_differently(which):
    from facecast_runtime.engine import bake

    if which == "demo_head":
        demohead = pytest.importorskip("facecast.demohead")
        mesh = demohead.demo_head()
        lip = mesh.positions[demohead.demo_landmarks()["lip_upper_mid"]].mean(0)
        centre, hw, hh = lip - [0, 0.01, 0], 0.02, 0.012
    else:
        mesh, centre, hw, hh = make_test_head(), (0, -0.035, 0.09), 0.025, 0.015
    batch = bake(str(DEMO_WAV), fps=30)
    jaw = batch.channel("jawOpen")
    i_open, i_closed = int(np.argmax(jaw)), int(np.argmin(jaw))
    assert jaw[i_open] - jaw[i_closed] > 0.2
    r = Renderer(mesh, 256)
    a = r.render(batch.values[i_open]).astype(np.float32)
    b = r.render(batch.values[i_closed]).astype(np.float32)
    box = _mouth_box(r, centre, hw, hh)
    assert np.abs(a[box] - b[box]).mean() > 15      # visibly different mouths
    assert a[box].mean() < b[box].mean() - 10       # the open one darker (the mouth inside)


# ------------------------------------------------------------------------------- video
def test_preview_video_of_audio(tmp_path):
    clip, n = _clip(tmp_path, 2.0, start=1.0)
    out = tmp_path / "out" / "take.mp4"
    p = facecast_cli("preview", str(clip), "-o", str(out), timeout=120)
    assert p.returncode == 0, p.stderr
    assert "rendered" in p.stdout
    info = _probe(out)
    expected = math.ceil(n * 30 / 16000)
    assert info["frames"] == expected
    assert abs(info["duration"] - expected / 30) < 0.1
    assert "h264" in info["video_line"] and "yuv420p" in info["video_line"]
    assert "512x512" in info["video_line"]
    assert info["audio_line"] is not None and "aac" in info["audio_line"]
    assert sorted(os.listdir(out.parent)) == ["take.mp4"]   # no temporary file left


def test_preview_video_of_baked_take_with_audio(tmp_path):
    clip, n = _clip(tmp_path, 1.5)
    take = tmp_path / "take.json"
    assert cli.main(["bake", str(clip), "-o", str(take), "-q"]) == 0   # 60 fps
    out = tmp_path / "take.mp4"
    from facecast_runtime.preview.video import render_preview

    stats = render_preview(take, out, audio=clip, mesh=make_test_head(), size=128, fps=30)
    info = _probe(out)
    n60 = math.ceil(n * 60 / 16000)
    assert info["frames"] == stats.frames == math.ceil(n60 * 30 / 60)
    assert info["audio_line"] is not None
    # a baked take without --audio gives a silent video
    out2 = tmp_path / "silent.mp4"
    render_preview(take, out2, mesh=make_test_head(), size=64, fps=30, overlay=False)
    assert _probe(out2)["audio_line"] is None


def test_preview_with_a_gltf_mesh(tmp_path, capsys):
    gltf = pytest.importorskip("facecast.formats.gltf")
    from facecast.schema import CHANNELS, FrameBatch

    head = tmp_path / "head.glb"
    gltf.write_gltf(head, FrameBatch(np.zeros((1, len(CHANNELS)), np.float32), fps=30),
                    mesh=make_test_head())
    clip, n = _clip(tmp_path, 1.0, start=1.0)
    out = tmp_path / "glb.mp4"
    assert cli.main(["preview", str(clip), "--mesh", str(head), "-o", str(out), "--size", "128",
                     "--fps", "60"]) == 0
    assert "60 fps, 128x128" in capsys.readouterr().out
    info = _probe(out)
    assert info["frames"] == math.ceil(n * 60 / 16000) and "128x128" in info["video_line"]
    # a mesh that is not a glTF file: one line, exit 2, nothing written
    bad = tmp_path / "bad.glb"
    bad.write_bytes(b"not a glb")
    assert cli.main(["preview", str(clip), "--mesh", str(bad), "-o", str(tmp_path / "b.mp4")]
                    ) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "bad.glb" in err[0]
    assert not (tmp_path / "b.mp4").exists()


# ------------------------------------------------------------------------------- plot
def test_plot_png_size_and_content(tmp_path):
    from PIL import Image

    out = tmp_path / "plot.png"
    assert cli.main(["plot", str(DEMO_WAV), "-o", str(out), "--channels", "jaw,head,tongueOut",
                     "-q"]) == 0
    img = np.asarray(Image.open(out).convert("RGB"))
    from facecast_runtime.preview.plot import auto_height

    assert img.shape == (auto_height(3, True), 1600, 3)
    # non-trivial: many colours, ink in every third of the height
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 100
    for part in np.array_split(img, 3):
        assert (part < 200).any(axis=2).mean() > 0.01
    # a baked take, explicit size, every group
    take = tmp_path / "take.npz"
    assert cli.main(["bake", str(DEMO_WAV), "-o", str(take), "-q"]) == 0
    out2 = tmp_path / "all.svg"
    assert cli.main(["plot", str(take), "--audio", str(DEMO_WAV), "-o", str(out2), "--channels",
                     "all", "--width", "900", "--height", "1200", "-q"]) == 0
    assert out2.read_text().lstrip().startswith("<?xml")
    out3 = tmp_path / "auto.png"
    assert cli.main(["plot", str(take), "-o", str(out3), "--width", "800", "--height", "600",
                     "-q"]) == 0
    assert Image.open(out3).size == (800, 600)


def test_plot_auto_groups_skip_silent_channels():
    from facecast.schema import CHANNELS, FrameBatch

    from facecast_runtime.preview.plot import select_groups

    v = np.zeros((100, len(CHANNELS)), np.float32)
    b = FrameBatch(v, fps=60)
    b.values[:, CHANNELS.index("jawOpen")] = np.linspace(0, 0.5, 100)
    b.values[:, CHANNELS.index("headYaw")] = np.linspace(0, 0.1, 100)
    vals = {c: b.channel(c) for c in CHANNELS}
    assert [g.key for g in select_groups(vals)] == ["jaw", "head"]
    assert len(select_groups(vals, "all")) >= 9
    with pytest.raises(ValueError, match="neither a channel nor a group"):
        select_groups(vals, "jaw,nosuch")


# ------------------------------------------------------------------------------- errors
def _no_files(d: Path) -> None:
    assert list(d.iterdir()) == [], list(d.iterdir())


@pytest.mark.parametrize("command,ext", [("preview", ".mp4"), ("plot", ".png")])
def test_bad_input_one_line_exit_2_no_partial_file(tmp_path, capsys, command, ext):
    outdir = tmp_path / "o"
    outdir.mkdir()

    def run(*args: str) -> str:
        code = cli.main([command, *args, "-q"])
        err = capsys.readouterr().err
        assert code == 2, err
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith(f"facecast {command}: error:"), err
        return lines[0]

    assert "does not exist" in run(str(tmp_path / "missing.wav"), "-o", str(outdir / f"a{ext}"))
    assert "unsupported extension" in run(str(DEMO_WAV), "-o", str(outdir / "a.gif"))
    garbage = tmp_path / "noise.wav"
    garbage.write_bytes(b"RIFF....WAVEfmt garbage" * 10)
    run(str(garbage), "-o", str(outdir / f"a{ext}"))
    bad_take = tmp_path / "take.json"
    bad_take.write_text("{not json")
    run(str(bad_take), "-o", str(outdir / f"a{ext}"))
    # the output's directory cannot be created or written: its parent is a file
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    assert "not a directory" in run(str(DEMO_WAV), "-o", str(blocker / f"a{ext}"))
    _no_files(outdir)
    # a directory that exists but refuses new files
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        try:
            assert "not writable" in run(str(DEMO_WAV), "-o", str(ro / f"a{ext}"))
            _no_files(ro)
        finally:
            ro.chmod(0o755)
    elif os.path.isdir("/sys"):  # root ignores permissions, but not sysfs's
        assert "not writable" in run(str(DEMO_WAV), "-o", f"/sys/facecast-test{ext}")
        assert not os.path.exists(f"/sys/facecast-test{ext}")


def test_preview_without_numba_is_a_polite_error(tmp_path):
    # a subprocess with numba hidden: one polite line, exit 2
    code = ("import sys; sys.modules['numba'] = None; from facecast_runtime.cli import main; "
            f"sys.exit(main(['preview', {str(DEMO_WAV)!r}, '-o', {str(tmp_path / 'x.mp4')!r}]))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    line = one_line_error(p)
    assert "numba" in line and "facecast[preview]" in line
    assert not (tmp_path / "x.mp4").exists()


def test_envelope_is_independent_of_block_size():
    from facecast_runtime.preview.overlay import Envelope

    x = np.random.default_rng(0).standard_normal(16000 * 2 + 123).astype(np.float32)
    a = Envelope.from_blocks(16000, [x], 128.0)
    b = Envelope.from_blocks(16000, [x[i:i + 777] for i in range(0, len(x), 777)], 128.0)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    col = np.floor(np.arange(len(x)) * 128 / 16000).astype(int)
    assert len(a[0]) == col[-1] + 1
    k = 17
    assert a[1][k] == x[col == k].max() and a[0][k] == x[col == k].min()


def test_preview_and_plot_take_the_expressive_options(tmp_path):
    from facecast.schema import CHANNELS
    from facecast_runtime.preview.video import iter_frame_values

    clip, _ = _clip(tmp_path, 3.0)
    smile = [CHANNELS.index("mouthSmileLeft"), CHANNELS.index("mouthSmileRight")]
    yaw = CHANNELS.index("headYaw")
    plain = np.concatenate(list(iter_frame_values(clip, 30)))
    happy = np.concatenate(list(iter_frame_values(clip, 30, options={"emotion": "happy:0.9",
                                                                     "enable": {"head": False}})))
    assert happy.shape == plain.shape
    assert happy[:, smile].mean() > plain[:, smile].mean() + 0.2
    assert np.all(happy[:, yaw] == 0.0) and np.any(plain[:, yaw] != 0.0)
    for cmd, out in (("preview", "x.mp4"), ("plot", "x.png")):
        p = facecast_cli(cmd, str(clip), "-o", str(tmp_path / out), "--emotion", "gleeful")
        assert p.returncode == 2
        assert "gleeful" in one_line_error(p) and "happy" in one_line_error(p)
        assert not (tmp_path / out).exists()
