"""Server benchmarks over real loopback ZeroMQ: push-to-frame latency, concurrent real-time
streams, and the runtime's resident memory.

    python benchmarks/bench_server.py [--streams 1 50] [--seconds 20] [--chunk-ms 10]

For each stream count it starts ``facecast serve`` as a subprocess (the way a user starts it),
then one load-generator process that opens N sessions, pushes chunks of real-time audio on
schedule (each session its own subject) and subscribes to every subject. Latency of a frame =
time it is received by the subscriber - time the chunk that completed it was sent; model
lookahead is therefore excluded (the frame could not exist before its audio arrived).
"Keeping up" = every frame arrives, and the p99 latency stays below one chunk period plus 10 ms.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(control: str, frames: str, n: int, seconds: float, chunk_ms: float) -> dict:
    """Runs in the load-generator process."""
    from facecast.client import RuntimeClient, Subscriber

    sr = 16000
    step = int(sr * chunk_ms / 1000)
    t = np.arange(int(sr * (seconds + 1))) / sr
    rng = np.random.default_rng(0)
    x = (0.1 * np.sin(2 * np.pi * 140 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))
         + 0.01 * rng.standard_normal(len(t))).astype(np.float32)
    subjects = [f"bench.s{i}" for i in range(n)]
    client = RuntimeClient(control, max_in_flight=8 * n, timeout=30)
    sub = Subscriber(frames, subjects)
    received: dict[tuple[str, int], float] = {}
    stop = threading.Event()

    def listen() -> None:
        while not stop.is_set():
            try:
                f = sub.recv(timeout=0.2)
            except TimeoutError:
                continue
            received[(f.subject, f.index)] = time.monotonic()

    th = threading.Thread(target=listen, daemon=True)
    th.start()
    time.sleep(0.5)  # let subscriptions reach the server
    sessions = [client.open(s, sr) for s in subjects]
    sent: dict[object, tuple[str, float]] = {}
    period = chunk_ms / 1000
    t0 = time.monotonic() + 0.1
    late = 0.0
    k = 0
    while k * period < seconds:
        for i, s in enumerate(sessions):
            due = t0 + k * period + i * period / n
            d = due - time.monotonic()
            if d > 0:
                time.sleep(d)
            else:
                late = max(late, -d)
            rid = s.push(x[k * step : (k + 1) * step], wait=False)
            sent[rid] = (s.subject, time.monotonic())
        k += 1
    client.wait_all()
    time.sleep(0.5)
    stop.set()
    th.join()
    lat, missing, total = [], 0, 0
    for _, rep in client.poll_replies():
        if rep.get("id") not in sent or "frames" not in rep:
            continue
        subj, ts = sent[rep["id"]]
        for idx in range(rep["start_index"], rep["start_index"] + rep["frames"]):
            total += 1
            r = received.get((subj, idx))
            if r is None:
                missing += 1
            else:
                lat.append((r - ts) * 1000)
    for s in sessions:
        s.close()
    a = np.array(lat) if lat else np.array([np.nan])
    return {"streams": n, "frames": total, "missing": missing,
            "p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
            "max_ms": float(a.max()), "sender_late_ms": late * 1000}


def run_one(n: int, seconds: float, chunk_ms: float, model: str) -> dict:
    cp, fp = free_port(), free_port()
    exe = [sys.executable, "-m", "facecast_runtime.cli", "serve", "--control-port", str(cp),
           "--frame-port", str(fp), "--model", model, "--log-level", "warning"]
    srv = subprocess.Popen(exe, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        from facecast.client import RuntimeClient

        c = RuntimeClient(f"tcp://127.0.0.1:{cp}", timeout=1.0)
        for _ in range(100):
            try:
                c.ping()
                break
            except Exception:
                time.sleep(0.1)
        c.close() if hasattr(c, "close") else None
        cpu0 = cpu_seconds(srv.pid)
        w0 = time.monotonic()
        code = ("import json,sys; sys.path.insert(0, %r); import bench_server as b; "
                "print(json.dumps(b.load(%r, %r, %d, %f, %f)))"
                % (str(Path(__file__).parent), f"tcp://127.0.0.1:{cp}", f"tcp://127.0.0.1:{fp}",
                   n, seconds, chunk_ms))
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=seconds * 4 + 60)
        wall = time.monotonic() - w0
        res = json.loads(out.stdout.strip().splitlines()[-1])
        res["server_cpu_cores"] = (cpu_seconds(srv.pid) - cpu0) / wall
        res["server_rss_mb"] = rss_mb(srv.pid)
        res["keeps_up"] = bool(res["missing"] == 0 and res["p99_ms"] < chunk_ms + 10)
        return res
    finally:
        srv.terminate()
        srv.wait(timeout=10)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--streams", type=int, nargs="+", default=[1, 50])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--chunk-ms", type=float, default=10.0)
    ap.add_argument("--model", default="default")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    results = {"machine": f"{platform.node()} cores={os.cpu_count()}",
               "command": "python benchmarks/bench_server.py " + " ".join(sys.argv[1:]),
               "runs": [run_one(n, args.seconds, args.chunk_ms, args.model)
                        for n in args.streams]}
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
