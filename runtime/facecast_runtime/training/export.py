"""Re-export a trained model's ONNX file from its torch checkpoint (no retraining).

    python -m facecast_runtime.training.export runtime/facecast_runtime/models/default.pt

``train`` saves ``<name>.pt`` (net config, weights, metadata) next to ``<name>.onnx``. This
rebuilds the network from it and exports it again with the current ``export_onnx`` (e.g. to
pick up graph changes such as the dynamic batch axis). The contract metadata is copied verbatim,
in order, from ``--metadata-from`` (default: the existing ONNX file at the output path, so a
shipped model keeps exactly what it declared; the checkpoint's own metadata if there is none).
The new file is checked to give bitwise-identical outputs to the old one for batch 1 before it
replaces it (``--no-check`` skips that).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np


def load_checkpoint(ckpt: str | os.PathLike):
    """(FaceNet in eval mode, checkpoint metadata dict) from a ``train`` checkpoint."""
    import torch

    from .model import FaceNet, NetConfig

    data = torch.load(os.fspath(ckpt), map_location="cpu", weights_only=False)
    net = FaceNet(NetConfig(**data["net_config"]))
    net.load_state_dict(data["state_dict"])
    return net.eval(), dict(data.get("metadata", {}))


def onnx_metadata(path: str | os.PathLike) -> dict[str, str]:
    """An ONNX file's ``metadata_props`` as an ordered dict."""
    import onnx

    model = onnx.load(os.fspath(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def compare_outputs(old: str | os.PathLike, new: str | os.PathLike, seconds: float = 4.0,
                    chunk_frames: tuple[int, ...] = (1, 2, 3, 7, 50)) -> int:
    """Stream the same features (random and speech-like ranges) through both files at batch 1,
    in chunks of varying length, and count output/state elements that differ bitwise."""
    from ..model import ModelRunner

    a, b = ModelRunner(old), ModelRunner(new)
    if a.info.feature.dim != b.info.feature.dim:
        raise ValueError("the two models take different features")
    frames = int(seconds * a.info.frame_rate)
    rng = np.random.default_rng(0)
    feats = (rng.standard_normal((frames, a.info.feature.dim)) * 3 - 6).astype(np.float32)
    diff = pos = i = 0
    while pos < frames:
        n = chunk_frames[i % len(chunk_frames)]
        ya, yb = a.run(feats[pos:pos + n]), b.run(feats[pos:pos + n])
        diff += int((ya.view(np.uint32) != yb.view(np.uint32)).sum())
        pos, i = pos + n, i + 1
    for s in a.info.state_names:
        diff += int((a.state[s].view(np.uint32) != b.state[s].view(np.uint32)).sum())
    return diff


def reexport(ckpt: str | os.PathLike, out: str | os.PathLike,
             metadata_from: str | os.PathLike | None = None, check: bool = True) -> dict:
    """Export ``ckpt`` to ``out`` (atomically). Returns {"bytes", "diff" (None if unchecked)};
    a ValueError when the check finds a difference (``out`` is then left as it was)."""
    from .model import export_onnx

    out = Path(out)
    net, ckpt_meta = load_checkpoint(ckpt)
    src = Path(metadata_from) if metadata_from is not None else (out if out.exists() else None)
    meta = onnx_metadata(src) if src is not None else ckpt_meta
    tmp = out.with_suffix(".onnx.tmp")
    export_onnx(net, str(tmp), meta)
    diff = None
    if check and out.exists():
        diff = compare_outputs(out, tmp)
        if diff:
            raise ValueError(f"{out}: re-export differs from the existing file in {diff} "
                             f"values; not replaced (kept at {tmp})")
    os.replace(tmp, out)
    return {"bytes": out.stat().st_size, "diff": diff}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m facecast_runtime.training.export",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint", type=Path, nargs="+", help="<name>.pt written by train")
    ap.add_argument("-o", "--out", type=Path, default=None,
                    help="output .onnx (default: the checkpoint's path with .onnx; one "
                         "checkpoint only)")
    ap.add_argument("--metadata-from", type=Path, default=None,
                    help="ONNX file whose metadata to copy (default: the existing output file)")
    ap.add_argument("--no-check", action="store_true",
                    help="replace without comparing outputs to the existing file")
    args = ap.parse_args(argv)
    if args.out is not None and len(args.checkpoint) > 1:
        ap.error("--out takes one checkpoint")
    for ckpt in args.checkpoint:
        out = args.out or ckpt.with_suffix(".onnx")
        try:
            res = reexport(ckpt, out, args.metadata_from, check=not args.no_check)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        same = "" if res["diff"] is None else ", outputs bitwise identical to the old file"
        print(f"{out}: {res['bytes'] / 1e6:.2f} MB{same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
