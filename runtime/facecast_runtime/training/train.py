"""Training pipeline: data preparation, training, quick evaluation and ONNX export.

Driven by one TOML config (``configs/default.toml``), deterministic for its seed::

    python -m facecast_runtime.training.train --config runtime/facecast_runtime/training/configs/default.toml
    python -m facecast_runtime.training.train --config ... --set lookahead_frames=5 --name la120

Data: FACEGOOD clips from ../shared (real speech with animator curves, the channels it animates)
and the TTS corpus the project generates (``work_data/tts``, phoneme-timed, mouth targets from
``visemes.phones_to_targets``). Audio is augmented (``augment.augment``) before features are
computed with the runtime's own feature code, so training and inference see the same features.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from facecast.schema import MOUTH_CHANNELS, SCHEMA_VERSION

from ..features import LogMelConfig, compute_features

REPO = Path(__file__).resolve().parents[3]
DEFAULT_CONFIG = Path(__file__).with_name("configs") / "default.toml"

Sink = Callable[[str], None]


def _stderr_sink(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class Item:
    """One training utterance: model-frame features, targets and a per-channel mask."""
    name: str
    feats: np.ndarray     # (M, D) float32
    targets: np.ndarray   # (M, C) float32
    mask: np.ndarray      # (C,) float32, 1 where the source supervises the channel
    weight: float
    frame_weight: np.ndarray | None = None  # (M,) per-frame loss weight (bilabial emphasis)


def load_config(path: Path, overrides: list[str]) -> dict:
    cfg = tomllib.loads(Path(path).read_text())
    for ov in overrides:
        key, _, val = ov.partition("=")
        try:
            value = json.loads(val)
        except json.JSONDecodeError:
            value = val
        node = cfg
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return cfg


def frame_times(n_frames: int, feat: LogMelConfig) -> np.ndarray:
    """Centre time (s) of each model frame."""
    return (np.arange(n_frames) + 0.5) * feat.model_hop / feat.sample_rate


def _resolve(p: str) -> Path:
    path = Path(os.path.expandvars(p))
    return path if path.is_absolute() else (REPO / path)


def speed_perturb(x: np.ndarray, sr: int, rng: np.random.Generator, lo: float, hi: float
                  ) -> tuple[np.ndarray, float]:
    """Resample so the clip plays ``a`` times longer at the same rate (pitch and formants move
    by 1/a, as in Kaldi-style speed perturbation). Returns (audio, a); targets stretch by a."""
    from ..audio import resample

    if hi <= lo:
        return x, 1.0
    a = float(rng.uniform(lo, hi))
    out_rate = int(round(sr * a))
    return resample(x, sr, out_rate), out_rate / sr


def _pink(n: int, rng: np.random.Generator) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    y = np.fft.irfft(spec / np.sqrt(f), n)
    return (y / (np.abs(y).max() + 1e-9)).astype(np.float32)


def nonspeech_clip(kind: str, seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Sounds that are not speech, on which the mouth must stay at rest: noise, breaths, music,
    mains hum, DC steps and near-silence. Levels vary from barely audible to loud."""
    from scipy.signal import butter, lfilter

    n = int(seconds * sr)
    t = np.arange(n) / sr
    level = 10 ** (rng.uniform(-55, -12) / 20)
    if kind == "noise":
        x = _pink(n, rng) if rng.random() < 0.5 else rng.standard_normal(n).astype(np.float32)
    elif kind == "breath":
        b, a = butter(2, [rng.uniform(300, 900), rng.uniform(2000, 6000)], "bandpass", fs=sr)
        x = lfilter(b, a, rng.standard_normal(n))
        env = np.zeros(n)
        pos = rng.uniform(0, 0.5)
        while pos < seconds:
            dur = rng.uniform(0.3, 0.9)
            i0, i1 = int(pos * sr), min(n, int((pos + dur) * sr))
            env[i0:i1] = np.sin(np.linspace(0, np.pi, i1 - i0)) ** 2
            pos += dur + rng.uniform(0.4, 2.0)
        x = x * env
    elif kind == "music":
        x = np.zeros(n)
        step = rng.uniform(0.15, 0.6)
        for k in range(int(seconds / step) + 1):
            i0, i1 = int(k * step * sr), min(n, int((k + 1) * step * sr))
            if i0 >= n:
                break
            tt = t[i0:i1] - t[i0]
            for _ in range(int(rng.integers(1, 4))):
                f0 = 110 * 2 ** (rng.integers(0, 36) / 12)
                for h in range(1, 6):
                    x[i0:i1] += np.sin(2 * np.pi * f0 * h * tt) / h ** rng.uniform(1, 2.5)
            x[i0:i1] *= np.exp(-tt * rng.uniform(0, 6))
        if rng.random() < 0.5:  # percussion
            for k in range(int(seconds / step) + 1):
                i0 = int(k * step * sr)
                if i0 < n:
                    m = min(n - i0, int(0.05 * sr))
                    x[i0 : i0 + m] += rng.standard_normal(m) * np.exp(-np.arange(m) / (0.01 * sr))
    elif kind == "hum":
        f = 50.0 if rng.random() < 0.5 else 60.0
        x = sum(np.sin(2 * np.pi * f * h * t + rng.uniform(0, 6)) / h for h in range(1, 8))
    elif kind == "dc":
        x = np.full(n, rng.uniform(-1, 1)) + 0.01 * rng.standard_normal(n)
        level = rng.uniform(0.05, 0.5)
    else:  # near silence
        x = rng.standard_normal(n) * (10 ** (rng.uniform(-90, -60) / 20))
        return x.astype(np.float32)
    x = np.asarray(x, np.float64)
    peak = np.abs(x).max() + 1e-12
    return np.clip(x / peak * level * (1 if kind == "dc" else 3), -1, 1).astype(np.float32)


