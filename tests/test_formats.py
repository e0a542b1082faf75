"""Tests of facecast.formats: Live Link Face CSV, JSON, NPZ, streaming and atomic writing.

Real files in tmp_path; fixtures from ../shared through ``require_shared``.
"""
from __future__ import annotations

import csv
import gc
import json
import math
import os
import re
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from conftest import require_shared

from facecast import formats
from facecast.formats import (
    LIVE_LINK_CSV_COLUMNS, LIVE_LINK_TO_FACECAST, AtomicFile, atomic_write, format_timecode,
    load_livelink_csv, open_writer, parse_timecode, read, read_livelink_csv, write,
)
from facecast.schema import ARKIT52, CHANNELS, SCHEMA_VERSION, FrameBatch, channel_index

LIVELINK = ("data", "livelink")
ROTATION_SIGN = {"HeadYaw": -1, "HeadPitch": 1, "HeadRoll": -1, "LeftEyeYaw": -1,
                 "LeftEyePitch": 1, "RightEyeYaw": -1, "RightEyePitch": 1}
ROW_RE = re.compile(r"\d{2}:\d{2}:\d{2}:\d{2}\.\d{3},61(,-?\d+\.\d{10}){61}")


def make_batch(n: int = 240, start: int = 0, fps: int = 60, seed: int = 0,
               subject: str = "") -> FrameBatch:
    """Blendshapes in [0, 1] (some exact zeros and ones), rotations in [-1.2, 1.2] rad."""
    rng = np.random.default_rng(seed)
    values = np.empty((n, len(CHANNELS)), np.float32)
    values[:, : len(ARKIT52)] = rng.uniform(0.0, 1.0, (n, len(ARKIT52)))
    values[::7, 0] = 0.0
    values[::11, 3] = 1.0
    values[:, len(ARKIT52):] = rng.uniform(-1.2, 1.2, (n, len(CHANNELS) - len(ARKIT52)))
    return FrameBatch(values, start, fps, subject)


