"""Operators: thin wrappers that call live/bake/importer and report in one line."""
from __future__ import annotations

import bpy
from bpy.props import BoolProperty, StringProperty
from bpy_extras.io_utils import ExportHelper

from . import bake, core, importer, keying, live


def _report(op, level: str, text: str) -> None:
    op.report({level}, text)
    keying.notify(level, text)


def _fail(op, exc: Exception) -> set[str]:
    _report(op, 'ERROR', str(exc))
    return {'CANCELLED'}


class FACECAST_OT_connect(bpy.types.Operator):
    """Listen to a facecast runtime and drive the mesh and head/eye targets"""

    bl_idname = "facecast.connect"
    bl_label = "Connect"

    def execute(self, context):
        try:
            msg = live.start(context)
        except core.BridgeError as exc:
            return _fail(self, exc)
        _report(self, 'WARNING' if "missing" in msg else 'INFO', msg)
        return {'FINISHED'}


class FACECAST_OT_disconnect(bpy.types.Operator):
    """Stop listening (a recording in progress is keyed first)"""

    bl_idname = "facecast.disconnect"
    bl_label = "Disconnect"

    def execute(self, context):
        try:
            msg = live.stop(context)
        except core.BridgeError as exc:
            return _fail(self, exc)
        _report(self, 'INFO', msg or "disconnected")
        return {'FINISHED'}


class FACECAST_OT_record(bpy.types.Operator):
    """Start recording the live stream, or stop and key it into an action"""

    bl_idname = "facecast.record"
    bl_label = "Record"
    bl_options = {'REGISTER', 'UNDO'}

    def execute(self, context):
        d = live.driver()
        if d is None:
            _report(self, 'ERROR', "connect first: recording keys the live stream")
            return {'CANCELLED'}
        if d.recorder is None:
            d.start_recording()
            _report(self, 'INFO', f"recording from frame {d.record_start}")
            return {'FINISHED'}
        try:
            msg = d.stop_recording(context)
        except core.BridgeError as exc:
            return _fail(self, exc)
        _report(self, 'INFO', msg)
        return {'FINISHED'}


class FACECAST_OT_bake(bpy.types.Operator):
    """Bake the audio file into shape-key (and head/eye) keyframes from the start frame"""

    bl_idname = "facecast.bake"
    bl_label = "Bake"
    bl_options = {'REGISTER', 'UNDO'}

    wait: BoolProperty(name="Wait", default=False, options={'SKIP_SAVE', 'HIDDEN'},
                       description="Block until the bake is keyed (scripts, background mode)")

    def execute(self, context):
        try:
            msg = bake.start(context)
        except core.BridgeError as exc:
            return _fail(self, exc)
        if not self.wait:
            _report(self, 'INFO', msg)
            return {'FINISHED'}
        try:
            result = bake.wait()
        except core.BridgeError as exc:
            return _fail(self, exc)
        if not result.get("ok"):
            _report(self, 'ERROR', result.get("message", "bake failed"))
            return {'CANCELLED'}
        _report(self, 'WARNING' if result.get("warnings") else 'INFO', result["message"])
        return {'FINISHED'}


class FACECAST_OT_bake_cancel(bpy.types.Operator):
    """Cancel the running bake (nothing is keyed)"""

    bl_idname = "facecast.bake_cancel"
    bl_label = "Cancel Bake"

    def execute(self, context):
        _report(self, 'INFO', bake.cancel())
        return {'FINISHED'}


class FACECAST_OT_copy_expression_flags(bpy.types.Operator):
    """Copy the expression settings as facecast command-line flags, for the 'facecast send' or
    'facecast serve' that feeds the live link (live sessions are opened by the sender)"""

    bl_idname = "facecast.copy_expression_flags"
    bl_label = "Copy as Flags"

    def execute(self, context):
        import shlex
        import subprocess
        import sys

        try:
            flags = core.expression_flags(**context.scene.facecast.expression.values())
        except core.BridgeError as exc:
            return _fail(self, exc)
        text = subprocess.list2cmdline(flags) if sys.platform == "win32" else shlex.join(flags)
        try:
            context.window_manager.clipboard = text
        except (AttributeError, RuntimeError):
            pass
        _report(self, 'INFO', f"copied: {text}")
        return {'FINISHED'}


