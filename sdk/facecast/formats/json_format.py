"""facecast JSON frames: a self-describing, schema-versioned, human-readable file.

Layout (one JSON object; keys in this order, frames one per line)::

    {"format": "facecast.frames",
     "schema_version": 1,                  # facecast.schema.SCHEMA_VERSION of the writer
     "fps": 60,
     "start_index": 0,                     # index of the first frame
     "subject": "alice",
     "start_timecode": null,               # informational (the writer's start_timecode), or null
     "channels": ["eyeBlinkLeft", ...],    # names of the entries of every "values" list
     "frames": [
      {"index": 0, "time": 0.0, "values": [0.1, ...]},
      {"index": 1, "time": 0.016666666666666666, "values": [...],
       "head_translation": [0.0, 0.01, 0.0],            # optional, metres
       "blocks": {"emotion": {"label": "happy"}}},      # optional, named blocks of this frame
      ...
     ],
     "frame_count": 2}

* ``values`` are the channels listed in ``channels`` (radians for rotations, see
  :mod:`facecast.schema`), printed with 9 significant digits, which restores float32 values
  exactly. ``time`` is ``index / fps`` (seconds on the audio clock), informational.
* ``head_translation`` and ``blocks`` appear only on frames that carry them. Block values must
  be JSON-serialisable (numpy arrays and scalars are converted to lists and numbers).
* ``frame_count`` is written last, so a truncated file is detected.

The reader checks ``format``, requires ``schema_version == SCHEMA_VERSION``, requires
``channels`` to name every facecast channel exactly once (no unknown names) and maps the
values to facecast order *by name*; frame indices must run from ``start_index`` without gaps.
Every problem raises ``ValueError`` naming the file (and the frame or JSON line where it
applies).

The writer streams: the header is written with the first batch, then each batch's frames are
appended to the temporary file, and the array is closed on ``close()``, so memory is bounded
by one batch. The reader loads the whole document (it is meant for clips; use CSV or NPZ for
very long bakes).
"""
from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from ..schema import CHANNELS, SCHEMA_VERSION, FrameBatch
from .base import FrameWriter, channel_order, check_schema_version, json_default, normalize_fps

__all__ = ["FORMAT_TAG", "JsonFrameWriter", "read_json", "write_json"]

#: Value of the ``format`` key.
FORMAT_TAG = "facecast.frames"


def _numbers(row: list[float]) -> str:
    return "[" + ",".join("%.9g" % v for v in row) + "]"


