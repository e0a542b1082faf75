"""File formats animators and tools import: Live Link Face CSV, facecast JSON, facecast NPZ.

Top-level API (the format is chosen by the file extension, case-insensitively):

* ``write(path, batch, **opts)`` writes a whole :class:`~facecast.schema.FrameBatch`;
* ``read(path, **opts) -> FrameBatch`` reads one back (channels are always mapped by name);
* ``open_writer(path, fps, subject="", start_timecode=None)`` returns a streaming writer:
  call ``.write(batch)`` with consecutive batches, then ``.close()`` (or use it as a context
  manager). The file appears atomically on close; ``.abort()`` or an exception inside ``with``
  leaves no file and no temporary file.

==========  =====================================  =====================================
extension   module                                 notes
==========  =====================================  =====================================
``.csv``    :mod:`~facecast.formats.livelink_csv`  Live Link Face take; streams
``.json``   :mod:`~facecast.formats.json_format`   self-describing, versioned; streams
``.npz``    :mod:`~facecast.formats.npz_format`    compact; buffers frames until close
==========  =====================================  =====================================

Mesh formats (:data:`MESH_EXTENSIONS`) carry the animation *on a head*: the built-in demo head
(:func:`facecast.demohead.demo_head`) unless ``mesh=`` gives a :class:`~facecast.mesh.HeadMesh`
(``read_mesh`` loads a user's .glb/.gltf/.fbx), with ``retarget=`` a
:class:`~facecast.retarget.RetargetMap`, a preset name or a JSON map path (default: detected from
the mesh's shape-key names). ``write`` and ``open_writer`` take them (``open_writer`` buffers the
take until ``close()``); ``read`` does not read them back (see ``read_gltf_animation``).
See ``docs/exports.md``.

=====================  ================================  ====================================
extension              module                            needs
=====================  ================================  ====================================
``.glb`` ``.gltf``     :mod:`~facecast.formats.gltf`     nothing (pure Python)
``.usd[a|c]``          :mod:`~facecast.formats.usd`      usd-core (``facecast[usd]``)
``.fbx``               :mod:`~facecast.formats.fbx`      bpy (``facecast[blender]``)
=====================  ================================  ====================================

Every writer goes through :mod:`facecast.formats.atomic`. The frame formats depend on numpy and
the stdlib only; pxr and bpy are imported only when a USD/FBX file is written or read.
"""
from __future__ import annotations

import os
import struct
from typing import Any, Callable

from ..schema import FrameBatch
from .atomic import AtomicFile, atomic_write
from .base import FrameWriter
from .json_format import JsonFrameWriter, read_json, write_json
from .livelink_csv import (
    LIVE_LINK_CSV_COLUMNS, LIVE_LINK_TO_FACECAST, LiveLinkCsvWriter, LiveLinkTake,
    format_timecode, load_livelink_csv, parse_timecode, read_livelink_csv, write_livelink_csv,
)
from .npz_format import NpzFrameWriter, read_npz, write_npz
from .fbx import FbxWriter, read_fbx_mesh, write_fbx
from .gltf import GltfWriter, read_gltf_animation, read_gltf_mesh, write_gltf
from .rig import MissingDependencyError
from .usd import UsdWriter, write_usd

__all__ = [
    "SUPPORTED_EXTENSIONS", "open_writer", "read", "write",
    "AtomicFile", "atomic_write", "FrameWriter",
    "LIVE_LINK_CSV_COLUMNS", "LIVE_LINK_TO_FACECAST", "LiveLinkCsvWriter", "LiveLinkTake",
    "format_timecode", "load_livelink_csv", "parse_timecode", "read_livelink_csv",
    "write_livelink_csv",
    "JsonFrameWriter", "read_json", "write_json",
    "NpzFrameWriter", "read_npz", "write_npz",
    "MESH_EXTENSIONS", "WRITE_EXTENSIONS", "MissingDependencyError", "read_mesh",
    "GltfWriter", "read_gltf_animation", "read_gltf_mesh", "write_gltf",
    "UsdWriter", "write_usd", "FbxWriter", "read_fbx_mesh", "write_fbx",
]

_WRITERS: dict[str, type[FrameWriter]] = {
    ".csv": LiveLinkCsvWriter,
    ".json": JsonFrameWriter,
    ".npz": NpzFrameWriter,
}
_WRITE: dict[str, Callable[..., None]] = {
    ".csv": write_livelink_csv,
    ".json": write_json,
    ".npz": write_npz,
}
_READ: dict[str, Callable[..., FrameBatch]] = {
    ".csv": read_livelink_csv,
    ".json": read_json,
    ".npz": read_npz,
}
#: File extensions understood by ``write``, ``read`` and ``open_writer``.
SUPPORTED_EXTENSIONS: tuple[str, ...] = tuple(_WRITERS)

