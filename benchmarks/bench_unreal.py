"""Unreal relay benchmarks: per-frame overhead and many subjects in real time on one core.

    python benchmarks/bench_unreal.py [--frames 3000] [--subjects 16] [--seconds 20]
                                      [--json OUT.json]

1. **Overhead per frame** (one process): for ``--frames`` frames of each of ``--subjects``
   subjects, time the relay's whole path for one frame: decoding the runtime's msgpack frame
   message (the SDK's ``decode_published``, what the relay's subscriber does), converting,
   sanitizing and encoding it as a Live Link Face packet (``UnrealRelay.accept_frame``) and
   sending it over UDP to a loopback socket (``UnrealRelay.flush``). The socket is drained
   between rounds, outside the timing.
2. **Real time** (three processes): a publisher speaking the runtime's frame protocol (a ZeroMQ
   XPUB fed by the SDK's ``FrameEncoder``, one frame per subject every 1/60 s on schedule), the
   relay (``UnrealRelay``, default options: paced, keep-alives) pinned to one CPU core, and a
   UDP receiver (this process) that decodes every packet. Reported: packets received versus
   frames published, gaps in frame numbers, lateness of each packet behind the frame's
   schedule (receive time - (t0 + frame / 60)), its drift between the first and the last
   seconds (a relay that falls behind shows a growing lateness), and the relay's CPU time over
   wall time.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()


def frames_values(n: int, seed: int = 0) -> np.ndarray:
    from facecast.schema import CHANNELS

    rng = np.random.default_rng(seed)
    v = rng.uniform(0.0, 1.0, (n, len(CHANNELS))).astype(np.float32)
    v[:, 52:] = (v[:, 52:] - 0.5) * 0.8  # rotations, radians
    return v


# ------------------------------------------------------------------------------------------
# 1. overhead per frame
# ------------------------------------------------------------------------------------------
def bench_overhead(n_frames: int, n_subjects: int) -> dict:
    from facecast.schema import FrameBatch
    from facecast.wire import FrameEncoder, decode_published, frame_topic
    from facecast_unreal import UnrealRelay

    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    rx.bind(("127.0.0.1", 0))
    rx.setblocking(False)
    # the relay's subscriber connects to a port nobody serves: frames are fed in by hand
    relay = UnrealRelay("tcp://127.0.0.1:9", None, [("127.0.0.1", rx.getsockname()[1])],
                        pace=False)
    v = frames_values(n_frames)
    subjects = [f"bench.s{i}" for i in range(n_subjects)]
    payloads = [(frame_topic(s), FrameEncoder(s, "bench", 60).encode(
        FrameBatch(v, 0, 60, s))) for s in subjects]
    dec, acc, out = [], [], []
    perf = time.perf_counter
    mono = time.monotonic
    try:
        for i in range(n_frames):
            for topic, p in payloads:
                t0 = perf()
                frame = decode_published(topic, p[i], 0.0)
                t1 = perf()
                now = mono()
                relay.accept_frame(frame, now)
                t2 = perf()
                relay.flush(now)
                t3 = perf()
                dec.append(t1 - t0)
                acc.append(t2 - t1)
                out.append(t3 - t2)
            while True:
                try:
                    rx.recv(2048)
                except BlockingIOError:
                    break
        st = relay.stats()
    finally:
        relay.close()
        rx.close()
    dec_a, acc_a, out_a = (np.array(x) * 1e3 for x in (dec, acc, out))
    total = dec_a + acc_a + out_a

    def pct(a: np.ndarray) -> dict:
        return {"p50_ms": round(float(np.percentile(a, 50)), 4),
                "p99_ms": round(float(np.percentile(a, 99)), 4),
                "p999_ms": round(float(np.percentile(a, 99.9)), 4),
                "max_ms": round(float(a.max()), 4)}

    return {"frames": len(total), "subjects": n_subjects, "total": pct(total),
            "decode": pct(dec_a), "convert_encode": pct(acc_a), "send": pct(out_a),
            "send_errors": sum(sum(t["errors"].values()) for t in st["targets"])}


# ------------------------------------------------------------------------------------------
# 2. real time: publisher and relay processes
# ------------------------------------------------------------------------------------------
def role_publish(port: int, n_subjects: int, seconds: float, t0: float) -> None:
    import zmq

    from facecast.schema import FrameBatch
    from facecast.wire import FrameEncoder, encode_event, event_topic, frame_topic

    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.XPUB)
    sock.sndhwm = 100_000
    sock.bind(f"tcp://127.0.0.1:{port}")
    deadline = time.time() + 30
    while time.time() < deadline:  # wait for the relay's subscription
        if sock.poll(100) and sock.recv()[:1] == b"\x01":
            break
    n = int(round(seconds * 60))
    v = frames_values(n, seed=1)
    subjects = [f"bench.s{i}" for i in range(n_subjects)]
    encoded = [FrameEncoder(s, f"sess{k}", 60).encode(FrameBatch(v, 0, 60, s))
               for k, s in enumerate(subjects)]
    topics = [frame_topic(s) for s in subjects]
    for s in subjects:
        sock.send_multipart([event_topic(s), encode_event("start", s, "x", fps=60, index=0,
                                                          time=0.0)])
    late = []
    for i in range(n):
        due = t0 + i / 60
        delay = due - time.time()
        if delay > 0:
            time.sleep(delay)
        late.append(time.time() - due)
        for k in range(n_subjects):
            sock.send_multipart([topics[k], encoded[k][i]])
    time.sleep(0.5)
    sock.close(0)
    print(json.dumps({"published": n * n_subjects,
                      "publisher_late_p99_ms": float(np.percentile(late, 99)) * 1e3}),
          flush=True)


def role_relay(frames: str, target_port: int, seconds: float, cpu: int | None) -> None:
    from facecast_unreal import UnrealRelay

    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})
    relay = UnrealRelay(frames, None, [("127.0.0.1", target_port)])
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    w0 = time.monotonic()
    relay.run(duration=seconds)
    wall = time.monotonic() - w0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    st = relay.stats()
    relay.close()
    cpu_s = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    print(json.dumps({"cpu_s": cpu_s, "wall_s": wall, "frames": st["frames"],
                      "packets": st["packets"], "keepalives": st["keepalives"],
                      "reanchored": sum(s["reanchored"] for s in st["subjects"].values()),
                      "dropped": st["dropped"], "missed": st["subscriber"].get("missed", 0),
                      "send_errors": sum(sum(t["errors"].values()) for t in st["targets"]),
                      "affinity": sorted(os.sched_getaffinity(0))
                      if hasattr(os, "sched_getaffinity") else None}), flush=True)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_realtime(n_subjects: int, seconds: float) -> dict:
    from facecast_unreal import decode_packet

    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(0.05)
    zport = free_port()
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    relay_cpu = cpus[-1] if cpus else None
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    relay = subprocess.Popen(
        [sys.executable, str(HERE), "--role", "relay", "--frames-endpoint",
         f"tcp://127.0.0.1:{zport}", "--target-port", str(rx.getsockname()[1]),
         "--seconds", str(seconds + 4.0)]
        + (["--cpu", str(relay_cpu)] if relay_cpu is not None else []),
        stdout=subprocess.PIPE, text=True, env=env)
    t0 = time.time() + 2.5
    pub = subprocess.Popen(
        [sys.executable, str(HERE), "--role", "publish", "--port", str(zport), "--subjects",
         str(n_subjects), "--seconds", str(seconds), "--t0", repr(t0)],
        stdout=subprocess.PIPE, text=True, env=env)
    received: dict[str, list[tuple[int, float]]] = {}
    header_only = 0
    end = t0 + seconds + 1.5
    cpu_marks: list[tuple[float, float]] = []
    while time.time() < end:
        wall = time.time()
        if (not cpu_marks and wall >= t0) or (len(cpu_marks) == 1 and wall >= t0 + seconds):
            cpu_marks.append((wall, cpu_seconds(relay.pid)))
        try:
            data = rx.recv(4096)
        except socket.timeout:
            continue
        now = time.time()
        p = decode_packet(data)
        if p.values is None:
            header_only += 1
            continue
        received.setdefault(p.subject, []).append((p.frame_number, now))
    rx.close()
    pub_out = json.loads(pub.communicate(timeout=30)[0].strip().splitlines()[-1])
    relay_out = json.loads(relay.communicate(timeout=30)[0].strip().splitlines()[-1])
    n = int(round(seconds * 60))
    lateness, gaps, first_s, last_s = [], 0, [], []
    for subject, items in received.items():
        numbers = [fn for fn, _ in items]
        gaps += sum(1 for a, b in zip(numbers, numbers[1:]) if b != a + 1)
        for fn, t in items:
            late = (t - (t0 + fn / 60)) * 1e3
            lateness.append(late)
            if fn < 60:
                first_s.append(late)
            elif fn >= n - 60:
                last_s.append(late)
    lat = np.array(lateness)
    got = sum(len(v) for v in received.values())
    return {
        "subjects": n_subjects, "seconds": seconds, "published": pub_out["published"],
        "received": got, "subjects_heard": len(received), "gaps": gaps,
        "header_only_packets": header_only,
        "lateness_ms": {"p50": round(float(np.percentile(lat, 50)), 3),
                        "p99": round(float(np.percentile(lat, 99)), 3),
                        "max": round(float(lat.max()), 3)} if len(lat) else None,
        "lateness_first_second_p50_ms": round(float(np.median(first_s)), 3) if first_s else None,
        "lateness_last_second_p50_ms": round(float(np.median(last_s)), 3) if last_s else None,
        "publisher_late_p99_ms": round(pub_out["publisher_late_p99_ms"], 3),
        "relay_cpu_percent_of_one_core": round(
            100 * (cpu_marks[1][1] - cpu_marks[0][1]) / (cpu_marks[1][0] - cpu_marks[0][0]), 1),
        "relay": relay_out,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=3000, help="frames per subject (overhead)")
    ap.add_argument("--subjects", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=20.0, help="real-time run length")
    ap.add_argument("--json", help="write the results as JSON")
    ap.add_argument("--role", choices=("publish", "relay"), help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--t0", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--frames-endpoint", help=argparse.SUPPRESS)
    ap.add_argument("--target-port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--cpu", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.role == "publish":
        role_publish(args.port, args.subjects, args.seconds, args.t0)
        return 0
    if args.role == "relay":
        role_relay(args.frames_endpoint, args.target_port, args.seconds, args.cpu)
        return 0

    machine = {"python": platform.python_version(), "machine": platform.machine(),
               "cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
               "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                machine["processor"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    print(f"machine: {machine}", flush=True)
    over = bench_overhead(args.frames, args.subjects)
    t = over["total"]
    print(f"overhead per frame (decode + convert/encode + UDP send), {over['frames']} frames: "
          f"p50 {t['p50_ms']:.4f} ms, p99 {t['p99_ms']:.4f} ms, p99.9 {t['p999_ms']:.4f} ms, "
          f"max {t['max_ms']:.4f} ms", flush=True)
    for k in ("decode", "convert_encode", "send"):
        print(f"  {k}: p50 {over[k]['p50_ms']:.4f} ms, p99 {over[k]['p99_ms']:.4f} ms",
              flush=True)
    rt = bench_realtime(args.subjects, args.seconds)
    print(f"real time: {rt['subjects']} subjects x 60 fps for {rt['seconds']:g} s: "
          f"{rt['received']}/{rt['published']} packets, {rt['gaps']} gaps, lateness "
          f"{rt['lateness_ms']}, first-second p50 {rt['lateness_first_second_p50_ms']} ms, "
          f"last-second p50 {rt['lateness_last_second_p50_ms']} ms, relay CPU "
          f"{rt['relay_cpu_percent_of_one_core']}% of core {rt['relay']['affinity']}",
          flush=True)
    result = {"machine": machine, "overhead": over, "realtime": rt,
              "command": "python benchmarks/bench_unreal.py " + " ".join(
                  sys.argv[1:] if argv is None else argv)}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