def nonspeech_items(cfg: dict, feat: LogMelConfig, out_names: list[str],
                    rng: np.random.Generator) -> list[Item]:
    n_items = int(cfg["data"].get("nonspeech_items", 0))
    kinds = ("noise", "breath", "music", "hum", "dc", "silence")
    items = []
    for i in range(n_items):
        kind = kinds[i % len(kinds)]
        x = nonspeech_clip(kind, float(rng.uniform(4, 10)), feat.sample_rate, rng)
        n = -(-len(x) // feat.model_hop)
        items.append(Item(f"nonspeech/{kind}/{i}", compute_features(x, feat, n),
                          np.zeros((n, len(out_names)), np.float32),
                          np.ones(len(out_names), np.float32),
                          float(cfg["data"].get("nonspeech_weight", 1.0))))
    return items


def facegood_items(cfg: dict, feat: LogMelConfig, out_names: list[str], rng: np.random.Generator,
                   clips: list[str], n_aug: int, augment_fn) -> list[Item]:
    from . import facegood

    shared = _resolve(cfg["data"]["shared"])
    speed_range = tuple(cfg["data"].get("speed_range", [1.0, 1.0]))
    loaded = [facegood.load_clip(shared, name) for name in clips]
    # supervise what the animator moved in the training clips (never looks at the held-out one)
    animated = set(facegood.moving_channels(loaded))
    mask = np.array([1.0 if c in animated else 0.0 for c in out_names], np.float32)
    items = []
    for clip in loaded:
        name = clip.name
        n = -(-len(clip.samples) // feat.model_hop)
        t = frame_times(n, feat)
        src_t = np.arange(clip.n_frames) / clip.fps
        tg = np.zeros((n, len(out_names)), np.float32)
        for j, c in enumerate(out_names):
            if c in clip.curves:
                tg[:, j] = np.interp(t, src_t, clip.curves[c])
        for a in range(n_aug + 1):
            x, tgt = clip.samples, tg
            if a > 0:
                x, speed = speed_perturb(clip.samples, feat.sample_rate, rng, *speed_range)
                m = -(-len(x) // feat.model_hop)
                ts = frame_times(m, feat) / speed
                tgt = np.stack([np.interp(ts, src_t, clip.curves[c]) if c in clip.curves
                                else np.zeros(m) for c in out_names], axis=1).astype(np.float32)
                x = augment_fn(x, feat.sample_rate, rng)
            items.append(Item(f"facegood/{name}/{a}", compute_features(x, feat, len(tgt)), tgt,
                              mask, float(cfg["data"].get("facegood_weight", 1.0))))
    return items


def tts_items(cfg: dict, feat: LogMelConfig, out_names: list[str], rng: np.random.Generator,
              n_aug: int, augment_fn, sink: Sink) -> list[Item]:
    import soundfile as sf

    from ..audio import resample

    root = _resolve(cfg["data"]["tts_dir"])
    manifest = root / "manifest.jsonl"
    if not manifest.exists():
        sink(f"no TTS corpus at {manifest}; training on FACEGOOD only")
        return []
    from . import visemes

    limit = int(cfg["data"].get("tts_max_items", 10**9))
    entries = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    entries = [e for e in entries if e.get("split") == "train"][:limit]
    speed_range = tuple(cfg["data"].get("speed_range", [1.0, 1.0]))
    bilabial_w = float(cfg["train"].get("bilabial_weight", 1.0))
    col = {c: i for i, c in enumerate(MOUTH_CHANNELS)}
    sel = np.array([col[c] for c in out_names])
    mask = np.ones(len(out_names), np.float32)
    items = []
    for e in entries:
        x, sr = sf.read(root / f"{e['id']}.wav", dtype="float32", always_2d=True)
        x = x.mean(axis=1)
        if sr != feat.sample_rate:
            x = resample(x, sr, feat.sample_rate)
        for a in range(n_aug + 1):
            xa, speed = x, 1.0
            if a > 0:
                xa, speed = speed_perturb(x, feat.sample_rate, rng, *speed_range)
            n = -(-len(xa) // feat.model_hop)
            phones = [visemes.Phone(float(s) * speed, float(en) * speed, str(lab))
                      for s, en, lab in e["phones"]]
            # targets at model-frame centres (m + 0.5) * hop: sample at twice the rate, odd ones
            fine = visemes.phones_to_targets(phones, 2 * feat.sample_rate / feat.model_hop, 2 * n)
            tg = np.ascontiguousarray(fine[1::2][:, sel], dtype=np.float32)
            fw = np.ones(n, np.float32)
            t_mid = frame_times(n, feat)
            for p in phones:
                if visemes.phone_class(p.label) == "bilabial":
                    fw[(t_mid >= p.start - 0.02) & (t_mid <= p.end + 0.02)] = bilabial_w
            if a > 0:
                xa = augment_fn(xa, feat.sample_rate, rng)
            items.append(Item(f"tts/{e['id']}/{a}", compute_features(xa, feat, n), tg, mask,
                              float(cfg["data"].get("tts_weight", 1.0)), fw))
    sink(f"TTS corpus: {len(entries)} train utterances from {root}")
    return items


def data_digest(cfg: dict) -> str:
    """Digest of what the model learns from: FACEGOOD files used, the TTS manifest, the config."""
    h = hashlib.sha256()
    h.update(json.dumps(cfg, sort_keys=True, default=str).encode())
    shared = _resolve(cfg["data"]["shared"])
    for clip in cfg["data"].get("facegood_clips", []):
        for f in sorted((shared / "data" / "facegood" / clip).glob("*")):
            h.update(f.name.encode())
            h.update(str(f.stat().st_size).encode())
    manifest = _resolve(cfg["data"]["tts_dir"]) / "manifest.jsonl"
    if manifest.exists():
        h.update(manifest.read_bytes())
    return "sha256:" + h.hexdigest()[:16]


def _penalty(d, kind: str):
    return d.abs() if kind == "l1" else d * d


def train(cfg: dict, out_path: Path, name: str, sink: Sink = _stderr_sink) -> dict:
    import torch

    from .model import FaceNet, NetConfig, export_onnx

    seed = int(cfg.get("seed", 0))
    for k in ("loss", "opening_loss"):
        if str(cfg["train"].get(k, "l2")) not in ("l1", "l2"):
            raise ValueError(f"train.{k} must be 'l1' or 'l2', got {cfg['train'][k]!r}")
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(int(cfg["train"].get("threads", max(1, os.cpu_count() or 1))))
    feat = LogMelConfig(**cfg.get("feature", {}))
    out_names = list(cfg["model"].get("outputs", MOUTH_CHANNELS))
    L = int(cfg["lookahead_frames"])
    from .augment import SPECTRAL_DEFAULTS, spectral_augment
    from .augment import augment as augment_fn

    n_aug = int(cfg["data"].get("augment_copies", 1))
    t0 = time.time()
    items = facegood_items(cfg, feat, out_names, rng, list(cfg["data"]["facegood_clips"]),
                           n_aug, augment_fn)
    items += tts_items(cfg, feat, out_names, rng, n_aug, augment_fn, sink)
    items += nonspeech_items(cfg, feat, out_names, rng)
    frames = sum(len(i.feats) for i in items)
    sink(f"data ready: {len(items)} items, {frames} frames "
         f"({frames * feat.model_hop / feat.sample_rate / 60:.1f} min incl. augmented copies) "
         f"in {time.time() - t0:.0f}s")

    net_cfg = NetConfig(in_dim=feat.dim, channels=int(cfg["model"]["channels"]),
                        kernel=int(cfg["model"]["kernel"]),
                        dilations=list(cfg["model"]["dilations"]), out_names=out_names)
    net = FaceNet(net_cfg)
    net.train()
    allf = np.concatenate([i.feats for i in items])
    net.feat_mean.copy_(torch.from_numpy(allf.mean(0)))
    net.feat_std.copy_(torch.from_numpy(allf.std(0) + 1e-3))
    del allf

    tr = cfg["train"]
    # "cpu" (default; what the shipped models use) or a torch device such as "cuda" for sweeps
    dev = torch.device(str(tr.get("device", "cpu")))
    net.to(dev)
    steps, batch, crop = int(tr["steps"]), int(tr["batch"]), int(tr["crop_frames"])
    warm = int(tr.get("warmup_frames", 16))
    opt = torch.optim.AdamW(net.parameters(), lr=float(tr["lr"]), weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=float(tr["lr"]), total_steps=steps,
                                                pct_start=0.05)
    cw = np.ones(len(out_names), np.float32)
    for c, w in cfg["train"].get("channel_weights", {}).items():
        if c in out_names:
            cw[out_names.index(c)] = float(w)
    cw_t = torch.from_numpy(cw).to(dev)
    weights = np.array([i.weight * len(i.feats) for i in items], np.float64)
    weights /= weights.sum()
    D, C = feat.dim, len(out_names)
    vel_w = float(tr.get("velocity_weight", 0.5))
    # "l2" (squared error: the mean of what the audio allows) or "l1" (absolute error: its
    # median, which commits to closed or open where the evidence is split)
    ch_loss, o_loss = str(tr.get("loss", "l2")), str(tr.get("opening_loss", "l2"))

    o_w = float(tr.get("opening_weight", 0.0))
    o_parts = {"jawOpen": 1.0, "mouthLowerDownLeft": 0.25, "mouthLowerDownRight": 0.25,
               "mouthClose": -1.0}
    if not set(o_parts) <= set(out_names):
        o_w = 0.0
    o_idx = [out_names.index(c) for c in o_parts if c in out_names]
    o_coef = torch.tensor([o_parts[out_names[i]] for i in o_idx], device=dev)
    spec_opts = {**SPECTRAL_DEFAULTS, **tr.get("spectral", {})}
    spec_p = float(spec_opts["p"])
    t0 = time.time()
    for step in range(steps):
        fb = np.zeros((batch, crop, D), np.float32)
        tb = np.zeros((batch, crop, C), np.float32)
        mb = np.zeros((batch, crop, C), np.float32)
        wb = np.zeros((batch, crop, 1), np.float32)
        for b in range(batch):
            it = items[rng.choice(len(items), p=weights)]
            M = len(it.feats)
            # output step m describes frame m - L
            s = int(rng.integers(0, max(1, M - crop)))
            seg = it.feats[s : s + crop]
            if spec_p > 0 and rng.random() < spec_p:  # re-voice the crop (spectrum only)
                seg = spectral_augment(seg, feat, rng, spec_opts)
            fb[b, : len(seg)] = seg
            tidx = np.arange(s, s + len(seg)) - L
            ok = tidx >= 0
            tb[b, : len(seg)][ok] = it.targets[tidx[ok]]
            mrow = np.zeros((len(seg), C), np.float32)
            mrow[ok] = it.mask
            if s > 0:
                mrow[:warm] = 0.0  # zero state mid-utterance: let the context fill first
            mb[b, : len(seg)] = mrow
            if it.frame_weight is not None:
                fw = np.zeros(len(seg), np.float32)
                fw[ok] = it.frame_weight[tidx[ok]]
                wb[b, : len(seg), 0] = fw
            else:
                wb[b, : len(seg), 0] = 1.0
        f_t, t_t, m_t, w_t = (torch.from_numpy(a).to(dev) for a in (fb, tb, mb, wb))
        y, _ = net(f_t)
        err = _penalty(y - t_t, ch_loss) * m_t * cw_t * w_t
        loss = err.sum() / m_t.sum().clamp(min=1)
        if o_w > 0:  # the mouth opening the evaluation scores, where all its parts are known
            om = m_t[..., o_idx].prod(dim=-1) * w_t[..., 0]
            o_err = _penalty((y[..., o_idx] * o_coef).sum(-1) - (t_t[..., o_idx] * o_coef).sum(-1),
                             o_loss)
            loss = loss + o_w * (o_err * om).sum() / om.sum().clamp(min=1)
        dy, dt = y[:, 1:] - y[:, :-1], t_t[:, 1:] - t_t[:, :-1]
        dm = m_t[:, 1:] * m_t[:, :-1]
        loss = loss + vel_w * ((dy - dt) ** 2 * dm * cw_t).sum() / dm.sum().clamp(min=1)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % max(1, steps // 20) == 0 or step == steps - 1:
            sink(f"step {step:5d}/{steps} loss {loss.item():.4f} ({time.time() - t0:.0f}s)")

    net.cpu()
    hop_ms = 1000.0 * feat.model_hop / feat.sample_rate
    lookahead_ms = L * hop_ms + 1000.0 * feat.future_samples / feat.sample_rate
    meta = {
        "facecast.contract": "1",
        "model_name": name,
        "model_version": str(cfg.get("version", "0.1.0")),
        "sample_rate": str(feat.sample_rate),
        "hop": str(feat.model_hop),
        "feature": feat.to_json(),
        "context": str(net_cfg.context),
        "lookahead_frames": str(L),
        "lookahead_ms": f"{lookahead_ms:.1f}",
        "channels": json.dumps(out_names),
        "schema_version": str(SCHEMA_VERSION),
        "training_data": data_digest(cfg),
        "training_seed": str(seed),
        "architecture": json.dumps({"type": "causal-dilated-conv",
                                    "channels": net_cfg.channels, "kernel": net_cfg.kernel,
                                    "dilations": net_cfg.dilations}),
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # the torch weights too, so a model can be re-exported (new opset, graph changes) later
    # without retraining; loading needs only NetConfig + this file, no training flags
    ckpt = out_path.with_suffix(".pt")
    torch.save({"net_config": vars(net_cfg), "state_dict": net.state_dict(), "metadata": meta},
               ckpt.with_suffix(".pt.tmp"))
    os.replace(ckpt.with_suffix(".pt.tmp"), ckpt)
    tmp = out_path.with_suffix(".onnx.tmp")
    export_onnx(net, str(tmp), meta)
    os.replace(tmp, out_path)
    sink(f"exported {out_path} ({out_path.stat().st_size / 1e6:.2f} MB), "
         f"lookahead {lookahead_ms:.1f} ms, trained in {time.time() - t0:.0f}s")
    return meta


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="facecast train", description=__doc__.split("\n")[0])
    ap.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config value, e.g. lookahead_frames=5 or train.steps=200")
    ap.add_argument("--name", default=None, help="model name (default: config's name)")
    ap.add_argument("-o", "--out", type=Path, default=None, help="output .onnx path")
    args = ap.parse_args(argv)
    cfg = load_config(args.config, args.set)
    name = args.name or cfg.get("name", "default")
    out = args.out or (REPO / "runtime" / "facecast_runtime" / "models" / f"{name}.onnx")
    train(cfg, out, name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
