"""Common machinery of the streaming writers: batch bookkeeping and the atomic lifecycle.

A :class:`FrameWriter` is fed consecutive :class:`~facecast.schema.FrameBatch` objects with
:meth:`~FrameWriter.write` and finished with :meth:`~FrameWriter.close`. Its output goes to an
:class:`~facecast.formats.atomic.AtomicFile`, so the target appears, complete, only when
``close()`` succeeds; :meth:`~FrameWriter.abort`, an exception inside ``with``, or an I/O error
while writing leaves neither the target nor a temporary file behind (an existing target is left
untouched).

Rules every writer enforces:

* ``batch.fps`` must equal the writer's ``fps``;
* batches must be consecutive: each one starts at the frame after the previous one ends
  (``start_index`` of the first non-empty batch is the file's first frame); empty batches are
  accepted and ignored;
* an invalid batch raises ``ValueError`` before anything is written, so the writer stays usable;
  an error while writing to disk aborts the writer and re-raises.

Subclasses implement ``_encode_batch`` (validate and turn a batch into what will be written,
without touching the file), ``_write_encoded`` (the I/O) and ``_finish``.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..schema import CHANNEL_INDEX, CHANNELS, SCHEMA_VERSION, FrameBatch
from .atomic import AtomicFile

__all__ = [
    "FrameWriter", "channel_order", "check_schema_version", "json_default", "normalize_fps",
]


def normalize_fps(fps: Any) -> int:
    """``fps`` as a positive int; raises ValueError otherwise (fractional rates are refused)."""
    try:
        value = int(fps)
    except (TypeError, ValueError):
        raise ValueError(f"fps must be a positive integer, got {fps!r}") from None
    if value <= 0 or value != fps:
        raise ValueError(f"fps must be a positive integer, got {fps!r}")
    return value


def json_default(obj: Any) -> Any:
    """Convert numpy values inside blocks to plain JSON values."""
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")


def channel_order(path: str, channels: Any) -> np.ndarray:
    """For every facecast channel (``CHANNELS`` order), its column in a file listing ``channels``.

    Raises ValueError (prefixed with ``path``) for duplicates, unknown or missing names.
    """
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        raise ValueError(f"{path}: 'channels' must be a list of channel names")
    seen: dict[str, int] = {}
    for k, name in enumerate(channels):
        if name in seen:
            raise ValueError(
                f"{path}: channel {name!r} is listed twice (positions {seen[name]} and {k})"
            )
        seen[name] = k
    unknown = [c for c in channels if c not in CHANNEL_INDEX]
    if unknown:
        raise ValueError(
            f"{path}: unknown channels {unknown} (not in facecast schema version {SCHEMA_VERSION})"
        )
    missing = [c for c in CHANNELS if c not in seen]
    if missing:
        raise ValueError(f"{path}: missing channels {missing}")
    return np.array([seen[c] for c in CHANNELS], np.int64)


def check_schema_version(path: str, version: Any) -> None:
    """Raise ValueError unless ``version`` is this SDK's ``SCHEMA_VERSION``."""
    if isinstance(version, bool) or not isinstance(version, int):
        raise ValueError(f"{path}: schema_version must be an integer, got {version!r}")
    if version != SCHEMA_VERSION:
        raise ValueError(
            f"{path}: schema_version {version} is not supported (this reader supports "
            f"{SCHEMA_VERSION})"
        )


class FrameWriter:
    """Base class of the streaming writers (see the module docstring for the contract)."""

    #: ``"w"`` for text formats, ``"wb"`` for binary ones.
    file_mode = "w"
    #: Newline translation for text formats (``""`` writes ``\\n`` verbatim on every platform).
    file_newline: str | None = ""

    def __init__(self, path: str | os.PathLike[str], fps: int, subject: str = "") -> None:
        self.path = os.fspath(path)
        self.fps = normalize_fps(fps)
        self.subject = subject or ""
        #: Index of the first frame in the file (from the first non-empty batch).
        self.start_index: int | None = None
        #: Number of frames written so far.
        self.frames_written = 0
        self._provisional_start = 0
        self._atomic = AtomicFile(self.path, self.file_mode, newline=self.file_newline)
        self._state = "open"

    # -- public API ---------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._state != "open"

    @property
    def temp_path(self) -> str:
        """Where the data is being written until ``close()`` (useful in tests and diagnostics)."""
        return self._atomic.temp_path

    def write(self, batch: FrameBatch) -> None:
        """Append one batch of frames (the next consecutive run of frames)."""
        if self._state != "open":
            raise ValueError(f"{self.path}: writer is {self._state}; cannot write")
        if not isinstance(batch, FrameBatch):
            raise TypeError(f"expected a FrameBatch, got {type(batch).__name__}")
        if batch.fps != self.fps:
            raise ValueError(f"{self.path}: batch is at {batch.fps} fps, writer at {self.fps} fps")
        if len(batch) == 0:
            if self.start_index is None:
                self._provisional_start = batch.start_index
            return
        if self.start_index is not None:
            expected = self.start_index + self.frames_written
            if batch.start_index != expected:
                raise ValueError(
                    f"{self.path}: batches must be consecutive: expected a batch starting at "
                    f"frame {expected}, got one starting at frame {batch.start_index}"
                )
        if not self.subject and batch.subject:
            self.subject = batch.subject
        encoded = self._encode_batch(batch)  # may raise ValueError; nothing written yet
        first = self.start_index is None
        try:
            if first:
                self.start_index = batch.start_index
            self._write_encoded(encoded, first)
        except BaseException:
            self.abort()
            raise
        self.frames_written += len(batch)

    def close(self) -> None:
        """Finish the file and move it into place atomically. Idempotent once closed."""
        if self._state != "open":
            if self._state == "aborted":
                raise ValueError(f"{self.path}: writer was aborted; nothing to close")
            return
        try:
            if self.start_index is None:
                self.start_index = self._provisional_start
            self._finish()
            self._atomic.commit()
        except BaseException:
            self.abort()
            raise
        self._state = "closed"

    def abort(self) -> None:
        """Discard the output: no target file is created (an existing one is left untouched)."""
        if self._state == "closed":
            return
        self._state = "aborted"
        self._atomic.abort()

    def __enter__(self) -> "FrameWriter":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # -- for subclasses -----------------------------------------------------------------------
    @property
    def _file(self) -> Any:
        return self._atomic.file

    def _encode_batch(self, batch: FrameBatch) -> Any:
        """Validate a non-empty batch and encode it; must not touch the file (raise ValueError)."""
        raise NotImplementedError  # pragma: no cover

    def _write_encoded(self, encoded: Any, first: bool) -> None:
        """Write what ``_encode_batch`` returned; ``first`` is True for the first batch."""
        raise NotImplementedError  # pragma: no cover

    def _finish(self) -> None:
        """Write whatever closes the file (called once, before the atomic commit)."""
