"""Live Link Face CSV takes: the file the Live Link Face iOS app records.

File layout (exactly what the app writes; see ``shared/specs/live_link_face.md``)
------------------------------------------------------------------------------
Header::

    Timecode,BlendShapeCount,EyeBlinkLeft,...,RightEyeRoll

followed by the 61 names of :data:`LIVE_LINK_CSV_COLUMNS`. This is the UDP packet order except
for two swapped pairs (``JawRight,JawLeft`` and ``MouthRight,MouthLeft``); columns are therefore
always written and read *by name*. Each row is::

    HH:MM:SS:FF.fff,61,<61 values printed with 10 decimals>

``FF`` counts frames at 60 per second (00-59) whatever the take's rate, and ``.fff`` is the
sub-frame fraction of a 60th of a second (not milliseconds): seconds since midnight
``= h*3600 + m*60 + s + (FF + fraction)/60``. A 30 Hz take steps ``FF`` by 2. The reader accepts
the ``BlendshapeCount`` spelling of newer app versions (header names match case-insensitively).
Lines end with ``\\n``; there is no subject name in the file.

Channel mapping (facecast <-> Live Link)
----------------------------------------
* The 52 ARKit blendshapes map by name, camelCase -> PascalCase (``jawOpen`` -> ``JawOpen``);
  weights are copied unchanged (no clamping).
* Rotations: Live Link stores degrees / 180 (so -1..1 is -180..180 degrees), i.e. radians / pi.
  Signs, determined from the recorded fixtures and the schema's axes (see :mod:`facecast.schema`):

  ============  ==========================  =====================================================
  column        value written               why
  ============  ==========================  =====================================================
  HeadYaw       -headYaw / pi               Live Link yaw is positive towards the subject's right
  HeadPitch     +headPitch / pi             both: positive = down
  HeadRoll      -headRoll / pi              mirrored like yaw (see below)
  LeftEyeYaw    -leftEyeYaw / pi            as HeadYaw
  LeftEyePitch  +leftEyePitch / pi          as HeadPitch
  LeftEyeRoll   0                           facecast has no eye roll
  RightEye*     as LeftEye*
  ============  ==========================  =====================================================

  Evidence: in the real takes ``alex_rom_3.csv``/``alex_rom_4.csv`` ``LeftEyeYaw`` rises with
  ``EyeLookInLeft`` (looking towards the nose, i.e. the subject's right) and ``RightEyeYaw`` with
  ``EyeLookOutRight``, while ``*EyePitch`` rises with ``EyeLookDown*``. So Live Link's yaw is
  the negative of the schema's right-handed yaw and its pitch has the schema's sign. That is the
  schema's right-handed ARKit frame seen with X mirrored (Unreal's left-handed convention),
  which flips rotations about Y and Z (yaw, roll) and keeps rotations about X (pitch); the head
  angles are taken to follow the same convention (the fixtures carry no head motion, so the
  head signs rest on that consistency, not on data). Eye roll is written as 0 and ignored on
  reading; head translation and optional blocks are not stored in this format.

  All arithmetic is float64: the text of a rotation column is exactly
  ``format(sign * float(radians) / math.pi, ".10f")``; reading multiplies by pi.

Time
----
facecast frame ``i`` (time ``i / fps`` on the audio clock) is written at timecode
``start_timecode + i / fps``, rounded to the nearest 1/1000 of a 60th of a second and wrapped at
24 h. ``start_timecode`` defaults to ``00:00:00:00``. The reader reverses this: by default frame
0 is at ``00:00:00:00`` (so a default write/read round trip restores ``start_index``); pass the
writer's ``start_timecode`` to undo an offset, or ``start_timecode="first"`` to make the first
row frame 0.

Reading real takes: the frame rate is detected from the median timecode step (60 / step; a
30 Hz take gives 30). Each row advances the frame index by ``round(step * fps / 60)``, which
absorbs the sub-frame clock drift seen in real takes; a step of two or more frames is a gap
(dropped frames, present in the fixtures) that is filled by linear interpolation (``gaps=
"interpolate"``, the default; gaps over :data:`MAX_FILL_SECONDS` are refused) or refused
(``gaps="error"``). A timecode that goes backwards by more than 12 h is a midnight wrap; any
other non-advancing timecode is an error. Malformed input raises ``ValueError`` naming the file,
the line and the column.
"""
from __future__ import annotations

