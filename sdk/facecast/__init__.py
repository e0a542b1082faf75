"""facecast SDK: channel schema, wire codec, subscriber client and file formats.

Depends on numpy, pyzmq and msgpack only.
"""
from .schema import (
    ARKIT52, CHANNELS, DEFAULT_FPS, EYE_ROTATION, HEAD_ROTATION, HEAD_TRANSLATION,
    MOUTH_CHANNELS, SCHEMA_VERSION, Frame, FrameBatch,
)

__version__ = "0.1.0"

__all__ = [
    "ARKIT52", "CHANNELS", "DEFAULT_FPS", "EYE_ROTATION", "HEAD_ROTATION", "HEAD_TRANSLATION",
    "MOUTH_CHANNELS", "SCHEMA_VERSION", "Frame", "FrameBatch", "__version__",
]
