"""The built-in demo head: topology, materials, and that every ARKit shape key does what its
name says (in the right direction, on the right side), mirrored left/right."""
from __future__ import annotations

import time

import numpy as np
import pytest

from facecast import demohead
from facecast.demohead import demo_head, demo_landmarks, demo_mirror
from facecast.mesh import HeadMesh
from facecast.schema import ARKIT52

MM = 0.001


@pytest.fixture(scope="module")
def head() -> HeadMesh:
    return demo_head()


@pytest.fixture(scope="module")
def lm() -> dict[str, np.ndarray]:
    return demo_landmarks()


def moved(head: HeadMesh, key: str, ids) -> np.ndarray:
    """Displacement of vertices ``ids`` at weight 1 of ``key``."""
    return head.shape_keys[key][np.asarray(ids)].astype(np.float64)


def mean_moved(head: HeadMesh, key: str, ids) -> np.ndarray:
    return moved(head, key, ids).mean(axis=0)


# ------------------------------------------------------------------------------------------
# construction
# ------------------------------------------------------------------------------------------
def test_build_is_fast_and_cached(head):
    t0 = time.perf_counter()
    demohead._build()
    assert time.perf_counter() - t0 < 2.0          # well under 1 s on an idle machine
    assert demo_head() is head


def test_size_parts_and_keys(head):
    n_tris = len(head.triangles)
    assert 5000 <= n_tris <= 20000
    names = {p.name for p in head.parts}
    assert {"skin", "lips", "mouth", "teeth", "tongue", "eye_white", "iris", "pupil"} <= names
    assert tuple(head.shape_keys) == ARKIT52
    colors = {p.name: p.color for p in head.parts}
    assert colors["lips"] != colors["skin"] and colors["iris"] != colors["eye_white"]
    for name, delta in head.shape_keys.items():
        assert delta.shape == head.positions.shape and delta.dtype == np.float32
        assert np.all(np.isfinite(delta))
        assert np.abs(delta).max() > 1 * MM, name      # every key visibly moves something
    # metres, +Y up, +Z forward: a head about 22-30 cm tall, nose in front
    lo, hi = head.positions.min(axis=0), head.positions.max(axis=0)
    assert 0.12 < hi[0] - lo[0] < 0.22 and 0.25 < hi[1] - lo[1] < 0.40
    assert head.positions[:, 2].argmax() in set(np.flatnonzero(np.abs(head.positions[:, 0]) < 0.01))


def test_colors_are_linear_and_read_right(head):
    """Part colours are picked in sRGB and stored linear (MeshPart.color, glTF baseColorFactor)."""
    to_lin = demohead.srgb_to_linear
    assert to_lin((0.0, 0.04045, 1.0)) == pytest.approx((0.0, 0.04045 / 12.92, 1.0))
    assert to_lin((0.5, 0.5, 0.5))[0] == pytest.approx(0.21404, abs=1e-5)
    colors = {p.name: np.asarray(p.color) for p in head.parts}
    for name, (srgb, rough) in demohead.COLORS_SRGB.items():
        assert colors[name] == pytest.approx(np.asarray(to_lin(srgb)), abs=1e-6), name
        assert np.all(colors[name] <= np.asarray(srgb) + 1e-9)     # linear is never lighter
    lum = {k: float(c @ [0.2126, 0.7152, 0.0722]) for k, c in colors.items()}
    skin, lips = colors["skin"], colors["lips"]
    assert skin[0] > skin[1] > skin[2] and 0.2 < lum["skin"] < 0.6    # warm, not washed out
    assert lips[0] / lips[1] > skin[0] / skin[1] and lum["lips"] < lum["skin"]  # redder, darker
    mouth = colors["mouth"]
    assert mouth[0] > 2 * mouth[1] and lum["mouth"] < 0.1                 # dark red
    assert lum["teeth"] > 0.7 and lum["eye_white"] > 0.7 and lum["pupil"] < 0.01
    iris = colors["iris"]
    assert iris.max() - iris.min() > 0.2                                # a clear colour