import csv
import math
import os
import re
from dataclasses import dataclass
from typing import Union

import numpy as np

from ..schema import ARKIT52, CHANNEL_INDEX, CHANNELS, DEFAULT_FPS, FrameBatch
from .base import FrameWriter, normalize_fps

__all__ = [
    "LIVE_LINK_CSV_COLUMNS", "LIVE_LINK_TO_FACECAST", "LiveLinkCsvWriter", "LiveLinkTake",
    "MAX_FILL_SECONDS", "format_timecode", "load_livelink_csv", "parse_timecode",
    "read_livelink_csv", "write_livelink_csv",
]

#: Live Link's rotation columns (degrees/180), in packet order; eye roll has no facecast channel.
LIVE_LINK_ROTATIONS: tuple[str, ...] = (
    "HeadYaw", "HeadPitch", "HeadRoll",
    "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
    "RightEyeYaw", "RightEyePitch", "RightEyeRoll",
)


def _live_link_name(arkit: str) -> str:
    """Live Link spells the ARKit names in PascalCase: jawOpen -> JawOpen."""
    return arkit[0].upper() + arkit[1:]


def _csv_order() -> tuple[str, ...]:
    # packet order = the 52 ARKit names in Apple's order + rotations; the CSV take swaps two
    # pairs of it: JawLeft/JawRight and MouthLeft/MouthRight
    names = [_live_link_name(n) for n in ARKIT52] + list(LIVE_LINK_ROTATIONS)
    for a, b in (("JawLeft", "JawRight"), ("MouthLeft", "MouthRight")):
        i, j = names.index(a), names.index(b)
        names[i], names[j] = names[j], names[i]
    return tuple(names)


#: The 61 value columns of a Live Link Face CSV take, in the app's column order.
LIVE_LINK_CSV_COLUMNS: tuple[str, ...] = _csv_order()
#: The count the app writes in every row (and the only one Unreal accepts).
BLENDSHAPE_COUNT = 61
assert len(LIVE_LINK_CSV_COLUMNS) == BLENDSHAPE_COUNT

#: Rotation columns: Live Link name -> (facecast channel or None, sign). Value written is
#: ``sign * radians / pi`` (Live Link's degrees/180); see the module docstring.
_ROTATIONS: dict[str, tuple[str | None, float]] = {
    "HeadYaw": ("headYaw", -1.0),
    "HeadPitch": ("headPitch", 1.0),
    "HeadRoll": ("headRoll", -1.0),
    "LeftEyeYaw": ("leftEyeYaw", -1.0),
    "LeftEyePitch": ("leftEyePitch", 1.0),
    "LeftEyeRoll": (None, 0.0),
    "RightEyeYaw": ("rightEyeYaw", -1.0),
    "RightEyePitch": ("rightEyePitch", 1.0),
    "RightEyeRoll": (None, 0.0),
}

#: Live Link column -> facecast channel (None: not represented in facecast, written as 0).
LIVE_LINK_TO_FACECAST: dict[str, str | None] = {
    **{name[0].upper() + name[1:]: name for name in ARKIT52},
    **{ll: fc for ll, (fc, _) in _ROTATIONS.items()},
}
assert set(LIVE_LINK_TO_FACECAST) == set(LIVE_LINK_CSV_COLUMNS)
assert {c for c in LIVE_LINK_TO_FACECAST.values() if c} == set(CHANNELS)

#: Longest gap (seconds) the reader fills by interpolation; longer jumps are errors.
MAX_FILL_SECONDS = 1.0

