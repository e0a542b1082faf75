"""The model contract and the ONNX model runner.

A facecast model is an ONNX file whose metadata (``custom_metadata_map``) declares:

================== ===========================================================================
key                value
================== ===========================================================================
facecast.contract  contract version, ``"1"``
model_name         short name (``"default"``)
model_version      the model's own version string
sample_rate        input sample rate in Hz (int)
hop                samples per model frame (int)
feature            JSON feature configuration (see ``features.LogMelConfig``)
context            past model frames that influence an output (receptive field, int)
lookahead_frames   output delay L in model frames: output step m describes frame m - L (int)
lookahead_ms       total audio after a frame's centre needed to emit it (L*hop + feature future)
channels           JSON list of output channel names, all in ``facecast.schema.CHANNELS``
schema_version     the facecast schema version the channel names refer to
training_data      digest of the data the model was trained on (free text)
================== ===========================================================================

Graph interface: input ``features`` float32 [B, T, D] (D = the feature configuration's dim),
output ``channels`` float32 [B, T, len(channels)]. Streaming state is explicit: every other input
``state_<k>`` (float32, [B, ...] with a static shape after B) has a matching output
``state_<k>_out``; the runner starts from zeros and feeds each output back, so a stream cut into
any pieces gives the same result as one call over the whole input.

B is the batch axis: 1 (static) in older models; models whose ``features`` and every state
declare it dynamic can step several streams in one call (``ModelRunner.run_batch``), each row
exactly as it would be alone. Other runners step one stream per call.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Sequence

import numpy as np

from facecast.schema import CHANNELS, SCHEMA_VERSION

from .errors import ModelError
from .features import LogMelConfig

CONTRACT_VERSION = "1"
REQUIRED_KEYS = ("facecast.contract", "model_name", "model_version", "sample_rate", "hop",
                 "feature", "context", "lookahead_frames", "lookahead_ms", "channels",
                 "schema_version")
DEFAULT_MODEL = "default"


@dataclass(frozen=True)
class ModelInfo:
    path: str
    name: str
    version: str
    sample_rate: int
    hop: int
    feature: LogMelConfig
    context: int
    lookahead_frames: int
    lookahead_ms: float
    channels: tuple[str, ...]
    schema_version: int
    training_data: str
    state_names: tuple[str, ...]

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop

    def as_dict(self) -> dict:
        return {
            "path": self.path, "name": self.name, "version": self.version,
            "sample_rate": self.sample_rate, "hop": self.hop, "context": self.context,
            "lookahead_frames": self.lookahead_frames, "lookahead_ms": self.lookahead_ms,
            "channels": list(self.channels), "schema_version": self.schema_version,
            "training_data": self.training_data,
        }


def shipped_models() -> dict[str, Path]:
    """Models shipped inside the package, by name (file stem)."""
    root = resources.files("facecast_runtime.models")
    out = {}
    for entry in root.iterdir():
        if entry.name.endswith(".onnx"):
            out[entry.name[: -len(".onnx")]] = Path(str(entry))
    return dict(sorted(out.items()))


def resolve_model(model: str | os.PathLike) -> Path:
    """A shipped model's name, or a path to an .onnx file."""
    text = os.fspath(model)
    if text.endswith(".onnx") or os.sep in text or Path(text).exists():
        p = Path(text)
        if not p.is_file():
            raise ModelError(f"model file {p} does not exist")
        return p
    models = shipped_models()
    if text not in models:
        names = ", ".join(models) or "none"
        raise ModelError(f"no shipped model named {text!r} (shipped: {names})")
    return models[text]


def _int(meta: dict, key: str, path: str, lo: int, hi: int) -> int:
    try:
        v = int(meta[key])
    except ValueError:
        raise ModelError(f"{path}: metadata {key!r}={meta[key]!r} is not an integer") from None
    if not lo <= v <= hi:
        raise ModelError(f"{path}: metadata {key!r}={v} is outside {lo}..{hi}")
    return v


