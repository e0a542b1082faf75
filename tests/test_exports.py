"""Mesh exports (glTF, USD, FBX) of a FrameBatch on the demo head or a user's head.

Every format is read back by an independent reader (our glTF reader and Blender's glTF importer,
pxr for USD, Blender's FBX importer) and compared with the batch: weights at every frame, keys
at the right times, and the posed mesh against HeadMesh.deform. Needs: node + gltf-validator in
.tools (validator tests), usd-core (USD), bpy (FBX, Blender glTF import); each skips when its
tool is missing unless CI=true.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, require_shared
from helpers import facecast_cli, one_line_error

from facecast import formats
from facecast.demohead import demo_head
from facecast.formats.gltf import read_gltf, read_gltf_animation, read_gltf_mesh, write_gltf
from facecast.formats.rig import quaternions, resolve_rig
from facecast.mesh import HeadMesh, MeshPart
from facecast.retarget import from_preset
from facecast.schema import ARKIT52, CHANNELS, FrameBatch

CI = os.environ.get("CI", "").lower() == "true"
VALIDATOR = REPO / "tests" / "gltf_validate.js"
NODE_MODULES = REPO / ".tools" / "node_modules"


def need(ok: bool, what: str) -> None:
    if not ok:
        if CI:
            pytest.fail(f"{what} is missing (required under CI=true)")
        pytest.skip(f"{what} is missing")


def have_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


# ------------------------------------------------------------------------------------------
# fixtures
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def baked() -> FrameBatch:
    """The first 2 s of samples/demo.wav baked by the runtime at 30 fps."""
    import soundfile as sf

    from facecast_runtime.engine import bake

    pcm, sr = sf.read(str(REPO / "samples" / "demo.wav"), dtype="float32")
    b = bake((pcm[: 2 * sr], sr), fps=30, subject="demo")
    assert len(b) >= 55
    return b


@pytest.fixture(scope="module")
def synthetic() -> FrameBatch:
    """Random weights, large head/eye rotations and translation, starting at frame 45."""
    rng = np.random.default_rng(7)
    n = 40
    v = np.zeros((n, len(CHANNELS)), np.float32)
    v[:, :52] = rng.uniform(0.0, 1.0, (n, 52))
    v[:, 52:] = rng.uniform(-0.6, 0.6, (n, 7))
    v[::9, 52] = 3.0          # large yaw jumps exercise quaternion sign continuity
    ht = rng.uniform(-0.01, 0.01, (n, 3)).astype(np.float32)
    return FrameBatch(v, start_index=45, fps=60, subject="synthetic", head_translation=ht)


@pytest.fixture(scope="module")
def head() -> HeadMesh:
    return demo_head()


def expected_pose(mesh: HeadMesh, batch: FrameBatch, i: int, rmap=None) -> np.ndarray:
    rmap = rmap or from_preset("arkit", mesh.shape_keys)
    w = rmap.weights(batch.blendshapes[i])
    p = mesh.deform(w, batch.head_rotation[i], batch.eye_rotation[i])
    if batch.head_translation is not None:
        p = p + mesh.head_weights[:, None] * batch.head_translation[i]
    return p


def validate(path: Path) -> dict:
    need(shutil.which("node") is not None, "node")
    need((NODE_MODULES / "gltf-validator").is_dir(),
         "gltf-validator (npm install --prefix .tools gltf-validator)")
    p = subprocess.run(["node", str(VALIDATOR), str(path), str(NODE_MODULES)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)["issues"]


# ------------------------------------------------------------------------------------------
# glTF
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ext", ["glb", "gltf"])
def test_gltf_round_trip_own_reader(tmp_path, baked, head, ext):
    path = tmp_path / f"take.{ext}"
    formats.write(path, baked)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]      # atomic: no leftovers
    anim = read_gltf_animation(path)
    assert anim["target_names"] == list(ARKIT52)
    assert np.allclose(anim["times"], np.arange(len(baked)) / 30.0, atol=1e-6)
    assert np.allclose(anim["weights"], baked.blendshapes, atol=1e-6)
    _, q = anim["rotations"]["head"]
    hr = baked.head_rotation
    assert np.allclose(q, quaternions(hr[:, 0], hr[:, 1], hr[:, 2]), atol=1e-6)
    assert set(anim["rotations"]) == {"head", "eye_left", "eye_right"}
    assert anim["extras"]["facecast"]["fps"] == 30
    # the head itself comes back unchanged
    back = read_gltf_mesh(path)
    assert np.allclose(back.positions, head.positions, atol=1e-7)
    assert list(back.shape_keys) == list(ARKIT52)
    for k in ARKIT52:
        assert np.allclose(back.shape_keys[k], head.shape_keys[k], atol=1e-7), k
    assert [p.name for p in back.parts] == [p.name for p in head.parts]
    assert np.allclose(back.parts[1].color, head.parts[1].color)
    for side in ("left", "right"):
        assert np.allclose(back.eye_pivots[side], head.eye_pivots[side])
        assert np.array_equal(back.eye_vertices[side], head.eye_vertices[side])
    assert np.allclose(back.head_pivot, head.head_pivot)
    assert np.allclose(back.head_weights, head.head_weights, atol=1e-6)


def _gltf_pose(path: Path, frame: int) -> np.ndarray:
    """Pose a facecast glTF at one keyframe following the glTF spec (morph, then skin)."""
    g = read_gltf(path)
    doc = g.doc
    prim = doc["meshes"][0]["primitives"][0]
    p = g.accessor(prim["attributes"]["POSITION"])
    anim = read_gltf_animation(path)
    w = anim["weights"][frame]
    for k, t in enumerate(prim["targets"]):
        p = p + w[k] * g.accessor(t["POSITION"])

    def quat(q):
        x, y, z, s = q
        return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * s), 2 * (x * z + y * s)],
                         [2 * (x * y + z * s), 1 - 2 * (x * x + z * z), 2 * (y * z - x * s)],
                         [2 * (x * z - y * s), 2 * (y * z + x * s), 1 - 2 * (x * x + y * y)]])

    nodes = doc["nodes"]
    local = {}
    for i, nd in enumerate(nodes):
        m = np.eye(4)
        name = nd.get("name")
        t = anim["translations"].get(name, (None, None))[1]
        m[:3, 3] = t[frame] if t is not None else nd.get("translation", [0, 0, 0])
        r = anim["rotations"].get(name, (None, None))[1]
        m[:3, :3] = quat(r[frame]) if r is not None else quat(nd.get("rotation", [0, 0, 0, 1]))
        local[i] = m
    world = {}

    def walk(i, parent):
        world[i] = parent @ local[i]
        for c in nodes[i].get("children", []):
            walk(c, world[i])

    walk(1, np.eye(4))
    skin = doc["skins"][0]
    ibm = g.accessor(skin["inverseBindMatrices"]).reshape(-1, 4, 4).transpose(0, 2, 1)
    mats = np.stack([world[j] @ ibm[k] for k, j in enumerate(skin["joints"])])
    joints = g.accessor(prim["attributes"]["JOINTS_0"]).astype(int)
    jw = g.accessor(prim["attributes"]["WEIGHTS_0"])
    ph = np.concatenate([p, np.ones((len(p), 1))], axis=1)
    out = np.zeros((len(p), 3))
    for s in range(4):
        m = mats[joints[:, s]]
        out += jw[:, s, None] * np.einsum("nij,nj->ni", m, ph)[:, :3]
    return out


def test_gltf_skinning_and_morphs_pose_like_deform(tmp_path, synthetic, head):
    path = tmp_path / "synthetic.glb"
    write_gltf(path, synthetic)
    anim = read_gltf_animation(path)
    assert np.allclose(anim["times"], (45 + np.arange(len(synthetic))) / 60.0, atol=1e-6)
    q = anim["rotations"]["head"][1]
    assert np.all(np.einsum("ij,ij->i", q[1:], q[:-1]) >= 0)       # sign-continuous
    for i in (0, 9, 23):
        assert np.abs(_gltf_pose(path, i) - expected_pose(head, synthetic, i)).max() < 2e-5


def test_gltf_validator_zero_errors(tmp_path, baked, synthetic):
    for name, batch in (("take.glb", baked), ("take.gltf", baked), ("syn.glb", synthetic),
                        ("empty.glb", FrameBatch.empty(30))):
        path = tmp_path / name
        formats.write(path, batch)
        issues = validate(path)
        assert issues["numErrors"] == 0, issues["messages"][:5]
        assert issues["numWarnings"] == 0, issues["messages"][:5]


def test_facecap_head_read_and_retargeted(tmp_path, baked):
    src = require_shared("data", "meshes", "facecap_arkit52.glb")
    mesh = read_gltf_mesh(src)
    assert len(mesh.positions) == 2694 + 530 + 530 + 614          # head, both eyes, teeth
    assert len(mesh.shape_keys) == 52 and "eyeBlink_L" in mesh.shape_keys
    # the head's keys live on the head mesh only; the other meshes hold zeros
    assert np.abs(mesh.shape_keys["jawOpen"]).max() > 0
    _, rmap = resolve_rig(mesh)
    assert rmap.preset == "facecap" and rmap.missing == ()
    # eyes: pivots from the eyeLeft/eyeRight nodes, sides by position (+X = subject's left)
    assert set(mesh.eye_pivots) == {"left", "right"}
    assert mesh.eye_pivots["left"][0] > 0 > mesh.eye_pivots["right"][0]
    for side in ("left", "right"):
        idx = mesh.eye_vertices[side]
        assert len(idx) == 530
        assert np.linalg.norm(mesh.positions[idx].mean(axis=0) - mesh.eye_pivots[side]) < 0.1
    # eyeBlink_L moves vertices on +X, consistent with the eye sides
    moving = np.abs(mesh.shape_keys["eyeBlink_L"]).max(axis=1) > 1e-4
    assert mesh.positions[moving, 0].mean() > 0
    out = tmp_path / "facecap.glb"
    formats.write(out, baked, mesh=mesh)
    anim = read_gltf_animation(out)
    names = anim["target_names"]
    assert names == list(mesh.shape_keys)
    w = anim["weights"]
    assert np.allclose(w[:, names.index("eyeBlink_L")], baked.channel("eyeBlinkLeft"), atol=1e-6)
    assert np.allclose(w[:, names.index("jawOpen")], baked.channel("jawOpen"), atol=1e-6)
    issues = validate(out)
    assert issues["numErrors"] == 0, issues["messages"][:5]


def test_custom_map_gains_and_missing(tmp_path, baked, head):
    m = {"jawOpen": {"target": "jawOpen", "gain": 0.5}, "mouthClose": None}
    p = tmp_path / "map.json"
    p.write_text(json.dumps(m))
    out = tmp_path / "mapped.glb"
    formats.write(out, baked, retarget=str(p))
    w = read_gltf_animation(out)["weights"]
    assert np.allclose(w[:, ARKIT52.index("jawOpen")], 0.5 * baked.channel("jawOpen"), atol=1e-6)
    assert np.all(w[:, ARKIT52.index("mouthClose")] == 0)
    assert np.all(w[:, ARKIT52.index("eyeBlinkLeft")] == 0)     # not in the map: not driven
    with pytest.raises(ValueError, match="neither a preset"):
        formats.write(tmp_path / "x.glb", baked, retarget="nope")


def test_open_writer_streams_and_aborts(tmp_path, baked):
    whole = tmp_path / "whole.glb"
    formats.write(whole, baked)
    streamed = tmp_path / "streamed.glb"
    with formats.open_writer(streamed, 30, "demo") as w:
        for a in range(0, len(baked), 25):
            w.write(baked[a:a + 25])
        assert not streamed.exists()
    assert streamed.read_bytes() == whole.read_bytes()
    w = formats.open_writer(tmp_path / "gone.gltf", 30)
    w.write(baked)
    w.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["streamed.glb", "whole.glb"]


def _glb(doc: dict, blob: bytes) -> bytes:
    js = json.dumps(doc).encode()
    js += b" " * (-len(js) % 4)
    blob += b"\0" * (-len(blob) % 4)
    return (struct.pack("<III", 0x46546C67, 2, 28 + len(js) + len(blob))
            + struct.pack("<II", len(js), 0x4E4F534A) + js
            + struct.pack("<II", len(blob), 0x004E4942) + blob)


def plain_triangle_glb(path: Path) -> None:
    """A valid glb with one triangle and no morph targets."""
    pos = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32)
    idx = np.array([0, 1, 2, 0], np.uint16)
    blob = pos.tobytes() + idx.tobytes()
    doc = {"asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}],
           "nodes": [{"mesh": 0}],
           "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1}]}],
           "buffers": [{"byteLength": len(blob)}],
           "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": 36},
                           {"buffer": 0, "byteOffset": 36, "byteLength": 6}],
           "accessors": [{"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3",
                          "min": [0, 0, 0], "max": [1, 1, 0]},
                         {"bufferView": 1, "componentType": 5123, "count": 3,
                          "type": "SCALAR"}]}
    path.write_bytes(_glb(doc, blob))


def test_bad_inputs(tmp_path, baked):
    plain = tmp_path / "plain.glb"
    plain_triangle_glb(plain)
    mesh = read_gltf_mesh(plain)
    assert len(mesh.triangles) == 1 and not mesh.shape_keys
    with pytest.raises(ValueError, match="no shape keys"):
        formats.write(tmp_path / "o.glb", baked, mesh=mesh)
    junk = tmp_path / "junk.glb"
    junk.write_bytes(b"glTF\x02\x00\x00\x00garbage")
    with pytest.raises(ValueError, match="junk.glb"):
        read_gltf_mesh(junk)
    text = tmp_path / "notgltf.gltf"
    text.write_text("hello")
    with pytest.raises(ValueError, match="not a glTF"):
        read_gltf_mesh(text)
    with pytest.raises(ValueError, match="not read back"):
        formats.read(tmp_path / "o.glb")
    with pytest.raises(ValueError, match="unsupported file extension"):
        formats.write(tmp_path / "o.obj", baked)
    no_keys = HeadMesh("flat", np.zeros((3, 3)), [MeshPart("a", [[0, 1, 2]])])
    with pytest.raises(ValueError, match="no shape keys"):
        formats.open_writer(tmp_path / "o.usda", 30, mesh=no_keys)
    assert not (tmp_path / "o.glb").exists() and not (tmp_path / "o.usda").exists()


BLENDER_GLTF = r"""
import json, sys
import bpy
import numpy as np
from bpy_extras import anim_utils
path, fps, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.context.scene.render.fps = fps
bpy.ops.import_scene.gltf(filepath=path)
ob = next(o for o in bpy.context.scene.objects if o.type == "MESH" and o.data.shape_keys)
sk = ob.data.shape_keys
ad = sk.animation_data
curves = {}
if ad and ad.action:
    bag = anim_utils.action_get_channelbag_for_slot(ad.action, ad.action_slot)
    for fc in bag.fcurves:
        co = np.empty(2 * len(fc.keyframe_points), np.float32)
        fc.keyframe_points.foreach_get("co", co)
        curves[fc.data_path] = co.reshape(-1, 2).tolist()