_RATE = 60  # timecode frames per second
_TICKS_PER_FRAME = 1000  # resolution of the printed sub-frame (.fff)
_TICKS_PER_SECOND = _RATE * _TICKS_PER_FRAME
_TICKS_PER_DAY = 24 * 3600 * _TICKS_PER_SECOND
_FRAMES_PER_DAY = 24 * 3600 * _RATE
_TIMECODE_RE = re.compile(r"(\d{1,2}):(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?")

Timecode = Union[str, int, float]


def _conversion_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per Live Link column: facecast source index, divisor (1 or pi) and sign (+-1, 0)."""
    src = np.zeros(BLENDSHAPE_COUNT, np.int64)
    div = np.ones(BLENDSHAPE_COUNT, np.float64)
    sign = np.ones(BLENDSHAPE_COUNT, np.float64)
    for k, name in enumerate(LIVE_LINK_CSV_COLUMNS):
        if name in _ROTATIONS:
            channel, s = _ROTATIONS[name]
            div[k] = math.pi
            sign[k] = s
            src[k] = CHANNEL_INDEX[channel] if channel else 0
        else:
            src[k] = CHANNEL_INDEX[LIVE_LINK_TO_FACECAST[name]]
    return src, div, sign


_SRC, _DIV, _SIGN = _conversion_arrays()


# ------------------------------------------------------------------------------------------------
# Timecodes
# ------------------------------------------------------------------------------------------------
def _parse_timecode_60ths(text: str) -> float:
    """``HH:MM:SS:FF[.fff]`` -> 60ths of a second since midnight; ValueError if malformed."""
    m = _TIMECODE_RE.fullmatch(text.strip())
    if not m:
        raise ValueError(f"bad timecode {text!r}: expected HH:MM:SS:FF.fff")
    h, mi, s, ff = (int(g) for g in m.groups()[:4])
    if h >= 24 or mi >= 60 or s >= 60 or ff >= _RATE:
        raise ValueError(
            f"bad timecode {text!r}: hours must be < 24, minutes and seconds < 60, "
            f"frames (at {_RATE} per second) < {_RATE}"
        )
    frac = float("0." + m.group(5)) if m.group(5) else 0.0
    return ((h * 60 + mi) * 60 + s) * _RATE + ff + frac


def parse_timecode(text: str) -> float:
    """Seconds since midnight of a Live Link timecode ``HH:MM:SS:FF[.fff]`` (FF at 60/s)."""
    return _parse_timecode_60ths(text) / _RATE


def _timecode_ticks(tc: Timecode | None) -> int:
    """A start timecode (string, or seconds as a number, or None for zero) in 1/60000 s."""
    if tc is None:
        return 0
    if isinstance(tc, str):
        return int(round(_parse_timecode_60ths(tc) * _TICKS_PER_FRAME)) % _TICKS_PER_DAY
    if isinstance(tc, (int, float)) and not isinstance(tc, bool) and math.isfinite(tc):
        return int(round(tc * _TICKS_PER_SECOND)) % _TICKS_PER_DAY
    raise ValueError(f"start_timecode must be 'HH:MM:SS:FF[.fff]' or seconds, got {tc!r}")


def _format_ticks(ticks: int) -> str:
    ticks %= _TICKS_PER_DAY
    frames, sub = divmod(ticks, _TICKS_PER_FRAME)
    seconds, ff = divmod(frames, _RATE)
    minutes, s = divmod(seconds, 60)
    h, m = divmod(minutes, 60)
    return f"{h:02d}:{m:02d}:{s:02d}:{ff:02d}.{sub:03d}"


def format_timecode(seconds: float) -> str:
    """``HH:MM:SS:FF.fff`` for a time in seconds since midnight (wrapped at 24 h)."""
    return _format_ticks(int(round(seconds * _TICKS_PER_SECOND)))


def _row_ticks(indices: np.ndarray, fps: int, start_ticks: int) -> np.ndarray:
    """Ticks of frames ``indices`` at ``fps``: start + index * 60000 / fps, rounded half up."""
    idx = indices.astype(np.int64)
    return (start_ticks + (idx * (2 * _TICKS_PER_SECOND) + fps) // (2 * fps)) % _TICKS_PER_DAY


# ------------------------------------------------------------------------------------------------
# Writing
# ------------------------------------------------------------------------------------------------
def _header_line() -> str:
    return ",".join(("Timecode", "BlendShapeCount") + LIVE_LINK_CSV_COLUMNS) + "\n"


_ROW_FORMAT = "%s," + str(BLENDSHAPE_COUNT) + ",%.10f" * BLENDSHAPE_COUNT + "\n"


def _check_finite(batch: FrameBatch, where: str) -> None:
    finite = np.isfinite(batch.values)
    if not finite.all():
        i, c = np.argwhere(~finite)[0]
        raise ValueError(
            f"{where}: frame {batch.start_index + int(i)} channel {CHANNELS[c]!r} is "
            f"{batch.values[i, c]}; only finite values can be written"
        )


def livelink_values(batch: FrameBatch) -> np.ndarray:
    """The batch as Live Link values (float64, n x 61, CSV column order)."""
    values = batch.values.astype(np.float64)
    return values[:, _SRC] / _DIV * _SIGN


class LiveLinkCsvWriter(FrameWriter):
    """Streaming writer of a Live Link Face CSV take (memory bounded by one batch).

    ``subject`` is accepted for a uniform writer API but not stored (the format has no field for
    it). ``start_timecode`` is the timecode of frame 0: ``"HH:MM:SS:FF[.fff]"`` (FF at 60/s),
    seconds since midnight as a number, or None for ``00:00:00:00``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fps: int,
        subject: str = "",
        start_timecode: Timecode | None = None,
    ) -> None:
        start_ticks = _timecode_ticks(start_timecode)  # validate before creating any file
        super().__init__(path, fps, subject)
        self.start_ticks = start_ticks
        try:
            self._file.write(_header_line())
        except BaseException:
            self.abort()
            raise

    def _encode_batch(self, batch: FrameBatch) -> str:
        _check_finite(batch, self.path)
        ll = livelink_values(batch).tolist()
        ticks = _row_ticks(batch.indices, self.fps, self.start_ticks).tolist()
        text = "".join(_ROW_FORMAT % (_format_ticks(t), *row) for t, row in zip(ticks, ll))
        # A tiny negative value (or a negated zero) prints as -0.0000000000; the app never does.
        return text.replace(",-0.0000000000", ",0.0000000000")

    def _write_encoded(self, encoded: str, first: bool) -> None:
        self._file.write(encoded)