def read_contract(meta: dict[str, str], path: str, inputs: dict, outputs: dict) -> ModelInfo:
    """Validate metadata and graph signature; raises ModelError saying what is wrong."""
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise ModelError(f"{path}: not a facecast model: metadata lacks {', '.join(missing)}")
    if meta["facecast.contract"] != CONTRACT_VERSION:
        raise ModelError(f"{path}: model contract version {meta['facecast.contract']!r} is not "
                         f"supported by this runtime (supports {CONTRACT_VERSION!r})")
    sr = _int(meta, "sample_rate", path, 8000, 48000)
    hop = _int(meta, "hop", path, 1, sr)
    feature = LogMelConfig.from_json(meta["feature"])
    if feature.sample_rate != sr or feature.model_hop != hop:
        raise ModelError(f"{path}: feature config (rate {feature.sample_rate}, hop "
                         f"{feature.model_hop}) disagrees with sample_rate {sr} / hop {hop}")
    schema_version = _int(meta, "schema_version", path, 1, 10_000)
    if schema_version > SCHEMA_VERSION:
        raise ModelError(f"{path}: model uses schema version {schema_version}, newer than this "
                         f"runtime's {SCHEMA_VERSION}; upgrade facecast")
    try:
        channels = json.loads(meta["channels"])
    except json.JSONDecodeError:
        raise ModelError(f"{path}: metadata 'channels' is not a JSON list") from None
    if not isinstance(channels, list) or not channels:
        raise ModelError(f"{path}: metadata 'channels' must be a non-empty list of names")
    unknown = [c for c in channels if c not in CHANNELS]
    if unknown:
        raise ModelError(f"{path}: output channel {unknown[0]!r} is not a facecast channel")
    if len(set(channels)) != len(channels):
        raise ModelError(f"{path}: metadata 'channels' lists a channel twice")
    if "features" not in inputs:
        raise ModelError(f"{path}: graph has no input 'features'")
    if "channels" not in outputs:
        raise ModelError(f"{path}: graph has no output 'channels'")
    fshape = inputs["features"].shape
    if len(fshape) != 3 or fshape[2] != feature.dim:
        raise ModelError(f"{path}: input 'features' has shape {fshape}, expected [1, T, "
                         f"{feature.dim}]")
    oshape = outputs["channels"].shape
    if len(oshape) != 3 or oshape[2] != len(channels):
        raise ModelError(f"{path}: output 'channels' has shape {oshape}, expected [1, T, "
                         f"{len(channels)}] for {len(channels)} declared channels")
    states = tuple(sorted(k for k in inputs if k != "features"))
    for s in states:
        shape = list(inputs[s].shape)
        if not s.startswith("state_"):
            raise ModelError(f"{path}: unexpected graph input {s!r} (only 'features' and "
                             "'state_*' are allowed)")
        if f"{s}_out" not in outputs:
            raise ModelError(f"{path}: state input {s!r} has no matching output '{s}_out'")
        if not shape or not all(isinstance(d, int) for d in shape[1:]) \
                or (isinstance(shape[0], int) and shape[0] != 1):
            raise ModelError(f"{path}: state input {s!r} must have a static shape after the "
                             f"batch axis (1 or dynamic), got {inputs[s].shape}")
    return ModelInfo(
        path=path, name=meta["model_name"], version=meta["model_version"], sample_rate=sr,
        hop=hop, feature=feature, context=_int(meta, "context", path, 0, 1_000_000),
        lookahead_frames=_int(meta, "lookahead_frames", path, 0, 10_000),
        lookahead_ms=float(meta["lookahead_ms"]), channels=tuple(channels),
        schema_version=schema_version, training_data=meta.get("training_data", ""),
        state_names=states,
    )


class _Spec:
    def __init__(self, shape: list) -> None:
        self.shape = shape


_SESSION_CACHE: dict[tuple[str, float, str], object] = {}


