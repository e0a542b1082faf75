"""The expressive layer: head motion, gaze, blinks, upper face and emotion from the voice.

Streaming and causal; on by default in every Session (``options={"expressive": False}`` gives
the model's mouth alone). See ``docs/expression.md`` for the behaviour, the measurements behind
it and the options; :data:`OPTION_SPEC` lists every option for UIs.

::

    from facecast_runtime import bake
    frames = bake("speech.wav", options={"seed": 3, "emotion": "happy:0.7",
                                         "gains": {"head": 0.5}, "enable": {"gaze": False}})
"""
from .emotion import BEHAVIOUR, CORNER_CHANNELS, OFFSETS, EmotionTimeline
from .options import (
    EMOTIONS,
    LAYERS,
    LIVE_OPTIONS,
    OPTION_SPEC,
    EmotionKey,
    ExpressiveConfig,
    check_live,
    default_options,
    load_keys_file,
    parse_emotion,
    parse_keys,
    parse_options,
)
from .prosody import ProsodyAnalyser
from .stage import INTERNAL_FPS, ExpressiveStage, make_stage

__all__ = [
    "BEHAVIOUR", "CORNER_CHANNELS", "EMOTIONS", "INTERNAL_FPS", "LAYERS", "LIVE_OPTIONS",
    "OFFSETS", "OPTION_SPEC", "EmotionKey", "EmotionTimeline", "ExpressiveConfig",
    "ExpressiveStage", "ProsodyAnalyser", "check_live", "default_options", "load_keys_file",
    "make_stage", "parse_emotion", "parse_keys", "parse_options",
]