def write_livelink_csv(
    path: str | os.PathLike[str],
    batch: FrameBatch,
    *,
    start_timecode: Timecode | None = None,
) -> None:
    """Write ``batch`` as a Live Link Face CSV take, atomically."""
    with LiveLinkCsvWriter(path, batch.fps, batch.subject, start_timecode) as w:
        w.write(batch)


# ------------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------------
@dataclass
class LiveLinkTake:
    """What :func:`load_livelink_csv` found in a take.

    ``batch`` holds the frames (gaps filled), ``first_timecode`` the first row's timecode as
    written, ``rows`` the number of data rows, ``filled_frames`` the positions in ``batch`` of
    frames that were missing from the file and interpolated.
    """

    batch: FrameBatch
    first_timecode: str
    rows: int
    filled_frames: np.ndarray


def _where(path: str, line: int, column: int | None = None, name: str | None = None) -> str:
    loc = f"{path}: line {line}"
    if column is not None:
        loc += f", column {column}" + (f" ({name})" if name else "")
    return loc


def _parse_header(path: str, header: list[str]) -> tuple[int, int, list[int]]:
    """Column positions of Timecode, BlendShapeCount and the 61 values (CSV order)."""
    positions: dict[str, int] = {}
    for col, raw in enumerate(header):
        key = raw.strip().lower()
        if key in positions:
            raise ValueError(
                f"{_where(path, 1, col + 1, raw.strip())}: duplicate column (also column "
                f"{positions[key] + 1})"
            )
        positions[key] = col
    wanted = ("Timecode", "BlendShapeCount") + LIVE_LINK_CSV_COLUMNS
    missing = [name for name in wanted if name.lower() not in positions]
    if missing:
        raise ValueError(
            f"{_where(path, 1)}: not a Live Link Face CSV header: missing columns "
            f"{', '.join(missing)} (header names match case-insensitively; BlendShapeCount and "
            f"BlendshapeCount are both accepted)"
        )
    return (
        positions["timecode"],
        positions["blendshapecount"],
        [positions[name.lower()] for name in LIVE_LINK_CSV_COLUMNS],
    )


