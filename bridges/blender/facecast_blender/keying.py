"""Blender side of the data model: find targets, write a :class:`core.Plan` as keyframes, set
live values, add the sound strip. Everything that touches ``bpy.data`` for bake, import, record
and live goes through here; the numbers come from :mod:`core`.

Works with Blender 4.2 to 5.0: layered actions (slots and channelbags, 4.4+) and the older
``Action.fcurves``.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import bpy
import numpy as np
from mathutils import Quaternion

from . import core

# ---------------------------------------------------------------------------------------------
# messages: the panel's status line (operators also self.report)
# ---------------------------------------------------------------------------------------------
MESSAGES: list[tuple[float, str, str]] = []


def notify(level: str, text: str) -> None:
    """Remember a message for the panel (level INFO, WARNING or ERROR); keeps the last 20."""
    MESSAGES.append((time.time(), level, text))
    del MESSAGES[:-20]
    redraw()


def last_message() -> tuple[str, str] | None:
    return (MESSAGES[-1][1], MESSAGES[-1][2]) if MESSAGES else None


def redraw() -> None:
    wm = getattr(bpy.context, "window_manager", None)
    if wm is None:
        return
    for win in wm.windows:
        for area in win.screen.areas:
            if area.type == 'VIEW_3D':
                area.tag_redraw()


# ---------------------------------------------------------------------------------------------
# runtime addresses
# ---------------------------------------------------------------------------------------------
def connection(context, *addresses: str):
    """CURVE keys for a connection to ``addresses`` (None without a key folder); refuses
    non-loopback runtimes while Blender's "Allow Online Access" is off."""
    from . import properties

    remote = [a for a in addresses if a and not core.is_loopback(a.strip())]
    if remote and not getattr(bpy.app, "online_access", True):
        raise core.BridgeError(f"{remote[0]} is not on this machine and Blender's 'Allow Online "
                               f"Access' is off (Preferences > System > Network)")
    prefs = properties.preferences(context)
    if prefs is None or not prefs.curve_dir:
        return None
    return core.curve_keys(bpy.path.abspath(prefs.curve_dir), prefs.curve_client)


# ---------------------------------------------------------------------------------------------
# targets
# ---------------------------------------------------------------------------------------------
def scene_fps(scene) -> float:
    return scene.render.fps / (scene.render.fps_base or 1.0)


def resolve_mesh(context, settings, required: bool = True):
    """The panel's mesh, else the active object when it is a mesh. Without either: None, or
    BridgeError when ``required``."""
    obj = settings.target
    if obj is None:
        active = context.view_layer.objects.active
        if active is not None and active.type == 'MESH':
            return active
        if required:
            extra = f" ('{active.name}' is not a mesh)" if active is not None else ""
            raise core.BridgeError("no mesh: pick the face mesh in the facecast panel or make it "
                                   "the active object" + extra)
        return None
    if obj.type != 'MESH':
        raise core.BridgeError(f"'{obj.name}' is not a mesh ({obj.type.lower()}): pick the mesh "
                               f"that has the face's shape keys")
    return obj


def shape_key_names(obj) -> list[str]:
    key = obj.data.shape_keys if obj is not None and obj.type == 'MESH' else None
    if key is None:
        return []
    ref = key.reference_key.name if key.reference_key is not None else None
    return [kb.name for kb in key.key_blocks if kb.name != ref]


def gains_of(settings) -> dict[str, float]:
    return {g.channel: float(g.gain) for g in settings.gains}


_MAP_CACHE: dict[Any, Any] = {}


