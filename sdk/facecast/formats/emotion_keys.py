"""Timed emotion keys files: the rows as written, before any validation of names or values.

Two spellings, told apart by the first non-blank character:

* JSON: a list of keys, each ``{"time", "name", "intensity", "transition"}`` or
  ``[time, name, intensity(, transition)]``, or an object holding that list under ``"keys"``
  (or ``"emotion_keys"``);
* CSV: rows ``time,name,intensity[,transition]``, an optional ``time,...`` header line, ``#``
  comment lines and blank lines ignored.

:func:`read_key_rows` returns each key as found (JSON items untouched, CSV rows as
``[time, name, intensity?, transition?]`` with numbers parsed) with where it came from, so the
runtime (``facecast_runtime.expressive.load_keys_file``) and the Blender extension check the
same rows with their own rules and name the exact line or key in their errors. Stdlib only.
"""
from __future__ import annotations

import csv
import io
import json
import os
from typing import Any

__all__ = ["read_key_rows"]


def read_key_rows(path: str | os.PathLike[str], label: str | None = None
                  ) -> tuple[list[Any], list[str]]:
    """``(rows, wheres)`` of a keys file; ``wheres[i]`` is ``"LABEL:LINE"`` (CSV) or
    ``"LABEL: key I"`` (JSON), LABEL defaulting to the path. Raises ValueError naming the file
    and line for text that is not a keys file; OSError/UnicodeDecodeError pass through."""
    p = os.fspath(path)
    label = p if label is None else label
    with open(p, encoding="utf-8") as f:
        text = f.read()
    if text.lstrip().startswith(("[", "{")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{label}: not valid JSON ({e.msg} at line {e.lineno})") from None
        if isinstance(data, dict):
            data = data.get("keys", data.get("emotion_keys"))
        if not isinstance(data, list):
            raise ValueError(f"{label}: expected a list of keys")
        return data, [f"{label}: key {i}" for i in range(len(data))]
    rows: list[Any] = []
    wheres: list[str] = []
    for ln, row in enumerate(csv.reader(io.StringIO(text)), 1):
        cells = [c.strip() for c in row]
        if not cells or not any(cells) or cells[0].startswith("#"):
            continue
        if not rows and cells[0].lower() == "time":  # header
            continue
        try:
            vals: list[Any] = [float(cells[0]), cells[1]]
            vals += [float(c) for c in cells[2:4] if c]
        except (ValueError, IndexError):
            raise ValueError(f"{label}:{ln}: expected time,name,intensity[,transition], got "
                             f"{','.join(cells)[:60]!r}") from None
        rows.append(vals)
        wheres.append(f"{label}:{ln}")
    return rows, wheres
