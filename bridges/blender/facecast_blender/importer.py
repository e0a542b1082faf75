"""Import a take file as keyframes: Live Link Face CSV, facecast JSON or NPZ
(:func:`facecast.formats.read`). The take's first frame lands on the start frame."""
from __future__ import annotations

import os

import bpy

from . import core, keying

EXTENSIONS = (".csv", ".json", ".npz")


def read_take(path: str) -> core.Take:
    from facecast.formats import read

    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise core.BridgeError(f"take file not found: {path}")
    ext = os.path.splitext(path)[1].lower()
    if ext not in EXTENSIONS:
        raise core.BridgeError(f"cannot import {name}: expected a Live Link Face .csv, a "
                               f"facecast .json or .npz take")
    try:
        # a Live Link CSV counts frames from its own start, not from midnight
        batch = read(path, start_timecode="first") if ext == ".csv" else read(path)
    except (OSError, ValueError, KeyError, UnicodeDecodeError) as exc:
        raise core.BridgeError(f"cannot import {name}: {exc}") from None
    except Exception as exc:  # zipfile/numpy errors of a damaged NPZ
        raise core.BridgeError(f"cannot import {name}: {type(exc).__name__}: {exc}") from None
    if len(batch) == 0:
        raise core.BridgeError(f"{name} holds no frames")
    return core.Take.from_batch(batch, name)


def import_take(context, path: str) -> str:
    scene = context.scene
    settings = scene.facecast
    path = bpy.path.abspath(path)
    mesh = keying.resolve_mesh(context, settings, required=False)
    targets = keying.rotation_targets(settings, context)
    if mesh is None and not targets:
        raise core.BridgeError("nothing to import onto: pick a mesh with ARKit shape keys (or a "
                               "head/eye target) in the facecast panel")
    rmap = keying.mapping(settings, mesh) if mesh is not None else None
    take = read_take(path)
    plan = core.make_plan(take, rmap, keying.scene_fps(scene), settings.start_frame,
                          roles=targets)
    name = "facecast_" + os.path.splitext(take.name)[0]
    summary = keying.write_plan(scene, plan, mesh, targets, settings.action_mode, name)
    msg = (f"imported {take.name} ({len(take)} frames at {take.fps:g} fps): "
           f"{summary['shape_keys']} shape keys"
           + (f", {'/'.join(summary['rotations'])}" if summary['rotations'] else "")
           + f" keyed on frames {plan.frames[0]}-{plan.frames[-1]}")
    if rmap is not None and rmap.missing:
        msg += "; " + core.missing_summary(rmap)
    return msg
