"""Settings: per scene (``scene.facecast``) and the add-on preferences."""
from __future__ import annotations

import bpy
from bpy.props import (
    BoolProperty, CollectionProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty,
    StringProperty,
)

from facecast.retarget import PRESETS
from facecast.schema import ARKIT52
from facecast.wire import DEFAULT_CONTROL_ADDRESS, DEFAULT_FRAME_ADDRESS

from . import core

ADDON_ID = __package__

PRESET_ITEMS = [
    (core.PRESET_AUTO, "Auto-detect", "Pick the preset matching most of the mesh's shape keys"),
    *[(name, name, f"Shape keys named as in the '{name}' preset") for name in PRESETS],
    (core.PRESET_CUSTOM, "Custom JSON", "A JSON map file {\"jawOpen\": \"MyJaw\", ...}"),
]

RUNTIME_ITEMS = [
    (core.RUNTIME_AUTO, "Auto", "In-process when facecast_runtime imports in Blender's Python, "
                                "else the facecast command, else a running server"),
    (core.RUNTIME_IN_PROCESS, "In-process", "facecast_runtime inside Blender's Python"),
    (core.RUNTIME_SUBPROCESS, "facecast command", "Run 'facecast bake' (path in the add-on "
                                                  "preferences)"),
    (core.RUNTIME_SERVER, "Server", "Stream the audio through a running 'facecast serve'"),
]

ACTION_ITEMS = [
    ("NEW", "New action", "Bake into a copy of the current action (the old one is kept with a "
                          "fake user); channels not baked keep their keys"),
    ("EXISTING", "Existing action", "Bake into the assigned action, replacing keys of the baked "
                                    "channels inside the baked frame range only"),
]


def _mesh_poll(_self, obj) -> bool:
    return obj.type == 'MESH'


class FacecastGain(bpy.types.PropertyGroup):
    channel: EnumProperty(name="Channel", items=[(n, n, "") for n in ARKIT52])
    gain: FloatProperty(name="Gain", default=1.0, soft_min=0.0, soft_max=2.0,
                        description="Multiplier applied to this ARKit channel")


class FacecastRotationTarget(bpy.types.PropertyGroup):
    object: PointerProperty(name="Object", type=bpy.types.Object,
                            description="Object to rotate (an armature: pick a bone too)")
    bone: StringProperty(name="Bone", description="Pose bone to rotate (armatures)")


EMOTION_ITEMS = [(name, name.capitalize(), f"'{name}' from the take's start (then the keys "
                                             f"file's keys, if any)")
                 for name in core.EMOTIONS]

_LAYER_HELP = {
    "head": "head motion (sway, nods on accents, posture shifts, pitch with the voice)",
    "blinks": "blinks (more at pauses and with gaze shifts)",
    "gaze": "eye movements (fixations, saccades, looking away as speech starts)",
    "brows": "brows and upper face (brow flashes on accents, squint with loudness)",
    "emotion": "the emotion's face (e.g. happy: smile and cheek squint) and its behaviour",
}


def _layer_switch(layer: str):
    return BoolProperty(name=layer.capitalize(), default=True,
                        description=f"Generate {_LAYER_HELP[layer]}; off: those channels "
                                    f"stay at rest")


def _layer_gain(layer: str):
    return FloatProperty(name="Gain", default=1.0, min=0.0, max=core.MAX_LAYER_GAIN,
                         soft_max=2.0, description=f"Strength of {_LAYER_HELP[layer]}")


class FacecastExpression(bpy.types.PropertyGroup):
    """The runtime's expressive layer (bakes send these as session options or flags)."""

    expressive: BoolProperty(name="Expressive", default=True,
                             description="Head, eyes, blinks, brows and emotion from the voice; "
                                         "off: the mouth only, exactly the model's output")
    seed: IntProperty(name="Seed", default=0, min=0,
                      description="Seed of every random choice: the same audio and seed give "
                                  "the same animation")
    emotion: EnumProperty(name="Emotion", items=EMOTION_ITEMS, default="neutral")
    intensity: FloatProperty(name="Intensity", default=1.0, min=0.0, max=1.0,
                             description="Strength of the emotion")
    transition: FloatProperty(name="Transition", default=core.DEFAULT_TRANSITION_S, min=0.0,
                              max=core.MAX_TRANSITION_S, unit='TIME_ABSOLUTE',
                              description="Blend time between emotions, seconds (keys without "
                                          "their own transition)")
    auto_emotion: BoolProperty(name="Auto emotion", default=False,
                               description="Infer arousal from the voice: more head energy, "
                                           "livelier brows, wider eyes as the voice rises")
    keys_file: StringProperty(name="Emotion keys", subtype='FILE_PATH',
                              description="Timed emotions: JSON [{time, name, intensity, "
                                          "transition}, ...] or CSV time,name,intensity"
                                          "[,transition] (times in seconds of audio)")
    use_head: _layer_switch("head")
    head_gain: _layer_gain("head")
    use_blinks: _layer_switch("blinks")
    blinks_gain: _layer_gain("blinks")
    use_gaze: _layer_switch("gaze")
    gaze_gain: _layer_gain("gaze")
    use_brows: _layer_switch("brows")
    brows_gain: _layer_gain("brows")
    use_emotion: _layer_switch("emotion")
    emotion_gain: _layer_gain("emotion")

    def values(self) -> dict:
        """Plain values for :func:`core.expression_options` / :func:`core.expression_flags`."""
        return {"expressive": self.expressive, "seed": self.seed, "emotion": self.emotion,
                "intensity": self.intensity, "transition": self.transition,
                "auto_emotion": self.auto_emotion,
                "gains": {k: getattr(self, f"{k}_gain") for k in core.EXPRESSIVE_LAYERS},
                "enable": {k: getattr(self, f"use_{k}") for k in core.EXPRESSIVE_LAYERS},
                "keys_file": bpy.path.abspath(self.keys_file) if self.keys_file else ""}