def test_neck_is_plausible(head, lm):
    """A neck, not a post: wide (a good part of the head's width), short below the jaw, and
    flaring a little towards the shoulders."""
    p = head.positions.astype(np.float64)
    parts = {q.name: q.triangles for q in head.parts}
    e = _edges(np.concatenate([parts["skin"], parts["lips"]]))

    def width(y):
        """Width (x) of the skin's cross-section at height y."""
        ya, yb = p[e[:, 0], 1] - y, p[e[:, 1], 1] - y
        cut = ya * yb < 0
        t = ya[cut] / (ya[cut] - yb[cut])
        x = p[e[cut, 0], 0] + t * (p[e[cut, 1], 0] - p[e[cut, 0], 0])
        return x.max() - x.min()

    head_w = width(float(head.eye_pivots["left"][1]))
    top = float(head.head_pivot[1]) - 0.03
    assert 0.5 * head_w < width(top) < 0.8 * head_w                     # head_w with ears
    assert width(demohead.NECK_Y + 0.005) > width(top) + 0.02          # flares downwards
    chin = p[lm["chin"], 1].min()
    assert chin - demohead.NECK_Y < 0.13                                # no long post


def _edges(tris: np.ndarray) -> np.ndarray:
    return np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]]).astype(np.int64)


def _check_oriented(tris: np.ndarray) -> np.ndarray:
    """Assert every directed edge is used once (consistent winding, manifold); return the
    boundary edges (used in one direction only)."""
    e = _edges(tris)
    key = e[:, 0] * 10**6 + e[:, 1]
    assert len(np.unique(key)) == len(key), "an edge is used twice in the same direction"
    rev = set((e[:, 1] * 10**6 + e[:, 0]).tolist())
    return e[[k not in rev for k in key.tolist()]]


def test_no_degenerate_triangles(head):
    p = head.positions.astype(np.float64)
    t = head.triangles.astype(np.int64)
    area = 0.5 * np.linalg.norm(np.cross(p[t[:, 1]] - p[t[:, 0]], p[t[:, 2]] - p[t[:, 0]]), axis=1)
    assert area.min() > 1e-10


def test_skin_is_consistently_wound_and_outward(head, lm):
    parts = {p.name: p.triangles for p in head.parts}
    skin = np.concatenate([parts["skin"], parts["lips"]])
    boundary = _check_oriented(skin)
    # holes only where they belong: the neck's bottom, the eye slits, the inner lip strips
    allowed = set(np.concatenate([lm["lid_upper_left"], lm["lid_lower_left"],
                                  lm["lid_upper_right"], lm["lid_lower_right"],
                                  lm["lip_strips"], lm["mouth_corner_left"],
                                  lm["mouth_corner_right"]]).tolist())
    eye_corner_ok = set()
    p = head.positions
    for v in np.unique(boundary):
        if v in allowed or abs(p[v, 1] - demohead.NECK_Y) < 1e-5:
            continue
        eye_corner_ok.add(int(v))
    # the slit end vertices (eye corners) are shared by upper and lower lid
    for v in eye_corner_ok:
        d = min(np.linalg.norm(p[v] - p[lm[f"lid_upper_{s}"]], axis=1).min()
                for s in ("left", "right"))
        assert d < 6 * MM, f"unexpected hole at vertex {v} {p[v]}"
    # outward: normals point away from the head's centre (the inner lip strips face the mouth)
    skin = skin[~np.isin(skin, lm["lip_strips"]).any(axis=1)]
    pp = p.astype(np.float64)
    n = np.cross(pp[skin[:, 1]] - pp[skin[:, 0]], pp[skin[:, 2]] - pp[skin[:, 0]])
    c = pp[skin].mean(axis=1) - demohead.C0
    assert np.mean(np.einsum("ij,ij->i", n, c) > 0) > 0.995


@pytest.mark.parametrize("side", ["left", "right"])
def test_eyeballs_closed_outward_and_rotate_about_pivot(head, lm, side):
    ids = set(lm[f"eye_{side}"].tolist())
    tris = np.concatenate([p.triangles for p in head.parts
                           if p.name in ("eye_white", "iris", "pupil")])
    mine = tris[np.isin(tris[:, 0], list(ids))]
    assert len(_check_oriented(mine)) == 0                     # closed
    p = head.positions.astype(np.float64)
    c = head.eye_pivots[side]
    n = np.cross(p[mine[:, 1]] - p[mine[:, 0]], p[mine[:, 2]] - p[mine[:, 0]])
    assert np.all(np.einsum("ij,ij->i", n, p[mine].mean(axis=1) - c) > 0)
    assert set(head.eye_vertices[side].tolist()) == ids
    # the pupil looks forward at rest and rotates with the eye channels
    pupil = lm[f"pupil_{side}"]
    assert np.all(p[pupil, 2] > c[2] + 0.9 * demohead.EYE_RADIUS)
    eye = (0.3, 0.0, 0.0, 0.0) if side == "left" else (0.0, 0.0, 0.3, 0.0)
    posed = head.deform(eye_rotation=eye)
    idx = head.eye_vertices[side]
    assert np.allclose(np.linalg.norm(posed[idx] - c, axis=1),
                       np.linalg.norm(p[idx] - c, axis=1), atol=1e-6)
    assert posed[pupil, 0].mean() > p[pupil, 0].mean() + 3 * MM   # yaw > 0 looks to +X


