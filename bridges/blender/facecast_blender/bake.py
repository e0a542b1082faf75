"""Bake an audio file into keyframes without freezing the UI.

The bake runs in the background (a worker thread for the in-process runtime and the server, a
child process for the facecast command); a bpy.app.timers callback, :func:`poll`, checks on it
and keys the result on Blender's main thread. Headless scripts call ``poll()`` in a loop (or
the operator with ``wait=True``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import bpy

from . import core, keying, properties

POLL_S = 0.05


@dataclass
class Pending:
    """A bake in flight and everything needed to key it when it is done."""

    job: core.BakeJob
    scene_name: str
    mesh_name: str
    targets: dict[str, keying.RotationTarget]
    audio: str
    start_frame: int
    action_mode: str
    add_sound: bool
    report: str = ""
    #: a few words on the expression settings ('' at the runtime's defaults)
    expression: str = ""
    result: dict[str, Any] = field(default_factory=dict)


_pending: Pending | None = None
#: the last finished bake: {"ok": bool, "message": str, "summary": {...}}
last_result: dict[str, Any] = {}


def runtime_fps(scene_fps: float) -> int:
    """The runtime's rate for a scene: 30 for a 30 fps scene, else 60 (then resampled)."""
    return 30 if abs(scene_fps - 30.0) < 1e-6 else 60


def pending() -> Pending | None:
    return _pending


def start(context) -> str:
    """Check the inputs, start the job; returns a message (raises BridgeError)."""
    global _pending
    if _pending is not None:
        raise core.BridgeError("a bake is already running; wait for it or cancel it")
    scene = context.scene
    settings = scene.facecast
    mesh = keying.resolve_mesh(context, settings, required=False)
    targets = keying.rotation_targets(settings, context)
    if mesh is None and not targets:
        raise core.BridgeError("nothing to bake onto: pick a mesh with ARKit shape keys (or a "
                               "head/eye target) in the facecast panel")
    report = ""
    if mesh is not None:
        rmap = keying.mapping(settings, mesh)          # raises: no shape keys, bad map ...
        report = core.missing_summary(rmap)
    audio = bpy.path.abspath(settings.audio) if settings.audio else ""
    prefs = properties.preferences(context)
    expression = settings.expression.values()
    summary = core.expression_summary(**expression)      # validates: fails before the job
    curve = None
    if settings.runtime in (core.RUNTIME_SERVER, core.RUNTIME_AUTO):
        curve = keying.connection(context, settings.control_address, settings.address)
    job = core.make_job(settings.runtime, audio, runtime_fps(keying.scene_fps(scene)),
                        executable=prefs.facecast_path if prefs else "",
                        control=settings.control_address, frames=settings.address,
                        curve=curve, expression=expression)
    _pending = Pending(job, scene.name, mesh.name if mesh is not None else "", targets,
                       job.audio, settings.start_frame, settings.action_mode, settings.add_sound,
                       report, summary)
    if not bpy.app.timers.is_registered(poll):
        bpy.app.timers.register(poll, first_interval=POLL_S)
    keying.redraw()
    return f"{job.describe()}" + (f"; {report}" if report else "")


def poll() -> float | None:
    """Timer callback: None once the bake is finished (keyed or failed), else the interval."""
    global _pending, last_result
    p = _pending
    if p is None:
        return None
    try:
        batch = p.job.poll()
    except core.BridgeError as exc:
        _pending = None
        last_result = {"ok": False, "message": f"bake failed: {exc}; nothing was keyed"}
        keying.notify("ERROR", last_result["message"])
        return None
    if batch is None:
        keying.redraw()
        return POLL_S
    _pending = None
    try:
        last_result = finish(p, batch)
        if not bpy.app.background:
            try:  # keyed from a timer, outside the operator: make it one undo step
                bpy.ops.ed.undo_push(message="facecast bake")
            except RuntimeError:
                pass
        keying.notify("WARNING" if last_result.get("warnings") else "INFO",
                      last_result["message"])
    except Exception as exc:  # noqa: BLE001 - a timer must not raise
        last_result = {"ok": False, "message": f"bake could not be keyed: {exc}"}
        keying.notify("ERROR", last_result["message"])
    return None


def finish(p: Pending, batch) -> dict[str, Any]:
    scene = bpy.data.scenes.get(p.scene_name)
    if scene is None:
        raise core.BridgeError(f"scene '{p.scene_name}' is gone")
    settings = scene.facecast
    mesh = bpy.data.objects.get(p.mesh_name) if p.mesh_name else None
    warnings = []
    if p.mesh_name and (mesh is None or mesh.type != 'MESH'):
        warnings.append(f"mesh '{p.mesh_name}' was removed during the bake; no shape keys keyed")
        mesh = None
    rmap = keying.mapping(settings, mesh) if mesh is not None else None
    take = core.Take.from_batch(batch, os.path.basename(p.audio))
    plan = core.make_plan(take, rmap, keying.scene_fps(scene), p.start_frame, roles=p.targets)
    name = "facecast_" + os.path.splitext(os.path.basename(p.audio))[0]
    summary = keying.write_plan(scene, plan, mesh, p.targets, p.action_mode, name)
    if rmap is not None and rmap.missing:
        warnings.append(core.missing_summary(rmap))
    if p.add_sound:
        w = keying.add_sound(scene, p.audio, p.start_frame)
        if w:
            warnings.append(w)
    how = ", ".join(x for x in (f"{take.duration:.2f} s", p.job.kind, p.expression) if x)
    msg = (f"baked {os.path.basename(p.audio)} ({how}): "
           f"{summary['shape_keys']} shape keys"
           + (f", {'/'.join(summary['rotations'])}" if summary['rotations'] else "")
           + f" keyed on frames {plan.frames[0]}-{plan.frames[-1]} into "
           + ", ".join(summary["actions"]))
    if warnings:
        msg += "; " + "; ".join(warnings)
    return {"ok": True, "message": msg, "summary": summary, "warnings": warnings,
            "frames": (int(plan.frames[0]), int(plan.frames[-1]))}


def cancel() -> str:
    global _pending
    p = _pending
    if p is None:
        return "no bake running"
    _pending = None
    p.job.cancel()
    keying.redraw()
    return "bake cancelled; nothing was keyed"


def wait(timeout: float = 600.0) -> dict[str, Any]:
    """Block until the pending bake is keyed (for scripts and background mode)."""
    import time

    deadline = time.monotonic() + timeout
    while poll() is not None:
        if time.monotonic() > deadline:
            cancel()
            raise core.BridgeError(f"bake did not finish within {timeout:g} s")
        time.sleep(POLL_S / 5)
    return last_result


@bpy.app.handlers.persistent
def _on_load_pre(*_args) -> None:
    # the targets belong to the file being closed: never key into the next one
    if _pending is not None:
        cancel()
        keying.notify("WARNING", "bake cancelled: a file was loaded")


def register() -> None:
    if _on_load_pre not in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.append(_on_load_pre)


def unregister() -> None:
    global _pending
    if _on_load_pre in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(_on_load_pre)
    if _pending is not None:
        _pending.job.cancel()
        _pending = None
    if bpy.app.timers.is_registered(poll):
        bpy.app.timers.unregister(poll)
