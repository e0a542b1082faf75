"""The streaming engine: PCM chunks in, frames at 30 or 60 fps out.

Pipeline (one way): samples -> ``StreamResampler`` (to the model rate) -> ``FeatureStream`` ->
``ModelRunner`` (explicit state) -> output delay (lookahead) -> resampling of the model's frame
rate to the output fps -> post-processors -> ``FrameBatch``.

Every stage is exact under any chunking, so ``bake`` of a file equals the concatenation of the
frames a ``Session`` streams for the same audio cut into any pieces. Memory stays bounded: each
stage keeps only the history it needs.

Time: output frame ``k`` shows the face at audio time ``k / fps`` (seconds since the first
sample). A stream of ``n`` samples at rate ``r`` yields ``ceil(n * fps / r)`` frames.

Many sessions at once (the server): ``push`` is ``prepare_push`` (audio -> features) then
``finish_push`` (model step -> frames). Between the two, ``run_model_steps`` steps the model of
many sessions' prepared pushes together, one ONNX call per group of sessions with the same
model and number of model frames (models with a dynamic batch axis); each session's frames are
bitwise the same as pushing it alone.
"""
from __future__ import annotations

import os
from typing import Callable, Iterable, Iterator, Mapping, Protocol, Sequence

import numpy as np

from facecast.schema import ARKIT52, CHANNELS, DEFAULT_FPS, SUPPORTED_FPS, FrameBatch

from .audio import StreamResampler, check_rate, iter_audio_blocks, to_mono_float
from .errors import SessionError
from .features import FeatureStream
from .model import DEFAULT_MODEL, ModelRunner

#: largest chunk a single push accepts (samples): 10 minutes at 48 kHz
MAX_CHUNK_SAMPLES = 48_000 * 600

Progress = Callable[[float, "float | None"], None]


class PostProcessor(Protocol):
    """A streaming post-processing stage (expressive layer, smoothing, retiming...).

    ``process`` receives consecutive batches at the output fps and returns a batch of the same
    frames (it may change values, never the count or the indices). Stages keep their own state
    and must be deterministic for a given session seed. A stage that also has
    ``feed_audio(samples)`` receives the model-rate audio (exactly what the model sees, flush
    padding included) before the frames that depend on it.
    """

    def process(self, batch: FrameBatch) -> FrameBatch: ...


class RangeGuard:
    """Last stage: replaces non-finite values by the rest value (0) and clamps blendshapes to
    0..1. Counts what it had to fix in ``fixed_nonfinite`` / ``clamped``."""

    def __init__(self) -> None:
        self.fixed_nonfinite = 0
        self.clamped = 0
        self._nb = len(ARKIT52)

    def process(self, batch: FrameBatch) -> FrameBatch:
        v = batch.values
        bad = ~np.isfinite(v)
        if bad.any():
            self.fixed_nonfinite += int(bad.sum())
            v[bad] = 0.0
        bs = v[:, : self._nb]
        out = (bs < 0.0) | (bs > 1.0)
        if out.any():
            self.clamped += int(out.sum())
            np.clip(bs, 0.0, 1.0, out=bs)
        return batch


class PreparedPush:
    """A push whose audio has become model features (``Session.prepare_push``) and whose model
    step is still to run: ``output`` is set by ``run_model_steps`` (or, if left None, by
    ``Session.finish_push`` itself); ``error`` is the step's exception, raised by
    ``finish_push``."""

    __slots__ = ("session", "features", "output", "error")

    def __init__(self, session: "Session", features: np.ndarray) -> None:
        self.session = session
        self.features = features
        self.output: np.ndarray | None = None
        self.error: BaseException | None = None


