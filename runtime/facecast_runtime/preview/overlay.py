"""Small overlays drawn onto preview frames with numpy: a time code and a waveform strip.

Glyphs are rasterised once with PIL (DejaVu Sans Mono when installed, else PIL's default font)
and composited per frame; the strip shows a scrolling window of the audio's min/max envelope
with the playhead in the middle (past in the accent colour, future in grey), so syllable onsets
can be read against the mouth.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

__all__ = ["Envelope", "Overlay", "format_timecode"]

ACCENT = np.array([255, 170, 90], np.float32)     # warm orange: playhead, past audio
FUTURE = np.array([150, 160, 178], np.float32)    # grey-blue: audio still to come
TEXT = np.array([236, 238, 242], np.float32)


def format_timecode(t: float, fps: int, long: bool = False) -> str:
    """``MM:SS.cc  #frame`` (``H:MM:SS.cc`` when ``long``): centiseconds, then the frame."""
    frame = int(round(t * fps))
    cs = int(round(frame * 100 / fps))
    s, c = divmod(cs, 100)
    m, s = divmod(s, 60)
    if long:
        h, m = divmod(m, 60)
        return f"{h}:{m:02d}:{s:02d}.{c:02d}  #{frame}"
    return f"{m:02d}:{s:02d}.{c:02d}  #{frame}"


class Envelope:
    """Per-column min/max of an audio signal at ``rate`` columns per second (float32),
    accumulated block by block, so a long file never sits in memory (sample i belongs to
    column floor(i * rate / sample_rate); ``rate`` must not exceed the sample rate)."""

    def __init__(self, sample_rate: int, rate: float) -> None:
        self.sample_rate = int(sample_rate)
        self.rate = float(rate)
        if not 0 < self.rate <= self.sample_rate:
            raise ValueError(f"envelope rate {rate} must be in (0, {sample_rate}]")
        self._lo: list[np.ndarray] = []
        self._hi: list[np.ndarray] = []
        self._open: tuple[float, float] | None = None  # the last column, which may continue
        self.samples = 0

    def push(self, block: np.ndarray) -> None:
        x = np.asarray(block, np.float32).reshape(-1)
        if not len(x):
            return
        idx = self.samples + np.arange(len(x), dtype=np.float64)
        col = np.floor(idx * self.rate / self.sample_rate).astype(np.int64)
        first_is_open = self._open is not None and self.samples and \
            col[0] == int(np.floor((self.samples - 1) * self.rate / self.sample_rate))
        self.samples += len(x)
        starts = np.flatnonzero(np.r_[True, col[1:] != col[:-1]])
        lo = np.minimum.reduceat(x, starts)
        hi = np.maximum.reduceat(x, starts)
        if self._open is not None:
            if first_is_open:
                lo[0] = min(lo[0], self._open[0])
                hi[0] = max(hi[0], self._open[1])
            else:
                self._lo.append(np.array([self._open[0]], np.float32))
                self._hi.append(np.array([self._open[1]], np.float32))
        self._lo.append(lo[:-1])
        self._hi.append(hi[:-1])
        self._open = (float(lo[-1]), float(hi[-1]))

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        if self._open is not None:
            self._lo.append(np.array([self._open[0]], np.float32))
            self._hi.append(np.array([self._open[1]], np.float32))
            self._open = None
        lo = np.concatenate(self._lo) if self._lo else np.zeros(0, np.float32)
        hi = np.concatenate(self._hi) if self._hi else np.zeros(0, np.float32)
        self._lo, self._hi = [lo], [hi]
        return lo, hi

    @classmethod
    def from_blocks(cls, sample_rate: int, blocks: Iterable[np.ndarray], rate: float
                    ) -> tuple[np.ndarray, np.ndarray, float]:
        """``(lo, hi, duration_s)`` of a whole stream of blocks."""
        env = cls(sample_rate, rate)
        for b in blocks:
            env.push(b)
        lo, hi = env.finish()
        return lo, hi, env.samples / sample_rate


