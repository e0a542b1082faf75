"""The sidebar (N) panel "facecast" in the 3D viewport."""
from __future__ import annotations

import os

import bpy

from . import bake, core, keying, live


class FACECAST_UL_gains(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index):
        row = layout.row(align=True)
        row.prop(item, "channel", text="")
        row.prop(item, "gain", text="")


class _Base:
    bl_space_type = 'VIEW_3D'
    bl_region_type = 'UI'
    bl_category = "facecast"


def _rotation_row(layout, target, label: str) -> None:
    row = layout.row(align=True)
    row.prop(target, "object", text=label)
    obj = target.object
    if obj is not None and obj.type == 'ARMATURE':
        row.prop_search(target, "bone", obj.data, "bones", text="")


class FACECAST_PT_main(_Base, bpy.types.Panel):
    bl_label = "facecast"

    def draw(self, context):
        layout = self.layout
        settings = context.scene.facecast
        col = layout.column()
        col.prop(settings, "target")
        mesh = None
        try:
            mesh = keying.resolve_mesh(context, settings, required=False)
        except core.BridgeError as exc:
            col.label(text=str(exc), icon='ERROR')
        if settings.target is None and mesh is not None:
            col.label(text=f"Using the active object: {mesh.name}", icon='INFO')
        col.prop(settings, "preset")
        if settings.preset == core.PRESET_CUSTOM:
            col.prop(settings, "map_file")
        if mesh is not None:
            try:
                rmap = keying.mapping(settings, mesh)
            except core.BridgeError as exc:
                box = col.box()
                for i, line in enumerate(_wrap(str(exc), 48)):
                    box.label(text=line, icon='ERROR' if i == 0 else 'BLANK1')
            else:
                n = len(core.ARKIT52) - len(rmap.missing)
                row = col.row()
                row.label(text=f"{rmap.preset}: {n}/{len(core.ARKIT52)} ARKit channels mapped",
                          icon='CHECKMARK' if not rmap.missing else 'ERROR')
                if rmap.missing:
                    row.prop(settings, "show_missing", text=f"{len(rmap.missing)} missing",
                             toggle=True)
                    if settings.show_missing:
                        box = col.box()
                        grid = box.grid_flow(columns=2, even_columns=True)
                        for name in rmap.missing:
                            grid.label(text=name)
        row = col.row(align=True)
        row.operator("facecast.check_mapping", icon='VIEWZOOM')
        row.operator("facecast.write_map", text="Write Map", icon='EXPORT')
        col.label(text="Per-channel gains:")
        row = col.row()
        row.template_list("FACECAST_UL_gains", "", settings, "gains", settings, "gain_index",
                          rows=2)
        sub = row.column(align=True)
        sub.operator("facecast.gain_add", text="", icon='ADD')
        sub.operator("facecast.gain_remove", text="", icon='REMOVE')
        col.prop(settings, "use_rotation")
        if settings.use_rotation:
            _rotation_row(col, settings.head, "Head")
            _rotation_row(col, settings.eye_left, "Left eye")
            _rotation_row(col, settings.eye_right, "Right eye")
        msg = keying.last_message()
        if msg is not None:
            level, text = msg
            box = layout.box()
            icon = {'ERROR': 'ERROR', 'WARNING': 'INFO'}.get(level, 'CHECKMARK')
            for i, line in enumerate(_wrap(text, 48)):
                box.label(text=line, icon=icon if i == 0 else 'BLANK1')


