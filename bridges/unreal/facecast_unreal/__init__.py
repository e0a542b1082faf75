"""facecast for Unreal Engine through stock Live Link Face (UDP port 11111): nothing to compile.

* :mod:`facecast_unreal.livelink`: the Live Link Face v6 packet codec, the channel mapping
  (the one of the Live Link CSV format) and frame-time helpers (stdlib, numpy, facecast SDK);
* :mod:`facecast_unreal.relay`: :class:`UnrealRelay`, runtime frames -> packets to Unreal hosts
  (``facecast unreal``);
* :mod:`facecast_unreal.receiver`: :class:`LiveLinkReceiver` and :class:`TakeRecorder`, packets
  (from the relay or the iPhone app) -> facecast takes (``facecast livelink-listen``).

See ``bridges/unreal/README.md`` for the Unreal side.
"""
from __future__ import annotations

from .livelink import (
    DEFAULT_PORT, PACKET_NAMES, PACKET_VERSION, VALUE_COUNT, LiveLinkPacket, PacketEncoder,
    PacketError, decode_packet, encode_packet, from_livelink, mirror_livelink,
    sanitize_livelink, to_livelink,
)
from .receiver import LiveLinkReceiver, TakeRecorder
from .relay import Target, UnrealRelay, parse_target

__all__ = [
    "DEFAULT_PORT", "PACKET_NAMES", "PACKET_VERSION", "VALUE_COUNT", "LiveLinkPacket",
    "PacketEncoder", "PacketError", "decode_packet", "encode_packet", "from_livelink",
    "mirror_livelink", "sanitize_livelink", "to_livelink", "LiveLinkReceiver", "TakeRecorder",
    "Target", "UnrealRelay", "parse_target",
]
