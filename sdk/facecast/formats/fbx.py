"""FBX export (and FBX head/animation reading) through Blender's own FBX add-on, using Blender as
a Python module (``bpy``, the ``facecast[blender]`` extra; bpy 5.0 needs numpy < 2).

Blender runs in a child process (``python -c ...``) started with the current interpreter, so
``bpy`` never loads into the caller's process and every run starts from
``bpy.ops.wm.read_factory_settings(use_empty=True)``. The mesh and the take travel to it as a
temporary ``.npz`` beside the target; the FBX is written to a temporary name in the target's
directory and moved into place atomically.

What the FBX holds (built directly in Blender, not via glTF):

* the mesh (one material per part: Principled base colour and roughness), with one shape key per
  mesh shape key (ARKit names on the demo head, the rig's own names on a user's mesh);
* an armature ``facecast_rig`` with bones ``body`` > ``head`` > ``eye_left``/``eye_right`` at the
  mesh's pivots (rest orientation = identity in Blender space), the mesh skinned to it by
  ``head_weights`` and the eye vertices;
* shape-key values and bone rotations keyed (LINEAR) at every frame ``start_index + i`` at the
  scene's frame rate = the take's fps, so FBX time = frame / fps = the audio clock; the FBX
  exporter bakes with step 1 and no curve simplification.

Axes: Blender's exporter converts to FBX's Y-up (``axis_up='Y'``, ``axis_forward='-Z'``), which
puts the face looking down +Z with +X on the subject's left, the schema's frame; units are metres
in Blender (the FBX carries Blender's unit scale, so Unreal and Maya import centimetres
correctly).
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import uuid
from typing import Any, Sequence

import numpy as np

from ..mesh import HeadMesh, MeshPart
from ..schema import FrameBatch
from .rig import BufferedExportWriter, MissingDependencyError, key_weights, quaternions, \
    resolve_rig

__all__ = ["FbxWriter", "read_fbx_animation", "read_fbx_mesh", "write_fbx"]

_TIMEOUT = float(os.environ.get("FACECAST_BLENDER_TIMEOUT", "600"))


def _require_bpy() -> None:
    if importlib.util.find_spec("bpy") is None:
        raise MissingDependencyError(
            "FBX needs Blender as a Python module (bpy); install it with "
            "pip install 'facecast[blender]' (bpy 5.0, which needs numpy < 2)")


def _run_child(*args: str) -> None:
    """Run :func:`_child` in a fresh interpreter; raise ValueError with Blender's last words."""
    _require_bpy()
    sdk_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    env["PYTHONPATH"] = sdk_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH")
                                    else "")
    code = ("import sys; from facecast.formats.fbx import _child; "
            "sys.exit(_child(sys.argv[1:]))")
    try:
        p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                           timeout=_TIMEOUT, env=env)
    except subprocess.TimeoutExpired:
        raise ValueError(f"Blender did not finish within {_TIMEOUT:.0f} s") from None
    if p.returncode != 0:
        lines = [ln for ln in (p.stderr + "\n" + p.stdout).splitlines() if ln.strip()]
        reason = next((ln for ln in reversed(lines) if ln.startswith("facecast-fbx:")),
                      lines[-1] if lines else f"exit code {p.returncode}")
        raise ValueError(reason.replace("facecast-fbx:", "").strip())