def mapping(settings, obj):
    """RetargetMap for ``obj`` with the panel's preset, map file and gains (cached); raises
    BridgeError (no shape keys, bad map file ...)."""
    keys = shape_key_names(obj)
    path = bpy.path.abspath(settings.map_file) if settings.map_file else ""
    try:
        mtime = os.path.getmtime(path) if path else 0.0
    except OSError:
        mtime = -1.0
    gains = gains_of(settings)
    sig = (obj.name, tuple(keys), settings.preset, path, mtime, tuple(sorted(gains.items())))
    hit = _MAP_CACHE.get(sig)
    if hit is None:
        try:
            hit = core.build_map(keys, settings.preset, path, gains, mesh_name=f"'{obj.name}'")
        except core.BridgeError as exc:
            hit = exc
        if len(_MAP_CACHE) > 64:
            _MAP_CACHE.clear()
        _MAP_CACHE[sig] = hit
    if isinstance(hit, core.BridgeError):
        raise hit
    return hit


@dataclass
class RotationTarget:
    """An object or a pose bone that a head/eye role rotates (snapshot taken at start)."""

    role: str
    object_name: str
    bone: str
    frame: np.ndarray          # target's local rotation axes -> character axes (3x3)
    rest: np.ndarray           # quaternion the rotation is applied on top of

    def owner(self):
        return bpy.data.objects.get(self.object_name)

    def holder(self):
        """The object or pose bone carrying the rotation properties, or None when gone."""
        obj = self.owner()
        if obj is None:
            return None
        if self.bone:
            return obj.pose.bones.get(self.bone) if obj.pose is not None else None
        return obj

    @property
    def path_prefix(self) -> str:
        return f'pose.bones["{bpy.utils.escape_identifier(self.bone)}"].' if self.bone else ""

    @property
    def group(self) -> str:
        return self.bone or "Object Transforms"


def _rotation_of(matrix) -> np.ndarray:
    q = matrix.to_3x3().normalized().to_quaternion()
    return np.array([q.w, q.x, q.y, q.z])


def rotation_targets(settings, context=None) -> dict[str, RotationTarget]:
    """The configured head/eye targets (roles with an object), with their frames and rests."""
    out: dict[str, RotationTarget] = {}
    if not settings.use_rotation:
        return out
    if context is not None:
        context.view_layer.update()
    for role in core.ROTATION_ROLES:
        t = getattr(settings, role)
        obj = t.object
        if obj is None:
            continue
        bone = t.bone.strip()
        if obj.type == 'ARMATURE' and bone:
            pb = obj.pose.bones.get(bone)
            if pb is None:
                raise core.BridgeError(f"{role.replace('_', ' ')} target: armature '{obj.name}' "
                                       f"has no bone '{bone}'")
            frame = np.array(pb.bone.matrix_local.to_3x3().normalized())
            rest = _rotation_of(pb.matrix_basis)
        else:
            bone = ""
            parent_frame = obj.matrix_world @ obj.matrix_basis.inverted_safe()
            frame = np.array(parent_frame.to_3x3().normalized())
            rest = _rotation_of(obj.matrix_basis)
        out[role] = RotationTarget(role, obj.name, bone, frame, rest)
    return out


def _rotation_channels(holder, quats: np.ndarray) -> tuple[str, list[np.ndarray]]:
    """(data path suffix, per-channel arrays) of quaternions in the holder's rotation mode."""
    mode = holder.rotation_mode
    if mode == 'QUATERNION':
        return "rotation_quaternion", [quats[:, i] for i in range(4)]
    if mode == 'AXIS_ANGLE':
        aa = []
        for q in quats:
            axis, angle = Quaternion(q).to_axis_angle()
            aa.append((angle, axis.x, axis.y, axis.z))
        a = np.array(aa)
        return "rotation_axis_angle", [a[:, i] for i in range(4)]
    eulers = []
    prev = None
    for q in quats:
        e = Quaternion(q).to_euler(mode, prev) if prev is not None else Quaternion(q).to_euler(mode)
        eulers.append(tuple(e))
        prev = e
    e = np.array(eulers)
    return "rotation_euler", [e[:, i] for i in range(3)]


def set_rotation(target: RotationTarget, quat: np.ndarray) -> None:
    holder = target.holder()
    if holder is None:
        return
    path, chans = _rotation_channels(holder, np.asarray(quat).reshape(1, 4))
    setattr(holder, path, [float(c[0]) for c in chans])


