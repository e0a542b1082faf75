"""USD export (``.usd``, ``.usda``, ``.usdc``) through usd-core (``pxr``, the ``facecast[usd]``
extra; imported only when a USD file is written).

Stage layout (``<root>`` is the subject name or ``facecast``, a valid prim name)::

    /<root>                    SkelRoot, the default prim
    /<root>/Skel               Skeleton: joints body, body/head, body/head/eye_left,
                               body/head/eye_right (bind = rest = the mesh's pivots)
    /<root>/Skel/Anim          SkelAnimation: blendShapes, blendShapeWeights and joint rotations
                               time-sampled at every frame (translations/scales constant = rest;
                               translations of the head sampled too when the take has them)
    /<root>/Head               Mesh (subdivisionScheme none) bound to the skeleton; one GeomSubset
                               per part, each bound to a UsdPreviewSurface material
    /<root>/Head/<shape>       BlendShape per mesh shape key (sparse offsets + pointIndices)
    /<root>/Materials/<part>   Material + UsdPreviewSurface (diffuseColor, roughness, metallic 0)

Time: ``timeCodesPerSecond = framesPerSecond = fps`` and time code *k* is frame *k* of the audio
clock (``start_index + i``), so a take that starts at the beginning of the audio starts at time
code **0** (not 1); ``startTimeCode``/``endTimeCode`` span the take. Axes and units: ``upAxis =
Y``, ``metersPerUnit = 1``, +Z forward, +X the subject's left - the schema's frame. Joint
rotations are the schema's R = Ry(yaw) Rx(pitch) Rz(roll) as ``quatf``. Blend-shape names in the
animation are the mesh's own shape-key names (ARKit names on the demo head); prim names are
those names made valid identifiers.
"""
from __future__ import annotations

import os
import re
import uuid
from typing import Any

import numpy as np

from ..mesh import HeadMesh
from ..schema import FrameBatch
from .rig import BufferedExportWriter, MissingDependencyError, key_weights, quaternions, \
    resolve_rig

__all__ = ["UsdWriter", "write_usd"]

USD_EXTENSIONS = (".usd", ".usda", ".usdc")


def _pxr() -> Any:
    try:
        from pxr import Gf, Sdf, Usd, UsdGeom, UsdShade, UsdSkel, Vt  # noqa: F401
    except ImportError:
        raise MissingDependencyError(
            "writing USD needs usd-core (the pxr module); install it with "
            "pip install 'facecast[usd]'") from None
    import pxr

    return pxr


def _identifier(name: str, taken: set[str]) -> str:
    ident = re.sub(r"[^A-Za-z0-9_]", "_", name) or "_"
    if ident[0].isdigit():
        ident = "_" + ident
    base, k = ident, 1
    while ident in taken:
        k += 1
        ident = f"{base}_{k}"
    taken.add(ident)
    return ident