def _ort_session(path: Path, providers: tuple[str, ...] | None = None):
    import onnxruntime as ort

    key = (str(path.resolve()), path.stat().st_mtime, repr(providers))
    sess = _SESSION_CACHE.get(key)
    if sess is None:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(os.environ.get("FACECAST_THREADS", "1"))
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            sess = ort.InferenceSession(str(path), opts,
                                        providers=list(providers or ["CPUExecutionProvider"]))
        except Exception as e:  # onnxruntime raises several exception types
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelError(f"{path}: cannot load ONNX model ({first})") from None
        _SESSION_CACHE[key] = sess
    return sess


class ModelRunner:
    """Runs a contract-following ONNX model over streaming feature frames with explicit state.

    ONNX Runtime sessions are shared between runners of the same file (they are thread-safe and
    stateless); each runner keeps its own state arrays.
    """

    def __init__(self, model: str | os.PathLike = DEFAULT_MODEL,
                 providers: tuple[str, ...] | None = None) -> None:
        path = resolve_model(model)
        self.session = _ort_session(path, providers)
        meta = self.session.get_modelmeta().custom_metadata_map
        inputs = {i.name: _Spec(i.shape) for i in self.session.get_inputs()}
        outputs = {o.name: _Spec(o.shape) for o in self.session.get_outputs()}
        self.info = read_contract(dict(meta), str(path), inputs, outputs)
        self._state_shapes = {s: (1, *inputs[s].shape[1:]) for s in self.info.state_names}
        self._out_names = ["channels"] + [f"{s}_out" for s in self.info.state_names]
        #: the graph declares a dynamic batch axis: ``run_batch`` steps several runners at once
        self.supports_batch = all(
            not isinstance(inputs[n].shape[0], int)
            for n in ("features", *self.info.state_names)) and not isinstance(
            outputs["channels"].shape[0], int)
        self.reset()

    def reset(self) -> None:
        self.state = {s: np.zeros(shape, np.float32) for s, shape in self._state_shapes.items()}

    def run(self, features: np.ndarray) -> np.ndarray:
        """Model frames (T, D) in, outputs (T, len(channels)) out; state advances by T."""
        if len(features) == 0:
            return np.zeros((0, len(self.info.channels)), np.float32)
        feed = {"features": np.ascontiguousarray(features[None], dtype=np.float32)}
        feed.update(self.state)
        outs = self.session.run(self._out_names, feed)
        for s, v in zip(self.info.state_names, outs[1:]):
            self.state[s] = v
        return outs[0][0]

    def can_batch_with(self, other: ModelRunner) -> bool:
        """Whether ``run_batch`` may step this runner and ``other`` in one call."""
        return self.supports_batch and other.session is self.session

    @staticmethod
    def run_batch(runners: Sequence[ModelRunner], features: Sequence[np.ndarray]
                  ) -> list[np.ndarray]:
        """Step several runners of the same model over the same number of model frames T in
        one call (batch axis = runner); returns each runner's outputs (T, len(channels)) and
        advances each one's state, exactly as ``runner.run(f)`` one by one would. All states
        advance together only if the call succeeds. One runner, or a model without a dynamic
        batch axis, steps one by one."""
        if len(runners) != len(features):
            raise ValueError("run_batch needs one feature block per runner")
        if len(runners) <= 1 or not runners[0].supports_batch:
            return [r.run(f) for r, f in zip(runners, features)]
        first = runners[0]
        T = len(features[0])
        if any(not first.can_batch_with(r) for r in runners[1:]) \
                or any(len(f) != T for f in features):
            raise ValueError("run_batch needs runners of one batchable model and feature "
                             "blocks of equal length")
        if T == 0:
            return [r.run(f) for r, f in zip(runners, features)]
        feed = {"features": np.ascontiguousarray(np.stack(features), dtype=np.float32)}
        for s in first.info.state_names:
            feed[s] = np.concatenate([r.state[s] for r in runners])
        outs = first.session.run(first._out_names, feed)
        for s, v in zip(first.info.state_names, outs[1:]):
            for i, r in enumerate(runners):
                r.state[s] = v[i:i + 1]
        y = outs[0]
        return [y[i] for i in range(len(runners))]


def model_info(model: str | os.PathLike = DEFAULT_MODEL) -> ModelInfo:
    return ModelRunner(model).info
