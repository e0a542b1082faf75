"""The head mesh data model shared by the demo head, the exporters, the previewer and bridges.

One :class:`HeadMesh` sits between every producer of geometry (the built-in demo head, a user's
glTF/FBX head read by a loader) and every consumer (glTF/USD/FBX writers, the software renderer).
It is plain numpy: nothing here imports Blender, pxr or a GPU library.

Conventions
-----------
* Units are metres; axes are the schema's head frame (see :mod:`facecast.schema`), which is also
  glTF's: +X the subject's own left, +Y up, +Z out of the face towards the viewer.
* ``positions`` is the rest pose, ``(N, 3)`` float32. Triangles index into it and are grouped in
  :class:`MeshPart` s, one material each (skin, lips, teeth, tongue, eye whites, irises ...).
* ``shape_keys`` maps the mesh's *own* shape-key names to ``(N, 3)`` float32 position offsets
  (a morph target at weight 1). Mapping ARKit channel names onto those names is the job of
  :mod:`facecast.retarget`; the mesh never renames anything.
* The head rotates rigidly about ``head_pivot`` (the top of the neck), scaled per vertex by
  ``head_weights`` (1 = follows the head fully, 0 = stays with the body), so a neck can bend.
* Each eye rotates about its pivot; ``eye_vertices[side]`` lists the vertices that belong to that
  eyeball (``side`` is ``"left"`` or ``"right"``, the subject's own sides).
* Head and eye angles follow the schema: R = Ry(yaw) @ Rx(pitch) @ Rz(roll), positive yaw turns
  towards the subject's left, positive pitch looks down, positive roll tilts towards the
  subject's right shoulder.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

__all__ = ["HeadMesh", "MeshPart", "rotation_matrix", "vertex_normals"]

SIDES = ("left", "right")


def rotation_matrix(yaw: float, pitch: float, roll: float = 0.0) -> np.ndarray:
    """The schema's head/eye rotation as a 3x3 matrix: Ry(yaw) @ Rx(pitch) @ Rz(roll).

    All three are plain right-handed rotations; with +Z forward a positive pitch turns the face
    down, a positive yaw towards +X (the subject's left), as the schema defines them.
    """
    cy, sy = np.cos(yaw), np.sin(yaw)
    cp, sp = np.cos(pitch), np.sin(pitch)
    cr, sr = np.cos(roll), np.sin(roll)
    ry = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
    # right-handed rotation about +X by angle a maps +Z to (0, -sin a, cos a): down for a > 0.
    rx = np.array([[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]])
    rz = np.array([[cr, -sr, 0.0], [sr, cr, 0.0], [0.0, 0.0, 1.0]])
    return ry @ rx @ rz


def vertex_normals(positions: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals of a triangle soup, ``(N, 3)`` float32."""
    p = np.asarray(positions, dtype=np.float64)
    t = np.asarray(triangles, dtype=np.int64)
    face = np.cross(p[t[:, 1]] - p[t[:, 0]], p[t[:, 2]] - p[t[:, 0]])
    n = np.zeros_like(p)
    for k in range(3):
        np.add.at(n, t[:, k], face)
    length = np.linalg.norm(n, axis=1, keepdims=True)
    n = np.where(length > 1e-20, n / np.maximum(length, 1e-20), np.array([0.0, 0.0, 1.0]))
    return n.astype(np.float32)


@dataclass
class MeshPart:
    """Triangles sharing one material. ``color`` is linear RGB in 0..1."""

    name: str
    triangles: np.ndarray
    color: tuple[float, float, float] = (0.8, 0.8, 0.8)
    roughness: float = 0.6

    def __post_init__(self) -> None:
        self.triangles = np.ascontiguousarray(self.triangles, dtype=np.uint32).reshape(-1, 3)


@dataclass
class HeadMesh:
    """A head with named shape keys, a head pivot and two eye pivots (see the module docstring)."""

    name: str
    positions: np.ndarray
    parts: list[MeshPart]
    shape_keys: dict[str, np.ndarray] = field(default_factory=dict)
    head_pivot: np.ndarray = field(default_factory=lambda: np.zeros(3, np.float32))
    head_weights: np.ndarray | None = None
    eye_pivots: dict[str, np.ndarray] = field(default_factory=dict)
    eye_vertices: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.positions = np.ascontiguousarray(self.positions, dtype=np.float32).reshape(-1, 3)
        n = len(self.positions)
        for key, delta in list(self.shape_keys.items()):
            d = np.ascontiguousarray(delta, dtype=np.float32)
            if d.shape != (n, 3):
                raise ValueError(f"shape key {key!r} has shape {d.shape}, expected ({n}, 3)")
            self.shape_keys[key] = d
        for part in self.parts:
            if len(part.triangles) and int(part.triangles.max()) >= n:
                raise ValueError(f"part {part.name!r} indexes vertex {int(part.triangles.max())}"
                                 f" but the mesh has {n} vertices")
        self.head_pivot = np.asarray(self.head_pivot, dtype=np.float32).reshape(3)
        if self.head_weights is None:
            self.head_weights = np.ones(n, np.float32)
        self.head_weights = np.asarray(self.head_weights, dtype=np.float32).reshape(n)
        for side in list(self.eye_pivots):
            if side not in SIDES:
                raise ValueError(f"eye side must be 'left' or 'right', not {side!r}")
            self.eye_pivots[side] = np.asarray(self.eye_pivots[side], np.float32).reshape(3)
        for side in list(self.eye_vertices):
            if side not in SIDES:
                raise ValueError(f"eye side must be 'left' or 'right', not {side!r}")
            self.eye_vertices[side] = np.asarray(self.eye_vertices[side], np.int64).reshape(-1)

    @property
    def triangles(self) -> np.ndarray:
        """All triangles of all parts, ``(M, 3)`` uint32."""
        if not self.parts:
            return np.zeros((0, 3), np.uint32)
        return np.concatenate([p.triangles for p in self.parts])

    @property
    def shape_key_names(self) -> tuple[str, ...]:
        return tuple(self.shape_keys)

    def deform(
        self,
        weights: Mapping[str, float] | None = None,
        head_rotation: tuple[float, float, float] | np.ndarray | None = None,
        eye_rotation: tuple[float, float, float, float] | np.ndarray | None = None,
    ) -> np.ndarray:
        """Posed vertex positions ``(N, 3)`` float32.

        ``weights`` maps the mesh's own shape-key names to weights (unknown names raise
        KeyError); ``head_rotation`` is (yaw, pitch, roll) and ``eye_rotation`` is (leftYaw,
        leftPitch, rightYaw, rightPitch), radians, as in :class:`facecast.schema.Frame`.
        Order: shape keys, then eyes about their pivots, then the head about its pivot.
        """
        p = self.positions.astype(np.float32, copy=True)
        for key, w in (weights or {}).items():
            try:
                delta = self.shape_keys[key]
            except KeyError:
                raise KeyError(f"mesh {self.name!r} has no shape key {key!r}") from None
            if w:
                p += np.float32(w) * delta
        if eye_rotation is not None:
            e = np.asarray(eye_rotation, dtype=np.float64).reshape(4)
            for side, (yaw, pitch) in zip(SIDES, (e[0:2], e[2:4])):
                idx = self.eye_vertices.get(side)
                if idx is None or not len(idx) or (yaw == 0 and pitch == 0):
                    continue
                c = self.eye_pivots[side]
                r = rotation_matrix(yaw, pitch).astype(np.float32)
                p[idx] = (p[idx] - c) @ r.T + c
        if head_rotation is not None:
            h = np.asarray(head_rotation, dtype=np.float64).reshape(3)
            if np.any(h):
                r = rotation_matrix(*h).astype(np.float32)
                rel = p - self.head_pivot
                rotated = rel @ r.T
                w = self.head_weights[:, None]
                p = self.head_pivot + rel + w * (rotated - rel)
        return p.astype(np.float32, copy=False)

    def normals(self, positions: np.ndarray | None = None) -> np.ndarray:
        """Vertex normals of the rest pose, or of ``positions`` (e.g. the result of deform)."""
        return vertex_normals(self.positions if positions is None else positions, self.triangles)