# --------------------------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------------------------
def _payload(batch: FrameBatch, mesh: HeadMesh, rmap: Any) -> dict[str, np.ndarray]:
    keys = list(mesh.shape_keys)
    sides = [s for s in ("left", "right") if s in mesh.eye_pivots]
    counts = np.array([len(p.triangles) for p in mesh.parts], np.int64)
    out: dict[str, np.ndarray] = {
        "name": np.array(mesh.name or "head"),
        "positions": mesh.positions.astype(np.float64),
        "triangles": mesh.triangles.astype(np.int64),
        "part_counts": counts,
        "part_names": np.array(json.dumps([p.name for p in mesh.parts])),
        "part_colors": np.array([p.color for p in mesh.parts], np.float64).reshape(-1, 3),
        "part_roughness": np.array([p.roughness for p in mesh.parts], np.float64),
        "key_names": np.array(json.dumps(keys)),
        "key_deltas": (np.stack([mesh.shape_keys[k] for k in keys]).astype(np.float64)
                       if keys else np.zeros((0, len(mesh.positions), 3))),
        "head_pivot": mesh.head_pivot.astype(np.float64),
        "head_weights": mesh.head_weights.astype(np.float64),
        "sides": np.array(json.dumps(sides)),
        "fps": np.array(batch.fps),
        "frames": batch.indices.astype(np.int64),
        "weights": key_weights(batch, mesh, rmap).astype(np.float64),
    }
    hr = batch.head_rotation.astype(np.float64)
    out["head_quat"] = quaternions(hr[:, 0], hr[:, 1], hr[:, 2])
    er = batch.eye_rotation.astype(np.float64)
    for s in sides:
        c = (0, 1) if s == "left" else (2, 3)
        out[f"eye_pivot_{s}"] = mesh.eye_pivots[s].astype(np.float64)
        out[f"eye_vertices_{s}"] = mesh.eye_vertices.get(s, np.zeros(0, np.int64))
        out[f"eye_quat_{s}"] = quaternions(er[:, c[0]], er[:, c[1]])
    if batch.head_translation is not None:
        out["head_translation"] = batch.head_translation.astype(np.float64)
    return out


def export_fbx(path: str, batch: FrameBatch, mesh: HeadMesh | None = None,
               retarget: Any = None) -> None:
    """Write the FBX at ``path`` directly (not atomic; :func:`write_fbx` is)."""
    _require_bpy()
    mesh, rmap = resolve_rig(mesh, retarget)
    directory = os.path.dirname(os.path.abspath(path))
    payload = os.path.join(directory, f".facecast-fbx-{uuid.uuid4().hex[:12]}.npz")
    try:
        np.savez(payload, **_payload(batch, mesh, rmap))
        _run_child("export", payload, os.path.abspath(path))
    finally:
        try:
            os.unlink(payload)
        except FileNotFoundError:
            pass


def write_fbx(path: str | os.PathLike[str], batch: FrameBatch, *,
              mesh: HeadMesh | None = None, retarget: Any = None,
              subject: str | None = None, start_timecode: Any = None) -> None:
    """Write ``batch`` animating ``mesh`` (default: the demo head) as FBX, atomically."""
    _require_bpy()
    w = FbxWriter(path, batch.fps, batch.subject if subject is None else subject,
                  start_timecode, mesh=mesh, retarget=retarget)
    with w:
        w.write(batch)


class FbxWriter(BufferedExportWriter):
    """``open_writer`` front end: buffers the take, writes the FBX file on ``close()``."""

    suffix = ".fbx"

    def __init__(self, *args: Any, **kw: Any) -> None:
        _require_bpy()
        super().__init__(*args, **kw)

    def export(self, path: str, batch: FrameBatch) -> None:
        export_fbx(path, batch, self.mesh, self.rmap)


