"""A small CPU software rasteriser for :class:`facecast.mesh.HeadMesh` (the preview renderer).

Pipeline per frame (all kernels are numba-compiled, single-threaded, GIL released):

1. pose: ``mesh.deform(shape-key weights, head rotation, eye rotation)``;
2. smooth vertex normals of the posed mesh (area-weighted);
3. projection by a perspective :class:`Camera` on the +Z axis looking at the face;
4. rasterisation with a z-buffer (1/depth) at ``supersample`` x the output resolution, storing per
   sample the triangle and its perspective-correct barycentrics;
5. a cavity term: the depth buffer minus its blurred self ("depth unsharp masking", Luft et al.
   2006), so whatever lies well behind its surroundings -- the inside of an open mouth, the
   corners of the eyes -- darkens softly; parts named like mouth interiors darken more;
6. deferred per-sample shading: interpolated normals, a warm key light with a Blinn-Phong
   highlight, a cool fill, a back rim light plus a Fresnel rim, a sky/ground ambient; a filmic
   tone curve and sRGB encoding; samples averaged into the output pixel (anti-aliasing) over a
   soft vertical gradient background with a vignette.

Coordinates follow :mod:`facecast.mesh` (metres, +X subject's left, +Y up, +Z towards the
viewer). Images are ``(H, W, 3)`` uint8 RGB, row 0 at the top.

numba is imported on first use; without it :func:`require_numba` raises a one-line error naming
the ``preview`` extra.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from facecast.mesh import HeadMesh

from ..errors import FacecastError

__all__ = ["Camera", "Renderer", "rasterize", "require_numba", "NumbaMissing"]

#: part-name fragments that mark the inside of the mouth (darkened more by the cavity term)
INTERIOR_WORDS = ("mouth", "teeth", "tooth", "tongue", "gum", "inner", "throat", "oral",
                  "cavity", "palate")
#: part-name fragments that mark wet, glossy materials
GLOSSY_WORDS = ("eye", "cornea", "iris", "pupil", "lip", "teeth", "tooth", "tongue")


class NumbaMissing(FacecastError, ImportError):
    """The preview renderer needs numba (the ``preview`` extra)."""


_K: Any = None  # the compiled kernels (a namespace), built on first use


def require_numba() -> Any:
    """The compiled kernels; raises :class:`NumbaMissing` with an install hint without numba."""
    global _K
    if _K is None:
        try:
            import numba  # noqa: F401
        except ImportError:
            raise NumbaMissing("the preview renderer needs numba: pip install 'facecast[preview]'"
                               " (or pip install numba)") from None
        from . import _kernels

        _K = _kernels
    return _K


# ----------------------------------------------------------------------------------- camera
@dataclass
class Camera:
    """Pinhole camera at ``eye`` looking at ``target`` (world +Y up), ``fov_deg`` vertical.

    :meth:`project` maps world points to pixel coordinates of a ``width`` x ``height`` image
    (x right, y down, pixel centres at +0.5) and their depth (distance along the view axis).
    """

    eye: np.ndarray
    target: np.ndarray
    fov_deg: float
    width: int
    height: int

    def __post_init__(self) -> None:
        self.eye = np.asarray(self.eye, np.float64).reshape(3)
        self.target = np.asarray(self.target, np.float64).reshape(3)
        fwd = self.target - self.eye
        fwd /= np.linalg.norm(fwd)
        right = np.cross(fwd, [0.0, 1.0, 0.0])
        if np.linalg.norm(right) < 1e-9:
            right = np.array([1.0, 0.0, 0.0])
        right /= np.linalg.norm(right)
        up = np.cross(right, fwd)
        #: rows: camera right, up, forward in world coordinates
        self.basis = np.stack([right, up, fwd])
        self.focal = 0.5 * self.height / math.tan(math.radians(self.fov_deg) / 2)

    def scaled(self, factor: int) -> "Camera":
        """The same view at ``factor`` x the resolution (for supersampling)."""
        return Camera(self.eye, self.target, self.fov_deg, self.width * factor,
                      self.height * factor)

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(x, y, depth)`` float32 arrays for world ``points`` (N, 3)."""
        rel = np.asarray(points, np.float64) - self.eye
        c = rel @ self.basis.T
        depth = c[:, 2]
        safe = np.where(depth > 1e-9, depth, 1e-9)
        x = 0.5 * self.width + self.focal * c[:, 0] / safe
        y = 0.5 * self.height - self.focal * c[:, 1] / safe
        return x.astype(np.float32), y.astype(np.float32), depth.astype(np.float32)

    @classmethod
    def fit(cls, lo: Sequence[float], hi: Sequence[float], width: int, height: int,
            fov_deg: float = 18.0, margin: float = 0.08, reserve_bottom: float = 0.0,
            ) -> "Camera":
        """A camera on +Z framing the box ``lo``..``hi`` with ``margin`` (fraction of the
        image) on each side and the bottom ``reserve_bottom`` fraction kept free (for an
        overlay strip)."""
        lo = np.asarray(lo, np.float64)
        hi = np.asarray(hi, np.float64)
        centre = 0.5 * (lo + hi)
        half = 0.5 * (hi - lo)
        aspect = width / height
        usable_h = 1.0 - 2 * margin - reserve_bottom
        usable_w = 1.0 - 2 * margin
        t = math.tan(math.radians(fov_deg) / 2)
        # distance so that the box's front face fits: half-extent / (dist * t) <= usable fraction
        dist_h = half[1] / (t * usable_h)
        dist_w = half[0] / (t * aspect * usable_w)
        dist = max(dist_h, dist_w, 1e-6) + half[2]
        # shift the look-at point down so the box sits centred in the part above the strip
        shift = (reserve_bottom / 2) * 2 * t * (dist - half[2])
        target = centre - np.array([0.0, shift, 0.0])
        eye = target + np.array([0.0, 0.0, dist])
        return cls(eye, target, fov_deg, width, height)