class FACECAST_OT_import_take(bpy.types.Operator):
    """Key a Live Link Face CSV, facecast JSON or NPZ take from the start frame"""

    bl_idname = "facecast.import_take"
    bl_label = "Import Take"
    bl_options = {'REGISTER', 'UNDO'}

    filepath: StringProperty(subtype='FILE_PATH', options={'SKIP_SAVE'},
                             description="Take file (default: the panel's)")

    def execute(self, context):
        path = self.filepath or context.scene.facecast.take_file
        if not path:
            _report(self, 'ERROR', "choose a take file (.csv, .json, .npz)")
            return {'CANCELLED'}
        try:
            msg = importer.import_take(context, path)
        except core.BridgeError as exc:
            return _fail(self, exc)
        _report(self, 'WARNING' if "missing" in msg else 'INFO', msg)
        return {'FINISHED'}


class FACECAST_OT_check_mapping(bpy.types.Operator):
    """Report which ARKit channels map to the mesh's shape keys"""

    bl_idname = "facecast.check_mapping"
    bl_label = "Check Mapping"

    def execute(self, context):
        settings = context.scene.facecast
        try:
            mesh = keying.resolve_mesh(context, settings)
            rmap = keying.mapping(settings, mesh)
        except core.BridgeError as exc:
            return _fail(self, exc)
        _report(self, 'WARNING' if rmap.missing else 'INFO', rmap.report())
        return {'FINISHED'}


class FACECAST_OT_write_map(bpy.types.Operator, ExportHelper):
    """Write the current mapping as a JSON map, to edit and use with the Custom preset"""

    bl_idname = "facecast.write_map"
    bl_label = "Write Map JSON"
    filename_ext = ".json"
    filter_glob: StringProperty(default="*.json", options={'HIDDEN'})

    def execute(self, context):
        settings = context.scene.facecast
        try:
            mesh = keying.resolve_mesh(context, settings)
            rmap = keying.mapping(settings, mesh)
            with open(self.filepath, "w", encoding="utf-8") as f:
                f.write(rmap.to_json() + "\n")
        except (core.BridgeError, OSError) as exc:
            return _fail(self, exc)
        _report(self, 'INFO', f"wrote {self.filepath}")
        return {'FINISHED'}


class FACECAST_OT_gain_add(bpy.types.Operator):
    """Add a per-channel gain"""

    bl_idname = "facecast.gain_add"
    bl_label = "Add Gain"
    bl_options = {'REGISTER', 'UNDO'}

    def execute(self, context):
        settings = context.scene.facecast
        item = settings.gains.add()
        used = {g.channel for g in settings.gains if g != item}
        item.channel = "jawOpen" if "jawOpen" not in used else next(
            (n for n in core.ARKIT52 if n not in used), "jawOpen")
        settings.gain_index = len(settings.gains) - 1
        return {'FINISHED'}


class FACECAST_OT_gain_remove(bpy.types.Operator):
    """Remove the selected gain"""

    bl_idname = "facecast.gain_remove"
    bl_label = "Remove Gain"
    bl_options = {'REGISTER', 'UNDO'}

    def execute(self, context):
        settings = context.scene.facecast
        if 0 <= settings.gain_index < len(settings.gains):
            settings.gains.remove(settings.gain_index)
            settings.gain_index = max(0, settings.gain_index - 1)
        return {'FINISHED'}


CLASSES = (
    FACECAST_OT_connect, FACECAST_OT_disconnect, FACECAST_OT_record, FACECAST_OT_bake,
    FACECAST_OT_bake_cancel, FACECAST_OT_copy_expression_flags, FACECAST_OT_import_take,
    FACECAST_OT_check_mapping, FACECAST_OT_write_map, FACECAST_OT_gain_add,
    FACECAST_OT_gain_remove,
)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
