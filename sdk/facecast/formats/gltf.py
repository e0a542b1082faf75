"""glTF 2.0 export (``.glb``, and ``.gltf`` JSON with the buffer embedded) and a glTF head reader.

Written in pure Python (json, struct, numpy). What a file holds:

* one mesh (node ``facecast_mesh``), one primitive per :class:`~facecast.mesh.MeshPart`, each with
  its own material (``pbrMetallicRoughness.baseColorFactor`` = the part's linear RGB colour,
  metallic 0, the part's roughness); all primitives share POSITION, NORMAL, JOINTS_0, WEIGHTS_0;
* one morph target per shape key of the mesh (POSITION and NORMAL offsets, stored as sparse
  accessors where that is smaller), named in ``mesh.extras.targetNames`` - ARKit names for the
  demo head, the rig's own names for a user's mesh;
* a skin with the joints ``body`` (root, at the origin), ``head`` (at the mesh's head pivot) and
  ``eye_left`` / ``eye_right`` (at the eye pivots, children of ``head``). Vertices follow the
  head by ``head_weights`` (the rest stays with ``body``), eyeball vertices follow their eye;
* one animation ``facecast``: a ``weights`` channel on the mesh node and ``rotation`` channels on
  the head and eye joints (plus ``translation`` on the head when the batch has head translation),
  all LINEAR with one keyframe per frame at time ``(start_index + i) / fps`` seconds - the audio
  clock, so a take that starts at frame 0 starts at t = 0.

Axes and units are glTF's and the schema's: metres, +Y up, +Z forward, +X the subject's left;
head and eye quaternions are the schema's R = Ry(yaw) Rx(pitch) Rz(roll).

:func:`read_gltf_mesh` reads a user's ``.glb``/``.gltf`` head into a
:class:`~facecast.mesh.HeadMesh` (see its docstring); :func:`read_gltf_animation` reads back
what :func:`write_gltf` wrote (for tests and tools).
"""
from __future__ import annotations

import base64
import json
import os
import re
import struct
from typing import Any

import numpy as np

from ..mesh import HeadMesh, MeshPart, vertex_normals
from ..retarget import RetargetMap
from ..schema import FrameBatch
from .atomic import atomic_write
from .rig import BufferedExportWriter, key_weights, quaternions, resolve_rig

__all__ = ["GltfWriter", "gltf_document", "read_gltf", "read_gltf_animation", "read_gltf_mesh",
           "write_gltf"]