# ---------------------------------------------------------------------------------------------
# actions and keyframes
# ---------------------------------------------------------------------------------------------
def _layered() -> bool:
    return hasattr(bpy.types, "ActionSlot")


def prepare_action(id_data, mode: str, name: str):
    """The action keys go into: with ``NEW`` a copy of the current one (kept with a fake user, so
    nothing keyed is lost) or a fresh one; with ``EXISTING`` the assigned one (or a fresh one)."""
    ad = id_data.animation_data or id_data.animation_data_create()
    old = ad.action
    if old is not None and mode == "EXISTING":
        action = old
    else:
        if old is not None:
            old.use_fake_user = True
            action = old.copy()
        else:
            action = bpy.data.actions.new(name)
        action.name = name
        ad.action = action
    if _layered() and ad.action_slot is None:
        ok = (id_data.id_type, 'UNSPECIFIED')
        slots = [s for s in ad.action.slots
                 if getattr(s, "target_id_type", id_data.id_type) in ok]
        ad.action_slot = slots[0] if slots else ad.action.slots.new(id_type=id_data.id_type,
                                                                    name=id_data.name)
    return ad.action


def _channelbag(action, slot, ensure: bool):
    """The slot's channelbag (layered actions, 4.4+), as bpy_extras.anim_utils does it in 5.0
    (written out here because 4.4 lacks some of those helpers)."""
    if action is None or slot is None:
        return None
    for layer in action.layers:
        for strip in layer.strips:
            bag = strip.channelbag(slot)
            if bag:
                return bag
    if not ensure:
        return None
    layer = action.layers[0] if len(action.layers) else action.layers.new("Layer")
    strip = layer.strips[0] if len(layer.strips) else layer.strips.new(type='KEYFRAME')
    return strip.channelbag(slot, ensure=True)


def _fcurve(id_data, data_path: str, index: int, group: str):
    ad = id_data.animation_data
    action = ad.action
    if _layered():
        bag = _channelbag(action, ad.action_slot, ensure=True)
        fc = bag.fcurves.find(data_path, index=index)
        if fc is None:
            fc = bag.fcurves.new(data_path, index=index, group_name=group)
        return fc
    fc = action.fcurves.find(data_path, index=index)
    if fc is None:
        fc = action.fcurves.new(data_path, index=index, action_group=group)
    return fc


