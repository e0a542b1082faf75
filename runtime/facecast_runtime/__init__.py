"""facecast runtime: audio decoding, features, the ONNX model runner, the streaming engine,
the server and the CLI.

Flat public API::

    from facecast_runtime import bake, Session, load_audio, list_models
"""
from .audio import load_audio
from .engine import Session, bake, bake_iter
from .errors import AudioError, FacecastError, ModelError, SessionError
from .model import ModelInfo, ModelRunner, shipped_models


def list_models() -> list[str]:
    """Names of the models shipped inside the package."""
    return list(shipped_models())


__all__ = ["AudioError", "FacecastError", "ModelError", "ModelInfo", "ModelRunner", "Session",
           "SessionError", "bake", "bake_iter", "list_models", "load_audio"]
