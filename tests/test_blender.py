"""The Blender extension (bridges/blender): its bpy-free core, the build, and the extension
installed into Blender (the bpy module) baking, importing and driving a live rig.

bpy is skipped when missing, except under CI=true where a missing bpy fails. Blender's user
folders point at a temporary directory (BLENDER_USER_RESOURCES, set before bpy is imported), so
nothing is installed into the user's home. Headless bpy runs no timers: the tests call the
registered timer callbacks (``live.tick``, ``bake.poll``) in loops, as Blender's event loop would.
"""
from __future__ import annotations

import atexit
import importlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from facecast.schema import ARKIT52, CHANNEL_INDEX, CHANNELS, FrameBatch

from conftest import require_shared
from helpers import SR, Serve, free_port, speech_like

REPO = Path(__file__).resolve().parents[1]
BRIDGE = REPO / "bridges" / "blender"
IN_CI = os.environ.get("CI", "").lower() == "true"

# Blender's user folders (extensions, their wheels, config) go to a temporary directory.
BLENDER_HOME = tempfile.mkdtemp(prefix="facecast_blender_home_")
atexit.register(shutil.rmtree, BLENDER_HOME, True)
if "bpy" not in sys.modules:
    os.environ["BLENDER_USER_RESOURCES"] = BLENDER_HOME



def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


core = _load("facecast_blender_core", BRIDGE / "facecast_blender" / "core.py")   # bpy-free
build = _load("facecast_blender_build", BRIDGE / "build.py")

EXT = "bl_ext.user_default.facecast"
WHEEL_CACHE = REPO / "work_data" / "blender_wheels"
MAX_TICK_S = 0.25    # a UI timer callback must return at once (generous: shared CPUs)


# =============================================================================================
# core, without Blender
# =============================================================================================
def _take(n: int, fps: float, seed: int = 0) -> core.Take:
    rng = np.random.default_rng(seed)
    return core.Take(np.arange(n) / fps, rng.random((n, len(CHANNELS))), fps)


def test_resample_exact_at_same_rate_and_linear_between():
    take = _take(31, 30.0)
    k, rows = core.resample(take, 30.0)
    assert k.tolist() == list(range(31))
    assert np.array_equal(rows, take.values)              # same rate: the frames themselves
    k, rows = core.resample(take, 24.0)                    # 1 s at 24 fps: frames 0..24
    assert k.tolist() == list(range(25))
    for c in (0, 17, 58):
        expect = np.interp(k / 24.0, take.times, take.values[:, c])
        assert np.allclose(rows[:, c], expect, atol=1e-12)
    k, rows = core.resample(take, 60.0)                    # upsampling: every other row exact
    assert np.array_equal(rows[::2], take.values)


def test_smoothing():
    x = np.zeros((5, 2))
    x[1:] = 1.0
    y = core.smooth(x, 0.5)
    assert y[:, 0].tolist() == [0.0, 0.5, 0.75, 0.875, 0.9375]
    assert np.array_equal(core.smooth(x, 0.0), x)
    s = core.ExpSmoother(0.5)
    assert s(np.ones(2), "a").tolist() == [1.0, 1.0]
    assert s(np.zeros(2), "a").tolist() == [0.5, 0.5]
    assert s(np.zeros(2), "b").tolist() == [0.0, 0.0]        # a new session starts fresh


def test_axes_schema_to_blender():
    fwd = np.array([0.0, -1.0, 0.0])                       # Blender: the face looks along -Y
    up = np.array([0.0, 0.0, 1.0])
    left = np.array([1.0, 0.0, 0.0])                       # subject's own left is +X
    a = 0.3
    yaw = core.head_matrices([[a, 0, 0]])[0]
    assert np.allclose(yaw @ fwd, [np.sin(a), -np.cos(a), 0])        # turns to the subject's left
    assert np.allclose(yaw @ up, up)
    pitch = core.head_matrices([[0, a, 0]])[0]
    assert (pitch @ fwd)[2] < -0.29 and np.allclose(pitch @ left, left)   # looks down
    roll = core.head_matrices([[0, 0, a]])[0]
    assert (roll @ up)[0] < -0.29 and np.allclose(roll @ fwd, fwd)   # top to the right shoulder
    eye = core.eye_matrices([[a, -a]])[0]
    assert (eye @ fwd)[0] > 0 and (eye @ fwd)[2] > 0                 # left and up
    # the schema's own matrices (facecast.mesh) conjugated by the axis change
    from facecast.mesh import rotation_matrix

    m = core.SCHEMA_TO_BLENDER
    for angles in ([0.2, -0.1, 0.3], [-0.5, 0.4, 0.0]):
        assert np.allclose(core.head_matrices([angles])[0], m @ rotation_matrix(*angles) @ m.T)


def test_local_quaternions_in_a_bone_frame():
    # an upright head bone (Y along the bone = Blender +Z, roll 0): its local axes are the
    # schema's; a yaw must come out as a rotation about the bone's local Y
    bone = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])
    q = core.local_quaternions(core.head_matrices([[0.4, 0, 0]]), bone)[0]
    assert np.allclose(q, [np.cos(0.2), 0, np.sin(0.2), 0])
    # an object without a parent (identity frame): a yaw is about world Z
    q = core.local_quaternions(core.head_matrices([[0.4, 0, 0]]), np.eye(3))[0]
    assert np.allclose(q, [np.cos(0.2), 0, 0, np.sin(0.2)])
    # applied on top of a rest rotation, with scale in the frame ignored
    rest = [np.cos(0.5), np.sin(0.5), 0, 0]
    q = core.local_quaternions(core.head_matrices([[0, 0, 0]]), 3.0 * np.eye(3), rest)[0]
    assert np.allclose(q, rest)
    # sign continuity along time
    qs = core.local_quaternions(core.head_matrices([[t, 0, 0] for t in np.linspace(0, 6, 50)]),
                                np.eye(3))
    assert np.all(np.sum(qs[1:] * qs[:-1], axis=1) > 0)