def write_curve(fc, frames: np.ndarray, values: np.ndarray, replace_all: bool = False) -> None:
    """Key ``values`` at ``frames`` (linear). With ``replace_all`` the curve holds only these
    keys; otherwise keys inside the frame range are replaced and keys outside it are kept."""
    frames = np.asarray(frames, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    kps = fc.keyframe_points
    if replace_all and len(kps):
        if hasattr(kps, "clear"):
            kps.clear()
        else:
            for kp in reversed(list(kps)):
                kps.remove(kp, fast=True)
    elif len(kps):
        co = np.empty(2 * len(kps))
        kps.foreach_get("co", co)
        inside = np.nonzero((co[0::2] >= frames[0] - 1e-4) & (co[0::2] <= frames[-1] + 1e-4))[0]
        for i in inside[::-1]:
            kps.remove(kps[int(i)], fast=True)
    if len(kps) == 0:
        kps.add(len(frames))
        co = np.empty(2 * len(frames))
        co[0::2], co[1::2] = frames, values
        kps.foreach_set("co", co)
        kps.foreach_set("interpolation", np.full(len(frames), 1, np.int32))  # LINEAR
    else:
        for f, v in zip(frames.tolist(), values.tolist()):
            kp = kps.insert(f, v, options={'FAST'})
            kp.interpolation = 'LINEAR'
    fc.update()


def write_plan(scene, plan: core.Plan, mesh, targets: dict[str, RotationTarget],
               action_mode: str, name: str) -> dict[str, Any]:
    """Key a plan: shape keys of ``mesh`` and the rotation targets. Returns a summary.

    ``NEW``: the keys go to a copy of the current action whose baked curves hold only the new
    take (the old action stays, with a fake user); ``EXISTING``: into the assigned action, keys
    of the baked curves inside the take's frame range replaced, all others kept. Curves of
    channels that are not baked (unmapped shape keys, other bones) are never touched."""
    summary: dict[str, Any] = {"frames": len(plan), "shape_keys": 0, "rotations": [],
                               "actions": []}
    if len(plan) == 0:
        return summary
    frames = plan.frames.astype(np.float64)
    fresh = action_mode != "EXISTING"      # a new action holds only the new take on its curves
    if mesh is not None and plan.shape_keys:
        key = mesh.data.shape_keys
        action = prepare_action(key, action_mode, f"{name}_shapes")
        summary["actions"].append(action.name)
        for target, vals in plan.shape_keys.items():
            if key.key_blocks.get(target) is None:
                continue
            path = f'key_blocks["{bpy.utils.escape_identifier(target)}"].value'
            write_curve(_fcurve(key, path, 0, "facecast"), frames, vals, fresh)
            summary["shape_keys"] += 1
    prepared: set[str] = set()
    for role, target in targets.items():
        if role not in plan.angles:
            continue
        holder = target.holder()
        if holder is None:
            continue
        owner = target.owner()
        if owner.name not in prepared:
            action = prepare_action(owner, action_mode, f"{name}_{owner.name}")
            summary["actions"].append(action.name)
            prepared.add(owner.name)
        quats = core.local_quaternions(plan.matrices(role), target.frame, target.rest)
        suffix, chans = _rotation_channels(holder, quats)
        for i, vals in enumerate(chans):
            write_curve(_fcurve(owner, target.path_prefix + suffix, i, target.group), frames, vals,
                        fresh)
        summary["rotations"].append(role)
    last = int(plan.frames[-1])
    if scene.frame_end < last:
        scene.frame_end = last
    return summary


def fcurve_of(id_data, data_path: str, index: int = 0):
    """The F-curve animating ``data_path`` of ``id_data`` in its assigned action, or None."""
    ad = id_data.animation_data
    if ad is None or ad.action is None:
        return None
    if _layered():
        bag = _channelbag(ad.action, ad.action_slot, ensure=False)
        return None if bag is None else bag.fcurves.find(data_path, index=index)
    return ad.action.fcurves.find(data_path, index=index)


# ---------------------------------------------------------------------------------------------
# sound strip
# ---------------------------------------------------------------------------------------------
def add_sound(scene, path: str, frame: int) -> str | None:
    """Put ``path`` in the sequencer at ``frame`` (reusing an identical strip); returns a
    warning when Blender cannot play the file (then no strip is left behind)."""
    path = os.path.abspath(path)
    sed = scene.sequence_editor or scene.sequence_editor_create()
    strips = sed.strips if hasattr(sed, "strips") else sed.sequences
    for s in strips:
        if s.type == 'SOUND' and s.sound is not None and int(s.frame_start) == int(frame) \
                and os.path.abspath(bpy.path.abspath(s.sound.filepath)) == path:
            return None
    busy = {s.channel for s in strips
            if s.frame_final_start <= frame < s.frame_final_end}
    channel = next(c for c in range(1, 129) if c not in busy)
    name = os.path.basename(path)
    try:
        strip = strips.new_sound(name, filepath=path, channel=channel, frame_start=int(frame))
    except (RuntimeError, TypeError) as exc:
        return f"no sound strip: Blender cannot open {name} ({exc})"
    snd = strip.sound
    if snd is None or getattr(snd, "samplerate", 1) == 0 \
            or getattr(snd, "channels", "") == 'INVALID':
        strips.remove(strip)
        if snd is not None and snd.users == 0:
            bpy.data.sounds.remove(snd)
        return (f"the animation is keyed but Blender cannot play {name}, so no sound strip was "
                f"added: convert it to WAV to hear it in sync")
    return None