def test_other_closed_parts(head, lm):
    parts = {p.name: p.triangles for p in head.parts}
    assert len(_check_oriented(parts["tongue"])) == 0
    assert len(_check_oriented(parts["teeth"])) == 0
    _check_oriented(parts["mouth"])


def test_head_pivot_and_weights(head):
    p = head.positions
    w = head.head_weights
    pivot = head.head_pivot
    skin = demo_landmarks()["skin"]
    assert abs(pivot[0]) < 1e-6 and demohead.NECK_Y < pivot[1] < -0.05
    assert np.all(w[p[:, 1] > pivot[1]] == 1.0)
    bottom = skin[np.abs(p[skin, 1] - demohead.NECK_Y) < 1e-5]
    assert len(bottom) > 20 and np.all(w[bottom] == 0.0)
    neck = skin[(p[skin, 1] < pivot[1]) & (np.abs(p[skin, 0]) < 0.01)]
    order = np.argsort(p[neck, 1])
    assert np.all(np.diff(w[neck][order]) >= -1e-6)      # falls off monotonically downwards
    posed = head.deform(head_rotation=(0.4, 0.0, 0.0))
    assert np.allclose(posed[bottom], p[bottom], atol=1e-6)  # the body stays


# ------------------------------------------------------------------------------------------
# shape keys: what each name says
# ------------------------------------------------------------------------------------------
def test_jaw_open(head, lm):
    d_lower = mean_moved(head, "jawOpen", lm["lip_lower_mid"])
    assert d_lower[1] < -15 * MM
    assert np.abs(moved(head, "jawOpen", lm["lip_upper_mid"])).max() < 1e-6
    assert np.abs(moved(head, "jawOpen", lm["teeth_upper"])).max() < 1e-6
    assert mean_moved(head, "jawOpen", lm["teeth_lower"])[1] < -10 * MM
    assert mean_moved(head, "jawOpen", lm["tongue"])[1] < -5 * MM
    assert mean_moved(head, "jawOpen", lm["chin"])[1] < -10 * MM
    # a rotation about the hinge: the lower teeth keep their distances to the hinge axis
    p = head.positions.astype(np.float64)
    ids = lm["teeth_lower"]
    q = p[ids] + moved(head, "jawOpen", ids)
    r0 = np.linalg.norm((p[ids] - demohead.JAW_HINGE)[:, 1:], axis=1)
    r1 = np.linalg.norm((q - demohead.JAW_HINGE)[:, 1:], axis=1)
    assert np.allclose(r0, r1, atol=1e-6)
    # it opens a real gap between the lips (the inside becomes visible)
    posed = head.deform({"jawOpen": 1.0})
    gap = posed[lm["lip_upper_mid"], 1] - posed[lm["lip_lower_mid"], 1]
    assert gap[0] > 20 * MM


def test_mouth_close_closes_lips_with_jaw_open(head, lm):
    up, lo = lm["lip_upper_edge"], lm["lip_lower_edge"]
    open_ = head.deform({"jawOpen": 1.0})
    closed = head.deform({"jawOpen": 1.0, "mouthClose": 1.0})
    gap_open = np.linalg.norm(open_[up] - open_[lo], axis=1)
    gap_closed = np.linalg.norm(closed[up] - closed[lo], axis=1)
    assert gap_open.max() > 20 * MM
    assert gap_closed.max() < 1.5 * MM
    assert np.abs(moved(head, "mouthClose", lm["teeth_lower"])).max() == 0.0


def test_funnel_and_pucker_are_distinct(head, lm):
    cl, cr = lm["mouth_corner_left"], lm["mouth_corner_right"]
    up, lo = lm["lip_upper_mid"], lm["lip_lower_mid"]
    res = {}
    for key in ("mouthFunnel", "mouthPucker"):
        posed = head.deform({key: 1.0})
        width = posed[cl, 0][0] - posed[cr, 0][0]
        gap = posed[up, 1][0] - posed[lo, 1][0]
        fwd = mean_moved(head, key, np.concatenate([up, lo]))[2]
        res[key] = (width, gap, fwd)
    w0 = head.positions[cl, 0][0] - head.positions[cr, 0][0]
    assert res["mouthFunnel"][1] > 4 * MM          # funnel opens the lips
    assert res["mouthPucker"][1] < 1 * MM          # pucker keeps them together
    assert res["mouthPucker"][0] < 0.7 * w0        # pucker narrows strongly
    assert res["mouthPucker"][0] < res["mouthFunnel"][0] - 3 * MM
    assert res["mouthFunnel"][2] > 5 * MM and res["mouthPucker"][2] > 8 * MM