def test_build_map_presets_gains_and_errors(tmp_path):
    from facecast.retarget import PRESETS

    rmap = core.build_map(list(PRESETS["facecap"].values()))
    assert rmap.preset == "facecap" and not rmap.missing
    assert rmap.targets["jawLeft"] == "jawLeft" and rmap.targets["eyeBlinkLeft"] == "eyeBlink_L"
    half = list(ARKIT52[::2])
    rmap = core.build_map(half, "arkit", gains={"jawOpen": 0.5})
    assert len(rmap.missing) == 26 and set(rmap.missing) == set(ARKIT52[1::2])
    assert "26 missing" in core.missing_summary(rmap)
    assert rmap.gain("jawOpen") == 0.5
    with pytest.raises(core.BridgeError, match="has no shape keys"):
        core.build_map([], mesh_name="'Cube'")
    with pytest.raises(core.BridgeError, match="matches an ARKit name"):
        core.build_map(["Key 1", "Key 2"])
    with pytest.raises(core.BridgeError, match="none of the 52"):
        core.build_map(["Key 1"], "livelink")
    with pytest.raises(core.BridgeError, match="unknown ARKit"):
        core.build_map(["jawOpen"], "arkit", gains={"jawOpn": 1.0})
    with pytest.raises(core.BridgeError, match="not found"):
        core.build_map(["jawOpen"], core.PRESET_CUSTOM, str(tmp_path / "nope.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(core.BridgeError, match="not valid JSON"):
        core.build_map(["jawOpen"], core.PRESET_CUSTOM, str(bad))
    good = tmp_path / "map.json"
    good.write_text(json.dumps({"jawOpen": {"target": "Jaw", "gain": 2.0}, "tongueOut": "Tongue"}))
    rmap = core.build_map(["Jaw", "Tongue"], core.PRESET_CUSTOM, str(good))
    assert rmap.mapped == {"jawOpen": "Jaw", "tongueOut": "Tongue"} and rmap.gain("jawOpen") == 2.0
    vals = np.zeros((2, len(CHANNELS)))
    vals[:, CHANNEL_INDEX["jawOpen"]] = [0.1, 0.4]
    out = core.shape_key_values(vals, rmap)
    assert np.allclose(out["Jaw"], [0.2, 0.8]) and np.allclose(out["Tongue"], 0)


def test_loopback_addresses():
    for a in ("tcp://127.0.0.1:5571", "tcp://127.5.0.1:1", "tcp://localhost:5571",
              "tcp://[::1]:5571", "ipc:///tmp/x"):
        assert core.is_loopback(a), a
    for a in ("tcp://10.0.0.2:5571", "tcp://studio.local:5571", "tcp://0.0.0.0:5571",
              "tcp://[2001:db8::1]:5571"):
        assert not core.is_loopback(a), a


class _F:
    def __init__(self, session, index, fps=60, received=0.0, subject="alice"):
        self.session, self.index, self.fps, self.time = session, index, fps, index / fps
        self.received, self.subject = received, subject

    def vector(self):
        return np.full(len(CHANNELS), float(self.index), np.float32)


def test_recorder_places_sessions_on_one_timeline():
    rec = core.Recorder()
    for i in range(5, 10):                      # recording starts mid-session: first = time 0
        rec.add(_F("a", i, received=100 + i / 60))
    rec.add(_F("a", 9, received=100.2))         # duplicate: ignored
    rec.add(_F("z", 3, received=100.3, subject="bob"))   # another subject: not recorded
    for i in range(3):                          # a new session 2 s of wall clock later
        rec.add(_F("b", i, received=102.0 + i / 60))
    take = rec.take()
    assert np.allclose(take.times[:5], np.arange(5) / 60)
    assert np.allclose(take.times[5:], (102.0 - (100 + 5 / 60)) + np.arange(3) / 60)
    assert take.values[:, 0].tolist() == [5, 6, 7, 8, 9, 0, 1, 2] and rec.sessions == 2
    assert rec.subject == "alice" and rec.ignored == 1


# ---------------------------------------------------------------------------------------------
# expression settings -> the runtime's session options and the facecast command's flags
# ---------------------------------------------------------------------------------------------
def _cli_options(flags: list[str]) -> dict:
    """What the real `facecast bake` makes of ``flags``."""
    from facecast_runtime.cli import _expressive_options, build_parser

    args = build_parser().parse_args(["bake", "in.wav", "-o", "out.json", *flags])
    return _expressive_options(args)


def test_expression_names_and_defaults_match_the_runtime():
    from facecast_runtime import expressive
    from facecast_runtime.expressive import options as ro

    assert core.EMOTIONS == expressive.EMOTIONS
    assert core.EXPRESSIVE_LAYERS == expressive.LAYERS
    assert core.DEFAULT_TRANSITION_S == ro.DEFAULT_TRANSITION_S
    assert core.MAX_LAYER_GAIN == ro.MAX_GAIN and core.MAX_EMOTION_KEYS == ro.MAX_KEYS
    assert core.MAX_TRANSITION_S == ro.OPTION_SPEC["transition"]["max"]
    assert core.MAX_SEED == ro.OPTION_SPEC["seed"]["max"]
    defaults = expressive.default_options()
    assert defaults.pop("emotion") == "neutral"          # neutral is where every take starts
    assert core.expression_options() == defaults
    assert core.expression_flags() == []
    assert core.expression_summary() == ""


def test_expression_options_and_flags_agree_with_the_runtime(tmp_path):
    from facecast_runtime.expressive import EmotionKey, load_keys_file, parse_options

    keys_json = tmp_path / "keys.json"
    keys_json.write_text(json.dumps({"keys": [
        {"time": 2.5, "name": "Sad", "intensity": 0.4, "transition": 1.25},
        [0.75, "angry", 0.9], [1.0, "surprised"], {"time": 0, "name": "afraid"}]}))
    keys_csv = tmp_path / "keys.csv"
    keys_csv.write_text("time,name,intensity,transition\n# a comment\n1.5, happy, 0.7\n"
                        "0.25,disgusted,0.3,0.2\n\n3,neutral,,\n")
    for f in (keys_json, keys_csv):
        assert core.read_emotion_keys(str(f)) == load_keys_file(f), f.name
    single = float(np.float32(0.8))                # what a Blender float property gives back
    cases = [
        {},
        {"emotion": "happy", "intensity": single, "enable": {"head": False}},
        {"expressive": False, "seed": 2**40 + 3, "emotion": "Sad", "intensity": 0.25,
         "transition": float(np.float32(1.7)), "auto_emotion": True},
        {"gains": {"head": 0.5, "blinks": 2.0, "gaze": 0.0, "brows": 3.0, "emotion": 1.0},
         "enable": {"gaze": False, "brows": False, "blinks": False, "emotion": False},
         "keys_file": str(keys_json)},
        {"emotion": "afraid", "intensity": 1.0, "keys_file": str(keys_csv), "transition": 0.0},
        {"emotion": "neutral", "intensity": 0.5, "keys_file": str(keys_json), "seed": 1},
    ]
    for values in cases:
        opts = core.expression_options(**values)
        cfg = parse_options(opts)                                  # the runtime accepts it
        flags = core.expression_flags(**values)
        assert parse_options(_cli_options(flags)).as_dict() == cfg.as_dict(), (values, flags)
        if values.get("keys_file"):
            assert opts["emotion_keys"] == load_keys_file(values["keys_file"])
    cfg = parse_options(core.expression_options(**cases[1]))
    assert cfg.keys == [EmotionKey(0.0, "happy", 0.8)] and cfg.enable["head"] is False
    assert core.expression_flags(**cases[1]) == ["--emotion", "happy:0.8", "--no-head"]
    assert core.expression_summary(**cases[1]) == "happy:0.8, head off"
    assert core.expression_summary(**cases[2]) == "expression off"
    cfg = parse_options(core.expression_options(**cases[2]))
    assert not cfg.enabled and cfg.seed == 2**40 + 3 and cfg.transition == 1.7
    assert cfg.auto_emotion and cfg.keys == [EmotionKey(0.0, "sad", 0.25)]
    # a neutral emotion leaves a keys file's first key (at 0 s) alone
    cfg = parse_options(core.expression_options(**cases[5]))
    assert [(k.time, k.name) for k in cfg.keys] == [(0.0, "afraid"), (0.75, "angry"),
                                                    (1.0, "surprised"), (2.5, "sad")]
    # bad values: one line naming the problem, before any runtime is asked
    bad = tmp_path / "bad.csv"
    bad.write_text("0,happy,0.5\n1.0,joyful,0.5\n")
    for values, match in (({"emotion": "joyful"}, "allowed: neutral, happy, sad"),
                          ({"intensity": 1.5}, "intensity must be between 0 and 1"),
                          ({"gains": {"head": 3.5}}, "head gain must be between 0 and 3"),
                          ({"enable": {"nose": False}}, "unknown layer 'nose'"),
                          ({"seed": -1}, "seed must be"),
                          ({"keys_file": str(bad)}, r"bad.csv:2: unknown emotion 'joyful'"),
                          ({"keys_file": str(tmp_path / "nope.csv")}, "not found")):
        for fn in (core.expression_options, core.expression_flags):
            with pytest.raises(core.BridgeError, match=match):
                fn(**values)


def test_wheel_tags_follow_blenders_platform_rules():
    fits = build.wheel_fits
    linux = "pyzmq-27.3.0-cp311-cp311-manylinux_2_26_x86_64.manylinux_2_28_x86_64.whl"
    assert fits(linux, "linux-x64") and not fits(linux, "windows-x64")
    uni = "pyzmq-27.3.0-cp311-cp311-macosx_10_15_universal2.whl"
    assert fits(uni, "macos-x64") and fits(uni, "macos-arm64")
    assert fits("msgpack-1.2.4-cp311-cp311-win_amd64.whl", "windows-x64")
    assert fits("pyzmq-27.1.0-cp38-abi3-win_amd64.whl", "windows-x64")            # stable ABI
    assert not fits("pyzmq-27.1.0-cp312-abi3-manylinux_2_28_x86_64.whl", "linux-x64")  # 3.12+
    assert not fits("msgpack-1.2.4-cp312-cp312-win_amd64.whl", "windows-x64")
    assert fits("facecast_sdk-0.1.0-py3-none-any.whl", "macos-arm64")


def test_sdk_wheel_holds_only_the_facecast_package(tmp_path):
    whl = build.build_sdk_wheel(tmp_path)
    assert whl.name == f"facecast_sdk-{build.sdk_version()}-py3-none-any.whl"
    with zipfile.ZipFile(whl) as zf:
        names = zf.namelist()
        record = zf.read(f"facecast_sdk-{build.sdk_version()}.dist-info/RECORD").decode()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"facecast", f"facecast_sdk-{build.sdk_version()}.dist-info"}
    assert "facecast/retarget.py" in names and "facecast/formats/__init__.py" in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert len(record.strip().splitlines()) == len(names)


# =============================================================================================
# the extension zip
# =============================================================================================
@pytest.fixture(scope="module")
def extension_zip(tmp_path_factory) -> Path:
    """A Linux-only build (wheels from work_data/blender_wheels, fetched there once)."""
    out = tmp_path_factory.mktemp("ext")
    try:
        return build.build(out, ["linux-x64"], WHEEL_CACHE, log=lambda _m: None)
    except build.BuildError as exc:
        if "pip download" in str(exc) and not IN_CI:
            pytest.skip(f"cannot fetch the pyzmq/msgpack wheels (no registry?): {exc}")
        raise


def test_extension_zip_layout_and_manifest(extension_zip):
    import tomllib

    with zipfile.ZipFile(extension_zip) as zf:
        names = set(zf.namelist())
        manifest = tomllib.loads(zf.read("blender_manifest.toml").decode())
    assert extension_zip.name == f"facecast-{build.sdk_version()}.zip"
    for f in ("__init__.py", "core.py", "properties.py", "operators.py", "panel.py", "live.py",
              "bake.py", "importer.py", "keying.py"):
        assert f in names
    wheels = {n for n in names if n.startswith("wheels/")}
    assert {w.lstrip("./") for w in manifest["wheels"]} == wheels      # listed == bundled
    kinds = sorted(build.parse_wheel(w.split("/")[-1])[0] for w in wheels)
    assert kinds == ["facecast_sdk", "msgpack", "pyzmq"]
    assert manifest["platforms"] == ["linux-x64"]
    assert manifest["id"] == "facecast" and manifest["type"] == "add-on"
    assert manifest["version"] == build.sdk_version()
    assert manifest["blender_version_min"] == "4.2.0"
    assert set(manifest["permissions"]) == {"network", "files"}
    build.check_zip(extension_zip)
    if build.blender_ext_script() is not None or IN_CI:
        assert "Success" in build.validate(extension_zip)        # Blender's own validator


def test_build_offline_without_wheels_fails_clearly(tmp_path):
    with pytest.raises(build.BuildError, match="no pyzmq wheel .* windows-x64"):
        build.build(tmp_path, ["windows-x64"], tmp_path / "empty", offline=True)
    with pytest.raises(build.BuildError, match="unknown platform"):
        build.build(tmp_path, ["amiga-68k"], tmp_path, offline=True)


# =============================================================================================
# inside Blender
# =============================================================================================
@pytest.fixture(scope="module")
def bpy_module():
    if IN_CI:
        import bpy  # a missing bpy is a failure in CI
    else:
        bpy = pytest.importorskip("bpy")
    if not bpy.utils.user_resource('EXTENSIONS').startswith(BLENDER_HOME):
        pytest.skip("bpy was imported before this module with the real user folders; "
                    "run tests/test_blender.py on its own")
    return bpy


@pytest.fixture(scope="module")
def ext(bpy_module, extension_zip):
    """The built zip installed and enabled through Blender's own 'Install from Disk'."""
    bpy = bpy_module
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.context.preferences.use_preferences_save = False
    rc = bpy.ops.extensions.package_install_files(filepath=str(extension_zip),
                                                  repo="user_default", enable_on_install=True)
    assert rc == {'FINISHED'}
    assert EXT in bpy.context.preferences.addons, [a.module for a in bpy.context.preferences.addons]
    site = Path(bpy.utils.user_resource('EXTENSIONS')) / ".local" / "lib" / "python3.11" / \
        "site-packages"
    assert (site / "facecast" / "retarget.py").is_file() and (site / "zmq").is_dir()
    assert str(site).startswith(BLENDER_HOME)
    mods = {name: importlib.import_module(f"{EXT}.{name}")
            for name in ("core", "keying", "live", "bake", "importer", "properties", "panel")}
    yield type("Ext", (), mods)
    mods["live"].stop()
    mods["bake"].cancel()


@pytest.fixture
def clip(tmp_path) -> Path:
    """The first two seconds of samples/demo.wav."""
    import soundfile as sf

    x, sr = sf.read(REPO / "samples" / "demo.wav", dtype="int16")
    p = tmp_path / "clip.wav"
    sf.write(p, x[: 2 * sr], sr, subtype="PCM_16")
    return p


@pytest.fixture
def scene(ext, bpy_module):
    """An empty scene; returns bpy.context.scene."""
    bpy = bpy_module
    ext.live.stop()
    ext.bake.cancel()
    bpy.ops.wm.read_homefile(use_empty=True)
    return bpy.context.scene


def _facecap_head(bpy):
    glb = require_shared("data", "meshes", "facecap_arkit52.glb")
    assert bpy.ops.import_scene.gltf(filepath=str(glb)) == {'FINISHED'}
    return bpy.data.objects["Mesh_2"]


def _mesh(bpy, name: str, keys: list[str]):
    me = bpy.data.meshes.new(name)
    me.from_pydata([(0, 0, 0), (1, 0, 0), (0, 1, 0)], [], [(0, 1, 2)])
    ob = bpy.data.objects.new(name, me)
    bpy.context.scene.collection.objects.link(ob)
    if keys:
        ob.shape_key_add(name="Basis")
        for k in keys:
            ob.shape_key_add(name=k)
    return ob


def _keys(ext, id_data, path: str, index: int = 0) -> np.ndarray:
    """(n, 2) frame, value of the F-curve animating ``path``."""
    fc = ext.keying.fcurve_of(id_data, path, index)
    assert fc is not None, f"{path}[{index}] is not animated"
    co = np.empty(2 * len(fc.keyframe_points))
    fc.keyframe_points.foreach_get("co", co)
    return co.reshape(-1, 2)


def _drive_bake(ext, strict: bool = True) -> dict:
    """Run the bake timer callback as Blender's event loop would; with ``strict`` every call
    but the one that keys the result must be quick (the subprocess and server runtimes; the
    in-process runtime shares Blender's GIL, and onnxruntime holds it while loading a model)."""
    deadline = time.monotonic() + 120
    while True:
        t0 = time.perf_counter()
        nxt = ext.bake.poll()
        assert not strict or nxt is None or time.perf_counter() - t0 < MAX_TICK_S
        if nxt is None:
            return ext.bake.last_result
        assert time.monotonic() < deadline, "bake never finished"
        time.sleep(0.01)


def _expected_rows(batch: FrameBatch, scene_fps: float, n: int) -> np.ndarray:
    t = np.arange(len(batch)) / batch.fps
    tk = np.arange(n) / scene_fps
    return np.stack([np.interp(tk, t, batch.values[:, c].astype(np.float64))
                     for c in range(len(CHANNELS))], axis=1)


def _run(op, **kw) -> set:
    """Call an operator; an operator reporting an ERROR raises RuntimeError in background
    mode, which counts as CANCELLED here (the message is kept for the panel)."""
    try:
        return op(**kw)
    except RuntimeError:
        return {'CANCELLED'}


class _Layout:
    """Stands in for a UILayout so the panels' draw code runs headless (any call works)."""

    def __getattr__(self, name):
        return lambda *args, **kw: _Layout()


def _draw_panels(ext, bpy) -> None:
    from types import SimpleNamespace

    for cls in (ext.panel.FACECAST_PT_main, ext.panel.FACECAST_PT_live,
                ext.panel.FACECAST_PT_bake, ext.panel.FACECAST_PT_expression,
                ext.panel.FACECAST_PT_import):
        cls.draw(SimpleNamespace(layout=_Layout()), bpy.context)
    ext.panel.FACECAST_PT_expression.draw_header(SimpleNamespace(layout=_Layout()), bpy.context)
    ext.properties.FacecastPreferences.draw(
        SimpleNamespace(layout=_Layout(), facecast_path="", curve_dir="x", curve_client=""),
        bpy.context)


def _shape_path(name: str) -> str:
    return f'key_blocks["{name}"].value'


def test_bake_in_process_keys_match_the_runtime(ext, scene, bpy_module, clip):
    from facecast_runtime.engine import bake as engine_bake

    bpy = bpy_module
    mesh = _facecap_head(bpy)
    key = mesh.data.shape_keys
    old_action = key.animation_data.action                      # the glb's own capture
    old_keys = _keys(ext, key, _shape_path("jawOpen")).copy()
    mesh.shape_key_add(name="myCustomKey")                       # unmapped, keyed by the user
    for f, v in ((1, 0.2), (10, 0.9), (40, 0.5)):
        key.key_blocks["myCustomKey"].value = v
        key.key_blocks["myCustomKey"].keyframe_insert("value", frame=f)
    user_keys = _keys(ext, key, _shape_path("myCustomKey")).copy()
    s = scene.facecast
    scene.render.fps = 24
    s.target = mesh
    s.audio = str(clip)
    s.runtime = "IN_PROCESS"
    s.head.object = bpy.data.objects["head"]
    assert bpy.ops.facecast.bake() == {'FINISHED'}
    assert ext.bake.pending() is not None                        # running in the background
    _draw_panels(ext, bpy)
    result = _drive_bake(ext, strict=False)
    _draw_panels(ext, bpy)
    assert result["ok"], result["message"]

    ref = engine_bake(str(clip), fps=60)                         # the runtime's own output
    n = int(np.floor((len(ref) - 1) / 60 * 24 + 1e-6)) + 1
    expect = _expected_rows(ref, 24.0, n)
    rmap = ext.keying.mapping(s, mesh)
    assert not rmap.missing and len(rmap.mapped) == 52
    for arkit, target in rmap.mapped.items():
        kv = _keys(ext, key, _shape_path(target))
        assert kv[:, 0].tolist() == list(range(1, n + 1)), target        # every frame, from 1
        assert np.allclose(kv[:, 1], expect[:, CHANNEL_INDEX[arkit]], atol=1e-4), arkit
    # the user's keys on an unmapped shape key and the replaced action are untouched
    assert np.array_equal(_keys(ext, key, _shape_path("myCustomKey")), user_keys)
    assert key.animation_data.action is not old_action and old_action.use_fake_user
    assert np.array_equal(_keys_of_action(ext, old_action, _shape_path("jawOpen")), old_keys)
    # the head: world rotation follows the schema angles mapped to Blender's axes
    head = bpy.data.objects["head"]
    rest = head.matrix_world.to_3x3().normalized()
    for f in (1, n // 2, n):
        scene.frame_set(f)
        delta = np.array(head.matrix_world.to_3x3().normalized() @ rest.inverted())
        want = ext.core.head_matrices(expect[f - 1, [CHANNEL_INDEX[c] for c in
                                                     ("headYaw", "headPitch", "headRoll")]])[0]
        assert np.allclose(delta, want, atol=1e-4), f
    # the audio is in the sequencer at frame 1
    strips = scene.sequence_editor.strips if hasattr(scene.sequence_editor, "strips") \
        else scene.sequence_editor.sequences
    sounds = [st for st in strips if st.type == 'SOUND']
    assert len(sounds) == 1 and sounds[0].frame_start == 1
    assert Path(bpy.path.abspath(sounds[0].sound.filepath)) == clip
    assert scene.frame_end >= n

    # again into the existing action: the bake range is replaced, keys after it stay
    s.action_mode = "EXISTING"
    action = key.animation_data.action
    fc = ext.keying.fcurve_of(key, _shape_path("jawOpen"))
    fc.keyframe_points.insert(n + 50, 0.77)
    assert bpy.ops.facecast.bake(wait=True) == {'FINISHED'}
    assert key.animation_data.action is action
    kv = _keys(ext, key, _shape_path("jawOpen"))
    assert kv[:, 0].tolist() == list(range(1, n + 1)) + [n + 50]
    assert np.allclose(kv[:n, 1], expect[:, CHANNEL_INDEX["jawOpen"]], atol=1e-4)
    assert np.array_equal(_keys(ext, key, _shape_path("myCustomKey")), user_keys)
    assert len([st for st in strips if st.type == 'SOUND']) == 1          # strip reused


def _keys_of_action(ext, action, path: str) -> np.ndarray:
    if hasattr(action, "layers") and len(action.layers):
        from bpy_extras.anim_utils import action_get_channelbag_for_slot

        fc = action_get_channelbag_for_slot(action, action.slots[0]).fcurves.find(path)
    else:
        fc = action.fcurves.find(path)
    co = np.empty(2 * len(fc.keyframe_points))
    fc.keyframe_points.foreach_get("co", co)
    return co.reshape(-1, 2)


def test_bake_subprocess_does_not_block_and_matches(ext, scene, bpy_module, clip):
    from facecast_runtime.engine import bake as engine_bake

    bpy = bpy_module
    exe = Path(sys.executable).with_name("facecast")
    if not exe.is_file():
        pytest.skip(f"no facecast command beside {sys.executable}")
    ext.properties.preferences().facecast_path = str(exe)
    mesh = _mesh(bpy, "Face", list(ARKIT52))
    s = scene.facecast
    scene.render.fps = 30                                   # the runtime then bakes at 30 fps
    s.target = mesh
    s.audio = str(clip)
    s.runtime = "SUBPROCESS"
    s.add_sound = False
    bpy.ops.facecast.gain_add()
    s.gains[0].channel, s.gains[0].gain = "jawOpen", 0.5
    assert bpy.ops.facecast.bake() == {'FINISHED'}
    assert ext.bake.pending().job.kind == "subprocess"
    result = _drive_bake(ext)
    assert result["ok"], result["message"]
    ref = engine_bake(str(clip), fps=30)
    key = mesh.data.shape_keys
    for name in ARKIT52:
        kv = _keys(ext, key, _shape_path(name))
        gain = 0.5 if name == "jawOpen" else 1.0
        assert kv[:, 0].tolist() == list(range(1, len(ref) + 1))
        assert np.allclose(kv[:, 1], gain * ref.channel(name), atol=1e-4), name
    assert scene.sequence_editor is None or not list(scene.sequence_editor.strips)


def test_bad_input_gives_clear_messages_and_keys_nothing(ext, scene, bpy_module, tmp_path, clip):
    bpy = bpy_module
    last = lambda: ext.keying.last_message()[1]  # noqa: E731
    s = scene.facecast
    cube = _mesh(bpy, "Cube", [])
    s.target = cube
    s.audio = str(clip)
    s.runtime = "IN_PROCESS"
    for op in (bpy.ops.facecast.bake, bpy.ops.facecast.connect, bpy.ops.facecast.check_mapping):
        assert _run(op) == {'CANCELLED'}
        assert "'Cube' has no shape keys" in last()
    _draw_panels(ext, bpy)
    assert cube.data.shape_keys is None and ext.live.driver() is None
    # a rig with half the ARKit names: the other half is reported, not dropped silently
    half = _mesh(bpy, "Half", list(ARKIT52[::2]))
    s.target = half
    s.preset = "arkit"
    assert bpy.ops.facecast.check_mapping() == {'FINISHED'}
    assert "26/52" in last() and ARKIT52[1] in last() and ARKIT52[-1] in last()
    s.show_missing = True
    _draw_panels(ext, bpy)
    # unreadable files
    garbage = tmp_path / "take.json"
    garbage.write_text("{ not a take")
    assert _run(bpy.ops.facecast.import_take, filepath=str(garbage)) == {'CANCELLED'}
    assert last().startswith("cannot import take.json")
    assert _run(bpy.ops.facecast.import_take, filepath=str(tmp_path / "take.txt")) \
        == {'CANCELLED'}
    assert "not found" in last()
    (tmp_path / "take.txt").write_text("x")
    assert _run(bpy.ops.facecast.import_take, filepath=str(tmp_path / "take.txt")) \
        == {'CANCELLED'}
    assert "expected a Live Link Face .csv" in last()
    noise = tmp_path / "noise.wav"
    noise.write_bytes(b"RIFF????WAVEgarbage" * 50)
    s.audio = str(noise)
    assert bpy.ops.facecast.bake() == {'FINISHED'}                 # fails in the background
    result = _drive_bake(ext, strict=False)
    assert not result["ok"] and "nothing was keyed" in result["message"]
    assert half.data.shape_keys.animation_data is None
    # a sound Blender cannot play: the strip is not left behind, the reason is given
    warning = ext.keying.add_sound(scene, str(noise), 1)
    assert "cannot" in warning and "WAV" in warning
    assert scene.sequence_editor is None or not list(scene.sequence_editor.strips)
    # a runtime that is down (server bake)
    job = ext.core.RemoteJob(str(clip), 60, f"tcp://127.0.0.1:{free_port()}",
                             f"tcp://127.0.0.1:{free_port()}", timeout=0.5).start()
    with pytest.raises(ext.core.BridgeError, match="no facecast runtime answers"):
        job.wait(30)
    # a mesh with no shape keys and no shape-key-like names at all
    s.target = _mesh(bpy, "Odd", ["Key 1", "Key 2"])
    s.preset = "AUTO"
    assert _run(bpy.ops.facecast.bake) == {'CANCELLED'} and "matches an ARKit name" in last()
    # loading another file while a bake runs: cancelled, never keyed into the new file
    s.target = half
    s.audio = str(clip)
    assert bpy.ops.facecast.bake() == {'FINISHED'} and ext.bake.pending() is not None
    bpy.ops.wm.read_homefile(use_empty=True)
    assert ext.bake.pending() is None and "bake cancelled" in last()


def test_import_csv_and_json_takes(ext, scene, bpy_module, tmp_path, clip):
    from facecast.formats import read, write
    from facecast_runtime.engine import bake as engine_bake

    bpy = bpy_module
    batch = engine_bake(str(clip), fps=60)
    batch = FrameBatch(batch.values, start_index=30, fps=60)          # a take not at frame 0
    mesh = _mesh(bpy, "Face", list(ARKIT52[::2]))                      # half a rig
    s = scene.facecast
    scene.render.fps = 60
    s.target = mesh
    s.start_frame = 5
    key = mesh.data.shape_keys
    for ext_name in ("json", "csv"):
        path = tmp_path / f"take.{ext_name}"
        write(path, batch)
        assert bpy.ops.facecast.import_take(filepath=str(path)) == {'FINISHED'}
        msg = ext.keying.last_message()[1]
        assert "26 missing" in msg, msg
        back = read(path, start_timecode="first") if ext_name == "csv" else read(path)
        for name in ARKIT52[::2]:
            kv = _keys(ext, key, _shape_path(name))
            assert kv[:, 0].tolist() == list(range(5, 5 + len(batch)))
            assert np.allclose(kv[:, 1], back.channel(name), atol=1e-6), name
            assert np.allclose(kv[:, 1], batch.channel(name), atol=1e-4), name
        for name in ARKIT52[1::2]:
            assert ext.keying.fcurve_of(key, _shape_path(name)) is None


def test_head_and_eyes_on_bones_and_parented_objects(ext, scene, bpy_module, tmp_path):
    """Rotations land in the character's axes: the armature's for a bone (whatever its roll),
    the world's for an object (whatever its parent)."""
    from facecast.formats import write
    from mathutils import Matrix

    bpy = bpy_module
    head = np.array([[0, 0, 0], [0.3, -0.2, 0.1], [-0.25, 0.15, -0.05]])
    eyes = np.array([[0, 0, 0, 0], [0.2, 0.1, 0.25, -0.1], [-0.1, 0.05, 0.0, 0.2]])
    vals = np.zeros((3, len(CHANNELS)), np.float32)
    for j, c in enumerate(("headYaw", "headPitch", "headRoll")):
        vals[:, CHANNEL_INDEX[c]] = head[:, j]
    for j, c in enumerate(("leftEyeYaw", "leftEyePitch", "rightEyeYaw", "rightEyePitch")):
        vals[:, CHANNEL_INDEX[c]] = eyes[:, j]
    write(tmp_path / "rot.json", FrameBatch(vals, 0, 30))

    arm = bpy.data.objects.new("Rig", bpy.data.armatures.new("Rig"))
    scene.collection.objects.link(arm)
    arm.rotation_euler.z = 0.7                       # the whole character turned
    bpy.context.view_layer.objects.active = arm
    bpy.ops.object.mode_set(mode='EDIT')
    eb = arm.data.edit_bones.new("Head")
    eb.head, eb.tail, eb.roll = (0, 0, 1.5), (0, 0, 1.8), 0.5   # upright, rolled
    bpy.ops.object.mode_set(mode='OBJECT')
    body = bpy.data.objects.new("Body", None)
    body.rotation_euler = (0.0, 0.0, np.pi / 2)
    eye_l = bpy.data.objects.new("EyeL", None)
    eye_r = bpy.data.objects.new("EyeR", None)
    for ob in (body, eye_l, eye_r):
        scene.collection.objects.link(ob)
    eye_l.parent = body
    eye_r.rotation_mode = 'ZXY'
    s = scene.facecast
    scene.render.fps = 30
    s.head.object, s.head.bone = arm, "Head"
    s.eye_left.object = eye_l
    s.eye_right.object = eye_r
    s.target = None                      # the armature is active: no mesh, rotations only
    assert bpy.context.view_layer.objects.active == arm
    assert bpy.ops.facecast.import_take(filepath=str(tmp_path / "rot.json")) == {'FINISHED'}
    assert len(_keys(ext, arm, 'pose.bones["Head"].rotation_quaternion', 0)) == 3
    assert len(_keys(ext, eye_r, "rotation_euler", 2)) == 3

    def rot(m) -> Matrix:
        return m.to_3x3().normalized()

    pb = arm.pose.bones["Head"]
    scene.frame_set(1)
    rest_l, rest_r = rot(eye_l.matrix_world), rot(eye_r.matrix_world)
    for f in (2, 3):
        scene.frame_set(f)
        got = np.array(rot(pb.matrix) @ rot(pb.bone.matrix_local).inverted())
        assert np.allclose(got, ext.core.head_matrices(head[f - 1])[0], atol=1e-5), f
        got = np.array(rot(eye_l.matrix_world) @ rest_l.inverted())
        assert np.allclose(got, ext.core.eye_matrices(eyes[f - 1, :2])[0], atol=1e-5), f
        got = np.array(rot(eye_r.matrix_world) @ rest_r.inverted())
        assert np.allclose(got, ext.core.eye_matrices(eyes[f - 1, 2:])[0], atol=1e-5), f


def test_import_real_live_link_take(ext, scene, bpy_module):
    from facecast.formats import read

    bpy = bpy_module
    take = require_shared("data", "livelink", "alex_rom_3.csv")
    mesh = _facecap_head(bpy)
    s = scene.facecast
    scene.render.fps = 30
    s.target = mesh
    assert bpy.ops.facecast.import_take(filepath=str(take)) == {'FINISHED'}
    ref = read(take, start_timecode="first")
    assert ref.fps in (30, 60)
    key = mesh.data.shape_keys
    kv = _keys(ext, key, _shape_path("eyeBlink_L"))
    n = int(np.floor((len(ref) - 1) / ref.fps * 30 + 1e-6)) + 1
    assert kv[:, 0].tolist() == list(range(1, n + 1))
    expect = _expected_rows(ref, 30.0, n)
    for arkit, target in (("eyeBlinkLeft", "eyeBlink_L"), ("jawOpen", "jawOpen"),
                          ("mouthLeft", "mouthLeft"), ("browInnerUp", "browInnerUp")):
        kv = _keys(ext, key, _shape_path(target))
        assert np.allclose(kv[:, 1], expect[:, CHANNEL_INDEX[arkit]], atol=1e-4), arkit
    assert np.ptp(_keys(ext, key, _shape_path("eyeBlink_L"))[:, 1]) > 0.5   # a real blink


# ---------------------------------------------------------------------------------------------
# against a real `facecast serve`
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server():
    srv = Serve()
    yield srv
    srv.stop()


def test_bake_through_a_running_server(ext, scene, bpy_module, server, clip):
    from facecast_runtime.engine import bake as engine_bake

    bpy = bpy_module
    mesh = _mesh(bpy, "Face", list(ARKIT52))
    s = scene.facecast
    scene.render.fps = 60
    s.target = mesh
    s.audio = str(clip)
    s.runtime = "SERVER"
    s.control_address = server.control
    s.address = server.frames
    assert bpy.ops.facecast.bake() == {'FINISHED'}
    assert ext.bake.pending().job.kind == "server"
    result = _drive_bake(ext)
    assert result["ok"], result["message"]
    ref = engine_bake(str(clip), fps=60)
    key = mesh.data.shape_keys
    for name in ("jawOpen", "mouthClose", "eyeBlinkLeft", "tongueOut"):
        kv = _keys(ext, key, _shape_path(name))
        assert kv[:, 0].tolist() == list(range(1, len(ref) + 1))
        assert np.allclose(kv[:, 1], ref.channel(name), atol=1e-4), name


def test_bake_with_expression_settings_in_process_subprocess_and_server(ext, scene, bpy_module,
                                                                        server, clip, tmp_path):
    """The Expression panel's settings reach every runtime: happy:0.8 smiles, head off keeps
    the head still, a keys file turns sad at 1 s, and the facecast command (flags) and the
    server (open options) key the same values as the in-process bake (options)."""
    bpy = bpy_module
    mesh = _mesh(bpy, "Face", list(ARKIT52))
    head = bpy.data.objects.new("HeadCtl", None)
    scene.collection.objects.link(head)
    head.rotation_mode = 'XYZ'
    s = scene.facecast
    scene.render.fps = 30
    s.target, s.head.object = mesh, head
    s.audio = str(clip)
    s.add_sound = False
    s.runtime = "IN_PROCESS"
    key = mesh.data.shape_keys

    def bake() -> tuple[dict, np.ndarray]:
        head.animation_data_clear()               # the head rests at zero (a bake's rest is
        head.rotation_euler = (0.0, 0.0, 0.0)     # the target's rotation when it starts)
        assert bpy.ops.facecast.bake(wait=True) == {'FINISHED'}, ext.keying.last_message()
        shapes = {n: _keys(ext, key, _shape_path(n))[:, 1].copy() for n in ARKIT52}
        rot = np.stack([_keys(ext, head, "rotation_euler", i)[:, 1] for i in range(3)], 1)
        return shapes, rot

    neutral, neutral_head = bake()
    ex = s.expression
    ex.emotion, ex.intensity, ex.use_head = "happy", 0.8, False
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps([{"time": 1.0, "name": "sad", "intensity": 0.7,
                                 "transition": 0.3}]))
    ex.keys_file = str(keys)
    _draw_panels(ext, bpy)
    happy, happy_head = bake()
    assert "happy:0.8, keys keys.json, head off" in ext.bake.last_result["message"]
    for name in ("mouthSmileLeft", "mouthSmileRight"):      # happy in the first second ...
        assert happy[name][:30].mean() > neutral[name][:30].mean() + 0.1, name
    for name in ("mouthFrownLeft", "browInnerUp"):           # ... sad from 1.3 s
        assert happy[name][40:].mean() > neutral[name][40:].mean() + 0.05, name
    assert np.abs(neutral_head).max() > 1e-3                       # the head moves by default
    assert np.abs(happy_head).max() < 1e-9                          # ... and not when off
    assert np.allclose(happy["jawOpen"], neutral["jawOpen"], atol=1e-6)   # lip sync unchanged

    others = [("SERVER", None)]
    exe = Path(sys.executable).with_name("facecast")
    if exe.is_file():
        others.insert(0, ("SUBPROCESS", exe))
    s.control_address, s.address = server.control, server.frames
    for runtime, path in others:
        if path is not None:
            ext.properties.preferences().facecast_path = str(path)
        s.runtime = runtime
        shapes, rot = bake()
        kind = {"SUBPROCESS": "subprocess", "SERVER": "server"}[runtime]
        assert f", {kind}, happy:0.8, keys keys.json, head off)" \
            in ext.bake.last_result["message"]
        for name in ARKIT52:
            assert np.allclose(shapes[name], happy[name], atol=1e-4), (runtime, name)
        assert np.abs(rot).max() < 1e-9, runtime
    assert len(others) == 2 or not IN_CI

    # live sessions are opened by the sender: the same settings as flags for it
    assert bpy.ops.facecast.copy_expression_flags() == {'FINISHED'}
    assert ext.keying.last_message()[1] == \
        f"copied: --emotion happy:0.8 --emotion-keys {keys} --no-head"
    ex.emotion = "neutral"
    ex.keys_file = str(clip.with_suffix(".missing.json"))
    _draw_panels(ext, bpy)                                         # shows the error
    assert _run(bpy.ops.facecast.bake) == {'CANCELLED'}
    assert "emotion keys file not found" in ext.keying.last_message()[1]
    assert ext.bake.pending() is None


def _tick(ext, n: int = 1, sleep: float = 0.005) -> None:
    for _ in range(n):
        t0 = time.perf_counter()
        assert ext.live.tick() == ext.live.INTERVAL_S
        assert time.perf_counter() - t0 < MAX_TICK_S
        time.sleep(sleep)


def _subscribed(control: str, subject: str) -> bool:
    from facecast.client import RuntimeClient

    with RuntimeClient(control, timeout=2) as rc:
        subs = rc.stats()["subscriptions"]
    return f"face.{subject}" in subs


def test_live_follows_the_stream_records_and_survives_the_runtime(ext, scene, bpy_module,
                                                                  server):
    from facecast.client import RuntimeClient
    from facecast_runtime.engine import bake as engine_bake

    bpy = bpy_module
    mesh = _mesh(bpy, "Face", list(ARKIT52))
    head = bpy.data.objects.new("HeadCtl", None)
    scene.collection.objects.link(head)
    head.rotation_mode = 'XYZ'
    s = scene.facecast
    scene.render.fps = 60
    scene.frame_current = 1
    s.target = mesh
    s.head.object = head
    s.address = server.frames
    s.subject = "blender_live"
    bpy.ops.facecast.gain_add()
    s.gains[0].channel, s.gains[0].gain = "jawOpen", 0.5
    assert bpy.ops.facecast.connect() == {'FINISHED'}
    d = ext.live.driver()
    deadline = time.monotonic() + 20
    while not _subscribed(server.control, "blender_live"):
        _tick(ext, 5)
        assert time.monotonic() < deadline, f"never subscribed: {d.status_text()}"
    _tick(ext, 3)
    assert d.state == "waiting", d.status_text()
    assert bpy.ops.facecast.record() == {'FINISHED'}
    _draw_panels(ext, bpy)

    x = speech_like(1.5, seed=2)
    ref = engine_bake((x, SR), fps=60)
    blocks = mesh.data.shape_keys.key_blocks
    checked = 0
    with RuntimeClient(server.control, timeout=10) as rc:
        with rc.open("blender_live", SR, fps=60) as session:
            for i in range(0, len(x), 640):
                session.push(x[i:i + 640])
                before = d.applied
                waited = time.monotonic() + 1.0     # a loaded machine may publish late
                while d.applied == before and time.monotonic() < waited:
                    _tick(ext, 1, sleep=0.002)
                if d.applied > before:                # the newest frame drives the rig
                    f = d.last_applied
                    for name in ARKIT52:
                        want = f[name] * (0.5 if name == "jawOpen" else 1.0)
                        assert abs(blocks[name].value - want) < 1e-6, name
                        assert abs(f[name] - ref.channel(name)[f.index]) < 1e-4, name
                    checked += 1
        deadline = time.monotonic() + 10
        while d.last_applied is None or d.last_applied.index < len(ref) - 1:
            _tick(ext)
            assert time.monotonic() < deadline, d.status_text()
    assert checked >= 5
    assert d.state == "connected" and "frames/s" in d.status_text()
    assert d.link.dropped == 0
    last = ref.frame(len(ref) - 1)
    for name in ARKIT52:
        want = last[name] * (0.5 if name == "jawOpen" else 1.0)
        assert abs(blocks[name].value - want) < 1e-4, name
    yaw = ext.core.local_quaternions(ext.core.head_matrices(
        [[last["headYaw"], last["headPitch"], last["headRoll"]]]), np.eye(3))[0]
    from mathutils import Quaternion
    assert Quaternion(yaw).rotation_difference(head.rotation_euler.to_quaternion()).angle < 1e-4

    # Record off: every streamed frame keyed at its audio-clock time from frame 1
    assert bpy.ops.facecast.record() == {'FINISHED'}
    key = mesh.data.shape_keys
    for name in ("jawOpen", "mouthFunnel", "eyeBlinkRight"):
        kv = _keys(ext, key, _shape_path(name))
        gain = 0.5 if name == "jawOpen" else 1.0
        assert kv[:, 0].tolist() == list(range(1, len(ref) + 1))
        assert np.allclose(kv[:, 1], gain * ref.channel(name), atol=1e-4), name
    assert len(_keys(ext, head, "rotation_euler", 2)) == len(ref)

    # the runtime dies mid-stream: ticks stay quick, the status says reconnecting
    rc = RuntimeClient(server.control, timeout=5)
    session = rc.open("blender_live", SR, fps=60)
    session.push(x[: SR // 2])
    _tick(ext, 5)
    server.kill()
    deadline = time.monotonic() + 10
    while d.state != "reconnecting":
        _tick(ext, 5, sleep=0.01)
        assert time.monotonic() < deadline, d.status_text()
    assert "reconnecting" in d.status_text()
    _tick(ext, 20, sleep=0.01)
    assert d.state == "reconnecting"
    rc.close()
    # ... and comes back: the link reconnects and follows new frames by itself
    server.start()
    applied = d.applied
    with RuntimeClient(server.control, timeout=10) as rc2:
        deadline = time.monotonic() + 20
        while not _subscribed(server.control, "blender_live"):
            _tick(ext, 5, sleep=0.01)
            assert time.monotonic() < deadline, d.status_text()
        with rc2.open("blender_live", SR, fps=60) as session:
            session.push(x[: SR // 2])
        deadline = time.monotonic() + 10
        while d.applied == applied or d.state != "connected":
            _tick(ext)
            assert time.monotonic() < deadline, d.status_text()
    assert bpy.ops.facecast.disconnect() == {'FINISHED'}
    assert ext.live.driver() is None
