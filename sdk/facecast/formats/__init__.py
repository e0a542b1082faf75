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

Every writer goes through :mod:`facecast.formats.atomic`. Depends on numpy and the stdlib only.
"""
from __future__ import annotations

import os
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

__all__ = [
    "SUPPORTED_EXTENSIONS", "open_writer", "read", "write",
    "AtomicFile", "atomic_write", "FrameWriter",
    "LIVE_LINK_CSV_COLUMNS", "LIVE_LINK_TO_FACECAST", "LiveLinkCsvWriter", "LiveLinkTake",
    "format_timecode", "load_livelink_csv", "parse_timecode", "read_livelink_csv",
    "write_livelink_csv",
    "JsonFrameWriter", "read_json", "write_json",
    "NpzFrameWriter", "read_npz", "write_npz",
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


def _extension(path: str | os.PathLike[str]) -> str:
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in _WRITERS:
        raise ValueError(
            f"unsupported file extension {ext or '(none)'!r} for {os.fspath(path)!r}; "
            f"supported: {', '.join(SUPPORTED_EXTENSIONS)}"
        )
    return ext


def open_writer(
    path: str | os.PathLike[str],
    fps: int,
    subject: str = "",
    start_timecode: Any = None,
) -> FrameWriter:
    """Streaming writer for ``path``, chosen by extension.

    ``subject`` defaults to the first batch's subject (not stored in CSV). ``start_timecode`` is
    the timecode of frame 0 in a CSV take (``"HH:MM:SS:FF[.fff]"`` at 60 frames per second, or
    seconds); JSON and NPZ keep it as informational metadata.
    """
    return _WRITERS[_extension(path)](path, fps, subject, start_timecode)


def write(path: str | os.PathLike[str], batch: FrameBatch, **opts: Any) -> None:
    """Write ``batch`` to ``path`` atomically; ``opts`` go to the format's writer
    (``start_timecode`` for all, ``subject`` for JSON/NPZ, ``compress`` for NPZ)."""
    _WRITE[_extension(path)](path, batch, **opts)


def read(path: str | os.PathLike[str], **opts: Any) -> FrameBatch:
    """Read ``path`` into a FrameBatch; ``opts`` go to the format's reader (CSV:
    ``start_timecode``, ``fps``, ``gaps``)."""
    return _READ[_extension(path)](path, **opts)