def build_stage(path: str, batch: FrameBatch, mesh: HeadMesh | None = None,
                retarget: Any = None) -> None:
    """Create the USD file at ``path`` (format by extension) for ``batch`` on ``mesh``."""
    _pxr()
    from pxr import Gf, Sdf, Usd, UsdGeom, UsdShade, UsdSkel, Vt

    mesh, rmap = resolve_rig(mesh, retarget)
    stage = Usd.Stage.CreateNew(path)
    try:
        UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.y)
        UsdGeom.SetStageMetersPerUnit(stage, 1.0)
        fps = float(batch.fps)
        stage.SetTimeCodesPerSecond(fps)
        stage.SetFramesPerSecond(fps)
        idx = batch.indices
        if len(batch):
            stage.SetStartTimeCode(float(idx[0]))
            stage.SetEndTimeCode(float(idx[-1]))
        root_name = _identifier(batch.subject or "facecast", set())
        root = UsdSkel.Root.Define(stage, f"/{root_name}")
        stage.SetDefaultPrim(root.GetPrim())
        stage.GetRootLayer().customLayerData = {
            "facecast": {"fps": batch.fps, "start_index": batch.start_index,
                         "frames": len(batch), "subject": batch.subject,
                         "retarget": rmap.report(),
                         "time": "time code = frame index; seconds = time code / fps"}}

        # ---- skeleton
        head_pivot = mesh.head_pivot.astype(np.float64)
        sides = [s for s in ("left", "right") if s in mesh.eye_pivots]
        joints = ["body", "body/head"] + [f"body/head/eye_{s}" for s in sides]
        world = [np.zeros(3), head_pivot] + [mesh.eye_pivots[s].astype(np.float64)
                                             for s in sides]
        local = [np.zeros(3), head_pivot] + [w - head_pivot for w in world[2:]]

        def translate(v: np.ndarray) -> Gf.Matrix4d:
            return Gf.Matrix4d(1.0).SetTranslate(Gf.Vec3d(*map(float, v)))

        skel = UsdSkel.Skeleton.Define(stage, f"/{root_name}/Skel")
        skel.CreateJointsAttr(Vt.TokenArray(joints))
        skel.CreateJointNamesAttr(Vt.TokenArray([j.rsplit("/", 1)[-1] for j in joints]))
        skel.CreateBindTransformsAttr(Vt.Matrix4dArray([translate(w) for w in world]))
        skel.CreateRestTransformsAttr(Vt.Matrix4dArray([translate(t) for t in local]))

        # ---- mesh
        geom = UsdGeom.Mesh.Define(stage, f"/{root_name}/Head")
        pos = mesh.positions.astype(np.float32)
        tris = mesh.triangles.astype(np.int32)
        geom.CreatePointsAttr(Vt.Vec3fArray.FromNumpy(pos))
        geom.CreateFaceVertexCountsAttr(Vt.IntArray.FromNumpy(np.full(len(tris), 3, np.int32)))
        geom.CreateFaceVertexIndicesAttr(Vt.IntArray.FromNumpy(tris.reshape(-1)))
        geom.CreateSubdivisionSchemeAttr(UsdGeom.Tokens.none)
        geom.CreateOrientationAttr(UsdGeom.Tokens.rightHanded)
        lo, hi = pos.min(axis=0), pos.max(axis=0)
        geom.CreateExtentAttr(Vt.Vec3fArray([Gf.Vec3f(*map(float, lo)),
                                             Gf.Vec3f(*map(float, hi))]))

        # materials, one subset per part
        UsdGeom.Scope.Define(stage, f"/{root_name}/Materials")
        taken: set[str] = set()
        start = 0
        binding = UsdShade.MaterialBindingAPI.Apply(geom.GetPrim())
        for part in mesh.parts:
            count = len(part.triangles)
            if not count:
                continue
            name = _identifier(part.name, taken)
            mat = UsdShade.Material.Define(stage, f"/{root_name}/Materials/{name}")
            shader = UsdShade.Shader.Define(stage, f"/{root_name}/Materials/{name}/Surface")
            shader.CreateIdAttr("UsdPreviewSurface")
            shader.CreateInput("diffuseColor", Sdf.ValueTypeNames.Color3f).Set(
                Gf.Vec3f(*map(float, part.color)))
            shader.CreateInput("roughness", Sdf.ValueTypeNames.Float).Set(float(part.roughness))
            shader.CreateInput("metallic", Sdf.ValueTypeNames.Float).Set(0.0)
            mat.CreateSurfaceOutput().ConnectToSource(shader.ConnectableAPI(), "surface")
            faces = np.arange(start, start + count, dtype=np.int32)
            subset = UsdShade.MaterialBindingAPI.CreateMaterialBindSubset(
                binding, name, Vt.IntArray.FromNumpy(faces), UsdGeom.Tokens.face)
            UsdShade.MaterialBindingAPI.Apply(subset.GetPrim()).Bind(mat)
            start += count
        binding.SetMaterialBindSubsetsFamilyType(UsdGeom.Tokens.nonOverlapping)

        # skinning: [joint indices] x 4 per vertex, head_weights between head and body
        bind = UsdSkel.BindingAPI.Apply(geom.GetPrim())
        n = len(pos)
        ji = np.zeros((n, 4), np.int32)
        jw = np.zeros((n, 4), np.float32)
        hw = np.clip(mesh.head_weights.astype(np.float32), 0.0, 1.0)
        ji[:, 0], ji[:, 1] = 1, 0
        jw[:, 0], jw[:, 1] = hw, 1.0 - hw
        for k, s in enumerate(sides, start=2):
            v = mesh.eye_vertices.get(s, np.zeros(0, np.int64))
            ji[v, 0], ji[v, 1] = k, 1
            jw[v, 0], jw[v, 1] = 1.0, 0.0
        bind.CreateJointIndicesPrimvar(False, 4).Set(Vt.IntArray.FromNumpy(ji.reshape(-1)))
        bind.CreateJointWeightsPrimvar(False, 4).Set(Vt.FloatArray.FromNumpy(jw.reshape(-1)))
        bind.CreateGeomBindTransformAttr(Gf.Matrix4d(1.0))
        bind.CreateSkeletonRel().SetTargets([skel.GetPath()])

        # blend shapes
        key_names = list(mesh.shape_keys)
        shape_taken: set[str] = set()
        targets = []
        for key in key_names:
            prim_name = _identifier(key, shape_taken)
            shape = UsdSkel.BlendShape.Define(stage, f"/{root_name}/Head/{prim_name}")
            d = mesh.shape_keys[key].astype(np.float32)
            rows = np.flatnonzero(np.any(d != 0, axis=1)).astype(np.int32)
            shape.CreateOffsetsAttr(Vt.Vec3fArray.FromNumpy(np.ascontiguousarray(d[rows])))
            shape.CreatePointIndicesAttr(Vt.IntArray.FromNumpy(rows))
            targets.append(shape.GetPath())
        if key_names:
            bind.CreateBlendShapesAttr(Vt.TokenArray(key_names))
            bind.CreateBlendShapeTargetsRel().SetTargets(targets)

        # ---- animation
        anim = UsdSkel.Animation.Define(stage, f"/{root_name}/Skel/Anim")
        anim.CreateJointsAttr(Vt.TokenArray(joints))
        anim.CreateBlendShapesAttr(Vt.TokenArray(key_names))
        t_attr = anim.CreateTranslationsAttr()
        r_attr = anim.CreateRotationsAttr()
        s_attr = anim.CreateScalesAttr()
        bs_attr = anim.CreateBlendShapeWeightsAttr()
        rest_t = np.array(local, np.float32)
        t_attr.Set(Vt.Vec3fArray.FromNumpy(rest_t))
        s_attr.Set(Vt.Vec3hArray([Gf.Vec3h(1.0, 1.0, 1.0)] * len(joints)))
        ident = [Gf.Quatf(1.0, 0.0, 0.0, 0.0)] * len(joints)
        r_attr.Set(Vt.QuatfArray(ident))
        bs_attr.Set(Vt.FloatArray(len(key_names)))
        if len(batch):
            w = key_weights(batch, mesh, rmap)
            hr = batch.head_rotation.astype(np.float64)
            er = batch.eye_rotation.astype(np.float64)
            q = np.zeros((len(batch), len(joints), 4))      # x, y, z, w
            q[:, :, 3] = 1.0
            q[:, 1] = quaternions(hr[:, 0], hr[:, 1], hr[:, 2])
            for k, s in enumerate(sides, start=2):
                c = (0, 1) if s == "left" else (2, 3)
                q[:, k] = quaternions(er[:, c[0]], er[:, c[1]])
            qxyzw = q.astype(np.float32)      # GfQuatf memory layout: imaginary xyz, real w
            trans = None
            if batch.head_translation is not None:
                trans = np.repeat(rest_t[None], len(batch), axis=0)
                trans[:, 1] += batch.head_translation.astype(np.float32)
            for i, tc in enumerate(idx.astype(float)):
                r_attr.Set(Vt.QuatfArray.FromNumpy(np.ascontiguousarray(qxyzw[i])), tc)
                bs_attr.Set(Vt.FloatArray.FromNumpy(np.ascontiguousarray(w[i])), tc)
                if trans is not None:
                    t_attr.Set(Vt.Vec3fArray.FromNumpy(np.ascontiguousarray(trans[i])), tc)
        UsdSkel.BindingAPI.Apply(skel.GetPrim()).CreateAnimationSourceRel().SetTargets(
            [anim.GetPath()])
        stage.GetRootLayer().Save()
    finally:
        del stage