def csv_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def listing(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


# ------------------------------------------------------------------------------------------------
# Live Link Face CSV: columns and real fixtures
# ------------------------------------------------------------------------------------------------
def test_csv_columns_match_spec_file():
    spec = require_shared("specs", "live_link_face_csv_order.txt").read_text().split()
    assert list(LIVE_LINK_CSV_COLUMNS) == spec
    packet = require_shared("specs", "live_link_face_packet_order.txt").read_text().split()
    # Same names as the packet, with exactly the two documented pairs swapped.
    diff = [i for i, (a, b) in enumerate(zip(spec, packet)) if a != b]
    assert diff == [15, 16, 21, 22]
    assert sorted(spec) == sorted(packet)


def test_written_header_equals_fixture_header(tmp_path):
    fixture = require_shared(*LIVELINK, "alex_rom_3.csv")
    with open(fixture, newline="") as f:
        fixture_header = f.readline()
    out = tmp_path / "take.csv"
    write(out, make_batch(3))
    with open(out, newline="") as f:
        ours = f.readline()
    assert ours == fixture_header  # same names, same order, same spelling, same line end
    assert ours.rstrip("\n").split(",")[:2] == ["Timecode", "BlendShapeCount"]


@pytest.mark.parametrize("name, rows, filled", [
    ("alex_rom_3.csv", 4030, [596, 2126, 3621]),
    ("alex_rom_4.csv", 3809, [810, 2310]),
])
def test_real_fixture_parses(name, rows, filled):
    path = require_shared(*LIVELINK, name)
    take = load_livelink_csv(path)
    batch = take.batch
    header, data = csv_rows(path)
    assert take.rows == len(data) == rows
    assert batch.fps == 30  # 60 fps timecode stepping FF by 2
    # These takes dropped a few frames (timecode steps of 4/60 s); they are filled.
    assert take.filled_frames.tolist() == filled
    assert len(batch) == rows + len(filled)
    assert take.first_timecode == data[0][0]
    # Frame 0 is 00:00:00:00 by default: start_index counts 30 Hz frames since midnight.
    assert batch.start_index == round(parse_timecode(data[0][0]) * 30)

    col = {n: i for i, n in enumerate(header)}
    first, last = data[0], data[-1]
    for ll_name in ("EyeBlinkLeft", "JawOpen", "JawLeft", "JawRight", "MouthLeft", "MouthRight",
                    "TongueOut", "CheekPuff"):
        channel = LIVE_LINK_TO_FACECAST[ll_name]
        assert batch.channel(channel)[0] == np.float32(float(first[col[ll_name]]))
        assert batch.channel(channel)[-1] == np.float32(float(last[col[ll_name]]))
    for ll_name, sign in ROTATION_SIGN.items():
        channel = LIVE_LINK_TO_FACECAST[ll_name]
        expected = np.float32(sign * float(first[col[ll_name]]) * math.pi)
        assert batch.channel(channel)[0] == expected
    # Eye yaw is clearly non-zero in these range-of-motion takes.
    assert np.abs(batch.channel("leftEyeYaw")).max() > 1.0

    # A filled frame is the midpoint of its neighbours (one frame missing each time).
    f = filled[0]
    jaw = batch.channel("jawOpen")
    assert jaw[f] == pytest.approx((float(jaw[f - 1]) + float(jaw[f + 1])) / 2, abs=1e-7)
    # Rows after the gap are shifted by one frame.
    assert batch.channel("jawOpen")[f + 1] == np.float32(float(data[f][col["JawOpen"]]))


def test_real_fixture_eye_yaw_sign():
    """Schema: positive leftEyeYaw looks towards the subject's own left = EyeLookOutLeft."""
    batch = read_livelink_csv(require_shared(*LIVELINK, "alex_rom_3.csv"))
    out_left = batch.channel("eyeLookOutLeft") - batch.channel("eyeLookInLeft")
    assert np.corrcoef(batch.channel("leftEyeYaw"), out_left)[0, 1] > 0.5
    out_right = batch.channel("eyeLookInRight") - batch.channel("eyeLookOutRight")
    assert np.corrcoef(batch.channel("rightEyeYaw"), out_right)[0, 1] > 0.5
    down = batch.channel("eyeLookDownLeft") - batch.channel("eyeLookUpLeft")
    assert np.corrcoef(batch.channel("leftEyePitch"), down)[0, 1] > 0.5


def test_real_fixture_gaps_error_mode():
    path = require_shared(*LIVELINK, "alex_rom_3.csv")
    with pytest.raises(ValueError, match=r"alex_rom_3\.csv: line \d+, column 1 \(Timecode\): "
                                         r"1 frame\(s\) missing between"):
        read_livelink_csv(path, gaps="error")


def test_real_fixture_start_first_and_round_trip(tmp_path):
    src = require_shared(*LIVELINK, "alex_rom_4.csv")
    tc_table = require_shared(*LIVELINK, "tc.csv")
    batch = read_livelink_csv(src, start_timecode="first")
    assert batch.start_index == 0
    # Re-export with the take's slate timecode from tc.csv; the first row carries it exactly.
    with open(tc_table, newline="") as f:
        slate = {r["Filename"]: r["Timecode"] for r in csv.DictReader(f)}["alex_rom_4"]
    out = tmp_path / "rom4.csv"
    write(out, batch, start_timecode=slate)
    _, rows = csv_rows(out)
    assert rows[0][0] == slate + ".000"
    assert rows[1][0] == format_timecode(parse_timecode(slate) + 1 / 30)
    back = read_livelink_csv(out, start_timecode=slate)
    assert back.start_index == 0 and back.fps == 30 and len(back) == len(batch)
    np.testing.assert_allclose(back.values, batch.values, rtol=0, atol=1e-9)


# ------------------------------------------------------------------------------------------------
# Live Link Face CSV: writer format and round trip
# ------------------------------------------------------------------------------------------------
def test_csv_row_format_and_timecodes(tmp_path):
    out = tmp_path / "a.csv"
    batch = make_batch(130, start=0)
    write(out, batch)
    header, rows = csv_rows(out)
    assert len(rows) == 130
    text = out.read_text()
    assert "\r" not in text and text.endswith("\n")
    for line in text.splitlines()[1:]:
        assert ROW_RE.fullmatch(line), line
    assert [r[0] for r in rows[:3]] == ["00:00:00:00.000", "00:00:00:01.000", "00:00:00:02.000"]
    assert rows[59][0] == "00:00:00:59.000"
    assert rows[60][0] == "00:00:01:00.000"
    assert rows[129][0] == "00:00:02:09.000"
    assert all(r[1] == "61" for r in rows)
    # Eye roll columns are always zero (facecast has no eye roll).
    for name in ("LeftEyeRoll", "RightEyeRoll"):
        assert {r[header.index(name)] for r in rows} == {"0.0000000000"}


def test_csv_round_trip_values(tmp_path):
    out = tmp_path / "rt.csv"
    batch = make_batch(500, start=1234, seed=3)
    write(out, batch)
    header, rows = csv_rows(out)
    col = {n: i for i, n in enumerate(header)}

    # What was written: blendshapes at 10 decimals, within 5e-11 of the float32 value.
    for ll_name in LIVE_LINK_CSV_COLUMNS[:52]:
        written = np.array([float(r[col[ll_name]]) for r in rows])
        original = batch.channel(LIVE_LINK_TO_FACECAST[ll_name]).astype(np.float64)
        assert np.abs(written - original).max() <= 5e-11 + 1e-16
    # Rotations: the text is exactly sign * radians / pi printed with 10 decimals.
    for ll_name, sign in ROTATION_SIGN.items():
        original = batch.channel(LIVE_LINK_TO_FACECAST[ll_name])
        for r, rad in zip(rows, original):
            expected = f"{sign * float(rad) / math.pi:.10f}"
            assert r[col[ll_name]] == (expected if expected != "-0.0000000000" else expected[1:])

    back = read(out)
    assert back.fps == 60 and back.start_index == 1234 and len(back) == 500
    bs = slice(0, len(ARKIT52))
    assert np.abs(back.values[:, bs].astype(np.float64)
                  - batch.values[:, bs].astype(np.float64)).max() < 1e-9
    # Rotations come back as sign * value * pi: exact up to the printed precision.
    for ll_name, sign in ROTATION_SIGN.items():
        channel = LIVE_LINK_TO_FACECAST[ll_name]
        printed = np.array([float(r[col[ll_name]]) for r in rows])
        assert np.array_equal(back.channel(channel), (sign * printed * math.pi).astype(np.float32))
        # |error| <= pi * (half the last printed digit) + float32 rounding of the result
        orig = batch.channel(channel)
        err = np.abs(back.channel(channel).astype(np.float64) - orig)
        assert (err <= math.pi * 5e-11 + np.spacing(np.abs(orig)) / 2).all()
        assert err.max() < 1e-9
    # Known values, by hand: headYaw = pi/2 rad (90 degrees) is -0.5 in Live Link (degrees/180).
    one = FrameBatch(np.zeros((1, len(CHANNELS)), np.float32))
    one.values[0, channel_index("headYaw")] = np.float32(math.pi / 2)
    one.values[0, channel_index("leftEyePitch")] = np.float32(math.pi / 4)
    one.values[0, channel_index("jawOpen")] = 0.25
    write(tmp_path / "one.csv", one)
    h1, r1 = csv_rows(tmp_path / "one.csv")
    # float32(pi/2) / pi = 0.50000001391...: the float32 input, printed, not a rounded 0.5
    assert r1[0][h1.index("HeadYaw")] == "-0.5000000139"
    assert r1[0][h1.index("LeftEyePitch")] == "0.2500000070"
    assert r1[0][h1.index("JawOpen")] == "0.2500000000"
    assert r1[0][h1.index("HeadPitch")] == "0.0000000000"


def test_csv_swapped_pairs_map_by_name(tmp_path):
    out = tmp_path / "swap.csv"
    values = np.zeros((2, len(CHANNELS)), np.float32)
    for k, name in enumerate(("jawLeft", "jawRight", "mouthLeft", "mouthRight")):
        values[:, channel_index(name)] = 0.125 * (k + 1)  # exact in float32
    write(out, FrameBatch(values))
    header, rows = csv_rows(out)
    assert rows[0][header.index("JawLeft")] == "0.1250000000"
    assert rows[0][header.index("JawRight")] == "0.2500000000"
    assert rows[0][header.index("MouthLeft")] == "0.3750000000"
    assert rows[0][header.index("MouthRight")] == "0.5000000000"
    assert header.index("JawRight") < header.index("JawLeft")
    back = read(out)
    np.testing.assert_array_equal(back.values, values)


def test_csv_30hz_write_and_read(tmp_path):
    out = tmp_path / "30.csv"
    batch = make_batch(90, start=30, fps=30)
    write(out, batch)
    _, rows = csv_rows(out)
    assert [r[0] for r in rows[:4]] == ["00:00:01:00.000", "00:00:01:02.000",
                                        "00:00:01:04.000", "00:00:01:06.000"]
    assert rows[-1][0] == "00:00:03:58.000"
    back = read(out)
    assert back.fps == 30 and back.start_index == 30 and len(back) == 90
    np.testing.assert_allclose(back.values, batch.values, rtol=0, atol=1e-9)


def test_csv_fractional_subframes(tmp_path):
    """24 fps: frame i lands at 2.5 * i 60ths; .fff is the fraction of a 60th, not ms."""
    out = tmp_path / "24.csv"
    write(out, make_batch(5, fps=24))
    _, rows = csv_rows(out)
    assert [r[0] for r in rows] == ["00:00:00:00.000", "00:00:00:02.500", "00:00:00:05.000",
                                    "00:00:00:07.500", "00:00:00:10.000"]
    assert read(out).fps == 24


def _llv_text(timecodes, count_header="BlendShapeCount", value="0.5000000000"):
    head = ",".join(("Timecode", count_header) + LIVE_LINK_CSV_COLUMNS)
    body = "".join(f"{tc},61," + ",".join([value] * 61) + "\n" for tc in timecodes)
    return head + "\n" + body


def test_csv_30hz_drift_offset_and_midnight_wrap(tmp_path):
    # A 30 Hz take near midnight with the sub-frame drift real takes show.
    tcs = ["23:59:59:56.500", "23:59:59:58.499", "00:00:00:00.499", "00:00:00:02.498",
           "00:00:00:04.498"]
    path = tmp_path / "wrap.csv"
    path.write_text(_llv_text(tcs))
    take = load_livelink_csv(path, start_timecode="first")
    assert take.batch.fps == 30 and take.batch.start_index == 0 and len(take.batch) == 5
    assert take.filled_frames.size == 0
    # Default origin (midnight): index = frames at 30 Hz since 00:00:00:00.
    batch = read(path)
    assert batch.start_index == round((86399 + 56.5 / 60) * 30)
    # Relative to an explicit origin before midnight.
    assert read(path, start_timecode="23:59:59:00").start_index == round(56.5 / 2)
    np.testing.assert_array_equal(batch.channel("jawOpen"), np.full(5, 0.5, np.float32))


def test_csv_writer_wraps_at_midnight(tmp_path):
    out = tmp_path / "late.csv"
    write(out, make_batch(4), start_timecode="23:59:59:58")
    _, rows = csv_rows(out)
    assert [r[0] for r in rows] == ["23:59:59:58.000", "23:59:59:59.000", "00:00:00:00.000",
                                    "00:00:00:01.000"]
    assert read(out, start_timecode="23:59:59:58").start_index == 0


@pytest.mark.parametrize("spelling", ["BlendShapeCount", "BlendshapeCount", "blendshapecount"])
def test_csv_header_spellings(tmp_path, spelling):
    path = tmp_path / "h.csv"
    path.write_text(_llv_text(["00:00:01:00.000", "00:00:01:01.000"], spelling))
    batch = read(path)
    assert batch.fps == 60 and batch.start_index == 60 and len(batch) == 2
    assert batch.channel("tongueOut").tolist() == [0.5, 0.5]
    assert batch.channel("headYaw").tolist() == pytest.approx([-0.5 * math.pi] * 2)


def test_csv_columns_in_any_order(tmp_path):
    names = list(LIVE_LINK_CSV_COLUMNS)
    order = names[::-1]
    vals = {n: f"{(i + 1) / 100:.10f}" for i, n in enumerate(names)}
    path = tmp_path / "shuffled.csv"
    path.write_text("BlendShapeCount,Timecode," + ",".join(order) + "\n"
                    + "61,00:00:00:00.000," + ",".join(vals[n] for n in order) + "\n")
    batch = read(path)
    assert batch.channel("eyeBlinkLeft")[0] == np.float32(0.01)
    assert batch.channel("jawRight")[0] == np.float32(0.16)  # JawRight is CSV column 16
    assert batch.channel("jawLeft")[0] == np.float32(0.17)


# ------------------------------------------------------------------------------------------------
# Live Link Face CSV: malformed input
# ------------------------------------------------------------------------------------------------
def _corrupt(tmp_path, mutate, name="bad.csv"):
    path = tmp_path / name
    write(path, make_batch(3))
    lines = path.read_text().splitlines()
    mutate(lines)
    path.write_text("\n".join(lines) + "\n")
    return path


def _set_field(lines, line_no, column, value):
    fields = lines[line_no - 1].split(",")
    fields[column - 1] = value
    lines[line_no - 1] = ",".join(fields)


def test_csv_error_wrong_count(tmp_path):
    path = _corrupt(tmp_path, lambda ls: _set_field(ls, 3, 2, "60"))
    with pytest.raises(ValueError) as e:
        read(path)
    msg = str(e.value)
    assert str(path) in msg and "line 3, column 2 (BlendShapeCount)" in msg
    assert "'60'" in msg and "expected 61" in msg


def test_csv_error_missing_columns(tmp_path):
    def drop_jaw_open(ls):
        for i, line in enumerate(ls):
            fields = line.split(",")
            del fields[2 + LIVE_LINK_CSV_COLUMNS.index("JawOpen")]
            ls[i] = ",".join(fields)
    path = _corrupt(tmp_path, drop_jaw_open)
    with pytest.raises(ValueError, match=r"bad\.csv: line 1: not a Live Link Face CSV header: "
                                         r"missing columns JawOpen \("):
        read(path)


def test_csv_error_non_numeric(tmp_path):
    col = 3 + LIVE_LINK_CSV_COLUMNS.index("MouthSmileLeft")
    path = _corrupt(tmp_path, lambda ls: _set_field(ls, 2, col, "abc"))
    with pytest.raises(ValueError) as e:
        read(path)
    assert f"line 2, column {col} (MouthSmileLeft): expected a finite number, got 'abc'" in str(
        e.value)
    path = _corrupt(tmp_path, lambda ls: _set_field(ls, 4, 63, "nan"), "nan.csv")
    with pytest.raises(ValueError, match=r"nan\.csv: line 4, column 63 \(RightEyeRoll\): "
                                         r"expected a finite number, got 'nan'"):
        read(path)


@pytest.mark.parametrize("timecode, why", [
    ("12:61:00:00.000", "minutes and seconds < 60"),
    ("00:00:00:60.000", "frames (at 60 per second) < 60"),
    ("00:00:00.000", "expected HH:MM:SS:FF.fff"),
    ("", "expected HH:MM:SS:FF.fff"),
])
def test_csv_error_bad_timecode(tmp_path, timecode, why):
    path = _corrupt(tmp_path, lambda ls: _set_field(ls, 2, 1, timecode))
    with pytest.raises(ValueError) as e:
        read(path)
    assert f"line 2, column 1 (Timecode): bad timecode {timecode!r}" in str(e.value)
    assert why in str(e.value)


def test_csv_error_field_count_and_empty(tmp_path):
    path = _corrupt(tmp_path, lambda ls: ls.__setitem__(2, ls[2].rsplit(",", 1)[0]))
    with pytest.raises(ValueError, match=r"line 3: expected 63 fields like the header, got 62"):
        read(path)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ValueError, match=r"empty\.csv: line 1: empty file"):
        read(empty)