@pytest.mark.parametrize("side,sign", [("Left", 1.0), ("Right", -1.0)])
def test_mouth_corner_keys(head, lm, side, sign):
    me = lm[f"mouth_corner_{side.lower()}"]
    other = lm["mouth_corner_right" if side == "Left" else "mouth_corner_left"]
    d = mean_moved(head, f"mouthSmile{side}", me)
    assert d[1] > 5 * MM and sign * d[0] > 3 * MM                       # up and outward
    assert np.abs(moved(head, f"mouthSmile{side}", other)).max() < 1e-6
    d = mean_moved(head, f"mouthFrown{side}", me)
    assert d[1] < -5 * MM
    d = mean_moved(head, f"mouthDimple{side}", me)
    assert d[2] < -5 * MM                                                # back into the cheek
    d = mean_moved(head, f"mouthStretch{side}", me)
    assert sign * d[0] > 6 * MM and d[1] < 0                            # sideways and down


@pytest.mark.parametrize("side,sign", [("Left", 1.0), ("Right", -1.0)])
def test_lip_side_keys(head, lm, side, sign):
    p = head.positions
    up_edge, lo_edge = lm["lip_upper_edge"], lm["lip_lower_edge"]
    mine_up = up_edge[sign * p[up_edge, 0] > 5 * MM]
    mine_lo = lo_edge[sign * p[lo_edge, 0] > 5 * MM]
    theirs_up = up_edge[sign * p[up_edge, 0] < -15 * MM]
    assert mean_moved(head, f"mouthUpperUp{side}", mine_up)[1] > 3 * MM
    assert np.abs(moved(head, f"mouthUpperUp{side}", mine_lo)).max() < 1e-6
    assert np.abs(moved(head, f"mouthUpperUp{side}", theirs_up)).max() < 1e-6
    assert mean_moved(head, f"mouthLowerDown{side}", mine_lo)[1] < -3 * MM
    assert np.abs(moved(head, f"mouthLowerDown{side}", mine_up)).max() < 1e-6
    # press: lip bulk moves towards the seam on that side only
    skin = lm["skin"]
    y0 = p[up_edge, 1].mean()
    bulk_up = skin[(np.abs(p[skin, 1] - y0 - 5 * MM) < 2 * MM) & (sign * p[skin, 0] > 5 * MM)
                   & (sign * p[skin, 0] < 18 * MM) & (p[skin, 2] > 0.06)]
    bulk_lo = skin[(np.abs(p[skin, 1] - y0 + 5 * MM) < 2 * MM) & (sign * p[skin, 0] > 5 * MM)
                   & (sign * p[skin, 0] < 18 * MM) & (p[skin, 2] > 0.06)]
    assert mean_moved(head, f"mouthPress{side}", bulk_up)[1] < -1 * MM
    assert mean_moved(head, f"mouthPress{side}", bulk_lo)[1] > 1 * MM


def test_roll_shrug_and_shift(head, lm):
    up, lo = lm["lip_upper_edge"], lm["lip_lower_edge"]
    d = mean_moved(head, "mouthRollLower", lo)
    assert d[2] < -3 * MM and d[1] > 0
    assert np.abs(moved(head, "mouthRollLower", up)).max() < 1e-6
    d = mean_moved(head, "mouthRollUpper", up)
    assert d[2] < -3 * MM and d[1] < 0
    assert np.abs(moved(head, "mouthRollUpper", lo)).max() < 1e-6
    assert mean_moved(head, "mouthShrugLower", lo)[1] > 2 * MM
    assert mean_moved(head, "mouthShrugLower", lm["chin"])[1] > 1 * MM
    assert mean_moved(head, "mouthShrugUpper", up)[1] > 2 * MM
    both = np.concatenate([up, lo])
    assert mean_moved(head, "mouthLeft", both)[0] > 6 * MM
    assert mean_moved(head, "mouthRight", both)[0] < -6 * MM