class FACECAST_PT_live(_Base, bpy.types.Panel):
    bl_label = "Live"
    bl_parent_id = "FACECAST_PT_main"

    def draw(self, context):
        layout = self.layout
        settings = context.scene.facecast
        d = live.driver()
        col = layout.column()
        col.enabled = d is None
        col.prop(settings, "address")
        col.prop(settings, "subject")
        layout.prop(settings, "smoothing", slider=True)
        if d is None:
            layout.operator("facecast.connect", icon='LINKED')
            return
        layout.operator("facecast.disconnect", icon='UNLINKED')
        state = d.state
        icon = {core.STATE_CONNECTED: 'CHECKMARK', core.STATE_WAITING: 'TIME',
                core.STATE_RECONNECTING: 'ERROR', core.STATE_CONNECTING: 'TIME'}.get(state, 'INFO')
        box = layout.box()
        for i, line in enumerate(_wrap(d.status_text(), 48)):
            box.label(text=line, icon=icon if i == 0 else 'BLANK1')
        box.label(text=f"{d.link.fps:.0f} frames/s, {d.link.dropped} dropped, "
                       f"{d.link.frames} received")
        rec = d.recorder
        row = layout.row()
        row.operator("facecast.record", text="Stop Recording" if rec is not None else "Record",
                     icon='REC', depress=rec is not None)
        if rec is not None:
            row.label(text=f"{len(rec)} frames from frame {d.record_start}")


class FACECAST_PT_bake(_Base, bpy.types.Panel):
    bl_label = "Bake"
    bl_parent_id = "FACECAST_PT_main"

    def draw(self, context):
        layout = self.layout
        settings = context.scene.facecast
        col = layout.column()
        col.prop(settings, "audio")
        col.prop(settings, "runtime")
        if settings.runtime == core.RUNTIME_SERVER:
            col.prop(settings, "control_address")
        col.prop(settings, "action_mode")
        col.prop(settings, "start_frame")
        col.prop(settings, "add_sound")
        p = bake.pending()
        if p is None:
            layout.operator("facecast.bake", icon='RENDER_ANIMATION')
        else:
            layout.label(text=p.job.describe(), icon='TIME')
            layout.operator("facecast.bake_cancel", icon='CANCEL')


class FACECAST_PT_expression(_Base, bpy.types.Panel):
    """The runtime's expressive layer: what bakes ask for (session options or flags)."""

    bl_label = "Expression"
    bl_parent_id = "FACECAST_PT_main"

    def draw_header(self, context):
        self.layout.prop(context.scene.facecast.expression, "expressive", text="")

    def draw(self, context):
        layout = self.layout
        ex = context.scene.facecast.expression
        col = layout.column()
        col.active = ex.expressive
        col.prop(ex, "seed")
        row = col.row(align=True)
        row.prop(ex, "emotion")
        sub = row.row(align=True)
        sub.active = ex.emotion != "neutral"
        sub.prop(ex, "intensity", text="", slider=True)
        col.prop(ex, "keys_file")
        col.prop(ex, "transition")
        col.prop(ex, "auto_emotion")
        box = col.box()
        for layer in core.EXPRESSIVE_LAYERS:
            split = box.split(factor=0.4, align=True)
            split.prop(ex, f"use_{layer}")
            sub = split.row(align=True)
            sub.active = getattr(ex, f"use_{layer}")
            sub.prop(ex, f"{layer}_gain", slider=True)
        try:
            core.expression_summary(**ex.values())
        except core.BridgeError as exc:
            box = layout.box()
            for i, line in enumerate(_wrap(str(exc), 48)):
                box.label(text=line, icon='ERROR' if i == 0 else 'BLANK1')
        layout.label(text="Bakes use these; live: set them on the sender", icon='INFO')
        layout.operator("facecast.copy_expression_flags", icon='COPYDOWN')


class FACECAST_PT_import(_Base, bpy.types.Panel):
    bl_label = "Import Take"
    bl_parent_id = "FACECAST_PT_main"
    bl_options = {'DEFAULT_CLOSED'}

    def draw(self, context):
        layout = self.layout
        settings = context.scene.facecast
        layout.prop(settings, "take_file")
        row = layout.row()
        row.operator("facecast.import_take", icon='IMPORT')
        if settings.take_file:
            row.label(text=os.path.basename(bpy.path.abspath(settings.take_file)))


def _wrap(text: str, width: int) -> list[str]:
    words, lines, cur = text.split(), [], ""
    for w in words:
        if cur and len(cur) + 1 + len(w) > width:
            lines.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}" if cur else w
    if cur:
        lines.append(cur)
    return lines or [""]


CLASSES = (FACECAST_UL_gains, FACECAST_PT_main, FACECAST_PT_live, FACECAST_PT_bake,
           FACECAST_PT_expression, FACECAST_PT_import)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