_FLOAT, _UBYTE, _USHORT, _UINT = 5126, 5121, 5123, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_GLB_MAGIC, _JSON_CHUNK, _BIN_CHUNK = 0x46546C67, 0x4E4F534A, 0x004E4942
_NCOMP = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
_DTYPE = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32,
          5126: np.float32}


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------
class _Builder:
    """Accumulates one binary buffer, its bufferViews and accessors."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.views: list[dict] = []
        self.accessors: list[dict] = []

    def view(self, data: bytes, target: int | None = None) -> int:
        pad = (-self.size) % 4
        if pad:
            self.chunks.append(b"\0" * pad)
            self.size += pad
        v: dict[str, Any] = {"buffer": 0, "byteOffset": self.size, "byteLength": len(data)}
        if target is not None:
            v["target"] = target
        self.chunks.append(data)
        self.size += len(data)
        self.views.append(v)
        return len(self.views) - 1

    def accessor(self, array: np.ndarray, kind: str, target: int | None = None,
                 minmax: bool = False, component: int | None = None) -> int:
        array = np.ascontiguousarray(array)
        if component is None:
            component = {np.dtype(np.float32): _FLOAT, np.dtype(np.uint8): _UBYTE,
                         np.dtype(np.uint16): _USHORT, np.dtype(np.uint32): _UINT}[array.dtype]
        count = len(array) if array.ndim else 1
        acc: dict[str, Any] = {"bufferView": self.view(array.tobytes(), target),
                               "componentType": component, "count": int(count), "type": kind}
        if minmax:
            flat = array.reshape(count, -1)
            acc["min"] = [float(x) for x in flat.min(axis=0)]
            acc["max"] = [float(x) for x in flat.max(axis=0)]
        self.accessors.append(acc)
        return len(self.accessors) - 1

    def sparse_vec3(self, dense: np.ndarray, rows: np.ndarray, index_view: int,
                    index_type: int) -> int:
        """A VEC3 float accessor that is zero except at ``rows`` (sparse, no base bufferView)."""
        dense = np.ascontiguousarray(dense, np.float32)
        acc: dict[str, Any] = {
            "componentType": _FLOAT, "count": int(len(dense)), "type": "VEC3",
            "min": [float(x) for x in dense.min(axis=0)],
            "max": [float(x) for x in dense.max(axis=0)],
        }
        if len(rows):
            acc["sparse"] = {
                "count": int(len(rows)),
                "indices": {"bufferView": index_view, "componentType": index_type},
                "values": {"bufferView": self.view(dense[rows].tobytes())},
            }
        self.accessors.append(acc)
        return len(self.accessors) - 1

    def blob(self) -> bytes:
        data = b"".join(self.chunks)
        return data + b"\0" * ((-len(data)) % 4)


def _joint_layout(mesh: HeadMesh) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Joint names, JOINTS_0 (N, 4) and WEIGHTS_0 (N, 4) for the mesh."""
    names = ["body", "head"]
    sides = [s for s in ("left", "right") if s in mesh.eye_pivots]
    names += [f"eye_{s}" for s in sides]
    n = len(mesh.positions)
    k = len(names)
    joints = np.zeros((n, 4), np.uint8)
    weights = np.zeros((n, 4), np.float32)
    # default: [head, body, others...] with weights [w, 1 - w, 0, 0]; indices unique per vertex
    order = [1, 0] + list(range(2, k))
    order += [i for i in range(4) if i not in order][: 4 - len(order)]
    joints[:] = np.array(order[:4], np.uint8)
    hw = np.clip(mesh.head_weights.astype(np.float64), 0.0, 1.0)
    weights[:, 0] = hw
    weights[:, 1] = 1.0 - hw
    for j, side in enumerate(sides, start=2):
        idx = mesh.eye_vertices.get(side, np.zeros(0, np.int64))
        if not len(idx):
            continue
        # eye vertices: [eye, head, body, other] with the weight on the eye joint
        rest = [i for i in order[:4] if i != j]
        joints[idx] = np.array([j] + rest[:3], np.uint8)
        weights[idx] = 0.0
        weights[idx, 0] = 1.0
    # the validator wants unused slots to name joint 0: strongest weights first, zeros cleared
    order_w = np.argsort(-weights, axis=1, kind="stable")
    weights = np.take_along_axis(weights, order_w, axis=1)
    joints = np.take_along_axis(joints, order_w, axis=1)
    joints[weights == 0] = 0
    return names, joints, weights