@pytest.mark.parametrize("side,sign", [("Left", 1.0), ("Right", -1.0)])
def test_eyelids(head, lm, side, sign):
    s = side.lower()
    up, lo = lm[f"lid_upper_{s}"], lm[f"lid_lower_{s}"]
    p = head.positions
    rest_gap = (p[up, 1] - p[lo, 1]).max()
    assert rest_gap > 6 * MM                                  # open at rest
    closed = head.deform({f"eyeBlink{side}": 1.0})
    assert np.linalg.norm(closed[up] - closed[lo], axis=1).max() < 0.5 * MM   # fully closed
    assert mean_moved(head, f"eyeBlink{side}", up)[1] < -4 * MM                # upper lid down
    # the closed lid stays outside the eyeball
    c = head.eye_pivots[s]
    lid_region = np.flatnonzero(np.linalg.norm(closed - c, axis=1) < 0.02)
    lid_region = np.setdiff1d(lid_region, head.eye_vertices[s])
    assert np.linalg.norm(closed[lid_region] - c, axis=1).min() > demohead.EYE_RADIUS
    # squint raises the lower lid, wide raises the upper lid
    assert mean_moved(head, f"eyeSquint{side}", lo)[1] > 1.5 * MM
    assert mean_moved(head, f"eyeWide{side}", up)[1] > 1.5 * MM
    # no key of this side touches a vertex of the other side
    for key in (f"eyeBlink{side}", f"eyeSquint{side}", f"eyeWide{side}", f"eyeLookUp{side}",
                f"eyeLookDown{side}", f"eyeLookIn{side}", f"eyeLookOut{side}",
                f"browDown{side}", f"browOuterUp{side}", f"cheekSquint{side}",
                f"noseSneer{side}"):
        d = head.shape_keys[key]
        touched = np.flatnonzero(np.abs(d).max(axis=1) > 0)
        assert np.all(sign * p[touched, 0] > 0), key
    for key in (f"mouthSmile{side}", f"mouthFrown{side}", f"mouthDimple{side}",
                f"mouthStretch{side}", f"mouthPress{side}", f"mouthUpperUp{side}",
                f"mouthLowerDown{side}"):
        d = head.shape_keys[key]
        touched = np.flatnonzero(np.abs(d).max(axis=1) > 0)
        assert np.all(sign * p[touched, 0] > -15 * MM), key


@pytest.mark.parametrize("side,sign", [("Left", 1.0), ("Right", -1.0)])
def test_eye_look(head, lm, side, sign):
    """Gaze turns the eyeballs only through the eye rotation channels; the eyeLook* keys move
    the lids (following the gaze a little) and never an eyeball, so gaze is not applied twice
    when the runtime sends both."""
    s = side.lower()
    up, lo = lm[f"lid_upper_{s}"], lm[f"lid_lower_{s}"]
    eyes = np.concatenate([head.eye_vertices["left"], head.eye_vertices["right"]])
    looks = [f"eyeLook{d}{side}" for d in ("Up", "Down", "In", "Out")]
    for key in looks:
        assert np.abs(moved(head, key, eyes)).max() == 0.0, key        # eyeballs untouched
        assert np.abs(moved(head, key, np.concatenate([up, lo]))).max() > 0.5 * MM, key
    # looking up lifts the upper lid (the lower follows a little), looking down lowers them
    assert mean_moved(head, f"eyeLookUp{side}", up)[1] > 1 * MM
    assert mean_moved(head, f"eyeLookUp{side}", lo)[1] > 0.3 * MM
    assert mean_moved(head, f"eyeLookDown{side}", up)[1] < -2 * MM
    assert mean_moved(head, f"eyeLookDown{side}", lo)[1] < -0.3 * MM
    # looking down/up never closes the eye nor pushes a lid into the eyeball
    c = head.eye_pivots[s]
    for key in (f"eyeLookDown{side}", f"eyeLookUp{side}"):
        posed = head.deform({key: 1.0})
        assert (posed[up, 1] - posed[lo, 1]).max() > 4 * MM, key
        near = np.setdiff1d(np.flatnonzero(np.linalg.norm(posed - c, axis=1) < 0.02),
                            head.eye_vertices[s])
        assert np.linalg.norm(posed[near] - c, axis=1).min() > demohead.EYE_RADIUS, key
    # out = towards the subject's own side of that eye, in = towards the nose: the upper lid's
    # highest point slides that way (its outer half rises, its inner half drops, or vice versa)
    p = head.positions
    outer = up[sign * (p[up, 0] - c[0]) > 3 * MM]
    inner = up[sign * (p[up, 0] - c[0]) < -3 * MM]
    d_out = head.shape_keys[f"eyeLookOut{side}"]
    d_in = head.shape_keys[f"eyeLookIn{side}"]
    assert d_out[outer, 1].mean() > 0.3 * MM and d_out[inner, 1].mean() < -0.3 * MM
    assert d_in[inner, 1].mean() > 0.3 * MM and d_in[outer, 1].mean() < -0.3 * MM
    # the eyeball itself turns with the eye rotation channels, and the pupil follows the gaze
    pupil = lm[f"pupil_{s}"]
    i = 0 if s == "left" else 2
    for (yaw, pitch), axis, want in (((0.0, -0.3), 1, 1.0), ((0.0, 0.3), 1, -1.0),
                                     ((0.3, 0.0), 0, 1.0), ((-0.3, 0.0), 0, -1.0)):
        rot = np.zeros(4)
        rot[i:i + 2] = yaw, pitch
        posed = head.deform(eye_rotation=rot)
        assert want * (posed[pupil, axis].mean() - p[pupil, axis].mean()) > 3 * MM
        other = head.eye_vertices["right" if s == "left" else "left"]
        assert np.array_equal(posed[other], p[other])


