"""What the mesh exporters (glTF, USD, FBX) share: the mesh + retarget map they animate, per-frame
shape-key weights, rotations as quaternions, and the buffering writer behind ``open_writer``.

* :func:`resolve_rig` picks the mesh (default: the built-in demo head) and the retarget map
  (a :class:`~facecast.retarget.RetargetMap`, a preset name, a JSON map path, or ``None`` to
  detect the preset from the mesh's shape-key names);
* :func:`key_weights` turns a :class:`~facecast.schema.FrameBatch` into one weight per frame and
  per *mesh* shape key (gains applied, keys no channel drives stay 0);
* :func:`quaternions` gives the schema's yaw/pitch/roll as unit quaternions (x, y, z, w),
  sign-continuous from frame to frame so linear/slerp interpolation never takes the long way.

Numpy only; the demo head is imported lazily.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..mesh import HeadMesh
from ..retarget import PRESETS, RetargetMap, detect, from_preset, load_map
from ..schema import ARKIT52, FrameBatch
from .base import FrameWriter

__all__ = ["BufferedExportWriter", "MissingDependencyError", "key_weights", "quaternions",
           "resolve_rig", "rotation_quaternion"]


class MissingDependencyError(ImportError, ValueError):
    """An optional package a format needs is not installed (the message names the extra)."""


def resolve_rig(mesh: HeadMesh | None = None,
                retarget: RetargetMap | str | os.PathLike[str] | None = None
                ) -> tuple[HeadMesh, RetargetMap]:
    """The mesh to animate and the map from ARKit channels to its shape keys.

    Raises ValueError for a mesh without shape keys, an unknown preset, a bad JSON map, or a
    map that drives none of the mesh's shape keys.
    """
    if mesh is None:
        from ..demohead import demo_head

        mesh = demo_head()
    keys = list(mesh.shape_keys)
    if not keys:
        raise ValueError(f"mesh {mesh.name!r} has no shape keys, so there is nothing to animate; "
                         "it needs ARKit-style blendshapes (jawOpen, eyeBlinkLeft, ...)")
    if retarget is None:
        rmap = detect(keys)
    elif isinstance(retarget, RetargetMap):
        rmap = retarget
    else:
        spec = os.fspath(retarget)
        if spec in PRESETS:
            rmap = from_preset(spec, keys)
        elif spec.lower().endswith(".json") or os.path.exists(spec):
            rmap = load_map(spec, keys)
        else:
            raise ValueError(f"retarget {spec!r} is neither a preset "
                             f"({', '.join(PRESETS)}) nor a JSON map file")
    known = set(keys)
    if not any(t in known for t in rmap.mapped.values()):
        raise ValueError(f"retarget map {rmap.preset!r} drives none of the mesh's "
                         f"{len(keys)} shape keys")
    return mesh, rmap


def weight_matrix(mesh: HeadMesh, rmap: RetargetMap) -> np.ndarray:
    """(52, K) float64: ARKit channel -> mesh shape key gains."""
    index = {k: i for i, k in enumerate(mesh.shape_keys)}
    g = np.zeros((len(ARKIT52), len(index)))
    for a, name in enumerate(ARKIT52):
        target = rmap.targets.get(name)
        if target is not None and target in index:
            g[a, index[target]] += rmap.gain(name)
    return g


def key_weights(batch: FrameBatch, mesh: HeadMesh, rmap: RetargetMap) -> np.ndarray:
    """(n, K) float32 weights of the mesh's shape keys (``mesh.shape_keys`` order)."""
    return (batch.blendshapes.astype(np.float64) @ weight_matrix(mesh, rmap)).astype(np.float32)


def _axis_quat(angle: np.ndarray, axis: int) -> np.ndarray:
    q = np.zeros((len(angle), 4))
    q[:, axis] = np.sin(0.5 * angle)
    q[:, 3] = np.cos(0.5 * angle)
    return q


def _qmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ax, ay, az, aw = a.T
    bx, by, bz, bw = b.T
    return np.column_stack([
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
        aw * bw - ax * bx - ay * by - az * bz,
    ])


def quaternions(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray | None = None) -> np.ndarray:
    """Unit quaternions (x, y, z, w) of Ry(yaw) @ Rx(pitch) @ Rz(roll), shape (n, 4) float64,
    with signs chosen so consecutive quaternions have a non-negative dot product."""
    yaw = np.asarray(yaw, np.float64).reshape(-1)
    pitch = np.asarray(pitch, np.float64).reshape(-1)
    roll = np.zeros_like(yaw) if roll is None else np.asarray(roll, np.float64).reshape(-1)
    q = _qmul(_qmul(_axis_quat(yaw, 1), _axis_quat(pitch, 0)), _axis_quat(roll, 2))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    if len(q):
        flip = np.concatenate([[q[0, 3] < 0], np.einsum("ij,ij->i", q[1:], q[:-1]) < 0])
        sign = np.where(np.logical_xor.accumulate(flip), -1.0, 1.0)
        q *= sign[:, None]
    return q


def rotation_quaternion(yaw: float, pitch: float, roll: float = 0.0) -> np.ndarray:
    return quaternions(np.array([yaw]), np.array([pitch]), np.array([roll]))[0]


class BufferedExportWriter(FrameWriter):
    """Streaming-writer front end of a whole-take exporter: buffers every batch and exports on
    ``close()`` (the mesh formats need the whole take). Subclasses implement ``export(path,
    batch)`` writing a complete file at ``path``; the bytes then go through the atomic file."""

    file_mode = "wb"
    file_newline = None
    #: file extension the exporter needs for its temporary file (pxr/bpy pick formats by it)
    suffix = ".bin"

    def __init__(self, path: str | os.PathLike[str], fps: int, subject: str = "",
                 start_timecode: Any = None, *, mesh: HeadMesh | None = None,
                 retarget: Any = None) -> None:
        # resolve first so a bad mesh/map fails before any file is created
        self.mesh, self.rmap = resolve_rig(mesh, retarget)
        super().__init__(path, fps, subject)
        self.start_timecode = start_timecode
        self._batches: list[FrameBatch] = []

    def _encode_batch(self, batch: FrameBatch) -> FrameBatch:
        return FrameBatch(batch.values.copy(), batch.start_index, batch.fps, batch.subject,
                          None if batch.head_translation is None
                          else batch.head_translation.copy())

    def _write_encoded(self, encoded: FrameBatch, first: bool) -> None:
        self._batches.append(encoded)

    def _whole(self) -> FrameBatch:
        if self._batches:
            whole = FrameBatch.concat(self._batches)
        else:
            whole = FrameBatch.empty(self.fps, self.start_index or 0)
        whole.subject = self.subject
        return whole

    def _finish(self) -> None:
        whole = self._whole()
        self._batches = []
        self.export_to_file(whole)

    def export_to_file(self, batch: FrameBatch) -> None:
        """Export into a scratch file beside the target, then copy it into the atomic file."""
        directory = os.path.dirname(os.path.abspath(self.path))
        base = os.path.basename(self.path)
        scratch = os.path.join(directory, f".{base}.{os.getpid()}.{id(self):x}{self.suffix}")
        try:
            self.export(scratch, batch)
            with open(scratch, "rb") as f:
                while True:
                    chunk = f.read(1 << 20)
                    if not chunk:
                        break
                    self._file.write(chunk)
        finally:
            try:
                os.unlink(scratch)
            except FileNotFoundError:
                pass

    def export(self, path: str, batch: FrameBatch) -> None:  # pragma: no cover - abstract
        raise NotImplementedError
