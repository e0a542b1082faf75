"""argparse value types shared by every ``facecast`` subcommand (runtime and bridges).

Each raises ``argparse.ArgumentTypeError`` with a one-line reason naming the bad value.
"""
from __future__ import annotations

import argparse
import math


def one_line(text: object) -> str:
    """Any message folded onto one line (the CLI prints exactly one line per error)."""
    return " ".join(str(text).split())


def _number(text: str, kind: type) -> float | int:
    try:
        return kind(text)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None


def positive_float(text: str) -> float:
    v = _number(text, float)
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number")
    return v


def nonneg_float(text: str) -> float:
    v = _number(text, float)
    if not math.isfinite(v) or v < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a number >= 0")
    return v


def nonneg_int(text: str) -> int:
    v = _number(text, int)
    if v < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
    return v


def port(text: str, proto: str = "TCP", allow_zero: bool = True) -> int:
    """A port number; 0 (pick a free one) only where ``allow_zero``."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port {text!r} is not a number") from None
    low = 0 if allow_zero else 1
    if not low <= v <= 65535:
        raise argparse.ArgumentTypeError(f"port {text!r} is not a {proto} port ({low}..65535)")
    return v


def subject(text: str) -> str:
    """A runtime subject name, checked by the wire protocol's rules."""
    from facecast.wire import ProtocolError, check_subject

    try:
        return check_subject(text)
    except ProtocolError as e:
        raise argparse.ArgumentTypeError(e.message) from None


def subject_filter(text: str) -> str:
    """A subject, ``NAME.*`` (every subject under NAME.) or ``*`` (all)."""
    if text != "*":
        subject(text[:-2] if text.endswith(".*") else text)
    return text