# --------------------------------------------------------------------------------------------
# reading (for --mesh and for tests)
# --------------------------------------------------------------------------------------------
def _read_npz(path: str) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def read_fbx_mesh(path: str | os.PathLike[str]) -> HeadMesh:
    """Read a user's FBX head into a :class:`HeadMesh` (through Blender's FBX importer).

    Every mesh object is merged (world transforms applied, converted to the schema's Y-up
    axes), shape keys are taken relative to each mesh's basis, materials give part colours.
    Eyes: bones or objects whose names contain "eye" and a side give pivots and vertices (the
    side by position: +X is the subject's left). Head pivot: a bone or object named head/neck,
    else the bottom-centre-back of the bounding box raised by 15 % of its height.
    """
    src = os.fspath(path)
    if not os.path.isfile(src):
        raise ValueError(f"{src}: no such file")
    with tempfile.TemporaryDirectory(prefix="facecast-fbx-") as tmp:
        out = os.path.join(tmp, "mesh.npz")
        _run_child("read_mesh", os.path.abspath(src), out)
        d = _read_npz(out)
    names = json.loads(str(d["part_names"]))
    colors = d["part_colors"]
    tri_part = d["tri_part"]
    tris = d["triangles"]
    parts = [MeshPart(names[i], tris[tri_part == i], tuple(colors[i]))
             for i in range(len(names)) if np.any(tri_part == i)]
    keys = json.loads(str(d["key_names"]))
    shape_keys = {k: d["key_deltas"][i] for i, k in enumerate(keys)}
    eye_pivots, eye_vertices = {}, {}
    for s in ("left", "right"):
        if f"eye_pivot_{s}" in d:
            eye_pivots[s] = d[f"eye_pivot_{s}"]
            eye_vertices[s] = d[f"eye_vertices_{s}"]
    return HeadMesh(name=os.path.splitext(os.path.basename(src))[0], positions=d["positions"],
                    parts=parts, shape_keys=shape_keys, head_pivot=d["head_pivot"],
                    head_weights=d.get("head_weights"), eye_pivots=eye_pivots,
                    eye_vertices=eye_vertices)


def read_fbx_animation(path: str | os.PathLike[str], frames: Sequence[int] = ()) -> dict[str, Any]:
    """Import an FBX with Blender and report its animation: ``{"fps", "frame_range",
    "shape_keys": {name: (frames, values)}, "positions": {frame: (N, 3) schema-axis vertex
    positions of the (first) animated mesh}}``."""
    src = os.fspath(path)
    with tempfile.TemporaryDirectory(prefix="facecast-fbx-") as tmp:
        out = os.path.join(tmp, "anim.npz")
        _run_child("read_anim", os.path.abspath(src), out, json.dumps([int(f) for f in frames]))
        d = _read_npz(out)
    names = json.loads(str(d["key_names"]))
    res: dict[str, Any] = {"fps": float(d["fps"]), "frame_range": tuple(d["frame_range"]),
                           "shape_keys": {}, "positions": {}}
    for i, n in enumerate(names):
        res["shape_keys"][n] = (d[f"kf_{i}"][:, 0], d[f"kf_{i}"][:, 1])
    for f in frames:
        res["positions"][int(f)] = d[f"pos_{int(f)}"]
    return res


# --------------------------------------------------------------------------------------------
# the Blender side (runs in the child process)
# --------------------------------------------------------------------------------------------
def _to_blender(p: np.ndarray) -> np.ndarray:
    """Schema axes (Y up, Z forward) -> Blender (Z up, -Y forward)."""
    p = np.asarray(p, np.float64)
    return np.stack([p[..., 0], -p[..., 2], p[..., 1]], axis=-1)


def _from_blender(p: np.ndarray) -> np.ndarray:
    p = np.asarray(p, np.float64)
    return np.stack([p[..., 0], p[..., 2], -p[..., 1]], axis=-1)


def _quat_to_blender(q: np.ndarray) -> np.ndarray:
    """(n, 4) xyzw schema quaternions -> Blender (w, x, y, z) with the axes converted."""
    x, y, z, w = np.asarray(q, np.float64).T
    return np.stack([w, x, -z, y], axis=-1)


def _fcurves(id_data: Any) -> Any:
    from bpy_extras import anim_utils

    ad = id_data.animation_data
    return anim_utils.action_get_channelbag_for_slot(ad.action, ad.action_slot).fcurves


def _fill(fc: Any, frames: np.ndarray, values: np.ndarray) -> None:
    n = len(frames)
    have = len(fc.keyframe_points)
    if have < n:
        fc.keyframe_points.add(n - have)
    co = np.empty(2 * n, np.float32)
    co[0::2] = frames
    co[1::2] = values
    fc.keyframe_points.foreach_set("co", co)
    fc.keyframe_points.foreach_set("interpolation", np.full(n, 1, np.int32))  # LINEAR
    fc.update()