def gltf_document(batch: FrameBatch, mesh: HeadMesh | None = None,
                  retarget: RetargetMap | str | os.PathLike[str] | None = None,
                  *, name: str | None = None) -> tuple[dict, bytes]:
    """The glTF JSON document and its binary buffer for ``batch`` on ``mesh``."""
    mesh, rmap = resolve_rig(mesh, retarget)
    b = _Builder()
    pos = mesh.positions.astype(np.float32)
    n = len(pos)
    normals = vertex_normals(pos, mesh.triangles)
    a_pos = b.accessor(pos, "VEC3", _ARRAY_BUFFER, minmax=True)
    a_nrm = b.accessor(normals, "VEC3", _ARRAY_BUFFER)
    joint_names, joints, jweights = _joint_layout(mesh)
    a_joints = b.accessor(joints, "VEC4", _ARRAY_BUFFER)
    a_jw = b.accessor(jweights, "VEC4", _ARRAY_BUFFER)

    # morph targets
    key_names = list(mesh.shape_keys)
    targets = []
    tris = mesh.triangles
    for key in key_names:
        d_pos = mesh.shape_keys[key].astype(np.float32)
        d_nrm = (vertex_normals(pos + d_pos, tris) - normals).astype(np.float32)
        d_nrm[np.abs(d_nrm) < 1e-6] = 0.0
        rows = np.flatnonzero(np.any(d_pos != 0, axis=1) | np.any(d_nrm != 0, axis=1))
        if len(rows) * 4 < n * 3:     # sparse is smaller: indices + values vs dense values
            itype = _USHORT if n < 65536 else _UINT
            idx = rows.astype(np.uint16 if itype == _USHORT else np.uint32)
            iview = b.view(idx.tobytes()) if len(rows) else -1
            t = {"POSITION": b.sparse_vec3(d_pos, rows, iview, itype),
                 "NORMAL": b.sparse_vec3(d_nrm, rows, iview, itype)}
        else:
            t = {"POSITION": b.accessor(d_pos, "VEC3", _ARRAY_BUFFER, minmax=True),
                 "NORMAL": b.accessor(d_nrm, "VEC3", _ARRAY_BUFFER)}
        targets.append(t)

    materials, primitives = [], []
    for part in mesh.parts:
        if not len(part.triangles):
            continue
        r, g, bl = (float(np.clip(c, 0.0, 1.0)) for c in part.color)
        materials.append({
            "name": part.name,
            "pbrMetallicRoughness": {"baseColorFactor": [r, g, bl, 1.0], "metallicFactor": 0.0,
                                     "roughnessFactor": float(np.clip(part.roughness, 0, 1))},
        })
        idx = part.triangles.reshape(-1)
        idx = idx.astype(np.uint16) if n < 65536 else idx.astype(np.uint32)
        prim: dict[str, Any] = {
            "attributes": {"POSITION": a_pos, "NORMAL": a_nrm, "JOINTS_0": a_joints,
                           "WEIGHTS_0": a_jw},
            "indices": b.accessor(idx, "SCALAR", _ELEMENT_ARRAY_BUFFER),
            "material": len(materials) - 1,
            "mode": 4,
        }
        if targets:
            prim["targets"] = targets
        primitives.append(prim)
    gl_mesh: dict[str, Any] = {"name": mesh.name or "head", "primitives": primitives}
    if key_names:
        gl_mesh["weights"] = [0.0] * len(key_names)
        gl_mesh["extras"] = {"targetNames": key_names}

    # nodes: 0 mesh (root, skinned), 1 body, 2 head, 3.. eyes
    head_pivot = mesh.head_pivot.astype(np.float64)
    nodes: list[dict[str, Any]] = [
        {"name": "facecast_mesh", "mesh": 0, "skin": 0},
        {"name": "body", "children": [2]},
        {"name": "head", "translation": [float(x) for x in head_pivot]},
    ]
    world = {"body": np.zeros(3), "head": head_pivot}
    eye_nodes: dict[str, int] = {}
    for jname in joint_names[2:]:
        side = jname[4:]
        piv = mesh.eye_pivots[side].astype(np.float64)
        nodes.append({"name": jname, "translation": [float(x) for x in piv - head_pivot]})
        nodes[2].setdefault("children", []).append(len(nodes) - 1)
        world[jname] = piv
        eye_nodes[side] = len(nodes) - 1
    joint_nodes = [1, 2] + [eye_nodes[j[4:]] for j in joint_names[2:]]
    ibm = np.zeros((len(joint_names), 16), np.float32)
    for i, jname in enumerate(joint_names):
        m = np.eye(4)
        m[:3, 3] = -world[jname]
        ibm[i] = m.T.reshape(-1)          # column-major
    skin = {"name": "facecast_rig", "joints": joint_nodes, "skeleton": 1,
            "inverseBindMatrices": b.accessor(ibm, "MAT4")}

    doc: dict[str, Any] = {
        "asset": {"version": "2.0", "generator": "facecast"},
        "scene": 0,
        "scenes": [{"name": name or batch.subject or "facecast", "nodes": [0, 1],
                    "extras": {"facecast": {
                        "fps": batch.fps, "start_index": batch.start_index,
                        "frames": len(batch), "subject": batch.subject,
                        "retarget": rmap.report(), "time": "seconds = frame index / fps"}}}],
        "nodes": nodes,
        "meshes": [gl_mesh],
        "skins": [skin],
        "materials": materials,
    }

    if len(batch):
        times = batch.times.astype(np.float32)
        a_time = b.accessor(times, "SCALAR", minmax=True)
        samplers, channels = [], []

        def add(node: int, path: str, values: np.ndarray, kind: str) -> None:
            out = b.accessor(np.ascontiguousarray(values, np.float32), kind)
            samplers.append({"input": a_time, "output": out, "interpolation": "LINEAR"})
            channels.append({"sampler": len(samplers) - 1, "target": {"node": node, "path": path}})

        if key_names:
            w = key_weights(batch, mesh, rmap)
            add(0, "weights", w.reshape(-1), "SCALAR")
        hr = batch.head_rotation.astype(np.float64)
        add(2, "rotation", quaternions(hr[:, 0], hr[:, 1], hr[:, 2]), "VEC4")
        if batch.head_translation is not None:
            add(2, "translation", head_pivot + batch.head_translation.astype(np.float64), "VEC3")
        er = batch.eye_rotation.astype(np.float64)
        for side, cols in (("left", (0, 1)), ("right", (2, 3))):
            if side in eye_nodes:
                add(eye_nodes[side], "rotation", quaternions(er[:, cols[0]], er[:, cols[1]]),
                    "VEC4")
        doc["animations"] = [{"name": "facecast", "samplers": samplers, "channels": channels}]

    doc["accessors"] = b.accessors
    doc["bufferViews"] = b.views
    blob = b.blob()
    doc["buffers"] = [{"byteLength": len(blob)}]
    return doc, blob


