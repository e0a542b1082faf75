"""Preview renderer benchmark: frames per second of the software renderer and of the whole
``facecast preview`` pipeline (bake + render + overlay + H.264/AAC encode by ffmpeg).

    python benchmarks/bench_preview.py [--size 512] [--supersample 2] [--repeats 5]
                                       [--seconds 30] [--json out.json]

1. renderer: the demo head posed by a real bake of samples/demo.wav (30 fps), every frame
   rendered with the overlay, median frames/s over ``--repeats`` passes;
2. pipeline: ``render_preview`` of a ``--seconds`` long wav (samples/demo.wav tiled) to .mp4,
   frames/s of the rendering loop and of the whole call (wall clock), median over repeats,
   plus the peak RSS of the process.

Prints JSON. The machine is shared; the load average at the start is recorded with it.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def machine() -> dict:
    return {"node": platform.node(), "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(), "python": platform.python_version(),
            "loadavg_start": os.getloadavg()}


def bench_renderer(size: int, supersample: int, repeats: int) -> dict:
    from facecast_runtime.engine import bake
    from facecast_runtime.preview.overlay import Overlay
    from facecast_runtime.preview.raster import Renderer
    from facecast_runtime.preview.video import _audio_envelope, resolve_retarget

    wav = REPO / "samples" / "demo.wav"
    batch = bake(str(wav), fps=30)
    mesh, rmap = resolve_retarget(None)
    r = Renderer(mesh, size, rmap=rmap, supersample=supersample,
                 reserve_bottom=0.11)
    lo, hi, _ = _audio_envelope(str(wav), size / 4.0)
    ov = Overlay(size, size, 30, (lo, hi), size / 4.0, 4.0, caption="demo.wav")
    r.render(batch.values[0])  # compile / load the kernels
    rates, per_frame = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i, row in enumerate(batch.values):
            t1 = time.perf_counter()
            ov.draw(r.render(row), i / 30)
            per_frame.append(time.perf_counter() - t1)
        rates.append(len(batch) / (time.perf_counter() - t0))
    ms = np.array(per_frame) * 1000
    return {"frames_per_pass": len(batch), "passes": repeats,
            "fps_median": round(float(np.median(rates)), 1),
            "fps_min": round(float(np.min(rates)), 1), "fps_max": round(float(np.max(rates)), 1),
            "frame_ms_p50": round(float(np.percentile(ms, 50)), 2),
            "frame_ms_p95": round(float(np.percentile(ms, 95)), 2),
            "vertices": int(len(mesh.positions)), "triangles": int(len(mesh.triangles))}


def bench_pipeline(size: int, supersample: int, repeats: int, seconds: float) -> dict:
    import soundfile as sf

    from facecast_runtime.preview.video import render_preview

    x, sr = sf.read(REPO / "samples" / "demo.wav", dtype="float32")
    reps = int(np.ceil(seconds * sr / len(x)))
    x = np.tile(x, reps)[: int(seconds * sr)]
    render_fps, wall_fps, walls = [], [], []
    with tempfile.TemporaryDirectory() as d:
        wav = Path(d) / "long.wav"
        sf.write(wav, x, sr)
        for _ in range(repeats):
            st = render_preview(wav, Path(d) / "out.mp4", fps=30, size=size,
                                supersample=supersample)
            render_fps.append(st.render_fps)
            wall_fps.append(st.frames / st.wall_s)
            walls.append(st.wall_s)
        mp4_bytes = (Path(d) / "out.mp4").stat().st_size
    return {"audio_s": seconds, "frames": st.frames, "repeats": repeats,
            "render_loop_fps_median": round(float(np.median(render_fps)), 1),
            "end_to_end_fps_median": round(float(np.median(wall_fps)), 1),
            "end_to_end_fps_min": round(float(np.min(wall_fps)), 1),
            "wall_s_median": round(float(np.median(walls)), 2),
            "realtime_factor": round(float(seconds / np.median(walls)), 2),
            "mp4_kbit_s": round(mp4_bytes * 8 / 1000 / seconds, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--supersample", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=30.0,
                    help="audio length of the pipeline run (default 30)")
    ap.add_argument("--skip-pipeline", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    import numba

    out = {"machine": machine(), "numba": numba.__version__, "size": args.size,
           "supersample": args.supersample,
           "renderer": bench_renderer(args.size, args.supersample, args.repeats)}
    if not args.skip_pipeline:
        out["pipeline"] = bench_pipeline(args.size, args.supersample, args.repeats,
                                         args.seconds)
    out["machine"]["loadavg_end"] = os.getloadavg()
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