def _child_export(payload: str, out: str) -> None:
    import bpy

    d = _read_npz(payload)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    fps = int(d["fps"])
    scene.render.fps = fps
    scene.render.fps_base = 1.0
    scene.unit_settings.system = "METRIC"
    scene.unit_settings.scale_length = 1.0
    name = str(d["name"])
    pos = _to_blender(d["positions"])
    tris = d["triangles"].astype(np.int64)
    n, m = len(pos), len(tris)

    me = bpy.data.meshes.new(name)
    me.vertices.add(n)
    me.vertices.foreach_set("co", pos.astype(np.float32).reshape(-1))
    me.loops.add(3 * m)
    me.loops.foreach_set("vertex_index", tris.reshape(-1).astype(np.int32))
    me.polygons.add(m)
    me.polygons.foreach_set("loop_start", np.arange(0, 3 * m, 3, dtype=np.int32))
    me.update(calc_edges=True)
    part_names = json.loads(str(d["part_names"]))
    counts = d["part_counts"]
    for i, pname in enumerate(part_names):
        mat = bpy.data.materials.new(pname)
        r, g, b = (float(c) for c in d["part_colors"][i])
        mat.diffuse_color = (r, g, b, 1.0)
        mat.roughness = float(d["part_roughness"][i])
        try:
            mat.use_nodes = True
            bsdf = mat.node_tree.nodes.get("Principled BSDF")
            if bsdf is not None:
                bsdf.inputs["Base Color"].default_value = (r, g, b, 1.0)
                bsdf.inputs["Roughness"].default_value = float(d["part_roughness"][i])
        except (AttributeError, KeyError, TypeError):
            pass
        me.materials.append(mat)
    me.polygons.foreach_set("material_index", np.repeat(np.arange(len(counts)),
                                                        counts).astype(np.int32))
    me.polygons.foreach_set("use_smooth", np.ones(m, bool))
    ob = bpy.data.objects.new(name, me)
    scene.collection.objects.link(ob)

    # armature: bones point along Blender +Y with no roll, so their rest orientation is identity
    sides = json.loads(str(d["sides"]))
    arm = bpy.data.armatures.new("facecast_rig")
    arm_ob = bpy.data.objects.new("facecast_rig", arm)
    scene.collection.objects.link(arm_ob)
    bpy.context.view_layer.objects.active = arm_ob
    arm_ob.select_set(True)
    bpy.ops.object.mode_set(mode="EDIT")
    length = 0.03

    def bone(bname: str, at: np.ndarray, parent: Any) -> Any:
        eb = arm.edit_bones.new(bname)
        eb.head = tuple(float(x) for x in at)
        eb.tail = (float(at[0]), float(at[1]) + length, float(at[2]))
        eb.roll = 0.0
        if parent is not None:
            eb.parent = parent
            eb.use_connect = False
        return eb

    b_body = bone("body", np.zeros(3), None)
    b_head = bone("head", _to_blender(d["head_pivot"]), b_body)
    for s in sides:
        bone(f"eye_{s}", _to_blender(d[f"eye_pivot_{s}"]), b_head)
    bpy.ops.object.mode_set(mode="OBJECT")

    hw = np.clip(d["head_weights"], 0.0, 1.0)
    eye_idx = {s: d[f"eye_vertices_{s}"].astype(np.int64) for s in sides}
    is_eye = np.zeros(n, bool)
    for s in sides:
        is_eye[eye_idx[s]] = True
    g_head = ob.vertex_groups.new(name="head")
    g_body = ob.vertex_groups.new(name="body")
    for w in np.unique(hw[~is_eye]):
        ids = np.flatnonzero((hw == w) & ~is_eye).tolist()
        if w > 0:
            g_head.add(ids, float(w), "REPLACE")
        if w < 1:
            g_body.add(ids, float(1.0 - w), "REPLACE")
    for s in sides:
        ob.vertex_groups.new(name=f"eye_{s}").add(eye_idx[s].tolist(), 1.0, "REPLACE")
    ob.parent = arm_ob
    mod = ob.modifiers.new("Armature", "ARMATURE")
    mod.object = arm_ob

    frames = d["frames"].astype(np.float64)
    key_names = json.loads(str(d["key_names"]))
    if key_names:
        ob.shape_key_add(name="Basis", from_mix=False)
        weights = d["weights"]
        for k, kname in enumerate(key_names):
            kb = ob.shape_key_add(name=kname, from_mix=False)
            kb.data.foreach_set("co", _to_blender(d["positions"] + d["key_deltas"][k])
                                .astype(np.float32).reshape(-1))
            if len(frames):
                kb.slider_min = float(min(0.0, weights[:, k].min()))
                kb.slider_max = float(max(1.0, weights[:, k].max()))
        me.shape_keys.use_relative = True
    if len(frames):
        f0 = float(frames[0])
        scene.frame_start = int(frames[0])
        scene.frame_end = int(frames[-1])
        if key_names:
            skeys = me.shape_keys
            for kname in key_names:
                skeys.key_blocks[kname].keyframe_insert("value", frame=f0)
            by_path = {fc.data_path: fc for fc in _fcurves(skeys)}
            for k, kname in enumerate(key_names):
                _fill(by_path[f'key_blocks["{kname}"].value'], frames, weights[:, k])
        channels = [("head", d["head_quat"])] + [(f"eye_{s}", d[f"eye_quat_{s}"]) for s in sides]
        for bname, q in channels:
            pb = arm_ob.pose.bones[bname]
            pb.rotation_mode = "QUATERNION"
            pb.keyframe_insert("rotation_quaternion", frame=f0)
        if "head_translation" in d:
            arm_ob.pose.bones["head"].keyframe_insert("location", frame=f0)
        curves = {(fc.data_path, fc.array_index): fc for fc in _fcurves(arm_ob)}
        for bname, q in channels:
            qb = _quat_to_blender(q)
            for i in range(4):
                _fill(curves[(f'pose.bones["{bname}"].rotation_quaternion', i)], frames, qb[:, i])
        if "head_translation" in d:
            tb = _to_blender(d["head_translation"])
            for i in range(3):
                _fill(curves[('pose.bones["head"].location', i)], frames, tb[:, i])
    else:
        scene.frame_start = scene.frame_end = 0

    bpy.ops.export_scene.fbx(
        filepath=out, use_selection=False, object_types={"ARMATURE", "MESH"},
        use_mesh_modifiers=False, mesh_smooth_type="OFF", add_leaf_bones=False,
        primary_bone_axis="Y", secondary_bone_axis="X", armature_nodetype="NULL",
        axis_forward="-Z", axis_up="Y", global_scale=1.0, apply_unit_scale=True,
        bake_anim=bool(len(frames)), bake_anim_use_all_bones=True,
        bake_anim_use_nla_strips=False, bake_anim_use_all_actions=False,
        bake_anim_force_startend_keying=True, bake_anim_step=1.0,
        bake_anim_simplify_factor=0.0)