def _glb_bytes(doc: dict, blob: bytes) -> bytes:
    js = json.dumps(doc, separators=(",", ":"), allow_nan=False).encode("utf-8")
    js += b" " * ((-len(js)) % 4)
    total = 12 + 8 + len(js) + (8 + len(blob) if blob else 0)
    out = [struct.pack("<III", _GLB_MAGIC, 2, total), struct.pack("<II", len(js), _JSON_CHUNK), js]
    if blob:
        out += [struct.pack("<II", len(blob), _BIN_CHUNK), blob]
    return b"".join(out)


def _gltf_bytes(doc: dict, blob: bytes) -> bytes:
    doc = dict(doc)
    doc["buffers"] = [{"byteLength": len(blob), "uri": "data:application/octet-stream;base64,"
                       + base64.b64encode(blob).decode("ascii")}]
    return json.dumps(doc, indent=1, allow_nan=False).encode("utf-8")


def gltf_bytes(path: str | os.PathLike[str], batch: FrameBatch, mesh: HeadMesh | None = None,
               retarget: Any = None) -> bytes:
    doc, blob = gltf_document(batch, mesh, retarget)
    if os.fspath(path).lower().endswith(".gltf"):
        return _gltf_bytes(doc, blob)
    return _glb_bytes(doc, blob)


def write_gltf(path: str | os.PathLike[str], batch: FrameBatch, *,
               mesh: HeadMesh | None = None, retarget: Any = None,
               subject: str | None = None, start_timecode: Any = None) -> None:
    """Write ``batch`` animating ``mesh`` (default: the demo head) as ``.glb`` or ``.gltf``
    (the buffer embedded as a data URI), atomically. ``retarget``: see
    :func:`facecast.formats.rig.resolve_rig`."""
    if subject is not None:
        batch = FrameBatch(batch.values, batch.start_index, batch.fps, subject,
                           batch.head_translation)
    data = gltf_bytes(path, batch, mesh, retarget)
    with atomic_write(path, "wb") as f:
        f.write(data)