def _read_rows(path: str) -> tuple[list[str], np.ndarray, np.ndarray, list[int]]:
    """Parse and validate every row: timecode texts, positions (60ths), values (n x 61), lines."""
    timecodes: list[str] = []
    positions: list[float] = []
    rows: list[list[float]] = []
    lines: list[int] = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if not header:
                raise ValueError(f"{_where(path, 1)}: empty file, expected a Live Link Face header")
            tc_col, count_col, value_cols = _parse_header(path, header)
            width = len(header)
            for row in reader:
                line = reader.line_num
                if not row or all(not field.strip() for field in row):
                    continue
                if len(row) != width:
                    raise ValueError(
                        f"{_where(path, line)}: expected {width} fields like the header, got "
                        f"{len(row)}"
                    )
                try:
                    pos = _parse_timecode_60ths(row[tc_col])
                except ValueError as e:
                    raise ValueError(f"{_where(path, line, tc_col + 1, 'Timecode')}: {e}") from None
                count_text = row[count_col].strip()
                if count_text != str(BLENDSHAPE_COUNT):
                    raise ValueError(
                        f"{_where(path, line, count_col + 1, header[count_col].strip())}: "
                        f"blendshape count is {count_text!r}, expected {BLENDSHAPE_COUNT}"
                    )
                try:
                    values = [float(row[c]) for c in value_cols]
                except ValueError:
                    values = []
                if len(values) != BLENDSHAPE_COUNT or not all(map(math.isfinite, values)):
                    for k, c in enumerate(value_cols):
                        try:
                            ok = math.isfinite(float(row[c]))
                        except ValueError:
                            ok = False
                        if not ok:
                            raise ValueError(
                                f"{_where(path, line, c + 1, LIVE_LINK_CSV_COLUMNS[k])}: "
                                f"expected a finite number, got {row[c]!r}"
                            )
                timecodes.append(row[tc_col].strip())
                positions.append(pos)
                rows.append(values)
                lines.append(line)
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not a UTF-8 text file ({e.reason} at byte {e.start})") from None
    values_arr = np.array(rows, np.float64).reshape(len(rows), BLENDSHAPE_COUNT)
    return timecodes, np.array(positions, np.float64), values_arr, lines


def _detect_fps(path: str, steps: np.ndarray) -> int:
    """Frame rate from the median positive timecode step (in 60ths of a second)."""
    positive = steps[steps > 0]
    if not len(positive):
        raise ValueError(f"{path}: timecodes never advance; cannot determine the frame rate")
    estimate = _RATE / float(np.median(positive))
    fps = int(round(estimate))
    if fps < 1 or abs(estimate - fps) > 0.05 * fps:
        raise ValueError(
            f"{path}: cannot determine the frame rate: median timecode step is "
            f"{float(np.median(positive)):.3f}/60 s ({estimate:.3f} fps), not a whole rate"
        )
    return fps