def _import_fbx(path: str) -> None:
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    try:
        result = bpy.ops.import_scene.fbx(filepath=path, anim_offset=0.0)
    except RuntimeError as e:
        raise ValueError(f"{path}: Blender cannot read it as FBX "
                         f"({str(e).strip().splitlines()[-1]})") from None
    if "FINISHED" not in result:
        raise ValueError(f"{path}: Blender cannot read it as FBX")


def _mesh_objects() -> list:
    import bpy

    return [o for o in bpy.context.scene.objects if o.type == "MESH"]


def _child_read_anim(src: str, out: str, frames_json: str) -> None:
    import bpy

    _import_fbx(src)
    scene = bpy.context.scene
    obs = _mesh_objects()
    ob = next((o for o in obs if o.data.shape_keys is not None), obs[0] if obs else None)
    if ob is None:
        raise ValueError(f"{src}: no mesh")
    res: dict[str, np.ndarray] = {"fps": np.array(scene.render.fps / scene.render.fps_base),
                                  "frame_range": np.array([scene.frame_start, scene.frame_end])}
    names = []
    sk = ob.data.shape_keys
    if sk is not None and sk.animation_data and sk.animation_data.action:
        by_path = {fc.data_path: fc for fc in _fcurves(sk)}
        for kb in sk.key_blocks[1:]:
            fc = by_path.get(f'key_blocks["{kb.name}"].value')
            if fc is None:
                continue
            co = np.empty(2 * len(fc.keyframe_points), np.float32)
            fc.keyframe_points.foreach_get("co", co)
            res[f"kf_{len(names)}"] = co.reshape(-1, 2).astype(np.float64)
            names.append(kb.name)
    res["key_names"] = np.array(json.dumps(names))
    for f in json.loads(frames_json):
        scene.frame_set(int(f))
        dg = bpy.context.evaluated_depsgraph_get()
        ev = ob.evaluated_get(dg)
        me = ev.to_mesh()
        co = np.empty(3 * len(me.vertices), np.float32)
        me.vertices.foreach_get("co", co)
        mw = np.array(ev.matrix_world)
        p = co.reshape(-1, 3).astype(np.float64) @ mw[:3, :3].T + mw[:3, 3]
        res[f"pos_{int(f)}"] = _from_blender(p)
        ev.to_mesh_clear()
    np.savez(out, **res)