class FacecastSettings(bpy.types.PropertyGroup):
    # -- target and retargeting ------------------------------------------------------------------
    target: PointerProperty(name="Mesh", type=bpy.types.Object, poll=_mesh_poll,
                            description="Mesh whose shape keys are driven (empty: the active "
                                        "object)")
    preset: EnumProperty(name="Retarget", items=PRESET_ITEMS, default=core.PRESET_AUTO,
                         description="How ARKit channels map to the mesh's shape-key names")
    map_file: StringProperty(name="Map", subtype='FILE_PATH',
                             description="JSON retarget map for the Custom preset")
    gains: CollectionProperty(type=FacecastGain)
    gain_index: IntProperty(default=0)
    show_missing: BoolProperty(name="Show missing", default=False)
    head: PointerProperty(type=FacecastRotationTarget)
    eye_left: PointerProperty(type=FacecastRotationTarget)
    eye_right: PointerProperty(type=FacecastRotationTarget)
    use_rotation: BoolProperty(name="Head and eyes", default=True,
                               description="Drive/key the head and eye targets when set")
    # -- live --------------------------------------------------------------------------------------
    address: StringProperty(name="Address", default=DEFAULT_FRAME_ADDRESS,
                            description="The runtime's frame socket (facecast serve: port 5571)")
    subject: StringProperty(name="Subject", default="",
                            description="Subject to follow (empty: any)")
    smoothing: FloatProperty(name="Smoothing", default=0.0, min=0.0, max=0.95,
                             description="Exponential smoothing of the live values (0 = off)")
    # -- bake and import ---------------------------------------------------------------------------
    audio: StringProperty(name="Audio", subtype='FILE_PATH',
                          description="Speech to bake (wav, flac, ogg, mp3, video ...)")
    runtime: EnumProperty(name="Runtime", items=RUNTIME_ITEMS, default=core.RUNTIME_AUTO)
    control_address: StringProperty(name="Control", default=DEFAULT_CONTROL_ADDRESS,
                                     description="The runtime's control socket (server runtime)")
    action_mode: EnumProperty(name="Into", items=ACTION_ITEMS, default="NEW")
    start_frame: IntProperty(name="Start frame", default=1,
                             description="Scene frame of the take's first frame")
    add_sound: BoolProperty(name="Add sound strip", default=True,
                            description="Add the audio to the sequencer at the start frame")
    take_file: StringProperty(name="Take", subtype='FILE_PATH',
                              description="Live Link Face CSV, facecast JSON or NPZ take")
    # -- expression (the runtime's expressive layer) -----------------------------------------------
    expression: PointerProperty(type=FacecastExpression)


class FacecastPreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    facecast_path: StringProperty(
        name="facecast command", subtype='FILE_PATH',
        description="Path of the facecast executable used by the subprocess runtime (empty: "
                    "look it up on PATH)")

    curve_dir: StringProperty(
        name="CURVE keys", subtype='DIR_PATH',
        description="Folder written by 'facecast keygen' (needed for runtimes on other "
                    "machines; empty: no encryption, loopback runtimes)")
    curve_client: StringProperty(name="Client name", default="client",
                                 description="Key pair NAME.key_secret in the CURVE folder")

    def draw(self, context):
        col = self.layout.column()
        col.prop(self, "facecast_path")
        found = core.find_facecast_executable(self.facecast_path)
        col.label(text=f"Using: {found}" if found else "facecast command not found",
                  icon='CHECKMARK' if found else 'ERROR')
        col.label(text="In-process runtime: " + ("available" if core.runtime_importable()
                                                 else "facecast_runtime not importable"))
        col.separator()
        col.prop(self, "curve_dir")
        if self.curve_dir:
            col.prop(self, "curve_client")


def preferences(context=None) -> FacecastPreferences | None:
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON_ID)
    return addon.preferences if addon is not None else None


CLASSES = (FacecastGain, FacecastRotationTarget, FacecastExpression, FacecastSettings,
           FacecastPreferences)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.facecast = PointerProperty(type=FacecastSettings)


def unregister() -> None:
    if hasattr(bpy.types.Scene, "facecast"):
        del bpy.types.Scene.facecast
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