_MESH_WRITERS: dict[str, type[FrameWriter]] = {
    ".glb": GltfWriter, ".gltf": GltfWriter,
    ".usd": UsdWriter, ".usda": UsdWriter, ".usdc": UsdWriter,
    ".fbx": FbxWriter,
}
_MESH_WRITE: dict[str, Callable[..., None]] = {
    ".glb": write_gltf, ".gltf": write_gltf,
    ".usd": write_usd, ".usda": write_usd, ".usdc": write_usd,
    ".fbx": write_fbx,
}
#: Mesh formats: the animation on a head (written by ``write``/``open_writer``, not ``read``).
MESH_EXTENSIONS: tuple[str, ...] = tuple(_MESH_WRITERS)
#: Everything ``write`` and ``open_writer`` accept.
WRITE_EXTENSIONS: tuple[str, ...] = SUPPORTED_EXTENSIONS + MESH_EXTENSIONS
#: Heads ``read_mesh`` loads.
MESH_INPUT_EXTENSIONS: tuple[str, ...] = (".glb", ".gltf", ".fbx")


def _extension(path: str | os.PathLike[str], allowed: tuple[str, ...] = SUPPORTED_EXTENSIONS
               ) -> str:
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in allowed:
        raise ValueError(
            f"unsupported file extension {ext or '(none)'!r} for {os.fspath(path)!r}; "
            f"supported: {', '.join(allowed)}"
        )
    return ext


def open_writer(
    path: str | os.PathLike[str],
    fps: int,
    subject: str = "",
    start_timecode: Any = None,
    **opts: Any,
) -> FrameWriter:
    """Streaming writer for ``path``, chosen by extension.

    ``subject`` defaults to the first batch's subject (not stored in CSV). ``start_timecode`` is
    the timecode of frame 0 in a CSV take (``"HH:MM:SS:FF[.fff]"`` at 60 frames per second, or
    seconds); JSON and NPZ keep it as informational metadata. Mesh formats take ``mesh=`` and
    ``retarget=`` in ``opts`` and buffer the take until ``close()``.
    """
    ext = _extension(path, WRITE_EXTENSIONS)
    if ext in _MESH_WRITERS:
        return _MESH_WRITERS[ext](path, fps, subject, start_timecode, **opts)
    if opts:
        raise TypeError(f"{ext} writers take no options {sorted(opts)}")
    return _WRITERS[ext](path, fps, subject, start_timecode)


def write(path: str | os.PathLike[str], batch: FrameBatch, **opts: Any) -> None:
    """Write ``batch`` to ``path`` atomically; ``opts`` go to the format's writer
    (``start_timecode`` for all, ``subject`` for JSON/NPZ and mesh formats, ``compress`` for
    NPZ, ``mesh`` and ``retarget`` for mesh formats)."""
    ext = _extension(path, WRITE_EXTENSIONS)
    (_MESH_WRITE.get(ext) or _WRITE[ext])(path, batch, **opts)


def read(path: str | os.PathLike[str], **opts: Any) -> FrameBatch:
    """Read ``path`` into a FrameBatch; ``opts`` go to the format's reader (CSV:
    ``start_timecode``, ``fps``, ``gaps``)."""
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext in _MESH_WRITERS:
        raise ValueError(f"{os.fspath(path)!r}: {ext} files are not read back as frames; use "
                         "read_mesh() for the head or read_gltf_animation() for a glTF take")
    return _READ[_extension(path)](path, **opts)


def read_mesh(path: str | os.PathLike[str]) -> Any:
    """Load a user's head (``.glb``, ``.gltf``, or ``.fbx`` through Blender) as a
    :class:`~facecast.mesh.HeadMesh`; ValueError for unreadable files."""
    ext = _extension(path, MESH_INPUT_EXTENSIONS)
    if not os.path.exists(os.fspath(path)):
        raise ValueError(f"{os.fspath(path)}: no such file")
    if ext == ".fbx":
        return read_fbx_mesh(path)
    try:
        return read_gltf_mesh(path)
    except (KeyError, IndexError, TypeError, AttributeError, struct.error) as e:
        # a document that parses but does not hold together (a dangling index, a wrong type)
        raise ValueError(f"{os.fspath(path)}: not a readable head mesh "
                         f"({type(e).__name__}: {e})") from None