def _child_read_mesh(src: str, out: str) -> None:
    import re

    import bpy

    _import_fbx(src)
    obs = _mesh_objects()
    if not obs:
        raise ValueError(f"{src}: the FBX holds no mesh")
    positions, tris, tri_part, part_names, part_colors = [], [], [], [], []
    key_order: list[str] = []
    chunks = []
    vert_owner: list[np.ndarray] = []
    groups: dict[str, np.ndarray] = {}
    offset = 0
    for oi, ob in enumerate(obs):
        me = ob.data
        n = len(me.vertices)
        co = np.empty(3 * n, np.float32)
        me.vertices.foreach_get("co", co)
        mw = np.array(ob.matrix_world)
        lin = mw[:3, :3]
        p = co.reshape(-1, 3).astype(np.float64)
        if me.shape_keys is not None and len(me.shape_keys.key_blocks):
            basis = me.shape_keys.reference_key
            bco = np.empty(3 * n, np.float32)
            basis.data.foreach_get("co", bco)
            p = bco.reshape(-1, 3).astype(np.float64)
            deltas = {}
            for kb in me.shape_keys.key_blocks:
                if kb == basis:
                    continue
                kco = np.empty(3 * n, np.float32)
                kb.data.foreach_get("co", kco)
                deltas[kb.name] = _from_blender((kco.reshape(-1, 3) - p) @ lin.T)
                if kb.name not in key_order:
                    key_order.append(kb.name)
            chunks.append((offset, n, deltas))
        positions.append(_from_blender(p @ lin.T + mw[:3, 3]))
        me.calc_loop_triangles()
        lt = np.empty(3 * len(me.loop_triangles), np.int32)
        me.loop_triangles.foreach_get("vertices", lt)
        mi = np.empty(len(me.loop_triangles), np.int32)
        me.loop_triangles.foreach_get("material_index", mi)
        t = lt.reshape(-1, 3).astype(np.int64)
        if np.linalg.det(lin) < 0:
            t = t[:, ::-1]
        tris.append(t + offset)
        mats = list(me.materials) or [None]
        base = len(part_names)
        for mat in mats:
            part_names.append(mat.name if mat is not None else (ob.name or f"mesh{oi}"))
            col = (0.8, 0.8, 0.8)
            if mat is not None:
                col = tuple(mat.diffuse_color[:3])
                try:
                    bsdf = mat.node_tree.nodes.get("Principled BSDF") if mat.node_tree else None
                    if bsdf is not None:
                        col = tuple(bsdf.inputs["Base Color"].default_value[:3])
                except (AttributeError, KeyError):
                    pass
            part_colors.append(col)
        tri_part.append(base + np.clip(mi, 0, len(mats) - 1))
        vert_owner.append(np.full(n, oi))
        for vg in ob.vertex_groups:
            w = np.zeros(n)
            for v in me.vertices:
                for g in v.groups:
                    if g.group == vg.index:
                        w[v.index] = g.weight
            full = groups.setdefault(vg.name, np.zeros(0))
            groups[vg.name] = np.concatenate([full, np.zeros(offset - len(full)), w])
        offset += n
    pos = np.concatenate(positions)
    for k in list(groups):
        groups[k] = np.concatenate([groups[k], np.zeros(len(pos) - len(groups[k]))])
    deltas_all = np.zeros((len(key_order), len(pos), 3))
    for start, n, deltas in chunks:
        for i, k in enumerate(key_order):
            if k in deltas:
                deltas_all[i, start:start + n] = deltas[k]
    owner = np.concatenate(vert_owner)
    res: dict[str, np.ndarray] = {
        "positions": pos, "triangles": np.concatenate(tris),
        "tri_part": np.concatenate(tri_part), "part_names": np.array(json.dumps(part_names)),
        "part_colors": np.array(part_colors, np.float64).reshape(-1, 3),
        "key_names": np.array(json.dumps(key_order)), "key_deltas": deltas_all,
    }
    eye_re = re.compile(r"eye", re.I)
    side_re = re.compile(r"(left|right|(^|[^a-z])[lr]$|_[lr]([^a-z]|$)|\.[lr]$)", re.I)
    head_re = re.compile(r"(^|[^a-z])(head|neck)([^a-z]|$)", re.I)
    eyes = []          # (pivot, vertices)
    head_pivot = None
    for ob in bpy.context.scene.objects:
        mw = np.array(ob.matrix_world)
        if ob.type == "ARMATURE":
            for b in ob.data.bones:
                piv = _from_blender(mw[:3, :3] @ np.array(b.head_local) + mw[:3, 3])
                if eye_re.search(b.name) and side_re.search(b.name) and b.name in groups:
                    verts = np.flatnonzero(groups[b.name] > 0.5)
                    if len(verts):
                        eyes.append((piv, verts))
                elif head_pivot is None and head_re.search(b.name):
                    head_pivot = piv
        elif eye_re.search(ob.name) and side_re.search(ob.name):
            below = [o for o in obs if o == ob or ob in _parents(o)]
            verts = np.flatnonzero(np.isin(owner, [obs.index(o) for o in below]))
            if len(verts):
                eyes.append((_from_blender(mw[:3, 3]), verts))
        elif head_pivot is None and head_re.search(ob.name) and ob.type != "MESH":
            head_pivot = _from_blender(mw[:3, 3])
    if len(eyes) >= 2:
        eyes = sorted(eyes, key=lambda e: -len(e[1]))[:2]
        eyes.sort(key=lambda e: -e[0][0])          # +X first: the subject's left
        for s, (piv, verts) in zip(("left", "right"), eyes):
            res[f"eye_pivot_{s}"] = piv
            res[f"eye_vertices_{s}"] = verts
    if head_pivot is None:
        lo, hi = pos.min(axis=0), pos.max(axis=0)
        head_pivot = np.array([0.5 * (lo[0] + hi[0]), lo[1] + 0.15 * (hi[1] - lo[1]),
                               lo[2] + 0.35 * (hi[2] - lo[2])])
    res["head_pivot"] = head_pivot
    if "head" in groups:
        hw = groups["head"].copy()
        for s in ("left", "right"):
            if f"eye_vertices_{s}" in res:
                hw[res[f"eye_vertices_{s}"]] = 1.0
        res["head_weights"] = hw
    np.savez(out, **res)


def _parents(ob: Any) -> list:
    out = []
    while ob.parent is not None:
        ob = ob.parent
        out.append(ob)
    return out


def _child(argv: list[str]) -> int:
    """Entry point of the Blender child process."""
    try:
        cmd, *args = argv
        if cmd == "export":
            _child_export(*args)
        elif cmd == "read_anim":
            _child_read_anim(*args)
        elif cmd == "read_mesh":
            _child_read_mesh(*args)
        else:
            raise ValueError(f"unknown command {cmd!r}")
    except (ValueError, OSError, RuntimeError) as e:
        print(f"facecast-fbx: {str(e).strip().splitlines()[-1] if str(e).strip() else e!r}",
              file=sys.stderr)
        return 2
    return 0
