"""facecast NPZ frames: compact numpy archives for tools and training pipelines.

Arrays in the archive (all loadable with ``np.load(path, allow_pickle=False)``):

==================  ================  ====================================================
name                dtype / shape     meaning
==================  ================  ====================================================
``values``          float32 (n, C)    frame values, column k is channel ``channels[k]``
``channels``        str (C,)          channel names (facecast schema names)
``fps``             int64 ()          frame rate
``start_index``     int64 ()          index of the first frame (frame i time =
                                      (start_index + i) / fps)
``schema_version``  int64 ()          ``facecast.schema.SCHEMA_VERSION`` of the writer
``subject``         str ()            subject name ("" if none)
``head_translation``  float32 (n, 3)  optional, metres
``blocks_json``     str ()            optional: JSON object {block name: [value or null per
                                      frame]} (JSON, so no pickling is ever needed)
``start_timecode``  str ()            optional, informational (the writer's start_timecode)
==================  ================  ====================================================

The reader requires ``schema_version == SCHEMA_VERSION`` and a ``channels`` list naming every
facecast channel exactly once (no unknown names), and reorders columns *by name*.

Memory: unlike the CSV and JSON writers, :class:`NpzFrameWriter` buffers every frame in memory
until ``close()`` (the .npy layout needs the final shape up front); a 3-hour bake at 60 fps is
about 150 MB of float32 values. The archive is written compressed by default.
"""
from __future__ import annotations

import json
import os
import zipfile
from typing import Any

import numpy as np

from ..schema import CHANNELS, SCHEMA_VERSION, FrameBatch
from .base import FrameWriter, channel_order, check_schema_version, json_default, normalize_fps

__all__ = ["NpzFrameWriter", "read_npz", "write_npz"]

_REQUIRED = ("values", "channels", "fps", "start_index", "schema_version")


class NpzFrameWriter(FrameWriter):
    """Writer of the facecast NPZ format; buffers all frames until ``close()`` (see module doc).

    ``subject`` defaults to the first batch's subject; ``start_timecode`` is stored as
    informational metadata; ``compress`` selects ``np.savez_compressed`` (default) or
    ``np.savez``.
    """

    file_mode = "wb"
    file_newline = None

    def __init__(
        self,
        path: str | os.PathLike[str],
        fps: int,
        subject: str = "",
        start_timecode: Any = None,
        *,
        compress: bool = True,
    ) -> None:
        super().__init__(path, fps, subject)
        self.start_timecode = start_timecode
        self.compress = compress
        self._batches: list[FrameBatch] = []

    def _encode_batch(self, batch: FrameBatch) -> FrameBatch:
        # Copy so later changes to the caller's arrays do not alter what is written.
        return FrameBatch(batch.values.copy(), batch.start_index, batch.fps, batch.subject,
                          None if batch.head_translation is None else batch.head_translation.copy(),
                          batch.blocks)

    def _write_encoded(self, encoded: FrameBatch, first: bool) -> None:
        self._batches.append(encoded)

    def _finish(self) -> None:
        whole = FrameBatch.concat(self._batches) if self._batches else None
        self._batches = []
        values = whole.values if whole is not None else np.zeros((0, len(CHANNELS)), np.float32)
        arrays: dict[str, np.ndarray] = {
            "values": np.ascontiguousarray(values, np.float32),
            "channels": np.array(CHANNELS),
            "fps": np.array(self.fps, np.int64),
            "start_index": np.array(self.start_index, np.int64),
            "schema_version": np.array(SCHEMA_VERSION, np.int64),
            "subject": np.array(self.subject),
        }
        if whole is not None and whole.head_translation is not None:
            arrays["head_translation"] = whole.head_translation.astype(np.float32)
        if whole is not None and whole.blocks:
            try:
                arrays["blocks_json"] = np.array(json.dumps(
                    whole.blocks, default=json_default, allow_nan=False, ensure_ascii=False))
            except (TypeError, ValueError) as e:
                raise ValueError(f"{self.path}: blocks cannot be stored as JSON: {e}") from None
        if self.start_timecode is not None:
            arrays["start_timecode"] = np.array(str(self.start_timecode))
        save = np.savez_compressed if self.compress else np.savez
        save(self._file, **arrays)


def write_npz(
    path: str | os.PathLike[str],
    batch: FrameBatch,
    *,
    subject: str | None = None,
    start_timecode: Any = None,
    compress: bool = True,
) -> None:
    """Write ``batch`` as a facecast NPZ archive, atomically."""
    with NpzFrameWriter(path, batch.fps, batch.subject if subject is None else subject,
                        start_timecode, compress=compress) as w:
        w.write(batch)


def _scalar_int(path: str, archive: Any, key: str) -> int:
    arr = archive[key]
    if arr.shape != () or arr.dtype.kind not in "iu":
        raise ValueError(f"{path}: {key!r} must be an integer scalar, got {arr.dtype} {arr.shape}")
    return int(arr)


def read_npz(path: str | os.PathLike[str]) -> FrameBatch:
    """Read a facecast NPZ archive (validates version and channel names, maps by name)."""
    path = os.fspath(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise ValueError(f"{path}: not a readable .npz archive ({e})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: not a .npz archive (a single .npy array)")
    with archive:
        try:
            missing = [k for k in _REQUIRED if k not in archive.files]
            if missing:
                raise ValueError(f"{path}: missing arrays {missing}")
            check_schema_version(path, _scalar_int(path, archive, "schema_version"))
            fps = normalize_fps(_scalar_int(path, archive, "fps"))
            start = _scalar_int(path, archive, "start_index")
            channels = archive["channels"]
            if channels.ndim != 1 or channels.dtype.kind != "U":
                raise ValueError(f"{path}: 'channels' must be a 1-D string array")
            order = channel_order(path, channels.tolist())
            raw = archive["values"]
            if raw.ndim != 2 or raw.shape[1] != len(channels) or raw.dtype.kind != "f":
                raise ValueError(f"{path}: 'values' must be a float array of shape "
                                 f"(n, {len(channels)}), got {raw.dtype} {raw.shape}")
            values = raw[:, order].astype(np.float32)
            subject = str(archive["subject"]) if "subject" in archive.files else ""
            ht = archive["head_translation"] if "head_translation" in archive.files else None
            blocks = None
            if "blocks_json" in archive.files:
                try:
                    blocks = json.loads(str(archive["blocks_json"]))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}: 'blocks_json' is not valid JSON: {e}") from None
                if not isinstance(blocks, dict):
                    raise ValueError(f"{path}: 'blocks_json' must be a JSON object")
        except ValueError as e:
            if str(e).startswith(path):
                raise
            raise ValueError(f"{path}: {e}") from None
    try:
        return FrameBatch(values, start, fps, subject, ht, blocks)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