class JsonFrameWriter(FrameWriter):
    """Streaming writer of the facecast JSON format (memory bounded by one batch).

    ``subject`` defaults to the first batch's subject; ``start_timecode`` is stored as
    informational metadata only.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fps: int,
        subject: str = "",
        start_timecode: Any = None,
    ) -> None:
        if start_timecode is not None and not isinstance(start_timecode, (str, int, float)):
            raise ValueError(f"start_timecode must be a string or a number, got {start_timecode!r}")
        super().__init__(path, fps, subject)
        self.start_timecode = start_timecode
        self._header_written = False

    def _header(self) -> str:
        head = {
            "format": FORMAT_TAG,
            "schema_version": SCHEMA_VERSION,
            "fps": self.fps,
            "start_index": self.start_index,
            "subject": self.subject,
            "start_timecode": self.start_timecode,
            "channels": list(CHANNELS),
        }
        text = json.dumps(head, ensure_ascii=False)
        return text[:-1] + ',\n "frames": [\n'

    def _encode_batch(self, batch: FrameBatch) -> list[str]:
        finite = np.isfinite(batch.values)
        if not finite.all():
            i, c = np.argwhere(~finite)[0]
            raise ValueError(
                f"{self.path}: frame {batch.start_index + int(i)} channel {CHANNELS[c]!r} is "
                f"{batch.values[i, c]}; JSON can only hold finite values"
            )
        ht = batch.head_translation
        if ht is not None and not np.isfinite(ht).all():
            raise ValueError(f"{self.path}: head_translation has non-finite values")
        values = batch.values.astype(np.float64).tolist()
        out = []
        for i, row in enumerate(values):
            index = batch.start_index + i
            text = f'{{"index": {index}, "time": {index / self.fps!r}, "values": {_numbers(row)}'
            if ht is not None:
                text += f', "head_translation": {_numbers(ht[i].astype(np.float64).tolist())}'
            blocks = {k: v[i] for k, v in batch.blocks.items() if v[i] is not None}
            if blocks:
                try:
                    text += ', "blocks": ' + json.dumps(
                        blocks, default=json_default, allow_nan=False, ensure_ascii=False
                    )
                except (TypeError, ValueError) as e:
                    raise ValueError(
                        f"{self.path}: blocks of frame {index} cannot be stored as JSON: {e}"
                    ) from None
            out.append(text + "}")
        return out

    def _write_encoded(self, encoded: list[str], first: bool) -> None:
        if first:
            self._file.write(self._header())
            self._header_written = True
        else:
            self._file.write(",\n")
        self._file.write(",\n".join(encoded))

    def _finish(self) -> None:
        if not self._header_written:
            self._file.write(self._header())
        else:
            self._file.write("\n")
        self._file.write(f' ],\n "frame_count": {self.frames_written}}}\n')


def write_json(
    path: str | os.PathLike[str],
    batch: FrameBatch,
    *,
    subject: str | None = None,
    start_timecode: Any = None,
) -> None:
    """Write ``batch`` as facecast JSON, atomically (``subject`` defaults to the batch's)."""
    with JsonFrameWriter(path, batch.fps, batch.subject if subject is None else subject,
                         start_timecode) as w:
        w.write(batch)


def read_json(path: str | os.PathLike[str]) -> FrameBatch:
    """Read a facecast JSON file (see the module docstring for what is validated)."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(
            f"{path}: line {e.lineno}, column {e.colno}: invalid JSON: {e.msg}"
        ) from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not a UTF-8 text file ({e.reason} at byte {e.start})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_TAG:
        raise ValueError(
            f"{path}: not a facecast JSON file (expected \"format\": \"{FORMAT_TAG}\")"
        )
    for key in ("schema_version", "fps", "start_index", "channels", "frames"):
        if key not in doc:
            raise ValueError(f"{path}: missing key {key!r}")
    check_schema_version(path, doc["schema_version"])
    try:
        fps = normalize_fps(doc["fps"])
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    start = doc["start_index"]
    if isinstance(start, bool) or not isinstance(start, int):
        raise ValueError(f"{path}: start_index must be an integer, got {start!r}")
    subject = doc.get("subject") or ""
    if not isinstance(subject, str):
        raise ValueError(f"{path}: subject must be a string, got {subject!r}")
    order = channel_order(path, doc["channels"])
    frames = doc["frames"]
    if not isinstance(frames, list):
        raise ValueError(f"{path}: 'frames' must be a list")
    if "frame_count" in doc and doc["frame_count"] != len(frames):
        raise ValueError(
            f"{path}: frame_count is {doc['frame_count']} but {len(frames)} frames are present "
            f"(truncated or edited file?)"
        )

    width = len(doc["channels"])
    rows: list[list[float]] = []
    translations: list[Any] = []
    blocks: dict[str, list[Any]] = {}
    for k, fr in enumerate(frames):
        where = f"frame {k}"
        if not isinstance(fr, dict):
            raise ValueError(f"{path}: {where}: expected an object")
        if fr.get("index") != start + k:
            raise ValueError(
                f"{path}: {where}: index is {fr.get('index')!r}, expected {start + k} "
                f"(frames must be consecutive from start_index)"
            )
        vals = fr.get("values")
        if (not isinstance(vals, list) or len(vals) != width
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                           for v in vals)):
            raise ValueError(
                f"{path}: {where} (index {start + k}): 'values' must be a list of {width} numbers"
            )
        rows.append(vals)
        ht = fr.get("head_translation")
        if ht is not None and (not isinstance(ht, list) or len(ht) != 3):
            raise ValueError(f"{path}: {where}: 'head_translation' must be a list of 3 numbers")
        translations.append(ht)
        fb = fr.get("blocks") or {}
        if not isinstance(fb, dict):
            raise ValueError(f"{path}: {where}: 'blocks' must be an object")
        for name, value in fb.items():
            blocks.setdefault(name, [None] * k).append(value)
        for name, column in blocks.items():
            if len(column) < k + 1:
                column.append(None)

    raw = np.array(rows, np.float64).reshape(len(rows), width)
    if not np.isfinite(raw).all():
        raise ValueError(f"{path}: values must be finite")
    values = raw[:, order].astype(np.float32)
    head_translation = None
    if any(t is not None for t in translations):
        try:
            head_translation = np.array([t if t is not None else [0.0, 0.0, 0.0]
                                         for t in translations], np.float32)
        except (TypeError, ValueError):
            raise ValueError(f"{path}: 'head_translation' entries must be numbers") from None
    return FrameBatch(values, start, fps, subject, head_translation, blocks)