def run_model_steps(prepared: Sequence[PreparedPush]) -> None:
    """Step the model for several sessions' prepared pushes (at most one per session): those
    whose runners share a model with a dynamic batch axis and have the same number of model
    frames go in one call, the rest one by one. Sets each push's ``output``, or its ``error``
    (one failing step never touches another session's state or result)."""
    groups: dict[tuple, list[PreparedPush]] = {}
    seen: set[int] = set()
    for p in prepared:
        if p.output is not None or p.error is not None or not len(p.features):
            continue
        r = p.session.runner
        if r.supports_batch and id(r) not in seen:
            key: tuple = (id(r.session), len(p.features))
        else:
            key = ("alone", id(p))
        seen.add(id(r))
        groups.setdefault(key, []).append(p)
    for group in groups.values():
        if len(group) > 1:
            try:
                outs = ModelRunner.run_batch([p.session.runner for p in group],
                                             [p.features for p in group])
            except Exception:
                pass  # no state advanced: step them one by one, errors to their own session
            else:
                for p, out in zip(group, outs):
                    p.output = out
                continue
        for p in group:
            try:
                p.output = p.session.runner.run(p.features)
            except Exception as e:
                p.error = e


class Session:
    """One audio stream turned into frames.

    ``push(samples)`` takes PCM chunks of any length (1-D mono or 2-D (n, channels), int or float,
    at ``sample_rate``) and returns the frames the audio so far determines; ``flush()`` returns
    the rest, after which the session is finished.
    """

    def __init__(self, model: str | os.PathLike = DEFAULT_MODEL, fps: int = DEFAULT_FPS,
                 sample_rate: int | None = None, subject: str = "",
                 options: Mapping[str, object] | None = None,
                 postprocessors: Sequence[PostProcessor] = (),
                 runner: ModelRunner | None = None) -> None:
        if fps not in SUPPORTED_FPS:
            raise SessionError(f"fps must be one of {SUPPORTED_FPS}, got {fps!r}")
        from .expressive import make_stage  # validates options (SessionError names bad ones)

        self.runner = runner if runner is not None else ModelRunner(model)
        self.info = self.runner.info
        self.fps = int(fps)
        self.subject = subject
        self.sample_rate = check_rate(sample_rate if sample_rate is not None
                                      else self.info.sample_rate, "session sample rate")
        self.resampler = StreamResampler(self.sample_rate, self.info.sample_rate)
        self.features = FeatureStream(self.info.feature)
        #: the expressive layer (head, eyes, blinks, brows, emotion), None if turned off
        self.expressive = make_stage(options, self.fps, self.info.sample_rate)
        self.post = ([self.expressive] if self.expressive is not None else []) \
            + list(postprocessors)
        # stages that read the model-rate audio (``feed_audio``), e.g. the expressive layer
        self._audio_sinks = [s for s in self.post if hasattr(s, "feed_audio")]
        self.guard = RangeGuard()
        idx = [CHANNELS.index(c) for c in self.info.channels]  # by name, from the schema
        self._out_idx = np.asarray(idx, np.int64)
        # model frame n (after the output delay) describes time (n + 0.5) * hop / rate, so
        # output frame k sits at delayed-model position (2*k*rate - hop*fps) / (2*hop*fps)
        self._rate2 = 2 * self.info.sample_rate
        self._num0 = self.info.hop * self.fps
        self._den = 2 * self.info.hop * self.fps
        self._model_step = 0          # model frames computed
        # delayed model outputs d[base], d[base+1], ... (rows), bounded by what output needs
        self._delayed = np.zeros((0, len(self._out_idx)), np.float32)
        self._base = 0
        self._n_in = 0                # input samples received
        self._next_frame = 0          # next output frame index
        self._finished = False
        self._prepared: PreparedPush | None = None  # between prepare_push and finish_push

    # -- properties -------------------------------------------------------------------------
    @property
    def model_info(self) -> dict:
        return self.info.as_dict()

    @property
    def latency_s(self) -> float:
        """Algorithmic latency: model lookahead + one model hop (frame-rate conversion) + the
        input resampler's delay. Output-frame quantisation adds up to 1/fps on top."""
        lat = self.info.lookahead_ms / 1000.0 + self.info.hop / self.info.sample_rate
        if not self.resampler.passthrough:
            lat += self.resampler.delay_out / self.info.sample_rate
        return lat

    @property
    def samples_received(self) -> int:
        return self._n_in

    @property
    def frames_emitted(self) -> int:
        return self._next_frame

    # -- streaming --------------------------------------------------------------------------
    def push(self, samples: object) -> FrameBatch:
        return self.finish_push(self.prepare_push(samples))

    def prepare_push(self, samples: object) -> PreparedPush:
        """First half of ``push``: take the chunk and compute its model features. The model
        step runs in ``finish_push`` (or before it, batched, in ``run_model_steps``); nothing
        else may happen to the session in between."""
        if self._finished:
            raise SessionError("session is finished (flush() was called); open a new one")
        if self._prepared is not None:
            raise SessionError("the previous prepared push has not been finished")
        x = to_mono_float(samples)
        if len(x) > MAX_CHUNK_SAMPLES:
            raise SessionError(f"audio chunk of {len(x)} samples exceeds the limit of "
                               f"{MAX_CHUNK_SAMPLES}; push it in pieces")
        self._n_in += len(x)
        self._prepared = PreparedPush(self, self._feed(self.resampler.push(x)))
        return self._prepared

    def finish_push(self, prepared: PreparedPush) -> FrameBatch:
        """Second half of ``push``: the model step (unless already run) and the frames the
        audio so far determines."""
        if prepared is not self._prepared:
            raise SessionError("finish_push needs this session's pending prepared push")
        self._prepared = None
        if prepared.error is not None:
            raise prepared.error
        if len(prepared.features):
            out = prepared.output
            self._take(out if out is not None else self.runner.run(prepared.features))
        limit = -(-self._n_in * self.fps // self.sample_rate)
        return self._emit(limit, final=False)

    def flush(self) -> FrameBatch:
        if self._finished:
            return FrameBatch.empty(self.fps, self._next_frame, self.subject)
        if self._prepared is not None:
            raise SessionError("the previous prepared push has not been finished")
        self._finished = True
        self._advance(self.resampler.flush())
        total = -(-self._n_in * self.fps // self.sample_rate)
        # drive the pipeline with silence until the last frame's neighbours exist
        cfg = self.info.feature
        need = self._needed_delayed(total - 1) + 1 if total > 0 else 0
        while self._base + len(self._delayed) < need:
            missing = need - (self._base + len(self._delayed))
            pad = (missing + self.info.lookahead_frames + 1) * cfg.model_hop + cfg.win
            self._advance(np.zeros(pad, np.float32))
        return self._emit(total, final=True)

    def _needed_delayed(self, k: int) -> int:
        """The highest delayed model frame output frame ``k`` interpolates from. Frame k sits
        at delayed-model position num / den, num = 2*k*rate - hop*fps, den = 2*hop*fps
        (integer arithmetic, so it never depends on chunking)."""
        num = k * self._rate2 - self._num0
        return num // self._den + 1 if num > 0 else 0

    def _ready_end(self, have: int) -> int:
        """One past the last output frame whose delayed model frames all exist when ``have``
        of them do: the frames k with ``_needed_delayed(k) < have`` (it never decreases).
        That is num <= 0 or num // den <= have - 2, i.e. num < max((have - 1) * den, 1)."""
        if have <= 0:
            return 0
        bound = max((have - 1) * self._den, 1)
        return -(-(bound + self._num0) // self._rate2)

    def set_options(self, options: Mapping[str, object]) -> dict:
        """Change live options of the expressive layer (emotion, emotion_keys, transition,
        gains, enable, auto_emotion); an emotion without ``time`` applies at the audio time
        received so far. Returns the layer's current options."""
        if self.expressive is None:
            raise SessionError("the expressive layer is off in this session "
                               "(opened with expressive: false)")
        return self.expressive.set_options(options, now=self._n_in / self.sample_rate)

    def _advance(self, x: np.ndarray) -> None:
        feats = self._feed(x)
        if len(feats):
            self._take(self.runner.run(feats))

    def _feed(self, x: np.ndarray) -> np.ndarray:
        """Model-rate audio in (also to the stages that read it), model features out."""
        for sink in self._audio_sinks:
            sink.feed_audio(x)
        return self.features.push(x)

    def _take(self, out: np.ndarray) -> None:
        """The model's outputs for the next model frames, into the delayed buffer."""
        lead = self.info.lookahead_frames
        start = self._model_step
        self._model_step += len(out)
        drop = max(0, lead - start)  # outputs before the delay describe negative times
        if drop < len(out):
            self._delayed = np.concatenate([self._delayed, out[drop:]])

    def _emit(self, limit: int, final: bool) -> FrameBatch:
        k0 = self._next_frame
        have = self._base + len(self._delayed)
        if not final:
            limit = min(limit, self._ready_end(have))
        n = limit - k0
        if n <= 0:
            return FrameBatch.empty(self.fps, k0, self.subject)
        # frame k interpolates the delayed model frames lo and lo + 1 (clamped to the last
        # one) with weight w of the second: lo = max(num // den, 0), w = max(num, 0) % den / den
        # (plain ints, and w divided as float64 like numpy would; a push yields a frame or two)
        den, rate2, num0, base, last = self._den, self._rate2, self._num0, self._base, have - 1
        i0, i1, wl = [], [], []
        for k in range(k0, limit):
            num = k * rate2 - num0
            lo = num // den if num > 0 else 0
            i0.append((lo if lo < last else last) - base)
            i1.append((lo + 1 if lo + 1 < last else last) - base)
            wl.append(num % den / den if num > 0 else 0.0)
        w = np.array(wl, np.float32)[:, None]
        D = self._delayed
        model_vals = D[i0] * (1.0 - w) + D[i1] * w
        values = np.zeros((n, len(CHANNELS)), np.float32)
        values[:, self._out_idx] = model_vals
        batch = FrameBatch(values, k0, self.fps, self.subject)
        for stage in self.post:
            batch = stage.process(batch)
        batch = self.guard.process(batch)
        self._next_frame = k0 + n
        # forget delayed frames no later output frame needs
        keep_from = max(0, self._needed_delayed(self._next_frame) - 1)
        if keep_from > self._base:
            drop = min(keep_from - self._base, len(self._delayed))
            self._delayed = self._delayed[drop:]
            self._base += drop
        return batch


def _iter_source(source, block_seconds: float) -> tuple[int, Iterator[np.ndarray], float | None]:
    if isinstance(source, tuple) and len(source) == 2:
        samples, sr = source
        sr = check_rate(sr)
        x = to_mono_float(samples, "audio")
        block = max(1, int(block_seconds * sr))
        return sr, (x[i : i + block] for i in range(0, len(x), block)), len(x) / sr
    import soundfile as sf

    total = None
    try:
        info = sf.info(os.fspath(source))
        total = info.frames / info.samplerate if info.samplerate else None
    except Exception:
        pass
    sr, blocks = iter_audio_blocks(source, block_seconds)
    return sr, blocks, total


def bake_iter(source, model: str | os.PathLike = DEFAULT_MODEL, fps: int = DEFAULT_FPS,
              subject: str = "", progress: Progress | None = None,
              postprocessors: Sequence[PostProcessor] = (),
              block_seconds: float = 30.0,
              options: Mapping[str, object] | None = None) -> Iterator[FrameBatch]:
    """Bake a file (path) or ``(samples, sample_rate)`` block by block, with bounded memory.
    ``options`` are session options (expressive layer: seed, emotion, gains...)."""
    sr, blocks, total = _iter_source(source, block_seconds)
    sess = Session(model, fps=fps, sample_rate=sr, subject=subject, options=options,
                   postprocessors=postprocessors)
    done = 0
    for block in blocks:
        done += len(block)
        yield sess.push(block)
        if progress is not None:
            progress(done / sr, total)
    yield sess.flush()


def bake(source, model: str | os.PathLike = DEFAULT_MODEL, fps: int = DEFAULT_FPS,
         subject: str = "", progress: Progress | None = None,
         postprocessors: Sequence[PostProcessor] = (),
         options: Mapping[str, object] | None = None) -> FrameBatch:
    """Offline bake of a whole file or ``(samples, sample_rate)``; returns every frame."""
    return FrameBatch.concat(list(bake_iter(source, model, fps, subject, progress,
                                            postprocessors, options=options)))


def stream(chunks: Iterable[np.ndarray], sample_rate: int,
           model: str | os.PathLike = DEFAULT_MODEL, fps: int = DEFAULT_FPS) -> Iterator[FrameBatch]:
    """Convenience generator: frames for an iterable of PCM chunks (then the flush)."""
    sess = Session(model, fps=fps, sample_rate=sample_rate)
    for c in chunks:
        yield sess.push(c)
    yield sess.flush()