def load_livelink_csv(
    path: str | os.PathLike[str],
    *,
    start_timecode: Timecode | None = None,
    fps: int | None = None,
    gaps: str = "interpolate",
) -> LiveLinkTake:
    """Read a Live Link Face CSV take with details (see :func:`read_livelink_csv`)."""
    path = os.fspath(path)
    if gaps not in ("interpolate", "error"):
        raise ValueError(f"gaps must be 'interpolate' or 'error', got {gaps!r}")
    first_only = isinstance(start_timecode, str) and start_timecode.strip().lower() == "first"
    origin_ticks = 0 if first_only else _timecode_ticks(start_timecode)
    timecodes, pos, ll, lines = _read_rows(path)
    n = len(pos)

    # Unwrap midnight: a step back of more than half a day is a wrap to the next day.
    steps = np.diff(pos)
    wraps = steps < -_FRAMES_PER_DAY / 2
    if wraps.any():
        steps = steps + wraps * _FRAMES_PER_DAY
    if fps is None:
        fps = _detect_fps(path, steps) if n >= 2 else DEFAULT_FPS
    else:
        fps = normalize_fps(fps)

    # Frame increment of each row over the previous one; > 1 means dropped frames.
    increments = np.rint(steps * fps / _RATE).astype(np.int64)
    bad = np.flatnonzero(increments < 1)
    if len(bad):
        k = int(bad[0]) + 1
        raise ValueError(
            f"{_where(path, lines[k], 1, 'Timecode')}: timecode {timecodes[k]} does not advance "
            f"by a frame at {fps} fps after {timecodes[k - 1]} (line {lines[k - 1]})"
        )
    max_fill = max(1, int(MAX_FILL_SECONDS * fps))
    for k in np.flatnonzero(increments > 1):
        missing = int(increments[k]) - 1
        if gaps == "error" or missing > max_fill:
            why = "" if gaps == "error" else f" (more than {MAX_FILL_SECONDS:g} s; not filled)"
            raise ValueError(
                f"{_where(path, lines[k + 1], 1, 'Timecode')}: {missing} frame(s) missing "
                f"between {timecodes[k]} and {timecodes[k + 1]}{why}"
            )

    if first_only or n == 0:
        start_index = 0
    else:
        origin = origin_ticks / _TICKS_PER_FRAME
        start_index = int(round(((pos[0] - origin) % _FRAMES_PER_DAY) * fps / _RATE))

    offsets = np.concatenate([[0], np.cumsum(increments)]) if n else np.zeros(0, np.int64)
    total = int(offsets[-1]) + 1 if n else 0
    if total == n:
        ll_full = ll
    else:
        grid = np.arange(total, dtype=np.float64)
        ll_full = np.stack([np.interp(grid, offsets, ll[:, c]) for c in range(BLENDSHAPE_COUNT)],
                           axis=1)
    filled = np.setdiff1d(np.arange(total), offsets)

    values = np.zeros((total, len(CHANNELS)), np.float64)
    for k, name in enumerate(LIVE_LINK_CSV_COLUMNS):
        channel = LIVE_LINK_TO_FACECAST[name]
        if channel is not None:
            values[:, CHANNEL_INDEX[channel]] = ll_full[:, k] * _DIV[k] * _SIGN[k]
    batch = FrameBatch(values.astype(np.float32), start_index, fps)
    return LiveLinkTake(batch, timecodes[0] if n else "", n, filled)


def read_livelink_csv(
    path: str | os.PathLike[str],
    *,
    start_timecode: Timecode | None = None,
    fps: int | None = None,
    gaps: str = "interpolate",
) -> FrameBatch:
    """Read a Live Link Face CSV take into a FrameBatch.

    ``start_timecode`` is the timecode of frame 0 (default ``00:00:00:00``, matching the
    writer's default, so frame indices count from midnight); ``"first"`` makes the first row
    frame 0. ``fps`` overrides the detected frame rate (needed only for one-row takes, which
    otherwise default to 60). ``gaps`` is ``"interpolate"`` or ``"error"`` (see module doc).
    Raises ValueError naming the file, line and column for malformed input.
    """
    return load_livelink_csv(path, start_timecode=start_timecode, fps=fps, gaps=gaps).batch
