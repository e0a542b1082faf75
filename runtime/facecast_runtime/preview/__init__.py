"""Preview videos and plots of facecast takes, for judging lip sync by eye.

* :mod:`.raster` -- a CPU software rasteriser of :class:`facecast.mesh.HeadMesh` (numba);
* :mod:`.video` -- ``render_preview``: audio or a baked take -> H.264/AAC .mp4 via ffmpeg;
* :mod:`.overlay` -- time code and scrolling waveform strip drawn onto frames;
* :mod:`.plot` -- ``plot_take``: waveform and channel curves on one time axis (matplotlib).

Nothing heavy is imported here: numba and matplotlib load when a renderer or a plot is made.
CLI: ``facecast preview`` and ``facecast plot``.
"""
from __future__ import annotations

__all__ = ["render_preview", "plot_take", "Renderer", "Camera"]


def __getattr__(name: str):
    if name == "render_preview":
        from .video import render_preview

        return render_preview
    if name == "plot_take":
        from .plot import plot_take

        return plot_take
    if name in ("Renderer", "Camera"):
        from . import raster

        return getattr(raster, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