def test_csv_error_time_not_advancing(tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text(_llv_text(["00:00:00:00.000", "00:00:00:01.000", "00:00:00:01.000"]))
    with pytest.raises(ValueError, match=r"dup\.csv: line 4, column 1 \(Timecode\): timecode "
                                         r"00:00:00:01\.000 does not advance"):
        read(path)


def test_csv_error_long_gap_not_filled(tmp_path):
    path = tmp_path / "jump.csv"
    path.write_text(_llv_text(["00:00:00:00.000", "00:00:00:01.000", "00:00:00:02.000",
                               "00:00:05:00.000"]))
    with pytest.raises(ValueError, match=r"line 5, column 1 \(Timecode\): 297 frame\(s\) missing"):
        read(path)


def test_csv_header_only_and_blank_lines(tmp_path):
    path = tmp_path / "h.csv"
    write(path, FrameBatch.empty())
    assert path.read_text().count("\n") == 1
    assert len(read(path)) == 0
    path.write_text(_llv_text(["00:00:00:00.000", "00:00:00:01.000"]) + "\n\n")
    assert len(read(path)) == 2


def test_timecode_helpers():
    assert parse_timecode("01:02:03:30.500") == pytest.approx(3723 + 30.5 / 60)
    assert format_timecode(3723 + 30.5 / 60) == "01:02:03:30.500"
    assert format_timecode(86400 + 1 / 60) == "00:00:00:01.000"
    with pytest.raises(ValueError, match="bad timecode"):
        parse_timecode("24:00:00:00")


# ------------------------------------------------------------------------------------------------
# JSON
# ------------------------------------------------------------------------------------------------
def test_json_round_trip_and_layout(tmp_path):
    out = tmp_path / "clip.json"
    base = make_batch(50, start=7, seed=5, subject="alice")
    ht = np.linspace(-0.02, 0.02, 150, dtype=np.float32).reshape(50, 3)
    emotion = [{"label": "happy", "weight": 0.5} if i % 2 else None for i in range(50)]
    batch = FrameBatch(base.values, 7, 60, "alice", ht, {"emotion": emotion})
    write(out, batch)

    doc = json.loads(out.read_text())
    assert list(doc)[:7] == ["format", "schema_version", "fps", "start_index", "subject",
                             "start_timecode", "channels"]
    assert doc["format"] == "facecast.frames" and doc["schema_version"] == SCHEMA_VERSION
    assert doc["fps"] == 60 and doc["start_index"] == 7 and doc["subject"] == "alice"
    assert doc["channels"] == list(CHANNELS) and doc["frame_count"] == 50
    assert doc["frames"][1]["index"] == 8 and doc["frames"][1]["time"] == 8 / 60
    assert doc["frames"][1]["blocks"] == {"emotion": {"label": "happy", "weight": 0.5}}
    assert "blocks" not in doc["frames"][0]

    back = read(out)
    assert back.fps == 60 and back.start_index == 7 and back.subject == "alice"
    np.testing.assert_array_equal(back.values, batch.values)  # float32-exact
    np.testing.assert_array_equal(back.head_translation, ht)
    assert back.blocks == {"emotion": emotion}


def test_json_maps_channels_by_name(tmp_path):
    out = tmp_path / "c.json"
    batch = make_batch(5, seed=9)
    write(out, batch)
    doc = json.loads(out.read_text())
    perm = np.random.default_rng(1).permutation(len(CHANNELS))
    doc["channels"] = [doc["channels"][p] for p in perm]
    for fr in doc["frames"]:
        fr["values"] = [fr["values"][p] for p in perm]
    out.write_text(json.dumps(doc))
    np.testing.assert_array_equal(read(out).values, batch.values)


def _json_doc(tmp_path):
    out = tmp_path / "v.json"
    write(out, make_batch(3))
    return out, json.loads(out.read_text())


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(schema_version=2),
     "schema_version 2 is not supported (this reader supports 1)"),
    (lambda d: d.update(schema_version="1"), "schema_version must be an integer"),
    (lambda d: d["channels"].__setitem__(0, "eyeBlink_L"), "unknown channels ['eyeBlink_L']"),
    (lambda d: d["channels"].__setitem__(1, "eyeBlinkLeft"),
     "channel 'eyeBlinkLeft' is listed twice (positions 0 and 1)"),
    (lambda d: d.update(format="other"), 'not a facecast JSON file'),
    (lambda d: d.pop("fps"), "missing key 'fps'"),
    (lambda d: d["frames"][2].update(index=5), "frame 2: index is 5, expected 2"),
    (lambda d: d["frames"][1]["values"].pop(), "frame 1 (index 1): 'values' must be a list of "
                                              "59 numbers"),
    (lambda d: d["frames"][1]["values"].__setitem__(4, "x"), "frame 1 (index 1): 'values'"),
    (lambda d: d["frames"].pop(), "frame_count is 3 but 2 frames are present"),
])
def test_json_validation_errors(tmp_path, mutate, message):
    out, doc = _json_doc(tmp_path)
    mutate(doc)
    out.write_text(json.dumps(doc))
    with pytest.raises(ValueError) as e:
        read(out)
    assert str(e.value).startswith(f"{out}: ")
    assert message in str(e.value)