@pytest.mark.parametrize("side,sign", [("Left", 1.0), ("Right", -1.0)])
def test_brows_cheeks_nose(head, lm, side, sign):
    s = side.lower()
    assert mean_moved(head, "browInnerUp", lm[f"brow_inner_{s}"])[1] > 4 * MM
    assert mean_moved(head, f"browDown{side}", lm[f"brow_inner_{s}"])[1] < -2 * MM
    assert mean_moved(head, f"browOuterUp{side}", lm[f"brow_outer_{s}"])[1] > 4 * MM
    assert np.abs(mean_moved(head, f"browOuterUp{side}", lm[f"brow_inner_{s}"])[1]) < \
        0.5 * mean_moved(head, f"browOuterUp{side}", lm[f"brow_outer_{s}"])[1]
    assert sign * mean_moved(head, "cheekPuff", lm[f"cheek_{s}"])[0] > 4 * MM
    assert mean_moved(head, f"cheekSquint{side}", lm[f"cheek_upper_{s}"])[1] > 2 * MM
    assert mean_moved(head, f"noseSneer{side}", lm[f"nose_wing_{s}"])[1] > 2 * MM


def test_jaw_sideways_forward(head, lm):
    t = lm["teeth_lower"]
    assert mean_moved(head, "jawForward", t)[2] > 5 * MM
    assert mean_moved(head, "jawLeft", t)[0] > 5 * MM           # subject's left is +X
    assert mean_moved(head, "jawRight", t)[0] < -5 * MM
    for key in ("jawForward", "jawLeft", "jawRight"):
        assert np.abs(moved(head, key, lm["teeth_upper"])).max() == 0.0


def test_tongue_out(head, lm):
    tip = lm["tongue_tip"]
    lips_front = head.positions[np.concatenate([lm["lip_upper_edge"], lm["lip_lower_edge"]]),
                                2].max()
    posed = head.deform({"tongueOut": 1.0})
    assert head.positions[tip, 2][0] < lips_front
    assert posed[tip, 2][0] > lips_front + 5 * MM
    assert mean_moved(head, "tongueOut", tip)[2] > 20 * MM


# ------------------------------------------------------------------------------------------
# symmetry
# ------------------------------------------------------------------------------------------
def _mirror_key(delta: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    return delta[mirror] * np.array([-1.0, 1.0, 1.0], np.float32)


def test_mesh_and_keys_mirror(head):
    mirror = demo_mirror()
    p = head.positions
    assert np.allclose(p[mirror] * [-1, 1, 1], p, atol=2e-6)
    assert np.array_equal(mirror[mirror], np.arange(len(p)))
    pairs = [(k, k[:-4] + "Right") for k in ARKIT52 if k.endswith("Left")]
    pairs += [("mouthLeft", "mouthRight"), ("jawLeft", "jawRight")]
    paired = {a for pr in pairs for a in pr}
    for left, right in pairs:
        assert np.allclose(_mirror_key(head.shape_keys[left], mirror), head.shape_keys[right],
                           atol=2e-6), (left, right)
    for key in ARKIT52:
        if key not in paired:
            assert np.allclose(_mirror_key(head.shape_keys[key], mirror), head.shape_keys[key],
                               atol=2e-6), key
