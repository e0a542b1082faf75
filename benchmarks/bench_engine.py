"""Engine benchmarks: offline bake speed, streaming compute per chunk, concurrent streams, memory.

    python benchmarks/bench_engine.py [--model default] [--minutes 10] [--json out.json]

Prints medians over repeats (the machines are shared and noisy) and writes a JSON record.
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


def speech_like(seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    env = np.clip(np.sin(2 * np.pi * 3.5 * t), 0, None) * (np.sin(2 * np.pi * 0.3 * t) > -0.3)
    return (0.2 * voiced * env + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def machine() -> str:
    return f"{platform.node()} {platform.processor() or platform.machine()} cores={os.cpu_count()}"


def bench_bake(model: str, minutes: float, repeats: int) -> dict:
    import soundfile as sf

    from facecast_runtime.engine import bake_iter
    from facecast_runtime.features import compute_features
    from facecast_runtime.model import ModelRunner

    sr = 16000
    x = speech_like(60.0, sr)
    x = np.tile(x, int(minutes))
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "long.wav"
        sf.write(p, x, sr, subtype="PCM_16")
        list(bake_iter(p, model=model))  # warm up (model load, imports)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            n = sum(len(b) for b in bake_iter(p, model=model))
            times.append(time.perf_counter() - t0)
    audio_s = len(x) / sr
    bake_s = float(np.median(times))
    # model-only: features precomputed, one runner call per 30 s block
    r = ModelRunner(model)
    feats = compute_features(x, r.info.feature)
    block = int(30 * r.info.frame_rate)
    mt = []
    for _ in range(repeats):
        r.reset()
        t0 = time.perf_counter()
        for i in range(0, len(feats), block):
            r.run(feats[i : i + block])
        mt.append(time.perf_counter() - t0)
    model_s = float(np.median(mt))
    return {"audio_minutes": audio_s / 60, "frames": n, "bake_s_median": bake_s,
            "bake_x_realtime": audio_s / bake_s, "model_only_s_median": model_s,
            "model_x_realtime": audio_s / model_s}


def bench_stream_chunks(model: str, seconds: float) -> dict:
    from facecast_runtime.engine import Session

    sr = 16000
    x = speech_like(seconds, sr, seed=1)
    s = Session(model, sample_rate=sr)
    chunk = sr // 100
    s.push(x[: chunk * 50])  # warm up
    lat = []
    for i in range(chunk * 50, len(x) - chunk, chunk):
        t0 = time.perf_counter()
        s.push(x[i : i + chunk])
        lat.append(time.perf_counter() - t0)
    lat_ms = np.array(lat) * 1000
    return {"chunk_ms": 10, "chunks": len(lat), "p50_ms": float(np.percentile(lat_ms, 50)),
            "p99_ms": float(np.percentile(lat_ms, 99)), "max_ms": float(lat_ms.max()),
            "algorithmic_latency_ms": s.latency_s * 1000}


def bench_concurrent(model: str, n_streams: int, seconds: float) -> dict:
    """n sessions in one process, each fed 10 ms chunks in real time order (round robin).
    Keeping up means the compute for one 10 ms tick of all streams takes < 10 ms."""
    from facecast_runtime.engine import Session

    sr = 16000
    x = speech_like(seconds, sr, seed=2)
    sessions = [Session(model, sample_rate=sr) for _ in range(n_streams)]
    chunk = sr // 100
    ticks = []
    for i in range(0, len(x) - chunk, chunk):
        t0 = time.perf_counter()
        for s in sessions:
            s.push(x[i : i + chunk])
        ticks.append(time.perf_counter() - t0)
    tk = np.array(ticks) * 1000
    return {"streams": n_streams, "tick_ms": 10, "tick_p50_ms": float(np.percentile(tk, 50)),
            "tick_p99_ms": float(np.percentile(tk, 99)),
            "load_fraction_median": float(np.percentile(tk, 50) / 10),
            "keeps_up": bool(np.sum(tk) / (len(tk) * 10) < 1.0)}


def rss_one_stream(model: str) -> dict:
    from facecast_runtime.engine import Session

    s = Session(model, sample_rate=48000)
    x = speech_like(30.0, 48000, seed=3)
    for i in range(0, len(x), 480):
        s.push(x[i : i + 480])
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"peak_rss_mb": peak_kb / 1024}


def bench_long_file(hours: float) -> dict:
    """`facecast bake` of a multi-hour wav to CSV as a user runs it; peak RSS of that process."""
    import soundfile as sf
    import subprocess

    sr = 16000
    minute = (speech_like(60.0, sr, seed=4) * 32767).astype(np.int16)
    with tempfile.TemporaryDirectory() as d:
        wav = Path(d) / "long.wav"
        with sf.SoundFile(wav, "w", sr, 1, "PCM_16") as f:
            for _ in range(int(hours * 60)):
                f.write(minute)
        out = Path(d) / "long.csv"
        code = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
                "r = subprocess.run([sys.executable, '-m', 'facecast_runtime.cli', 'bake', %r, "
                "'-o', %r, '--progress', 'never']); "
                "print(r.returncode, time.perf_counter() - t, "
                "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)" % (str(wav), str(out)))
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        rc, secs, rss_kb = res.stdout.strip().splitlines()[-1].split()
        lines = 0
        if out.exists():
            with open(out) as f:
                lines = sum(1 for _ in f)
    return {"hours": hours, "exit_code": int(rc), "seconds": float(secs),
            "x_realtime": hours * 3600 / float(secs), "peak_rss_mb": int(rss_kb) / 1024,
            "csv_rows": lines - 1}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--streams", type=int, default=50)
    ap.add_argument("--long-hours", type=float, default=0.0,
                    help="also bake a file this many hours long through the CLI (memory)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    out = {"machine": machine(), "model": args.model,
           "command": "python benchmarks/bench_engine.py " + " ".join(argv or sys.argv[1:])}
    out["rss"] = rss_one_stream(args.model)  # first, in a fresh process state
    out["bake"] = bench_bake(args.model, args.minutes, args.repeats)
    out["stream"] = bench_stream_chunks(args.model, 60.0)
    out["concurrent"] = bench_concurrent(args.model, args.streams, 10.0)
    if args.long_hours > 0:
        out["long_file"] = bench_long_file(args.long_hours)
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