def _load_font(px: int):
    from PIL import ImageFont

    for name in ("DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "LiberationMono-Regular.ttf"):
        try:
            return ImageFont.truetype(name, px)
        except OSError:
            continue
    try:
        return ImageFont.load_default(size=px)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


class _Glyphs:
    """Alpha masks of a fixed character set at one size, monospaced."""

    def __init__(self, chars: str, px: int) -> None:
        from PIL import Image, ImageDraw

        font = _load_font(px)
        boxes = [font.getbbox(c) for c in chars]
        self.adv = max(1, max(int(np.ceil(font.getlength(c))) for c in chars))
        top = min(b[1] for b in boxes)
        bottom = max(b[3] for b in boxes)
        self.h = max(1, bottom - top)
        self.masks: dict[str, np.ndarray] = {}
        for c in chars:
            img = Image.new("L", (self.adv + 2, self.h + 2), 0)
            ImageDraw.Draw(img).text((1, 1 - top), c, fill=255, font=font)
            self.masks[c] = np.asarray(img, np.float32) / 255.0

    def mask(self, text: str) -> np.ndarray:
        cols = [self.masks.get(c, self.masks[" "]) for c in text]
        out = np.zeros((self.h + 2, self.adv * len(text) + 2), np.float32)
        for i, m in enumerate(cols):
            sl = out[:, i * self.adv:i * self.adv + m.shape[1]]
            np.maximum(sl, m[:, : sl.shape[1]], out=sl)
        return out


def _blend(img: np.ndarray, y: int, x: int, alpha: np.ndarray, color: np.ndarray) -> None:
    """Alpha-blend a solid ``color`` through ``alpha`` (h, w) onto ``img`` at (y, x), clipped."""
    h, w = alpha.shape
    H, W = img.shape[:2]
    y0, x0, y1, x1 = max(0, y), max(0, x), min(H, y + h), min(W, x + w)
    if y0 >= y1 or x0 >= x1:
        return
    a = alpha[y0 - y:y1 - y, x0 - x:x1 - x, None]
    region = img[y0:y1, x0:x1].astype(np.float32)
    img[y0:y1, x0:x1] = (region + a * (color - region) + 0.5).astype(np.uint8)


class Overlay:
    """Draws the time code (top left), an optional caption (top right) and the waveform strip
    (bottom, ``strip`` fraction of the height; 0 disables it) onto frames in place."""

    def __init__(self, width: int, height: int, fps: int, envelope: tuple | None = None,
                 env_rate: float = 0.0, window_s: float = 4.0, strip: float = 0.11,
                 caption: str = "", long: bool = False) -> None:
        self.w, self.h, self.fps, self.long = width, height, fps, long
        px = max(9, int(round(height * 0.034)))
        self.glyphs = _Glyphs("0123456789:.# ", px)
        self.pad = max(4, int(round(height * 0.025)))
        self.caption = None
        if caption:
            small = max(8, int(round(height * 0.026)))
            from PIL import Image, ImageDraw

            font = _load_font(small)
            l, t, r, b = font.getbbox(caption)
            img = Image.new("L", (r - l + 2, b - t + 2), 0)
            ImageDraw.Draw(img).text((1 - l, 1 - t), caption, fill=255, font=font)
            self.caption = np.asarray(img, np.float32) / 255.0 * 0.6
        self.strip_h = int(round(height * strip)) if envelope is not None and strip > 0 else 0
        if self.strip_h:
            lo, hi = envelope[0], envelope[1]
            peak = float(np.percentile(np.maximum(np.abs(lo), np.abs(hi)), 99.5)) if len(lo) \
                else 0.0
            peak = peak if peak > 1e-6 else 1.0
            self.lo = np.clip(lo / peak, -1, 1)
            self.hi = np.clip(hi / peak, -1, 1)
            self.env_rate = env_rate
            self.window_s = window_s
            # column -> envelope index offset for a playhead at column w/2
            self.cols = np.arange(width) - width // 2
            # strip backdrop: a vertical alpha ramp, darker at the bottom
            ramp = np.linspace(0.45, 0.7, self.strip_h, dtype=np.float32)
            self.back = np.repeat(ramp[:, None], width, 1)
            self.rows = np.arange(self.strip_h, dtype=np.float32)[:, None]
            self.mid = (self.strip_h - 1) / 2.0
            self.amp = 0.42 * self.strip_h

    def draw(self, img: np.ndarray, t: float) -> np.ndarray:
        H = img.shape[0]
        if self.strip_h:
            y0 = H - self.strip_h
            _blend(img, y0, 0, self.back, np.zeros(3, np.float32))
            c = np.rint(t * self.env_rate).astype(np.int64) + self.cols
            valid = (c >= 0) & (c < len(self.lo))
            cc = np.clip(c, 0, max(0, len(self.lo) - 1))
            lo = np.where(valid, self.lo[cc] if len(self.lo) else 0.0, 0.0)
            hi = np.where(valid, self.hi[cc] if len(self.hi) else 0.0, 0.0)
            top = self.mid - hi * self.amp - 0.5
            bot = self.mid - lo * self.amp + 0.5
            # soft-edged bars: coverage of each pixel row by [top, bot]
            cov = np.clip(np.minimum(self.rows + 1.0, bot[None]) - np.maximum(self.rows, top[None]),
                          0.0, 1.0)
            cov[:, ~valid] = 0.0
            half = self.w // 2
            past = np.zeros_like(cov)
            past[:, :half] = cov[:, :half]
            fut = cov - past
            _blend(img, y0, 0, 0.95 * past, ACCENT)
            _blend(img, y0, 0, 0.8 * fut, FUTURE)
            # centre line and playhead
            _blend(img, y0 + int(self.mid), 0, np.full((1, self.w), 0.18, np.float32), FUTURE)
            _blend(img, y0, half - 1, np.full((self.strip_h, 2), 0.95, np.float32), ACCENT)
            _blend(img, y0 - 1, 0, np.full((1, self.w), 0.25, np.float32), FUTURE)
        mask = self.glyphs.mask(format_timecode(t, self.fps, self.long))
        # soft shadow, then the text
        _blend(img, self.pad + 1, self.pad + 1, 0.6 * mask, np.zeros(3, np.float32))
        _blend(img, self.pad, self.pad, 0.92 * mask, TEXT)
        if self.caption is not None:
            cw = self.caption.shape[1]
            _blend(img, self.pad + 2, self.w - self.pad - cw, self.caption, TEXT)
        return img

