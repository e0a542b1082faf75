"""numba kernels of the preview renderer (imported only through ``raster.require_numba``).

Single-threaded and GIL-free (``nogil``) so that encoding and Python-side work can overlap;
compiled on first use and cached beside this file (or in numba's user cache).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

_JIT = dict(cache=True, nogil=True, fastmath=True, error_model="numpy")


@njit(**_JIT)
def vertex_normals(pos, tris, out):  # pragma: no cover - compiled
    """Area-weighted unit vertex normals (winding-defined) of ``pos`` into ``out``."""
    out[:] = 0.0
    for t in range(tris.shape[0]):
        i0, i1, i2 = tris[t, 0], tris[t, 1], tris[t, 2]
        ax = pos[i1, 0] - pos[i0, 0]
        ay = pos[i1, 1] - pos[i0, 1]
        az = pos[i1, 2] - pos[i0, 2]
        bx = pos[i2, 0] - pos[i0, 0]
        by = pos[i2, 1] - pos[i0, 1]
        bz = pos[i2, 2] - pos[i0, 2]
        nx = ay * bz - az * by
        ny = az * bx - ax * bz
        nz = ax * by - ay * bx
        for i in (i0, i1, i2):
            out[i, 0] += nx
            out[i, 1] += ny
            out[i, 2] += nz
    for i in range(out.shape[0]):
        n = math.sqrt(out[i, 0] ** 2 + out[i, 1] ** 2 + out[i, 2] ** 2)
        if n > 1e-20:
            out[i, 0] /= n
            out[i, 1] /= n
            out[i, 2] /= n
        else:
            out[i, 0] = 0.0
            out[i, 1] = 0.0
            out[i, 2] = 1.0


@njit(**_JIT)
def rasterize(x, y, d, tris, zbuf, tid, bary):  # pragma: no cover - compiled
    """Z-buffered triangle rasterisation (both windings) into ``zbuf`` (1/depth, larger is
    nearer), ``tid`` (triangle index) and ``bary`` (perspective-correct b1, b2). Pixel centres
    sit at +0.5; triangles with a vertex behind the near plane are skipped."""
    h, w = zbuf.shape
    near = 1e-4
    for t in range(tris.shape[0]):
        i0, i1, i2 = tris[t, 0], tris[t, 1], tris[t, 2]
        d0, d1, d2 = d[i0], d[i1], d[i2]
        if d0 <= near or d1 <= near or d2 <= near:
            continue
        x0, y0, x1, y1, x2, y2 = x[i0], y[i0], x[i1], y[i1], x[i2], y[i2]
        area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
        if abs(area) < 1e-12:
            continue
        xmin = max(0, int(math.ceil(min(x0, x1, x2) - 0.5)))
        xmax = min(w - 1, int(math.floor(max(x0, x1, x2) - 0.5)))
        ymin = max(0, int(math.ceil(min(y0, y1, y2) - 0.5)))
        ymax = min(h - 1, int(math.floor(max(y0, y1, y2) - 0.5)))
        if xmin > xmax or ymin > ymax:
            continue
        ia = 1.0 / area
        iz0, iz1, iz2 = 1.0 / d0, 1.0 / d1, 1.0 / d2
        # edge functions (normalised barycentrics) and their x steps
        a0x, a0y = -(y2 - y1) * ia, (x2 - x1) * ia
        a1x, a1y = -(y0 - y2) * ia, (x0 - x2) * ia
        a2x, a2y = -(y1 - y0) * ia, (x1 - x0) * ia
        eps = -1e-6
        for py in range(ymin, ymax + 1):
            cy = py + 0.5
            # barycentrics at x = 0 on this row; each is linear in x with slope a*x, so the
            # row's inside span is an interval found with three divisions
            e0 = ((x2 - x1) * (cy - y1) + (y2 - y1) * x1) * ia
            e1 = ((x0 - x2) * (cy - y2) + (y0 - y2) * x2) * ia
            e2 = ((x1 - x0) * (cy - y0) + (y1 - y0) * x0) * ia
            lo = xmin + 0.5
            hi = xmax + 0.5
            empty = False
            for e, a in ((e0, a0x), (e1, a1x), (e2, a2x)):
                if a > 0.0:
                    lo = max(lo, (eps - e) / a)
                elif a < 0.0:
                    hi = min(hi, (eps - e) / a)
                elif e < eps:
                    empty = True
            if empty:
                continue
            pxa = max(xmin, int(math.ceil(lo - 0.5)))
            pxb = min(xmax, int(math.floor(hi - 0.5)))
            if pxa > pxb:
                continue
            cx = pxa + 0.5
            f0 = e0 + a0x * cx
            f1 = e1 + a1x * cx
            f2 = e2 + a2x * cx
            for px in range(pxa, pxb + 1):
                w1 = f1 * iz1
                w2 = f2 * iz2
                iz = f0 * iz0 + w1 + w2
                if iz > zbuf[py, px]:
                    zbuf[py, px] = iz
                    tid[py, px] = t
                    bary[py, px, 0] = w1 / iz
                    bary[py, px, 1] = w2 / iz
                f0 += a0x
                f1 += a1x
                f2 += a2x


@njit(**_JIT)
def downsample_depth(zbuf, ss, depth, cover):  # pragma: no cover - compiled
    """Per output pixel: mean depth of the covered samples (0 if none) and covered fraction."""
    h, w = depth.shape
    inv = 1.0 / (ss * ss)
    for oy in range(h):
        for ox in range(w):
            s = 0.0
            n = 0
            for sy in range(ss):
                for sx in range(ss):
                    iz = zbuf[oy * ss + sy, ox * ss + sx]
                    if iz > 0.0:
                        s += 1.0 / iz
                        n += 1
            depth[oy, ox] = s / n if n else 0.0
            cover[oy, ox] = n * inv


@njit(**_JIT)
def _box(src, r, tmp, dst, acc):  # pragma: no cover - compiled
    """Separable box filter of radius r (window 2r+1, zero outside) from src into dst;
    ``acc`` is a scratch row."""
    h, w = src.shape
    for yy in range(h):
        a = 0.0
        for xx in range(min(r, w - 1) + 1):
            a += src[yy, xx]
        for xx in range(w):
            tmp[yy, xx] = a
            if xx + r + 1 < w:
                a += src[yy, xx + r + 1]
            if xx - r >= 0:
                a -= src[yy, xx - r]
    acc[:] = 0.0
    for yy in range(min(r, h - 1) + 1):
        for xx in range(w):
            acc[xx] += tmp[yy, xx]
    for yy in range(h):
        lo = yy - r
        hi = yy + r + 1
        for xx in range(w):
            dst[yy, xx] = acc[xx]
        if hi < h:
            for xx in range(w):
                acc[xx] += tmp[hi, xx]
        if lo >= 0:
            for xx in range(w):
                acc[xx] -= tmp[lo, xx]


@njit(**_JIT)
def cavity(depth, cover, r, scale, far, tmp, out):  # pragma: no cover - compiled
    """Depth unsharp masking: 0..1 per pixel, how far (relative to ``scale``) the surface lies
    behind the blur (twice a box of radius r) of its neighbourhood. Background counts as depth
    ``far``, so the rim of a convex silhouette does not read as a cavity."""
    h, w = depth.shape
    a = np.empty((h, w), np.float32)
    b = np.empty((h, w), np.float32)
    acc = np.empty(w, np.float64)
    for yy in range(h):
        for xx in range(w):
            c = cover[yy, xx]
            a[yy, xx] = (depth[yy, xx] - far) * c  # relative to far: outside the image is far
    _box(a, r, tmp, b, acc)
    _box(b, r, tmp, a, acc)
    norm = 1.0 / ((2 * r + 1) * (2 * r + 1)) ** 2
    for yy in range(h):
        for xx in range(w):
            if cover[yy, xx] <= 0.0:
                out[yy, xx] = 0.0
                continue
            diff = (depth[yy, xx] - far - a[yy, xx] * norm) / scale
            if diff <= 0.0:
                out[yy, xx] = 0.0
            elif diff >= 1.0:
                out[yy, xx] = 1.0
            else:
                out[yy, xx] = diff * diff * (3.0 - 2.0 * diff)


@njit(**_JIT, inline="always")
def _sample(t, b1, b2, occl_px, pos, nrm, tris, tri_part, mat, lights, ex, ey, ez, lut,
            lut_scale):  # pragma: no cover - compiled
    """Display-space (0..255) colour of one covered sample."""
    nlut = lut.shape[0] - 1
    i0, i1, i2 = tris[t, 0], tris[t, 1], tris[t, 2]
    b0 = 1.0 - b1 - b2
    px = b0 * pos[i0, 0] + b1 * pos[i1, 0] + b2 * pos[i2, 0]
    py = b0 * pos[i0, 1] + b1 * pos[i1, 1] + b2 * pos[i2, 1]
    pz = b0 * pos[i0, 2] + b1 * pos[i1, 2] + b2 * pos[i2, 2]
    nx = b0 * nrm[i0, 0] + b1 * nrm[i1, 0] + b2 * nrm[i2, 0]
    ny = b0 * nrm[i0, 1] + b1 * nrm[i1, 1] + b2 * nrm[i2, 1]
    nz = b0 * nrm[i0, 2] + b1 * nrm[i1, 2] + b2 * nrm[i2, 2]
    nn = math.sqrt(nx * nx + ny * ny + nz * nz) + 1e-12
    nx /= nn
    ny /= nn
    nz /= nn
    vx = ex - px
    vy = ey - py
    vz = ez - pz
    vn = math.sqrt(vx * vx + vy * vy + vz * vz) + 1e-12
    vx /= vn
    vy /= vn
    vz /= vn
    # two-sided: a triangle seen from its back gets its normals flipped
    qx = pos[i1, 0] - pos[i0, 0]
    qy = pos[i1, 1] - pos[i0, 1]
    qz = pos[i1, 2] - pos[i0, 2]
    rx = pos[i2, 0] - pos[i0, 0]
    ry = pos[i2, 1] - pos[i0, 1]
    rz = pos[i2, 2] - pos[i0, 2]
    fx = qy * rz - qz * ry
    fy = qz * rx - qx * rz
    fz = qx * ry - qy * rx
    if fx * (ex - pos[i0, 0]) + fy * (ey - pos[i0, 1]) + fz * (ez - pos[i0, 2]) < 0:
        nx = -nx
        ny = -ny
        nz = -nz
    ndv = nx * vx + ny * vy + nz * vz
    if ndv < 0.0:
        ndv = 0.0
    m = tri_part[t]
    cr, cg, cb = mat[m, 0], mat[m, 1], mat[m, 2]
    spec, shin, wrap, cgain = mat[m, 3], mat[m, 4], mat[m, 5], mat[m, 6]
    occl = (1.0 - 0.92 * occl_px * cgain) * mat[m, 7]
    # sky/ground ambient
    hemi = 0.5 + 0.5 * ny
    dr = 0.035 + 0.06 * hemi
    dg = 0.03 + 0.07 * hemi
    db = 0.03 + 0.09 * hemi
    sr = 0.0
    sg = 0.0
    sb = 0.0
    for li in range(lights.shape[0]):
        lx, ly, lz = lights[li, 0], lights[li, 1], lights[li, 2]
        ndl = nx * lx + ny * ly + nz * lz
        dif = (ndl + wrap) / (1.0 + wrap)
        if dif > 0.0:
            dr += dif * lights[li, 3]
            dg += dif * lights[li, 4]
            db += dif * lights[li, 5]
        if ndl > 0.0:
            hx = lx + vx
            hy = ly + vy
            hz = lz + vz
            hn = math.sqrt(hx * hx + hy * hy + hz * hz) + 1e-12
            ndh = (nx * hx + ny * hy + nz * hz) / hn
            if ndh > 0.0:
                # Schlick's cheap stand-in for ndh ** shin, energy-normalised Blinn-Phong
                s = spec * (shin + 8.0) * 0.0398 * ndh / (shin - shin * ndh + ndh) * ndl
                sr += s * lights[li, 3]
                sg += s * lights[li, 4]
                sb += s * lights[li, 5]
    f = 1.0 - ndv
    f = f * f * f * 0.5 * occl
    lr = (cr * dr + sr) * occl + f * 0.55
    lg = (cg * dg + sg) * occl + f * 0.60
    lb = (cb * db + sb) * occl + f * 0.72
    return (lut[max(0, min(nlut, int(lr * lut_scale)))],
            lut[max(0, min(nlut, int(lg * lut_scale)))],
            lut[max(0, min(nlut, int(lb * lut_scale)))])


@njit(**_JIT)
def shade(tid, zbuf, bary, ss, pos, nrm, tris, tri_part, mat, lights, eye, cav, bg, lut,
          lut_scale, out):  # pragma: no cover - compiled
    """Deferred shading, tone mapped through ``lut`` (display values 0..255, float) and
    averaged into ``out`` (H, W, 3) uint8; ``bg`` is the background in display values.

    A pixel whose samples all hit one material at one depth is shaded once (its interior
    varies smoothly); the others -- silhouettes, lip lines, eyelids -- sample by sample."""
    h, w = out.shape[0], out.shape[1]
    inv = 1.0 / (ss * ss)
    ex, ey, ez = eye[0], eye[1], eye[2]
    c = ss // 2
    for oy in range(h):
        for ox in range(w):
            occl_px = cav[oy, ox]
            t0 = tid[oy * ss + c, ox * ss + c]
            uniform = t0 >= 0
            if uniform:
                m0 = tri_part[t0]
                z0 = zbuf[oy * ss + c, ox * ss + c]
                for sy in range(ss):
                    for sx in range(ss):
                        t = tid[oy * ss + sy, ox * ss + sx]
                        if t < 0 or tri_part[t] != m0 or \
                                abs(zbuf[oy * ss + sy, ox * ss + sx] - z0) > 0.004 * z0:
                            uniform = False
            if uniform:
                hy = oy * ss + c
                hx = ox * ss + c
                r, g, b = _sample(t0, bary[hy, hx, 0], bary[hy, hx, 1], occl_px, pos, nrm,
                                  tris, tri_part, mat, lights, ex, ey, ez, lut, lut_scale)
                out[oy, ox, 0] = np.uint8(min(255.0, r + 0.5))
                out[oy, ox, 1] = np.uint8(min(255.0, g + 0.5))
                out[oy, ox, 2] = np.uint8(min(255.0, b + 0.5))
                continue
            ar = 0.0
            ag = 0.0
            ab = 0.0
            for sy in range(ss):
                for sx in range(ss):
                    hy = oy * ss + sy
                    hx = ox * ss + sx
                    t = tid[hy, hx]
                    if t < 0:
                        ar += bg[oy, ox, 0]
                        ag += bg[oy, ox, 1]
                        ab += bg[oy, ox, 2]
                        continue
                    r, g, b = _sample(t, bary[hy, hx, 0], bary[hy, hx, 1], occl_px, pos, nrm,
                                      tris, tri_part, mat, lights, ex, ey, ez, lut, lut_scale)
                    ar += r
                    ag += g
                    ab += b
            out[oy, ox, 0] = np.uint8(min(255.0, ar * inv + 0.5))
            out[oy, ox, 1] = np.uint8(min(255.0, ag * inv + 0.5))
            out[oy, ox, 2] = np.uint8(min(255.0, ab * inv + 0.5))