def _part_height(mesh: HeadMesh, words: Sequence[str]) -> float | None:
    """Mean height (y) of the vertices of the parts whose names contain one of ``words``."""
    idx = [p.triangles.reshape(-1) for p in mesh.parts
           if any(w in p.name.lower() for w in words) and len(p.triangles)]
    if not idx:
        return None
    return float(mesh.positions[np.unique(np.concatenate(idx)), 1].mean())


# ----------------------------------------------------------------------------------- raster
def rasterize(camera: Camera, positions: np.ndarray, triangles: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rasterise a triangle mesh: ``(inv_depth, triangle_id, bary)`` per pixel of ``camera``.

    ``inv_depth`` is 1/depth (0 where nothing is drawn), ``triangle_id`` -1 where nothing is
    drawn, ``bary`` the perspective-correct barycentrics (H, W, 2) of vertices 1 and 2.
    """
    k = require_numba()
    x, y, d = camera.project(positions)
    h, w = camera.height, camera.width
    zbuf = np.zeros((h, w), np.float32)
    tid = np.full((h, w), -1, np.int32)
    bary = np.zeros((h, w, 2), np.float32)
    k.rasterize(x, y, d, np.ascontiguousarray(triangles, np.int32), zbuf, tid, bary)
    return zbuf, tid, bary


def _srgb_to_linear(c: np.ndarray) -> np.ndarray:
    c = np.asarray(c, np.float64)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _background(width: int, height: int) -> np.ndarray:
    """Linear-RGB background (H, W, 3): a soft vertical gradient, a glow behind the head and a
    gentle vignette."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    v = yy / max(1, height - 1)
    top = _srgb_to_linear(np.array([0.235, 0.255, 0.295]))
    bottom = _srgb_to_linear(np.array([0.075, 0.08, 0.095]))
    g = top[None, None] * (1 - v[..., None]) + bottom[None, None] * v[..., None]
    cx, cy = 0.5 * width, 0.42 * height
    r = np.hypot((xx - cx) / width, (yy - cy) / height)
    glow = np.exp(-(r / 0.33) ** 2)[..., None] * _srgb_to_linear(np.array([0.10, 0.11, 0.13]))
    vignette = (1.0 - 0.55 * np.clip(r / 0.75, 0, 1) ** 2)[..., None]
    return np.ascontiguousarray((g + glow) * vignette, np.float32)


def _materials(mesh: HeadMesh) -> np.ndarray:
    """Per part: r, g, b (linear), specular, shininess, wrap (soft diffuse), cavity gain,
    base occlusion (light reaching the inside of the mouth)."""
    rows = []
    for part in mesh.parts:
        name = part.name.lower()
        rough = float(np.clip(part.roughness, 0.05, 1.0))
        glossy = any(w in name for w in GLOSSY_WORDS)
        spec = 0.05 + 0.45 * (1.0 - rough) ** 2 + (0.12 if glossy else 0.0)
        shininess = float(np.clip(2.0 / rough ** 4 - 2.0, 4.0, 400.0))
        skinlike = "skin" in name or "face" in name or "head" in name or "lip" in name
        wrap = 0.35 if skinlike else 0.15
        interior = any(w in name for w in INTERIOR_WORDS)
        cavity = 1.0 if interior else 0.6
        base = 0.72 if interior else 1.0
        rows.append([*np.clip(np.asarray(part.color, np.float64), 0, 1), spec, shininess, wrap,
                     cavity, base])
    if not rows:
        rows.append([0.8, 0.8, 0.8, 0.1, 16.0, 0.2, 0.6, 1.0])
    return np.asarray(rows, np.float32)


def _tone_lut(n: int = 4096, exposure: float = 1.0) -> np.ndarray:
    """Linear radiance (0..4 in ``n`` steps) -> sRGB display value 0..255 (float32) through a
    filmic (ACES fit) curve."""
    x = np.linspace(0.0, 4.0, n) * exposure
    a = (x * (2.51 * x + 0.03)) / (x * (2.43 * x + 0.59) + 0.14)
    a = np.clip(a, 0, 1)
    s = np.where(a <= 0.0031308, 12.92 * a, 1.055 * a ** (1 / 2.4) - 0.055)
    return np.clip(s * 255.0, 0, 255).astype(np.float32)


#: light rig (world space, directions point from the surface towards the light)
_LIGHTS = np.array([
    # dir x, y, z,            r, g, b                 (key: warm, from the viewer's upper left)
    [-0.60, 0.50, 0.70, 1.25, 1.12, 0.98],
    # fill: cool, dim, from the viewer's right and slightly below eye level
    [0.75, 0.05, 0.55, 0.13, 0.16, 0.22],
    # rim: behind and above the head, catches the silhouette
    [0.35, 0.60, -0.75, 0.70, 0.72, 0.80],
], np.float32)


class Renderer:
    """Renders a :class:`HeadMesh` posed by facecast channel values to RGB images.

    ``rmap`` maps ARKit channels to the mesh's shape keys (default: :func:`facecast.retarget.
    detect` on the mesh's keys; a mesh without matching keys still renders, unanimated).
    ``reserve_bottom`` keeps that fraction of the image free below the head for an overlay.
    A renderer reuses its buffers from frame to frame: use one per thread.
    """

    def __init__(self, mesh: HeadMesh, size: int | tuple[int, int] = 512, rmap: Any = None,
                 supersample: int = 2, fov_deg: float = 18.0, reserve_bottom: float = 0.0,
                 margin: float = 0.07, camera: Camera | None = None) -> None:
        from facecast import retarget
        from facecast.schema import ARKIT52

        self.k = require_numba()
        self.mesh = mesh
        self.width, self.height = (size, size) if isinstance(size, int) else size
        if self.width < 16 or self.height < 16:
            raise ValueError(f"image size {self.width}x{self.height} is too small (>= 16)")
        self.ss = max(1, int(supersample))
        if rmap is None and mesh.shape_keys:
            try:
                rmap = retarget.detect(mesh.shape_key_names)
            except ValueError:
                rmap = None
        self.rmap = rmap
        # ARKit vector -> shape-key weights as one matrix product
        keys = list(mesh.shape_keys)
        self._keys = keys
        self._mix = np.zeros((len(keys), len(ARKIT52)), np.float32)
        if rmap is not None:
            col = {n: i for i, n in enumerate(ARKIT52)}
            row = {n: i for i, n in enumerate(keys)}
            for arkit, target in rmap.mapped.items():
                if target in row:
                    self._mix[row[target], col[arkit]] += rmap.gain(arkit)
        self._tris = np.ascontiguousarray(mesh.triangles, np.int32)
        self._tri_part = np.concatenate(
            [np.full(len(p.triangles), i, np.int32) for i, p in enumerate(mesh.parts)]
        ) if mesh.parts else np.zeros(0, np.int32)
        self._mat = _materials(mesh)
        if camera is None:
            camera = self.default_camera(mesh, self.width, self.height, fov_deg, margin,
                                         reserve_bottom)
        self.camera = camera
        self._cam_hi = camera.scaled(self.ss)
        self._lut = _tone_lut()
        self._lut_scale = np.float32((len(self._lut) - 1) / 4.0)
        bg = _background(self.width, self.height)
        idx = np.clip((bg * self._lut_scale).astype(np.int64), 0, len(self._lut) - 1)
        self._bg = np.ascontiguousarray(self._lut[idx])
        lights = _LIGHTS.copy()
        lights[:, :3] /= np.linalg.norm(lights[:, :3], axis=1, keepdims=True)
        self._lights = lights
        # world height of the framed head (about 3/4 of what the camera sees at the target)
        dist = float(np.linalg.norm(camera.eye - camera.target))
        scale = 0.75 * 2.0 * math.tan(math.radians(camera.fov_deg) / 2) * dist
        #: depth difference (world units) at which the cavity term is at full strength
        self.cavity_depth = 0.09 * max(scale, 1e-6)
        self.cavity_radius = max(2, int(round(0.05 * self.height)))
        # background depth for the cavity term: well behind the head
        self._far = np.float32(dist + 2.0 * scale)
        hs, ws = self.height * self.ss, self.width * self.ss
        self._zbuf = np.zeros((hs, ws), np.float32)
        self._tid = np.full((hs, ws), -1, np.int32)
        self._bary = np.zeros((hs, ws, 2), np.float32)
        self._normals = np.zeros((len(mesh.positions), 3), np.float32)
        self._depth_lo = np.zeros((self.height, self.width), np.float32)
        self._cover_lo = np.zeros((self.height, self.width), np.float32)
        self._tmp = np.zeros((self.height, self.width), np.float32)
        self._cavity = np.zeros((self.height, self.width), np.float32)

    @staticmethod
    def default_camera(mesh: HeadMesh, width: int, height: int, fov_deg: float = 18.0,
                       margin: float = 0.07, reserve_bottom: float = 0.0) -> Camera:
        """Frame the head: the vertices that follow the head (``head_weights`` >= 0.5, else
        all); when the head pivot (top of the neck) lies in the lower part of that box, the box
        ends a little below the pivot, so a long neck does not shrink the face."""
        p = mesh.positions
        if len(p) == 0:
            return Camera.fit([-1, -1, -1], [1, 1, 1], width, height, fov_deg, margin,
                              reserve_bottom)
        sel = p[mesh.head_weights >= 0.5] if mesh.head_weights is not None else p
        if len(sel) < 3:
            sel = p
        lo, hi = sel.min(0).astype(np.float64), sel.max(0).astype(np.float64)
        bottom = None
        eye_y = _part_height(mesh, ("eye", "iris", "pupil", "cornea"))
        mouth_y = _part_height(mesh, ("lip", "mouth", "teeth", "tooth"))
        if eye_y is not None and mouth_y is not None and eye_y > mouth_y:
            bottom = mouth_y - 0.9 * (eye_y - mouth_y)      # a little below the chin
        else:
            pivot_y = float(mesh.head_pivot[1])
            if lo[1] < pivot_y < lo[1] + 0.4 * (hi[1] - lo[1]):
                bottom = pivot_y - 0.25 * (hi[1] - pivot_y)
        if bottom is not None and lo[1] < bottom < hi[1]:
            sel = sel[sel[:, 1] >= bottom]
            lo, hi = sel.min(0).astype(np.float64), sel.max(0).astype(np.float64)
        return Camera.fit(lo, hi, width, height, fov_deg, margin, reserve_bottom)

    # -------------------------------------------------------------------------- posing
    def shape_weights(self, arkit: np.ndarray) -> dict[str, float]:
        """The mesh's shape-key weights for 52 ARKit values (ARKit order)."""
        w = self._mix @ np.asarray(arkit, np.float32).reshape(-1)
        return {k: float(v) for k, v in zip(self._keys, w) if v != 0.0}

    def pose(self, values: np.ndarray | Mapping[str, float]) -> np.ndarray:
        """Posed vertex positions for one frame: a ``CHANNELS`` vector or a mapping by name
        (missing channels are 0)."""
        from facecast.schema import ARKIT52, CHANNEL_INDEX, CHANNELS, EYE_ROTATION, HEAD_ROTATION

        if isinstance(values, Mapping):
            vec = np.zeros(len(CHANNELS), np.float32)
            for name, v in values.items():
                vec[CHANNEL_INDEX[name]] = v
        else:
            vec = np.asarray(values, np.float32).reshape(-1)
        a = len(ARKIT52)
        head = vec[a:a + len(HEAD_ROTATION)]
        eyes = vec[a + len(HEAD_ROTATION):a + len(HEAD_ROTATION) + len(EYE_ROTATION)]
        return self.mesh.deform(self.shape_weights(vec[:a]), head_rotation=head,
                                eye_rotation=eyes)

    # -------------------------------------------------------------------------- drawing
    def render(self, values: np.ndarray | Mapping[str, float] | None = None,
               out: np.ndarray | None = None) -> np.ndarray:
        """One RGB frame (H, W, 3) uint8 for a ``CHANNELS`` vector or mapping (None = rest)."""
        positions = self.mesh.positions if values is None else self.pose(values)
        return self.render_positions(positions, out)

    def render_positions(self, positions: np.ndarray, out: np.ndarray | None = None
                         ) -> np.ndarray:
        """One RGB frame of the mesh at explicit vertex ``positions`` (N, 3)."""
        k = self.k
        pos = np.ascontiguousarray(positions, np.float32)
        k.vertex_normals(pos, self._tris, self._normals)
        x, y, d = self._cam_hi.project(pos)
        self._zbuf.fill(0.0)
        self._tid.fill(-1)
        k.rasterize(x, y, d, self._tris, self._zbuf, self._tid, self._bary)
        k.downsample_depth(self._zbuf, self.ss, self._depth_lo, self._cover_lo)
        k.cavity(self._depth_lo, self._cover_lo, self.cavity_radius, self.cavity_depth,
                 self._far, self._tmp, self._cavity)
        if out is None:
            out = np.empty((self.height, self.width, 3), np.uint8)
        eye = self.camera.eye.astype(np.float32)
        k.shade(self._tid, self._zbuf, self._bary, self.ss, pos, self._normals, self._tris,
                self._tri_part, self._mat, self._lights, eye, self._cavity, self._bg,
                self._lut, self._lut_scale, out)
        return out

    def coverage(self) -> np.ndarray:
        """Fraction of each output pixel covered by the mesh in the last frame (H, W)."""
        return self._cover_lo.copy()
