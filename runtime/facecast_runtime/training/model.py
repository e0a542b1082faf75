"""The speech-to-face network (torch; training extra only) and its streaming ONNX export.

Architecture: per-frame input normalisation -> linear projection -> a stack of causal dilated
1-D convolutions with residual connections -> linear head -> sigmoid (weights in 0..1).
Causal means output step m sees model frames <= m only. Lookahead is a fixed output delay of
L model frames: step m is trained to describe frame m - L, so each output has L frames of future.

Streaming state is explicit: each convolution keeps the last (kernel-1)*dilation input columns.
The exported graph takes them as inputs ``state_<i>`` and returns ``state_<i>_out``. The batch
axis (dimension 0 of every input and output) is dynamic, so a server can step many streams in
one call; each batch row is computed exactly as it would be alone.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class NetConfig:
    in_dim: int = 160
    channels: int = 96
    kernel: int = 3
    dilations: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16])
    out_names: list[str] = field(default_factory=list)

    @property
    def context(self) -> int:
        return sum((self.kernel - 1) * d for d in self.dilations)


class CausalBlock(nn.Module):
    def __init__(self, c: int, k: int, d: int) -> None:
        super().__init__()
        self.pad = (k - 1) * d
        self.conv = nn.Conv1d(c, c, k, dilation=d)
        self.mix = nn.Conv1d(c, c, 1)

    def forward(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xin = torch.cat([state, x], dim=2)
        y = self.mix(torch.nn.functional.leaky_relu(self.conv(xin), 0.1))
        new_state = xin[:, :, xin.shape[2] - self.pad :]
        return x + y, new_state


class FaceNet(nn.Module):
    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("feat_mean", torch.zeros(cfg.in_dim))
        self.register_buffer("feat_std", torch.ones(cfg.in_dim))
        self.proj = nn.Linear(cfg.in_dim, cfg.channels)
        self.blocks = nn.ModuleList(CausalBlock(cfg.channels, cfg.kernel, d)
                                    for d in cfg.dilations)
        self.head = nn.Linear(cfg.channels, len(cfg.out_names))

    def zero_state(self, batch: int = 1) -> list[torch.Tensor]:
        dev = self.feat_mean.device
        return [torch.zeros(batch, self.cfg.channels, b.pad, device=dev) for b in self.blocks]

    def forward(self, feats: torch.Tensor, states: list[torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """feats (B, T, D) -> (B, T, n_out) (clamped to 0..1 in eval mode), plus new states."""
        if states is None:
            states = self.zero_state(feats.shape[0])
        x = (feats - self.feat_mean) / self.feat_std
        x = self.proj(x).transpose(1, 2)
        new_states = []
        for blk, st in zip(self.blocks, states):
            x, ns = blk(x, st)
            new_states.append(ns)
        y = self.head(torch.nn.functional.leaky_relu(x, 0.1).transpose(1, 2))
        if not self.training:
            y = y.clamp(0.0, 1.0)  # weights live in 0..1; trained unclamped (no dead gradients)
        return y, new_states


class _ExportWrapper(nn.Module):
    def __init__(self, net: FaceNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, features, *states):
        y, ns = self.net(features, list(states))
        return (y, *ns)


def export_onnx(net: FaceNet, path: str, metadata: dict[str, str]) -> None:
    """Export with dynamic batch and time axes and explicit states; writes the contract
    metadata (``metadata`` in its order, values as strings)."""
    import onnx

    net = net.eval()
    n = len(net.blocks)
    wrapper = _ExportWrapper(net)
    feats = torch.zeros(1, 7, net.cfg.in_dim)
    states = net.zero_state(1)
    in_names = ["features"] + [f"state_{i}" for i in range(n)]
    out_names = ["channels"] + [f"state_{i}_out" for i in range(n)]
    dynamic = {"features": {0: "batch", 1: "T"}, "channels": {0: "batch", 1: "T"}}
    dynamic.update({name: {0: "batch"} for name in in_names[1:] + out_names[1:]})
    with torch.no_grad():
        torch.onnx.export(
            wrapper, (feats, *states), path, input_names=in_names, output_names=out_names,
            dynamic_axes=dynamic, opset_version=17, dynamo=False,
        )
    model = onnx.load(path)
    del model.metadata_props[:]
    for k, v in metadata.items():
        p = model.metadata_props.add()
        p.key, p.value = k, str(v)
    model.doc_string = "facecast speech-to-face model; see metadata for the contract"
    onnx.save(model, path)


def config_json(cfg: NetConfig) -> str:
    return json.dumps({"in_dim": cfg.in_dim, "channels": cfg.channels, "kernel": cfg.kernel,
                       "dilations": cfg.dilations})
