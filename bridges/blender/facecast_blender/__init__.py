"""facecast for Blender: live link, bake and take import for ARKit-52 shape keys.

Speech becomes ARKit-52 blendshape weights plus head and eye rotation (facecast runtime); this
extension drives a mesh's shape keys and head/eye objects or bones with them, live from a
running ``facecast serve`` or baked into keyframes, and imports Live Link Face CSV and facecast
JSON/NPZ takes. The sidebar panel is in the 3D viewport (N), tab "facecast".

Layout: ``core`` holds all logic without ``bpy`` (tested headless); ``properties``,
``operators`` and ``panel`` are the UI; ``live``, ``bake``, ``importer`` and ``keying`` turn
core's results into Blender data. The facecast SDK, pyzmq and msgpack come as bundled wheels.
"""
from __future__ import annotations

# Submodules are imported in register(): `core` stays importable without Blender.
_MODULES = ("properties", "operators", "panel", "live", "bake")


def _modules():
    import importlib

    return [importlib.import_module(f"{__package__}.{name}") for name in _MODULES]


def register() -> None:
    for mod in _modules():
        mod.register()


def unregister() -> None:
    for mod in reversed(_modules()):
        mod.unregister()