names = [kb.name for kb in sk.key_blocks[1:]]
bones = sorted(b.name for o in bpy.context.scene.objects if o.type == "ARMATURE"
               for b in o.data.bones)
json.dump({"names": names, "curves": curves, "bones": bones,
           "vertices": len(ob.data.vertices)}, open(out, "w"))
"""


def test_gltf_imports_into_blender(tmp_path, baked):
    need(have_module("bpy"), "bpy (facecast[blender])")
    path = tmp_path / "take.glb"
    formats.write(path, baked)
    out = tmp_path / "blender.json"
    p = subprocess.run([sys.executable, "-c", BLENDER_GLTF, str(path), "30", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads(out.read_text())
    assert res["names"] == list(ARKIT52)
    assert {"head", "eye_left", "eye_right"} <= set(res["bones"])
    for name in ("jawOpen", "eyeBlinkLeft", "mouthFunnel"):
        co = np.array(res["curves"][f'key_blocks["{name}"].value'])
        assert len(co) == len(baked)
        assert np.allclose(co[:, 0], baked.indices, atol=1e-3)          # frame = time * fps
        assert np.allclose(co[:, 1], baked.channel(name), atol=1e-4)


# ------------------------------------------------------------------------------------------
# USD
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ext", ["usda", "usdc"])
def test_usd_round_trip_through_pxr(tmp_path, synthetic, head, ext):
    need(have_module("pxr"), "usd-core (facecast[usd])")
    from pxr import Usd, UsdGeom, UsdShade, UsdSkel

    path = tmp_path / f"take.{ext}"
    formats.write(path, synthetic)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    stage = Usd.Stage.Open(str(path))
    assert stage.GetTimeCodesPerSecond() == 60 and stage.GetFramesPerSecond() == 60
    assert stage.GetStartTimeCode() == 45 and stage.GetEndTimeCode() == 45 + len(synthetic) - 1
    assert UsdGeom.GetStageUpAxis(stage) == "Y" and UsdGeom.GetStageMetersPerUnit(stage) == 1.0
    root = stage.GetDefaultPrim()
    assert root.IsA(UsdSkel.Root)
    anim = UsdSkel.Animation(stage.GetPrimAtPath(f"{root.GetPath()}/Skel/Anim"))
    assert list(anim.GetBlendShapesAttr().Get()) == list(ARKIT52)
    samples = anim.GetBlendShapeWeightsAttr().GetTimeSamples()
    assert samples == [float(i) for i in synthetic.indices]
    got = np.array([anim.GetBlendShapeWeightsAttr().Get(t) for t in samples])
    assert np.allclose(got, synthetic.blendshapes, atol=1e-6)
    rot = np.array([[[q.GetImaginary()[0], q.GetImaginary()[1], q.GetImaginary()[2],
                      q.GetReal()] for q in anim.GetRotationsAttr().Get(t)] for t in samples])
    hr = synthetic.head_rotation
    assert np.allclose(rot[:, 1], quaternions(hr[:, 0], hr[:, 1], hr[:, 2]), atol=1e-6)
    # materials: one UsdPreviewSurface per part, bound through GeomSubsets
    mesh_prim = stage.GetPrimAtPath(f"{root.GetPath()}/Head")
    subsets = UsdGeom.Subset.GetAllGeomSubsets(UsdGeom.Imageable(mesh_prim))
    assert len(subsets) == len(head.parts)
    mat, _ = UsdShade.MaterialBindingAPI(subsets[1].GetPrim()).ComputeBoundMaterial()
    shader = mat.ComputeSurfaceSource()[0]
    assert shader.GetIdAttr().Get() == "UsdPreviewSurface"
    assert np.allclose(shader.GetInput("diffuseColor").Get(), head.parts[1].color, atol=1e-6)
    # pxr's own blend-shape and skinning evaluation poses the mesh like HeadMesh.deform
    cache = UsdSkel.Cache()
    skel_root = UsdSkel.Root(root)
    cache.Populate(skel_root, Usd.TraverseInstanceProxies())
    skel_query = cache.GetSkelQuery(UsdSkel.Skeleton(stage.GetPrimAtPath(
        f"{root.GetPath()}/Skel")))
    skinning = cache.GetSkinningQuery(mesh_prim)
    shapes = UsdSkel.BlendShapeQuery(UsdSkel.BindingAPI(mesh_prim))
    for i in (0, 9, 30):
        t = float(synthetic.indices[i])
        pts = UsdGeom.Mesh(mesh_prim).GetPointsAttr().Get()
        weights = skel_query.GetAnimQuery().ComputeBlendShapeWeights(t)
        sub, idx, sub_idx = shapes.ComputeSubShapeWeights(weights)
        assert shapes.ComputeDeformedPoints(sub, idx, sub_idx,
                                            shapes.ComputeBlendShapePointIndices(),
                                            shapes.ComputeSubShapePointOffsets(), pts)
        assert skinning.ComputeSkinnedPoints(skel_query.ComputeSkinningTransforms(t), pts, t)
        assert np.abs(np.array(pts) - expected_pose(head, synthetic, i)).max() < 2e-5


# ------------------------------------------------------------------------------------------
# FBX
# ------------------------------------------------------------------------------------------
def test_fbx_round_trip_through_blender(tmp_path, baked, head):
    need(have_module("bpy"), "bpy (facecast[blender])")
    from facecast.formats.fbx import read_fbx_animation, read_fbx_mesh

    path = tmp_path / "take.fbx"
    batch = FrameBatch(baked.values.copy(), 12, 30, "demo")   # starts at 0.4 s on the clock
    batch.values[:, 52:] = 0.1 + 8 * baked.values[:, 52:]     # clearly visible head/eye turns
    formats.write(path, batch)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    frames = [12, 12 + 17, 12 + len(batch) - 1]
    res = read_fbx_animation(path, frames=frames)
    assert res["fps"] == 30
    assert set(res["shape_keys"]) == set(ARKIT52)
    for name in ARKIT52:
        f, v = res["shape_keys"][name]
        assert np.allclose(f, batch.indices), name                  # one key per frame
        assert np.allclose(v, batch.channel(name), atol=1e-4), name
    for f in frames:
        i = f - 12
        assert np.abs(res["positions"][f] - expected_pose(head, batch, i)).max() < 1e-4
    # the FBX also serves as a --mesh input
    back = read_fbx_mesh(path)
    assert np.allclose(back.positions, head.positions, atol=1e-5)
    assert set(back.shape_keys) == set(ARKIT52)
    assert np.allclose(back.shape_keys["jawOpen"], head.shape_keys["jawOpen"], atol=1e-5)
    for side in ("left", "right"):
        assert np.allclose(back.eye_pivots[side], head.eye_pivots[side], atol=1e-5)
        assert np.array_equal(np.sort(back.eye_vertices[side]), head.eye_vertices[side])


def test_fbx_unreadable(tmp_path):
    need(have_module("bpy"), "bpy (facecast[blender])")
    bad = tmp_path / "bad.fbx"
    bad.write_bytes(b"not an fbx at all")
    with pytest.raises(ValueError, match="bad.fbx"):
        formats.read_mesh(bad)


# ------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def short_wav(tmp_path_factory) -> Path:
    import soundfile as sf

    pcm, sr = sf.read(str(REPO / "samples" / "demo.wav"), dtype="float32")
    p = tmp_path_factory.mktemp("wav") / "short.wav"
    sf.write(str(p), pcm[: int(1.5 * sr)], sr)
    return p


def test_cli_bake_mixed_outputs(tmp_path, short_wav):
    outs = [tmp_path / "t.glb", tmp_path / "t.csv", tmp_path / "t.gltf", tmp_path / "t.json"]
    if have_module("pxr"):
        outs.append(tmp_path / "t.usda")
    args = [str(short_wav), "--fps", "30", "-q"]
    for o in outs:
        args += ["-o", str(o)]
    p = facecast_cli("bake", *args)
    assert p.returncode == 0, p.stderr
    assert p.stderr.strip() == ""                  # the demo head maps every channel
    for o in outs:
        assert o.exists(), o
    frames = formats.read(tmp_path / "t.json")
    anim = read_gltf_animation(tmp_path / "t.glb")
    assert np.allclose(anim["weights"], frames.blendshapes, atol=1e-6)
    assert np.allclose(anim["times"], frames.times, atol=1e-6)


def test_cli_bake_user_mesh_with_partial_map(tmp_path, short_wav):
    src = require_shared("data", "meshes", "facecap_arkit52.glb")
    m = {n: t for n, t in from_preset("facecap").targets.items()
         if n not in ("tongueOut", "cheekPuff")}
    mp = tmp_path / "map.json"
    mp.write_text(json.dumps(m))
    out = tmp_path / "fc.glb"
    p = facecast_cli("bake", str(short_wav), "-o", str(out), "--mesh", str(src),
                     "--retarget", str(mp), "-q")
    assert p.returncode == 0, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "warning" in lines[0], p.stderr
    assert "cheekPuff" in lines[0] and "tongueOut" in lines[0] and "jawOpen" not in lines[0]
    anim = read_gltf_animation(out)
    assert np.all(anim["weights"][:, anim["target_names"].index("tongueOut")] == 0)
    # auto-detection needs no map and warns about nothing
    p = facecast_cli("bake", str(short_wav), "-o", str(tmp_path / "auto.glb"), "--mesh",
                     str(src), "-q")
    assert p.returncode == 0 and p.stderr.strip() == "", p.stderr


def test_cli_bad_mesh_is_one_line_error(tmp_path, short_wav):
    plain = tmp_path / "plain.glb"
    plain_triangle_glb(plain)
    junk = tmp_path / "junk.glb"
    junk.write_bytes(b"\x00" * 64)
    dangling = tmp_path / "dangling.gltf"     # valid JSON whose accessor points nowhere
    dangling.write_text(json.dumps({
        "asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0}], "meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]}],
        "accessors": [{"bufferView": 7, "componentType": 5126, "count": 3, "type": "VEC3"}]}))
    for mesh, words in ((plain, "no shape keys"), (junk, "junk.glb"),
                        (tmp_path / "missing.glb", "missing.glb"),
                        (dangling, "dangling.gltf: not a readable head mesh")):
        p = facecast_cli("bake", str(short_wav), "-o", str(tmp_path / "o.glb"), "--mesh",
                         str(mesh))
        line = one_line_error(p, 2)
        assert words in line, line
        assert not (tmp_path / "o.glb").exists()
    p = facecast_cli("bake", str(short_wav), "-o", str(tmp_path / "o.csv"), "--mesh",
                     str(plain))
    assert "--mesh" in one_line_error(p, 2)
