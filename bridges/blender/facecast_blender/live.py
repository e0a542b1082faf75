"""Live link: a bpy.app.timers callback polls the SDK subscriber (never waiting) and drives the
mesh's shape keys and the head/eye targets with the newest frame; Record collects every frame
and keys it into an action when recording stops.

Headless Blender does not run timers by itself: scripts and tests call :func:`tick` in a loop.
"""
from __future__ import annotations

import time

import bpy

from . import core, keying

INTERVAL_S = 0.01


class LiveDriver:
    """One connection: the link, the targets it drives and an optional recorder."""

    def __init__(self, context, settings) -> None:
        self.scene_name = context.scene.name
        mesh = keying.resolve_mesh(context, settings, required=False)
        targets = keying.rotation_targets(settings, context)
        if mesh is None and not targets:
            raise core.BridgeError("nothing to drive: pick a mesh with ARKit shape keys (or a "
                                   "head/eye target) in the facecast panel")
        self.mesh_name = mesh.name if mesh is not None else ""
        if mesh is not None:
            rmap = keying.mapping(settings, mesh)          # raises: no shape keys, bad map ...
            self.report = core.missing_summary(rmap)
        else:
            self.report = ""
        self.targets = targets
        curve = keying.connection(context, settings.address)
        self.link = core.LiveLink(settings.address, settings.subject, curve=curve)
        self.smoother = core.ExpSmoother(settings.smoothing)
        self.recorder: core.Recorder | None = None
        self.record_start = 0
        self.applied = 0
        self.last_applied = None
        self.following = ""
        self.problem = ""
        self.tick_s = 0.0
        self._status = ""

    # -- per tick --------------------------------------------------------------------------------
    def settings(self):
        scene = bpy.data.scenes.get(self.scene_name)
        return None if scene is None else scene.facecast

    def tick(self) -> None:
        t0 = time.perf_counter()
        frames = self.link.poll()
        if self.recorder is not None:
            for f in frames:
                self.recorder.add(f)
        if frames:
            # several subjects (no subject set): stay with the one followed so far if it is
            # still streaming, so the rig does not flicker between characters
            mine = [f for f in frames if f.subject == self.following]
            newest = mine[-1] if mine else frames[-1]
            self.following = newest.subject
            self.apply(newest)
        self.tick_s = time.perf_counter() - t0
        status = self.status_text()
        if status != self._status:
            self._status = status
            keying.redraw()

    def apply(self, frame) -> None:
        settings = self.settings()
        if settings is None:
            self.problem = f"scene '{self.scene_name}' is gone"
            return
        self.smoother.amount = settings.smoothing
        values = self.smoother(frame.vector(), frame.session)
        problem = ""
        if self.mesh_name:
            mesh = bpy.data.objects.get(self.mesh_name)
            if mesh is None or mesh.type != 'MESH':
                problem = f"mesh '{self.mesh_name}' is gone"
            else:
                try:
                    rmap = keying.mapping(settings, mesh)
                except core.BridgeError as exc:
                    problem = str(exc)
                else:
                    blocks = mesh.data.shape_keys.key_blocks
                    for name, w in core.shape_key_values(values, rmap).items():
                        kb = blocks.get(name)
                        if kb is not None:
                            kb.value = float(w[0])
        for role, target in self.targets.items():
            if target.holder() is None:
                problem = problem or f"{role.replace('_', ' ')} target is gone"
                continue
            angles = core.role_angles(values, role)
            mats = core.head_matrices(angles) if role == "head" else core.eye_matrices(angles)
            keying.set_rotation(target, core.local_quaternions(mats, target.frame, target.rest)[0])
        self.problem = problem
        self.applied += 1
        self.last_applied = frame

    # -- status ----------------------------------------------------------------------------------
    @property
    def state(self) -> str:
        return self.link.state

    def status_text(self) -> str:
        text = self.link.status_text()
        if self.problem:
            text += f" ({self.problem})"
        return text

    # -- recording -------------------------------------------------------------------------------
    def start_recording(self) -> None:
        scene = bpy.data.scenes.get(self.scene_name)
        self.record_start = scene.frame_current if scene is not None else 1
        self.recorder = core.Recorder()

    def stop_recording(self, context) -> str:
        """Key what was recorded; returns the message for the user."""
        rec, self.recorder = self.recorder, None
        if rec is None:
            return "not recording"
        if len(rec) == 0:
            return "nothing recorded: no frames arrived while recording"
        scene = bpy.data.scenes.get(self.scene_name)
        if scene is None:
            raise core.BridgeError("the recorded scene is gone; recording discarded")
        settings = scene.facecast
        mesh = bpy.data.objects.get(self.mesh_name) if self.mesh_name else None
        rmap = keying.mapping(settings, mesh) if mesh is not None else None
        take = rec.take()
        # the targets' rest rotations are the ones captured at Connect (not the live pose)
        plan = core.make_plan(take, rmap, keying.scene_fps(scene), self.record_start,
                              roles=self.targets)
        summary = keying.write_plan(scene, plan, mesh, self.targets,
                                    settings.action_mode, "facecast_rec")
        return (f"recorded {len(rec)} frames ({take.duration:.2f} s) into "
                f"{', '.join(summary['actions'])}: frames {plan.frames[0]}-{plan.frames[-1]}")

    def close(self) -> None:
        self.link.close()


_driver: LiveDriver | None = None


def driver() -> LiveDriver | None:
    return _driver


def tick() -> float | None:
    """The registered timer: poll, apply, return the next interval. Never raises."""
    d = _driver
    if d is None:
        return None
    try:
        d.tick()
    except Exception as exc:  # noqa: BLE001 - a timer must keep running and say why
        d.problem = f"{type(exc).__name__}: {exc}"[:300]
    return INTERVAL_S


def start(context) -> str:
    global _driver
    stop(context)
    settings = context.scene.facecast
    d = LiveDriver(context, settings)
    _driver = d
    if not bpy.app.timers.is_registered(tick):
        bpy.app.timers.register(tick, first_interval=0.0, persistent=True)
    msg = f"listening on {d.link.address}" + (f" for '{d.link.subject}'" if d.link.subject else "")
    return msg + (f"; {d.report}" if d.report else "")


def stop(context=None) -> str | None:
    """Disconnect; a recording in progress is keyed first. Returns the recording message."""
    global _driver
    d, msg = _driver, None
    if d is None:
        return None
    try:
        if d.recorder is not None:
            msg = d.stop_recording(context or bpy.context)
    finally:
        _driver = None
        d.close()
        if bpy.app.timers.is_registered(tick):
            bpy.app.timers.unregister(tick)
        keying.redraw()
    return msg


@bpy.app.handlers.persistent
def _on_load_pre(*_args) -> None:
    # the scene settings and targets belong to the file being closed
    global _driver
    d = _driver
    if d is not None:
        _driver = None
        d.close()
        keying.notify("WARNING", "live link stopped: a file was loaded"
                      + (" (the recording was discarded)" if d.recorder is not None else ""))


def register() -> None:
    if _on_load_pre not in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.append(_on_load_pre)


def unregister() -> None:
    global _driver
    if _on_load_pre in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(_on_load_pre)
    d = _driver
    _driver = None
    if d is not None:
        d.close()
    if bpy.app.timers.is_registered(tick):
        bpy.app.timers.unregister(tick)


__all__ = ["LiveDriver", "driver", "tick", "start", "stop"]