class GltfWriter(BufferedExportWriter):
    """``open_writer`` front end: buffers the take, writes the glTF file on ``close()``."""

    def _finish(self) -> None:
        whole = self._whole()
        self._batches = []
        self._file.write(gltf_bytes(self.path, whole, self.mesh, self.rmap))


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------
class _Gltf:
    """A parsed glTF file: JSON plus buffers, with accessor decoding."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
        except IsADirectoryError:
            raise ValueError(f"{self.path}: is a directory, not a glTF file") from None
        glb_bin = None
        if raw[:4] == b"glTF":
            if len(raw) < 20:
                raise ValueError(f"{self.path}: truncated .glb header")
            _, version, length = struct.unpack_from("<III", raw, 0)
            if version != 2:
                raise ValueError(f"{self.path}: glTF version {version} is not supported (need 2)")
            off = 12
            js = None
            while off + 8 <= min(length, len(raw)):
                clen, ctype = struct.unpack_from("<II", raw, off)
                chunk = raw[off + 8: off + 8 + clen]
                if len(chunk) != clen:
                    raise ValueError(f"{self.path}: truncated .glb chunk")
                if ctype == _JSON_CHUNK and js is None:
                    js = chunk
                elif ctype == _BIN_CHUNK and glb_bin is None:
                    glb_bin = chunk
                off += 8 + clen
            if js is None:
                raise ValueError(f"{self.path}: .glb has no JSON chunk")
        else:
            js = raw
        try:
            self.doc = json.loads(js.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{self.path}: not a glTF file ({e.__class__.__name__})") from None
        if not isinstance(self.doc, dict) or "asset" not in self.doc:
            raise ValueError(f"{self.path}: not a glTF file (no 'asset')")
        version = str(self.doc["asset"].get("version", ""))
        if not version.startswith("2."):
            raise ValueError(f"{self.path}: glTF version {version!r} is not supported (need 2.x)")
        unsupported = [e for e in self.doc.get("extensionsRequired", [])
                       if e not in ("KHR_materials_unlit", "KHR_texture_transform")]
        if unsupported:
            raise ValueError(f"{self.path}: needs glTF extensions this reader lacks: "
                             f"{', '.join(unsupported)} (decompress the file first, e.g. with "
                             "gltf-transform)")
        self.buffers: list[bytes] = []
        base = os.path.dirname(os.path.abspath(self.path))
        for i, buf in enumerate(self.doc.get("buffers", [])):
            uri = buf.get("uri")
            if uri is None:
                if glb_bin is None:
                    raise ValueError(f"{self.path}: buffer {i} has no data")
                self.buffers.append(glb_bin)
            elif uri.startswith("data:"):
                head, _, data = uri.partition(",")
                if not head.endswith(";base64"):
                    raise ValueError(f"{self.path}: buffer {i}: only base64 data URIs are read")
                self.buffers.append(base64.b64decode(data))
            else:
                from urllib.parse import unquote

                try:
                    with open(os.path.join(base, unquote(uri)), "rb") as f:
                        self.buffers.append(f.read())
                except OSError as e:
                    raise ValueError(f"{self.path}: cannot read buffer {uri!r}: "
                                     f"{e.strerror}") from None

    def _view(self, index: int) -> tuple[bytes, int, int | None]:
        v = self.doc["bufferViews"][index]
        return self.buffers[v["buffer"]], v.get("byteOffset", 0), v.get("byteStride")

    def accessor(self, index: int) -> np.ndarray:
        """Decoded accessor as float64 (or int64 for integer data), shape (count, ncomp)."""
        a = self.doc["accessors"][index]
        ncomp = _NCOMP[a["type"]]
        dtype = np.dtype(_DTYPE[a["componentType"]])
        count = a["count"]
        if "bufferView" in a:
            buf, off, stride = self._view(a["bufferView"])
            off += a.get("byteOffset", 0)
            elem = dtype.itemsize * ncomp
            stride = stride or elem
            if count and off + stride * (count - 1) + elem > len(buf):
                raise ValueError(f"{self.path}: accessor {index} runs past its buffer")
            rows = np.frombuffer(buf, np.uint8, count=stride * (count - 1) + elem if count else 0,
                                 offset=off)
            out = np.empty((count, ncomp), dtype)
            if count:
                strided = np.lib.stride_tricks.as_strided(rows, (count, elem), (stride, 1))
                out = np.ascontiguousarray(strided).view(dtype).reshape(count, ncomp)
        else:
            out = np.zeros((count, ncomp), dtype)
        out = out.astype(np.float64 if dtype.kind == "f" else np.int64)
        if a.get("normalized") and dtype.kind != "f":
            out = out / float(np.iinfo(dtype).max)
            if dtype.kind == "i":
                out = np.maximum(out, -1.0)
        sp = a.get("sparse")
        if sp:
            ib, ioff, _ = self._view(sp["indices"]["bufferView"])
            itype = np.dtype(_DTYPE[sp["indices"]["componentType"]])
            idx = np.frombuffer(ib, itype, count=sp["count"],
                                offset=ioff + sp["indices"].get("byteOffset", 0)).astype(np.int64)
            vb, voff, _ = self._view(sp["values"]["bufferView"])
            vals = np.frombuffer(vb, dtype, count=sp["count"] * ncomp,
                                 offset=voff + sp["values"].get("byteOffset", 0))
            vals = vals.reshape(-1, ncomp).astype(out.dtype)
            if a.get("normalized") and dtype.kind != "f":
                vals = vals / float(np.iinfo(dtype).max)
            out = out.copy()
            out[idx] = vals
        return out

    # ---- node transforms ---------------------------------------------------------------------
    @staticmethod
    def local_matrix(node: dict) -> np.ndarray:
        if "matrix" in node:
            return np.array(node["matrix"], np.float64).reshape(4, 4).T
        t = np.eye(4)
        t[:3, 3] = node.get("translation", [0.0, 0.0, 0.0])
        x, y, z, w = node.get("rotation", [0.0, 0.0, 0.0, 1.0])
        r = np.eye(4)
        r[:3, :3] = [[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]]
        s = np.diag(list(node.get("scale", [1.0, 1.0, 1.0])) + [1.0])
        return t @ r @ s

    def world_matrices(self) -> tuple[dict[int, np.ndarray], dict[int, int | None]]:
        nodes = self.doc.get("nodes", [])
        parent: dict[int, int | None] = {i: None for i in range(len(nodes))}
        for i, nd in enumerate(nodes):
            for c in nd.get("children", []):
                parent[c] = i
        scenes = self.doc.get("scenes", [])
        if scenes:
            roots = scenes[self.doc.get("scene", 0)].get("nodes", [])
        else:
            roots = [i for i, p in parent.items() if p is None]
        world: dict[int, np.ndarray] = {}
        stack = [(r, np.eye(4)) for r in roots]
        while stack:
            i, m = stack.pop()
            if i in world:
                raise ValueError(f"{self.path}: node {i} appears twice in the scene graph")
            world[i] = m @ self.local_matrix(nodes[i])
            stack += [(c, world[i]) for c in nodes[i].get("children", [])]
        return world, parent


def read_gltf(path: str | os.PathLike[str]) -> _Gltf:
    """Parse a .glb/.gltf file (JSON and buffers)."""
    return _Gltf(path)


_EYE_RE = re.compile(r"eye", re.IGNORECASE)
_LEFT_RE = re.compile(r"(left|(^|[^a-z])l$|_l([^a-z]|$)|\.l$)", re.IGNORECASE)
_RIGHT_RE = re.compile(r"(right|(^|[^a-z])r$|_r([^a-z]|$)|\.r$)", re.IGNORECASE)
_HEAD_RE = re.compile(r"(^|[^a-z])(head|neck)([^a-z]|$)", re.IGNORECASE)


def read_gltf_mesh(path: str | os.PathLike[str]) -> HeadMesh:
    """Read a user's head from ``.glb``/``.gltf`` into a :class:`HeadMesh`.

    Every triangle primitive of every mesh node in the default scene is merged, with node
    transforms applied (a skinned mesh is taken in its bind pose). Shape keys are the morph
    targets' POSITION offsets, named by ``mesh.extras.targetNames`` (``target_<i>`` when absent);
    a key missing from one of several meshes is zero there. Each primitive becomes a part named
    after its material, coloured by the material's ``baseColorFactor`` (textures are ignored).

    Eyes: the nodes whose names contain "eye" and a side (``eyeLeft``, ``eye_L``,
    ``LeftEye`` ...) give the eye pivots (their world origins) and eye vertices (the meshes below
    them). The side is decided by position, not by name: +X is the subject's left (rigs disagree
    on naming; Face Cap's ``eyeLeft`` sits on -X). Head pivot: the world origin of a node named
    ``head`` or ``neck`` that is not the only holder of a mesh with no transform, else the
    bottom-centre-back of the bounding box raised by 15 % of its height. ``head_weights`` are 1.

    Raises ValueError (naming the file) for unreadable files or files without triangles.
    """
    g = _Gltf(path)
    doc = g.doc
    nodes = doc.get("nodes", [])
    world, parent = g.world_matrices()

    def ancestors(i: int):
        while i is not None:
            yield i
            i = parent[i]

    positions, parts, key_chunks = [], [], []
    all_names: list[str] = []
    node_of_vertex: list[np.ndarray] = []
    materials = doc.get("materials", [])
    shared: dict[tuple, int] = {}
    skin_influence: list[tuple[int, np.ndarray, np.ndarray]] = []
    offset = 0
    for ni in sorted(world):
        nd = nodes[ni]
        if "mesh" not in nd:
            continue
        gm = doc["meshes"][nd["mesh"]]
        names = (gm.get("extras") or {}).get("targetNames")
        m = np.eye(4) if "skin" in nd else world[ni]
        lin = m[:3, :3]
        for pi, prim in enumerate(gm.get("primitives", [])):
            if prim.get("mode", 4) != 4 or "POSITION" not in prim.get("attributes", {}):
                continue
            p = g.accessor(prim["attributes"]["POSITION"])[:, :3]
            if "indices" in prim:
                idx = g.accessor(prim["indices"]).reshape(-1)
            else:
                idx = np.arange(len(p))
            if len(idx) % 3 or (len(idx) and (idx.max() >= len(p) or idx.min() < 0)):
                raise ValueError(f"{g.path}: mesh {nd['mesh']} primitive {pi} has bad indices")
            if np.linalg.det(lin) < 0:
                idx = idx.reshape(-1, 3)[:, ::-1].reshape(-1)
            tgt = prim.get("targets", [])
            mat = materials[prim["material"]] if "material" in prim else {}
            color = (mat.get("pbrMetallicRoughness") or {}).get("baseColorFactor",
                                                                [0.8, 0.8, 0.8, 1.0])
            rough = (mat.get("pbrMetallicRoughness") or {}).get("roughnessFactor", 0.6)
            pname = mat.get("name") or gm.get("name") or nd.get("name") or f"mesh{nd['mesh']}"
            # primitives of one node that share their vertex data share the vertices
            share = (ni, prim["attributes"]["POSITION"],
                     tuple(t.get("POSITION", -1) for t in tgt))
            if share in shared:
                parts.append(MeshPart(pname, idx.reshape(-1, 3) + shared[share],
                                      tuple(color[:3]), float(rough)))
                continue
            shared[share] = offset
            pw = p @ lin.T + m[:3, 3]
            if "skin" in nd and "JOINTS_0" in prim["attributes"] \
                    and "WEIGHTS_0" in prim["attributes"]:
                skin = doc["skins"][nd["skin"]]
                jn = g.accessor(prim["attributes"]["JOINTS_0"])
                jw = g.accessor(prim["attributes"]["WEIGHTS_0"])
                skin_influence.append((offset, np.asarray(skin["joints"])[jn.astype(np.int64)],
                                       jw))
            tnames = list(names) if names and len(names) == len(tgt) else \
                [f"target_{k}" for k in range(len(tgt))]
            deltas = {}
            for k, t in enumerate(tgt):
                if "POSITION" in t:
                    deltas[tnames[k]] = g.accessor(t["POSITION"])[:, :3] @ lin.T
            for tn in tnames:
                if tn not in all_names:
                    all_names.append(tn)
            parts.append(MeshPart(pname, idx.reshape(-1, 3) + offset, tuple(color[:3]),
                                  float(rough)))
            positions.append(pw)
            key_chunks.append((offset, len(pw), deltas))
            node_of_vertex.append(np.full(len(pw), ni))
            offset += len(pw)
    if not positions:
        raise ValueError(f"{g.path}: no triangle meshes in the scene")
    pos = np.concatenate(positions)
    vnode = np.concatenate(node_of_vertex)
    keys = {}
    for name in all_names:
        d = np.zeros_like(pos)
        for start, count, deltas in key_chunks:
            if name in deltas:
                d[start:start + count] = deltas[name]
        keys[name] = d
    # merge parts that share a material name
    merged: dict[str, MeshPart] = {}
    for part in parts:
        if part.name in merged:
            merged[part.name].triangles = np.concatenate([merged[part.name].triangles,
                                                          part.triangles])
        else:
            merged[part.name] = part

    # eyes
    eye_pivots: dict[str, np.ndarray] = {}
    eye_vertices: dict[str, np.ndarray] = {}
    candidates = []
    for ni in world:
        name = nodes[ni].get("name", "")
        if _EYE_RE.search(name) and (_LEFT_RE.search(name) or _RIGHT_RE.search(name)):
            below = [d for d in world if ni in ancestors(d)]
            verts = np.flatnonzero(np.isin(vnode, below))
            if len(verts):
                candidates.append((ni, verts))
    # the outermost named node per eye mesh (grp_eyeLeft and eyeLeft hold the same vertices):
    # keep the innermost, whose origin is the eye's pivot
    chosen: dict[tuple, tuple[int, np.ndarray]] = {}
    for ni, verts in candidates:
        key = tuple(verts[:3]) + (len(verts),)
        depth = len(list(ancestors(ni)))
        if key not in chosen or depth > len(list(ancestors(chosen[key][0]))):
            chosen[key] = (ni, verts)
    if len(chosen) == 2:
        (n1, v1), (n2, v2) = chosen.values()
        c1, c2 = world[n1][:3, 3], world[n2][:3, 3]
        if abs(c1[0] - c2[0]) > 1e-9:
            (ln, lv), (rn, rv) = ((n1, v1), (n2, v2)) if c1[0] > c2[0] else ((n2, v2), (n1, v1))
            eye_pivots = {"left": world[ln][:3, 3].copy(), "right": world[rn][:3, 3].copy()}
            eye_vertices = {"left": lv, "right": rv}

    # a skinned rig (as facecast writes it): eye and head joints carry the vertices
    head_weights = None
    if skin_influence and not eye_pivots:
        joint_nodes = {int(j) for _, jn, _ in skin_influence for j in np.unique(jn)}
        eyes = {}
        for j in joint_nodes:
            name = nodes[j].get("name", "")
            if _EYE_RE.search(name) and (_LEFT_RE.search(name) or _RIGHT_RE.search(name)):
                w = np.zeros(len(pos))
                for start, jn, jw in skin_influence:
                    w[start:start + len(jn)] = np.where(jn == j, jw, 0.0).sum(axis=1)
                verts = np.flatnonzero(w > 0.5)
                if len(verts):
                    eyes[j] = verts
        if len(eyes) == 2:
            (n1, v1), (n2, v2) = eyes.items()
            c1, c2 = world[n1][:3, 3], world[n2][:3, 3]
            if c1[0] < c2[0]:
                (n1, v1), (n2, v2) = (n2, v2), (n1, v1)
            eye_pivots = {"left": world[n1][:3, 3].copy(), "right": world[n2][:3, 3].copy()}
            eye_vertices = {"left": v1, "right": v2}
        head_joint = next((j for j in joint_nodes
                           if _HEAD_RE.search(nodes[j].get("name", ""))), None)
        if head_joint is not None:
            below = {d for d in world if head_joint in ancestors(d)}
            head_weights = np.ones(len(pos))
            for start, jn, jw in skin_influence:
                head_weights[start:start + len(jn)] = np.where(np.isin(jn, list(below)), jw,
                                                               0.0).sum(axis=1)

    # head pivot
    pivot = None
    for ni in world:
        nd = nodes[ni]
        if _HEAD_RE.search(nd.get("name", "")):
            pivot = world[ni][:3, 3].copy()
            break
    if pivot is None:
        lo, hi = pos.min(axis=0), pos.max(axis=0)
        pivot = np.array([0.5 * (lo[0] + hi[0]), lo[1] + 0.15 * (hi[1] - lo[1]),
                          lo[2] + 0.35 * (hi[2] - lo[2])])
    name = os.path.splitext(os.path.basename(g.path))[0]
    return HeadMesh(name=name, positions=pos, parts=list(merged.values()), shape_keys=keys,
                    head_pivot=pivot, head_weights=head_weights, eye_pivots=eye_pivots,
                    eye_vertices=eye_vertices)


def read_gltf_animation(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What a facecast glTF animates: ``{"target_names", "times", "weights" (n, K),
    "rotations": {node name: (times, (n, 4) xyzw)}, "translations": {...}, "extras"}``.
    Reads the first animation; sampler inputs are returned per channel."""
    g = _Gltf(path)
    doc = g.doc
    nodes = doc.get("nodes", [])
    out: dict[str, Any] = {"target_names": [], "times": None, "weights": None,
                           "rotations": {}, "translations": {},
                           "extras": (doc.get("scenes") or [{}])[0].get("extras", {})}
    mesh_node = next((i for i, n in enumerate(nodes) if "mesh" in n), None)
    if mesh_node is not None:
        gm = doc["meshes"][nodes[mesh_node]["mesh"]]
        out["target_names"] = list((gm.get("extras") or {}).get("targetNames", []))
    anims = doc.get("animations", [])
    if not anims:
        return out
    anim = anims[0]
    for ch in anim["channels"]:
        s = anim["samplers"][ch["sampler"]]
        times = g.accessor(s["input"]).reshape(-1)
        vals = g.accessor(s["output"])
        node = ch["target"]["node"]
        path_ = ch["target"]["path"]
        nname = nodes[node].get("name", str(node))
        if path_ == "weights":
            k = len(vals) // max(len(times), 1)
            out["times"] = times
            out["weights"] = vals.reshape(len(times), k)
        elif path_ == "rotation":
            out["rotations"][nname] = (times, vals.reshape(-1, 4))
        elif path_ == "translation":
            out["translations"][nname] = (times, vals.reshape(-1, 3))
    return out
