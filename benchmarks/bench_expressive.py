"""Cost of the expressive layer (head, gaze, blinks, brows, emotion) in the engine.

Compares the engine with the layer (the default) and without (``expressive: false``) on the
same audio in one run: an offline bake of N minutes, and a stream pushed in fixed chunks
(compute per push). Synthetic phrase-structured speech, so it needs nothing from ../shared.

    python benchmarks/bench_expressive.py --minutes 10 --repeats 3 --chunk-ms 20
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--chunk-ms", type=float, default=20.0)
    ap.add_argument("--stream-seconds", type=float, default=60.0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    from facecast_runtime.engine import Session, bake
    from facecast_runtime.expressive.measure import synthetic_speech

    sr = 16000
    x = synthetic_speech(args.minutes * 60, sr, seed=0)
    bake((x[:sr], sr))  # imports, model load
    variants = {"mouth only": {"expressive": False}, "expressive": None}
    out: dict = {"minutes": args.minutes, "chunk_ms": args.chunk_ms}
    for name, opts in variants.items():
        ts = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            bake((x, sr), options=opts)
            ts.append(time.perf_counter() - t0)
        best = float(np.median(ts))
        out[f"bake_s[{name}]"] = best
        out[f"bake_x_realtime[{name}]"] = args.minutes * 60 / best
    n = int(args.chunk_ms / 1000 * sr)
    xs = x[: int(args.stream_seconds * sr)]
    for name, opts in variants.items():
        s = Session(sample_rate=sr, options=opts)
        per = []
        for i in range(0, len(xs), n):
            t0 = time.perf_counter()
            s.push(xs[i:i + n])
            per.append(time.perf_counter() - t0)
        per_ms = np.array(per[50:]) * 1000
        out[f"push_ms_p50[{name}]"] = float(np.percentile(per_ms, 50))
        out[f"push_ms_p99[{name}]"] = float(np.percentile(per_ms, 99))
    text = json.dumps(out, indent=1)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text)
    sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