def test_json_missing_channel_and_bad_syntax(tmp_path):
    out, doc = _json_doc(tmp_path)
    k = doc["channels"].index("tongueOut")
    del doc["channels"][k]
    for fr in doc["frames"]:
        del fr["values"][k]
    out.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"missing channels \['tongueOut'\]"):
        read(out)
    out.write_text('{"format": "facecast.frames",\n "fps": 60,,\n}')
    with pytest.raises(ValueError, match=r"v\.json: line 2, column 12: invalid JSON"):
        read(out)


def test_json_truncated_stream_is_rejected(tmp_path):
    out = tmp_path / "t.json"
    write(out, make_batch(10))
    text = out.read_text()
    out.write_text(text[: len(text) // 2])
    with pytest.raises(ValueError, match="invalid JSON"):
        read(out)


# ------------------------------------------------------------------------------------------------
# NPZ
# ------------------------------------------------------------------------------------------------
def test_npz_round_trip_and_arrays(tmp_path):
    out = tmp_path / "c.npz"
    base = make_batch(40, start=100, fps=30, seed=2, subject="bob")
    ht = np.full((40, 3), 0.01, np.float32)
    batch = FrameBatch(base.values, 100, 30, "bob", ht, {"emotion": [{"v": i} for i in range(40)]})
    write(out, batch, start_timecode="01:00:00:00")
    with np.load(out, allow_pickle=False) as z:
        assert z["values"].dtype == np.float32 and z["values"].shape == (40, len(CHANNELS))
        assert z["channels"].tolist() == list(CHANNELS)
        assert int(z["fps"]) == 30 and int(z["start_index"]) == 100
        assert int(z["schema_version"]) == SCHEMA_VERSION and str(z["subject"]) == "bob"
        assert str(z["start_timecode"]) == "01:00:00:00"
    back = read(out)
    assert (back.fps, back.start_index, back.subject) == (30, 100, "bob")
    np.testing.assert_array_equal(back.values, batch.values)
    np.testing.assert_array_equal(back.head_translation, ht)
    assert back.blocks["emotion"][39] == {"v": 39}


def test_npz_maps_by_name_and_validates(tmp_path):
    batch = make_batch(6, seed=4)
    perm = np.random.default_rng(2).permutation(len(CHANNELS))
    arrays = dict(values=batch.values[:, perm], channels=np.array(CHANNELS)[perm],
                  fps=np.array(60), start_index=np.array(0), schema_version=np.array(1))
    good = tmp_path / "p.npz"
    np.savez(good, **arrays)
    np.testing.assert_array_equal(read(good).values, batch.values)

    bad = tmp_path / "b.npz"
    np.savez(bad, **{**arrays, "schema_version": np.array(99)})
    with pytest.raises(ValueError, match=r"b\.npz: schema_version 99 is not supported"):
        read(bad)
    names = np.array(CHANNELS)[perm].copy()
    names[0] = "jaw_open"
    np.savez(bad, **{**arrays, "channels": names})
    with pytest.raises(ValueError, match=r"unknown channels \['jaw_open'\]"):
        read(bad)
    np.savez(bad, **{k: v for k, v in arrays.items() if k != "fps"})
    with pytest.raises(ValueError, match=r"missing arrays \['fps'\]"):
        read(bad)
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"b\.npz: not a readable \.npz archive"):
        read(bad)


# ------------------------------------------------------------------------------------------------
# Dispatch
# ------------------------------------------------------------------------------------------------
def test_dispatch_by_extension(tmp_path):
    with pytest.raises(ValueError) as e:
        write(tmp_path / "x.obj", make_batch(2))   # .fbx/.glb/.usd are mesh exports now
    assert "unsupported file extension '.obj'" in str(e.value)
    assert ".csv, .json, .npz" in str(e.value)
    with pytest.raises(ValueError, match="supported: .csv, .json, .npz"):
        read(tmp_path / "noext")
    with pytest.raises(ValueError, match="supported"):
        open_writer(tmp_path / "x.txt", 60)
    assert listing(tmp_path) == []
    write(tmp_path / "UPPER.CSV", make_batch(2))
    assert len(read(tmp_path / "UPPER.CSV")) == 2
    assert formats.SUPPORTED_EXTENSIONS == (".csv", ".json", ".npz")


# ------------------------------------------------------------------------------------------------
# Streaming writers and atomicity
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ext", ["csv", "json", "npz"])
def test_streaming_matches_one_shot(tmp_path, ext):
    whole = make_batch(300, start=5, seed=8, subject="s")
    streamed = tmp_path / f"streamed.{ext}"
    with open_writer(streamed, 60, subject="s") as w:
        for a in range(0, 300, 70):
            w.write(whole[a:a + 70])
        w.write(FrameBatch.empty(60, 305))
        assert not streamed.exists()  # appears only on close
    assert w.frames_written == 300 and w.start_index == 5
    one_shot = tmp_path / f"one.{ext}"
    write(one_shot, whole)
    if ext != "npz":  # zip timestamps differ; compare content for npz below
        assert streamed.read_bytes() == one_shot.read_bytes()
    back = read(streamed)
    assert back.start_index == 5 and len(back) == 300
    np.testing.assert_allclose(back.values, whole.values, rtol=0, atol=1e-9)
    assert listing(tmp_path) == sorted([f"streamed.{ext}", f"one.{ext}"])


@pytest.mark.parametrize("ext", ["csv", "json"])
def test_streaming_writes_incrementally(tmp_path, ext):
    target = tmp_path / f"s.{ext}"
    with open_writer(target, 60) as w:
        w.write(make_batch(200))
        size_1 = os.path.getsize(w.temp_path)
        w.write(make_batch(200, start=200))
        size_2 = os.path.getsize(w.temp_path)
        assert Path(w.temp_path).parent == tmp_path
        assert not target.exists()
    assert 0 < size_1 < size_2 <= os.path.getsize(target)


@pytest.mark.parametrize("ext", ["csv", "json", "npz"])
def test_abort_on_exception_leaves_nothing(tmp_path, ext):
    target = tmp_path / f"out.{ext}"
    with pytest.raises(RuntimeError, match="boom"):
        with open_writer(target, 60) as w:
            w.write(make_batch(100))
            w.write(make_batch(100, start=100))
            raise RuntimeError("boom")
    assert listing(tmp_path) == []
    assert w.closed


@pytest.mark.parametrize("ext", ["csv", "json", "npz"])
def test_abort_keeps_existing_file(tmp_path, ext):
    target = tmp_path / f"keep.{ext}"
    write(target, make_batch(10, seed=1))
    before = target.read_bytes()
    w = open_writer(target, 60)
    w.write(make_batch(50, seed=2))
    w.abort()
    assert target.read_bytes() == before and listing(tmp_path) == [f"keep.{ext}"]
    with pytest.raises(ValueError, match="aborted"):
        w.write(make_batch(1))
    with pytest.raises(RuntimeError):
        with open_writer(target, 60) as w2:
            w2.write(make_batch(50, seed=3))
            raise RuntimeError
    assert target.read_bytes() == before and listing(tmp_path) == [f"keep.{ext}"]
    # A successful write replaces it.
    write(target, make_batch(5, seed=4))
    assert target.read_bytes() != before and len(read(target)) == 5


def test_writer_rejects_bad_batches_but_stays_usable(tmp_path):
    target = tmp_path / "v.csv"
    with open_writer(target, 60) as w:
        w.write(make_batch(10, start=0))
        with pytest.raises(ValueError, match="expected a batch starting at frame 10, got one "
                                             "starting at frame 11"):
            w.write(make_batch(5, start=11))
        with pytest.raises(ValueError, match="batch is at 30 fps, writer at 60 fps"):
            w.write(make_batch(5, start=10, fps=30))
        bad = make_batch(5, start=10)
        bad.values[2, channel_index("jawOpen")] = np.nan
        with pytest.raises(ValueError, match="frame 12 channel 'jawOpen' is nan"):
            w.write(bad)
        w.write(make_batch(5, start=10))
    back = read(target)
    assert len(back) == 15 and back.start_index == 0
    with pytest.raises(ValueError, match="writer is closed"):
        w.write(make_batch(1, start=15))


def test_json_rejects_unserialisable_block_without_writing(tmp_path):
    target = tmp_path / "b.json"
    batch = FrameBatch(make_batch(2).values, blocks={"emotion": [object(), None]})
    with pytest.raises(ValueError, match="blocks of frame 0 cannot be stored as JSON"):
        write(target, batch)
    assert listing(tmp_path) == []


def test_atomic_write_primitives(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    os.chmod(target, 0o640)
    with pytest.raises(KeyError):
        with atomic_write(target) as f:
            f.write("new data")
            raise KeyError("mid-write")
    assert target.read_text() == "old" and listing(tmp_path) == ["a.txt"]
    with atomic_write(target) as f:
        f.write("new")
    assert target.read_text() == "new" and (target.stat().st_mode & 0o777) == 0o640
    fresh = tmp_path / "b.bin"
    with AtomicFile(fresh, "wb") as af:
        af.file.write(b"\x00\x01")
        assert Path(af.temp_path).name.startswith(".b.bin.")
    assert fresh.read_bytes() == b"\x00\x01"
    umask = os.umask(0)
    os.umask(umask)
    assert (fresh.stat().st_mode & 0o777) == 0o666 & ~umask
    # An abandoned AtomicFile cleans up after itself when collected.
    af = AtomicFile(tmp_path / "c.txt")
    temp = af.temp_path
    with pytest.warns(ResourceWarning):
        del af
        gc.collect()
    assert not os.path.exists(temp) and sorted(listing(tmp_path)) == ["a.txt", "b.bin"]


@pytest.mark.parametrize("ext", ["csv", "json"])
def test_streaming_memory_is_bounded(tmp_path, ext):
    """12 000 frames in 120 batches of 100 (2.8 MB of float32 values, > 8 MB of text): the
    writer's peak allocation is about one batch's worth, not the take's."""
    batch = make_batch(100)
    tracemalloc.start()
    try:
        with open_writer(tmp_path / f"long.{ext}", 60) as w:
            tracemalloc.reset_peak()
            for k in range(120):
                w.write(FrameBatch(batch.values, k * 100, 60))
            _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert w.frames_written == 12000
    assert peak < 1_000_000, peak
    assert os.path.getsize(tmp_path / f"long.{ext}") > 8_000_000


def test_emotion_key_rows_json_and_csv(tmp_path):
    from facecast.formats.emotion_keys import read_key_rows

    j = tmp_path / "k.json"
    j.write_text('{"keys": [{"time": 1.5, "name": "happy", "intensity": 0.7}, [3, "sad"]]}')
    rows, wheres = read_key_rows(j, label="k")
    assert rows == [{"time": 1.5, "name": "happy", "intensity": 0.7}, [3, "sad"]]
    assert wheres == ["k: key 0", "k: key 1"]
    c = tmp_path / "k.csv"
    c.write_text("time,name,intensity,transition\n# a comment\n\n0,neutral,0\n2.5, happy ,0.8,0.4\n")
    rows, wheres = read_key_rows(c)
    assert rows == [[0.0, "neutral", 0.0], [2.5, "happy", 0.8, 0.4]]
    assert wheres == [f"{c}:4", f"{c}:5"]
    c.write_text("0,happy,0.5\nsoon,sad,1\n")
    with pytest.raises(ValueError, match=r"k\.csv:2: expected time,name,intensity"):
        read_key_rows(c)
    j.write_text("[1, 2")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_key_rows(j)
    j.write_text('{"emotion": "happy"}')
    with pytest.raises(ValueError, match="expected a list of keys"):
        read_key_rows(j)
