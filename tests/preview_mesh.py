"""A small procedural test head for the preview tests (no dependency on the demo head).

An ellipsoid skin with a lip slit in front, a dark mouth-interior sac, a row of teeth and two
eyes, with three ARKit-named shape keys: ``jawOpen`` (the lower lip and chin drop and the slit
opens), ``mouthClose`` (lips pressed), ``mouthSmileLeft``/``Right`` (corners up and out).
"""
from __future__ import annotations

import numpy as np

from facecast.mesh import HeadMesh, MeshPart


def _uv_sphere(n_lat: int, n_lon: int) -> tuple[np.ndarray, np.ndarray]:
    lat = np.linspace(0, np.pi, n_lat + 1)
    lon = np.linspace(-np.pi, np.pi, n_lon + 1)[:-1]
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    # +Z is the face direction: longitude 0 faces +Z
    p = np.stack([np.sin(la) * np.sin(lo), np.cos(la), np.sin(la) * np.cos(lo)], -1)
    p = p.reshape(-1, 3)
    tris = []
    for i in range(n_lat):
        for j in range(n_lon):
            a = i * n_lon + j
            b = i * n_lon + (j + 1) % n_lon
            c = (i + 1) * n_lon + j
            d = (i + 1) * n_lon + (j + 1) % n_lon
            tris += [(a, c, b), (b, c, d)]  # outward (counter-clockwise seen from outside)
    return p, np.asarray(tris, np.int64)


def make_test_head(n_lat: int = 48, n_lon: int = 64) -> HeadMesh:
    sp, st = _uv_sphere(n_lat, n_lon)
    radii = np.array([0.075, 0.105, 0.09])
    skin = sp * radii + [0, 0.02, 0]
    # lip slit: triangles whose centre is in a thin band in front, below the middle
    centre = skin[st].mean(1)
    mouth_y = -0.03
    slit = (np.abs(centre[:, 1] - mouth_y) < 0.004) & (np.abs(centre[:, 0]) < 0.024) \
        & (centre[:, 2] > 0)
    skin_tris = st[~slit]
    positions = [skin]
    parts = []
    base = 0

    def add(points: np.ndarray, tris: np.ndarray) -> np.ndarray:
        nonlocal base
        positions.append(points)
        t = tris + base
        base += len(points)
        return t

    base = len(skin)
    # mouth interior: the back half of a small sphere behind the slit, facing forward
    ip, it = _uv_sphere(12, 16)
    inner = ip * [0.026, 0.02, 0.03] + [0, mouth_y - 0.004, 0.05]
    it = it[inner[it].mean(1)[:, 2] < 0.05]
    inner_t = add(inner, it[:, ::-1])
    # teeth: a thin curved strip behind the upper lip
    tp, tt = _uv_sphere(6, 16)
    teeth = tp * [0.02, 0.004, 0.004] + [0, mouth_y + 0.003, 0.077]
    teeth_t = add(teeth, tt)
    eyes = {}
    eye_t = []
    for side, x in (("left", 0.03), ("right", -0.03)):
        ep, et = _uv_sphere(10, 14)
        c = np.array([x, 0.035, 0.07])
        eyes[side] = (np.arange(len(ep)) + base, c)
        eye_t.append(add(ep * 0.012 + c, et))
    pos = np.concatenate(positions).astype(np.float32)
    n = len(pos)
    parts = [
        MeshPart("skin", skin_tris, (0.50, 0.26, 0.19), 0.55),
        MeshPart("mouth_interior", inner_t, (0.30, 0.06, 0.06), 0.5),
        MeshPart("teeth", teeth_t, (0.85, 0.83, 0.78), 0.3),
        MeshPart("eyes", np.concatenate(eye_t), (0.85, 0.85, 0.85), 0.2),
    ]
    # shape keys on the skin: the region below the slit drops with the jaw
    keys = {}
    s = skin
    front = np.clip(s[:, 2] / 0.09, 0, 1) ** 2
    below = np.clip((mouth_y - s[:, 1]) / 0.06 + 1.0, 0, 1) * (s[:, 1] < mouth_y + 0.001)
    jaw = np.zeros((n, 3), np.float32)
    jaw[: len(s), 1] = -0.022 * below * front
    jaw[: len(s), 2] = -0.004 * below * front
    keys["jawOpen"] = jaw
    near_mouth = np.exp(-((s[:, 0] / 0.03) ** 2 + ((s[:, 1] - mouth_y) / 0.012) ** 2)) * front
    close = np.zeros((n, 3), np.float32)
    close[: len(s), 1] = 0.006 * near_mouth * np.sign(mouth_y - s[:, 1])
    keys["mouthClose"] = close
    for side, sign in (("Left", 1.0), ("Right", -1.0)):
        corner = np.exp(-(((s[:, 0] - sign * 0.024) / 0.012) ** 2
                          + ((s[:, 1] - mouth_y) / 0.012) ** 2)) * front
        d = np.zeros((n, 3), np.float32)
        d[: len(s), 0] = sign * 0.006 * corner
        d[: len(s), 1] = 0.007 * corner
        keys[f"mouthSmile{side}"] = d
    return HeadMesh(
        "test_head", pos, parts, keys, head_pivot=np.array([0, -0.08, 0], np.float32),
        eye_pivots={s: c for s, (_, c) in eyes.items()},
        eye_vertices={s: idx for s, (idx, _) in eyes.items()},
    )


def make_quad(half: float = 0.1, z: float = 0.0) -> HeadMesh:
    """A flat square facing +Z (the camera), centred on the origin."""
    p = np.array([[-half, -half, z], [half, -half, z], [half, half, z], [-half, half, z]],
                 np.float32)
    return HeadMesh("quad", p, [MeshPart("quad", np.array([[0, 1, 2], [0, 2, 3]]),
                                         (0.8, 0.8, 0.8))])
