"""ZeroMQ CURVE keys for the runtime: generation (``facecast keygen``) and loading.

Layout of a key directory (ZeroMQ certificate files, as ``zmq.auth`` writes and reads them)::

    DIR/server.key                      server public key      (give to every client)
    DIR/server.key_secret               server key pair        (keep on the server, mode 0600)
    DIR/<client>.key                    a client's public key
    DIR/<client>.key_secret             a client's key pair    (give to that client, mode 0600)
    DIR/authorized_clients/<client>.key public keys the server accepts (the allow-list)

``facecast serve --curve-dir DIR`` reads ``server.key_secret`` and ``authorized_clients/``;
clients (``--curve-dir DIR`` of send/listen, ``facecast.client.load_client_keys``) read
``<client>.key_secret`` and ``server.key``. Removing a file from ``authorized_clients/`` and
restarting the server revokes that client.
"""
from __future__ import annotations

import datetime
import os
import re
import shutil
from pathlib import Path

__all__ = ["generate_keys", "add_client", "load_server_keys", "CurveKeyError", "AUTHORIZED_DIR"]

AUTHORIZED_DIR = "authorized_clients"
_NAME_RE = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")


class CurveKeyError(ValueError):
    """Unusable key directory or name (one-line message)."""


def _cert_text(kind: str, public: str, secret: str | None, metadata: dict[str, str]) -> str:
    lines = [
        f"#   ****  Generated on {datetime.datetime.now():%Y-%m-%d %H:%M:%S} by facecast keygen  ****",
        f"#   ZeroMQ CURVE {kind} Certificate",
        "#   Exchange securely, or use a secure mechanism to verify the contents",
        "#   of this file after exchange.",
        "",
        "metadata",
    ]
    lines += [f'    {k} = "{v}"' for k, v in metadata.items()]
    lines += ["curve", f'    public-key = "{public}"']
    if secret is not None:
        lines.append(f'    secret-key = "{secret}"')
    return "\n".join(lines) + "\n"


def _write_cert(directory: Path, name: str, metadata: dict[str, str]) -> tuple[Path, Path]:
    import zmq

    public, secret = (k.decode("ascii") for k in zmq.curve_keypair())
    pub_file = directory / f"{name}.key"
    sec_file = directory / f"{name}.key_secret"
    pub_file.write_text(_cert_text("Public", public, None, metadata), encoding="utf-8")
    fd = os.open(sec_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(_cert_text("**Secret**", public, secret, metadata))
    os.chmod(sec_file, 0o600)
    return pub_file, sec_file


def _check_name(name: str) -> str:
    if not _NAME_RE.match(name) or name == "server":
        raise CurveKeyError(f"client name {name!r} must be 1..64 characters A-Z a-z 0-9 _ - and "
                        "not 'server'")
    return name


def generate_keys(directory: str | os.PathLike, clients: tuple[str, ...] | list[str] = ("client",),
                  force: bool = False) -> dict[str, Path]:
    """Create the server key pair and one key pair per client name in ``directory``.

    Refuses to overwrite existing keys unless ``force``. Returns the written files by role
    (``server``, ``server_secret``, ``<client>``, ``<client>_secret``, ``authorized``).
    """
    d = Path(directory)
    names = [_check_name(c) for c in clients]
    if len(set(names)) != len(names):
        raise CurveKeyError("client names must be distinct")
    if d.exists() and not d.is_dir():
        raise CurveKeyError(f"{d} exists and is not a directory")
    existing = [d / f for f in ("server.key", "server.key_secret")
                if (d / f).exists()]
    if existing and not force:
        raise CurveKeyError(f"{existing[0]} already exists (pass --force to replace the keys)")
    d.mkdir(parents=True, exist_ok=True)
    auth = d / AUTHORIZED_DIR
    if force and auth.is_dir():
        shutil.rmtree(auth)
    auth.mkdir(exist_ok=True)
    out: dict[str, Path] = {}
    out["server"], out["server_secret"] = _write_cert(d, "server", {"role": "facecast-server"})
    for name in names:
        pub, sec = add_client(d, name, force=True)
        out[name], out[f"{name}_secret"] = pub, sec
    out["authorized"] = auth
    return out


def add_client(directory: str | os.PathLike, name: str, force: bool = False
               ) -> tuple[Path, Path]:
    """Create a client key pair in ``directory`` and authorize it; returns (public, secret)."""
    d = Path(directory)
    _check_name(name)
    if not (d / "server.key").is_file():
        raise CurveKeyError(f"{d} has no server.key (run 'facecast keygen {d}' first)")
    if (d / f"{name}.key_secret").exists() and not force:
        raise CurveKeyError(f"{d / (name + '.key_secret')} already exists (pass --force to replace)")
    auth = d / AUTHORIZED_DIR
    auth.mkdir(exist_ok=True)
    pub, sec = _write_cert(d, name, {"role": "facecast-client", "name": name})
    shutil.copyfile(pub, auth / f"{name}.key")
    return pub, sec


def load_server_keys(directory: str | os.PathLike) -> tuple[bytes, bytes, Path]:
    """(public, secret, authorized_clients dir) of a key directory; raises CurveKeyError."""
    import zmq.auth

    d = Path(directory)
    sec = d / "server.key_secret"
    auth = d / AUTHORIZED_DIR
    if not sec.is_file():
        raise CurveKeyError(f"CURVE directory {d} has no server.key_secret "
                        f"(create one with 'facecast keygen {d}')")
    if not auth.is_dir():
        raise CurveKeyError(f"CURVE directory {d} has no {AUTHORIZED_DIR}/ allow-list")
    try:
        public, secret = zmq.auth.load_certificate(str(sec))
    except Exception as e:
        raise CurveKeyError(f"cannot read {sec}: {e}") from None
    if not secret:
        raise CurveKeyError(f"{sec} holds no secret key")
    if not any(p.suffix == ".key" for p in auth.iterdir()):
        raise CurveKeyError(f"{auth} lists no client public keys (add one with "
                        f"'facecast keygen {d} --add-client NAME')")
    return public, secret, auth