def write_usd(path: str | os.PathLike[str], batch: FrameBatch, *,
              mesh: HeadMesh | None = None, retarget: Any = None,
              subject: str | None = None, start_timecode: Any = None) -> None:
    """Write ``batch`` animating ``mesh`` (default: the demo head) as USD, atomically; the
    format follows the extension (``.usda`` text, ``.usdc`` and ``.usd`` binary crate)."""
    _pxr()
    w = UsdWriter(path, batch.fps, batch.subject if subject is None else subject,
                  start_timecode, mesh=mesh, retarget=retarget)
    with w:
        w.write(batch)


class UsdWriter(BufferedExportWriter):
    """``open_writer`` front end: buffers the take, writes the USD file on ``close()``."""

    def __init__(self, path: str | os.PathLike[str], fps: int, subject: str = "",
                 start_timecode: Any = None, **opts: Any) -> None:
        _pxr()
        ext = os.path.splitext(os.fspath(path))[1].lower()
        self.suffix = f".{uuid.uuid4().hex[:8]}{ext if ext in USD_EXTENSIONS else '.usd'}"
        super().__init__(path, fps, subject, start_timecode, **opts)

    def export(self, path: str, batch: FrameBatch) -> None:
        build_stage(path, batch, self.mesh, self.rmap)
