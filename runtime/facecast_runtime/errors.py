"""Errors raised by the runtime. Each message is one line naming the bad input and why."""


class FacecastError(Exception):
    """Base class of every error the runtime raises on purpose."""


class AudioError(FacecastError, ValueError):
    """Audio input that cannot be used: unreadable file, bad sample rate, NaN samples..."""


class ModelError(FacecastError, ValueError):
    """A model file that is missing, unreadable or breaks the model contract."""


class SessionError(FacecastError, ValueError):
    """Misuse of a streaming session (push after flush, wrong chunk type...)."""
