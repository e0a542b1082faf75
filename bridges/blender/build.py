#!/usr/bin/env python3
"""Build the facecast Blender extension: ``dist/facecast-<version>.zip`` for "Install from Disk".

The zip holds the add-on (``facecast_blender/``), its ``blender_manifest.toml`` and ``wheels/``:

* ``facecast_sdk-<version>-py3-none-any.whl``: the ``facecast`` package from ``sdk/`` only
  (schema, client, wire, formats, retarget ...), built here without network;
* pyzmq and msgpack for CPython 3.11 (Blender 4.2 to 5.0) on each platform asked for:
  ``linux-x64``, ``windows-x64``, ``macos-arm64``, ``macos-x64`` (default: all four). They are
  taken from ``--wheel-dir`` (default ``work_data/blender_wheels``) and, when missing there,
  fetched into it with ``pip download --only-binary=:all: --platform ... --python-version 3.11
  --no-deps`` (build time only; Blender never downloads anything).

The packaged manifest's ``version``, ``platforms`` and ``wheels`` are rewritten to match exactly
what the zip contains. ``--validate`` runs Blender's own extension validator on the result
(``blender --command extension validate``, or the same code from the ``bpy`` module).

    python bridges/blender/build.py                          # all platforms -> dist/
    python bridges/blender/build.py --platforms linux-x64 --out /tmp/x --offline --validate
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Callable, Iterable

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
ADDON = HERE / "facecast_blender"
SDK = REPO / "sdk" / "facecast"
MANIFEST = "blender_manifest.toml"

PYTHON_VERSION = "3.11"
CPYTHON = "cp311"
#: Blender platform -> the pip --platform tag to fetch wheels for (pip widens it to every
#: compatible tag: older manylinux/macOS versions, universal2 for macOS).
PLATFORMS: dict[str, str] = {
    "linux-x64": "manylinux_2_28_x86_64",
    "windows-x64": "win_amd64",
    "macos-arm64": "macosx_11_0_arm64",
    "macos-x64": "macosx_11_0_x86_64",
}
#: third-party wheels the SDK needs at run time (numpy ships with Blender)
REQUIREMENTS: dict[str, str] = {"pyzmq": "pyzmq>=25", "msgpack": "msgpack>=1.0"}

_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


class BuildError(Exception):
    """A build failure with a one-line reason."""


# ---------------------------------------------------------------------------------------------
# wheel file names
# ---------------------------------------------------------------------------------------------
def parse_wheel(filename: str) -> tuple[str, str, list[str], list[str], list[str]] | None:
    """(normalised name, version, python tags, abi tags, platform tags) of a wheel file name."""
    if not filename.endswith(".whl"):
        return None
    parts = filename[:-4].split("-")
    if len(parts) not in (5, 6):
        return None
    name, version = parts[0], parts[1]
    py, abi, plat = parts[-3], parts[-2], parts[-1]
    return (re.sub(r"[-_.]+", "_", name).lower(), version, py.split("."), abi.split("."),
            plat.split("."))


def blender_platforms(wheel_platform: str) -> list[str]:
    """Blender platform names of a wheel platform tag (the rule Blender's extension system
    uses: manylinux_2_28_x86_64 -> linux-x64, win_amd64 -> windows-x64, macosx_11_0_arm64 ->
    macos-arm64, macosx_10_15_universal2 -> macos-x64 and macos-arm64)."""
    if wheel_platform == "any":
        return list(PLATFORMS)
    head, _, tail = wheel_platform.partition("_")
    systems = {"macosx": "macos", "manylinux": "linux", "musllinux": "linux", "win": "windows",
               "linux": "linux"}
    system = next((dst for src, dst in systems.items()
                   if head == src or (head.startswith(src) and head[len(src):].isdigit())), head)
    machines = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}
    machine = next((dst for src, dst in machines.items()
                    if tail == src or tail.endswith("_" + src)), tail.rpartition("_")[2])
    if system == "macos" and tail.endswith("universal2"):
        return ["macos-x64", "macos-arm64"]
    return [f"{system}-{machine}"]


def wheel_fits(filename: str, platform: str) -> bool:
    """Whether a wheel installs on CPython 3.11 on ``platform`` (a Blender platform name)."""
    parsed = parse_wheel(filename)
    if parsed is None:
        return False
    _, _, pys, abis, plats = parsed
    py_ok = any(p in (CPYTHON, "py3", "py311") for p in pys) or (
        "abi3" in abis and any(re.fullmatch(r"cp3(\d+)", p) and int(p[3:]) <= 11 for p in pys))
    abi_ok = any(a in (CPYTHON, "abi3", "none") for a in abis)
    plat_ok = any(platform in blender_platforms(p) for p in plats)
    return py_ok and abi_ok and plat_ok


def _version_key(version: str) -> tuple:
    return tuple(int(x) if x.isdigit() else -1 for x in re.split(r"[.+-]", version))


def pick_wheel(wheel_dir: Path, package: str, platform: str) -> Path | None:
    """The newest wheel of ``package`` in ``wheel_dir`` that fits ``platform``."""
    if not wheel_dir.is_dir():
        return None
    want = re.sub(r"[-_.]+", "_", package).lower()
    found = []
    for p in wheel_dir.iterdir():
        parsed = parse_wheel(p.name)
        if parsed and parsed[0] == want and wheel_fits(p.name, platform):
            found.append((_version_key(parsed[1]), p.name, p))
    return max(found)[2] if found else None


def download(package: str, platform: str, wheel_dir: Path,
             log: Callable[[str], None]) -> None:
    """``pip download`` one binary wheel for CPython 3.11 on ``platform`` into ``wheel_dir``."""
    wheel_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
           "--only-binary=:all:", "--no-deps", "--python-version", PYTHON_VERSION,
           "--implementation", "cp", "--abi", CPYTHON, "--abi", "abi3", "--abi", "none",
           "--platform", PLATFORMS[platform], "-d", str(wheel_dir), REQUIREMENTS[package]]
    log(f"fetching {package} for {platform} ...")
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BuildError(f"pip download {package} for {platform} failed: {exc}") from None
    if p.returncode != 0:
        lines = [ln for ln in (p.stderr or p.stdout).splitlines()
                 if ln.strip() and "is ignored" not in ln]
        why = lines[-1].strip() if lines else f"exit status {p.returncode}"
        raise BuildError(f"pip download {package} for {platform} failed: {why}")


# ---------------------------------------------------------------------------------------------
# the SDK wheel (pure Python, written directly: no network, no build backend)
# ---------------------------------------------------------------------------------------------
def sdk_version() -> str:
    text = (SDK / "__init__.py").read_text(encoding="utf-8")
    m = re.search(r'^__version__\s*=\s*["\']([^"\']+)["\']', text, re.M)
    if not m:
        raise BuildError(f"no __version__ in {SDK / '__init__.py'}")
    return m.group(1)


def _sdk_files() -> list[Path]:
    files = []
    for p in sorted(SDK.rglob("*")):
        rel = p.relative_to(SDK)
        if p.is_dir() or "__pycache__" in rel.parts or p.suffix in (".pyc", ".pyo") \
                or p.name.startswith("."):
            continue
        files.append(p)
    return files


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _zip_write(zf: zipfile.ZipFile, arcname: str, data: bytes) -> None:
    info = zipfile.ZipInfo(arcname, date_time=_ZIP_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    zf.writestr(info, data)


def build_sdk_wheel(out_dir: Path, version: str | None = None) -> Path:
    """``facecast_sdk-<version>-py3-none-any.whl`` holding only the ``facecast`` package."""
    version = version or sdk_version()
    dist = f"facecast_sdk-{version}"
    info = f"{dist}.dist-info"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{dist}-py3-none-any.whl"
    entries: list[tuple[str, bytes]] = []
    for f in _sdk_files():
        entries.append(("facecast/" + f.relative_to(SDK).as_posix(), f.read_bytes()))
    metadata = (
        "Metadata-Version: 2.1\n"
        "Name: facecast_sdk\n"
        f"Version: {version}\n"
        "Summary: facecast SDK (channel schema, client, wire codec, file formats, retargeting)\n"
        "License: MIT\n"
        "Requires-Python: >=3.10\n"
        "Requires-Dist: numpy>=1.23\n"
        "Requires-Dist: pyzmq>=25\n"
        "Requires-Dist: msgpack>=1.0\n"
    ).encode()
    wheel = ("Wheel-Version: 1.0\nGenerator: facecast bridges/blender/build.py\n"
             "Root-Is-Purelib: true\nTag: py3-none-any\n").encode()
    entries += [(f"{info}/METADATA", metadata), (f"{info}/WHEEL", wheel),
                (f"{info}/top_level.txt", b"facecast\n")]
    record = io.StringIO()
    for name, data in entries:
        record.write(f"{name},{_record_hash(data)},{len(data)}\n")
    record.write(f"{info}/RECORD,,\n")
    entries.append((f"{info}/RECORD", record.getvalue().encode()))
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries:
            _zip_write(zf, name, data)
    return path


# ---------------------------------------------------------------------------------------------
# manifest and zip
# ---------------------------------------------------------------------------------------------
def _toml_list(key: str, items: Iterable[str]) -> str:
    body = "".join(f'  "{i}",\n' for i in items)
    return f"{key} = [\n{body}]"


def packaged_manifest(source: str, version: str, platforms: list[str],
                      wheels: list[str]) -> str:
    """The source manifest with ``version``, ``platforms`` and ``wheels`` set."""
    import tomllib

    text = source
    text, n = re.subn(r'^version\s*=\s*"[^"]*"', f'version = "{version}"', text, count=1,
                      flags=re.M)
    if n != 1:
        raise BuildError(f"{MANIFEST}: no top-level version line")
    for key, items in (("platforms", platforms), ("wheels", wheels)):
        block = re.compile(rf"^{key}\s*=\s*\[.*?\]", re.M | re.S)
        replacement = _toml_list(key, items)
        if block.search(text):
            text = block.sub(lambda _m, r=replacement: r, text, count=1)
        else:
            text = text.replace("\n[permissions]", f"\n{replacement}\n\n[permissions]", 1)
    doc = tomllib.loads(text)
    if doc.get("wheels") != wheels or doc.get("platforms") != platforms \
            or doc.get("version") != version:
        raise BuildError(f"{MANIFEST}: rewriting version/platforms/wheels failed")
    return text


def _addon_files() -> list[Path]:
    return [p for p in sorted(ADDON.iterdir())
            if p.is_file() and p.suffix == ".py" and not p.name.startswith(".")]


def build(out_dir: Path | str | None = None, platforms: Iterable[str] | None = None,
          wheel_dir: Path | str | None = None, offline: bool = False,
          log: Callable[[str], None] = print) -> Path:
    """Build the extension zip; returns its path. Raises BuildError."""
    out_dir = Path(out_dir) if out_dir else REPO / "dist"
    wheel_dir = Path(wheel_dir) if wheel_dir else REPO / "work_data" / "blender_wheels"
    platforms = list(platforms) if platforms else list(PLATFORMS)
    unknown = [p for p in platforms if p not in PLATFORMS]
    if unknown:
        raise BuildError(f"unknown platform(s) {', '.join(unknown)}; "
                         f"choose from {', '.join(PLATFORMS)}")
    platforms = list(dict.fromkeys(platforms))
    version = sdk_version()
    chosen: dict[str, Path] = {}
    for platform in platforms:
        for package in REQUIREMENTS:
            wheel = pick_wheel(wheel_dir, package, platform)
            if wheel is None and not offline:
                download(package, platform, wheel_dir, log)
                wheel = pick_wheel(wheel_dir, package, platform)
            if wheel is None:
                raise BuildError(f"no {package} wheel for CPython {PYTHON_VERSION} on {platform} "
                                 f"in {wheel_dir}" + (" (--offline)" if offline else ""))
            chosen[wheel.name] = wheel
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"facecast-{version}.zip"
    with tempfile.TemporaryDirectory(prefix="facecast_blender_build_") as tmp:
        sdk_wheel = build_sdk_wheel(Path(tmp), version)
        chosen[sdk_wheel.name] = sdk_wheel
        names = sorted(chosen, key=lambda n: (not n.startswith("facecast_sdk"), n))
        wheels = [f"./wheels/{n}" for n in names]
        manifest = packaged_manifest((ADDON / MANIFEST).read_text(encoding="utf-8"), version,
                                     platforms, wheels)
        partial = target.with_suffix(".zip.tmp")
        with zipfile.ZipFile(partial, "w") as zf:
            _zip_write(zf, MANIFEST, manifest.encode("utf-8"))
            for f in _addon_files():
                _zip_write(zf, f.name, f.read_bytes())
            for n in names:
                _zip_write(zf, f"wheels/{n}", chosen[n].read_bytes())
        check_zip(partial)
        os.replace(partial, target)
    log(f"built {target} ({target.stat().st_size / 1e6:.1f} MB): {len(names)} wheels for "
        f"{', '.join(platforms)}")
    return target


def check_zip(zip_path: Path) -> None:
    """The manifest lists exactly the wheels in the zip, each a wheel with a RECORD; the add-on
    files are at the top. (Blender's validator checks the manifest fields, not the wheels.)"""
    import tomllib

    with zipfile.ZipFile(zip_path) as zf:
        names = set(zf.namelist())
        manifest = tomllib.loads(zf.read(MANIFEST).decode("utf-8"))
        listed = {w[2:] if w.startswith("./") else w for w in manifest.get("wheels", [])}
        bundled = {n for n in names if n.startswith("wheels/")}
        if listed != bundled:
            raise BuildError(f"manifest wheels {sorted(listed ^ bundled)} do not match the zip")
        for w in sorted(bundled):
            with zipfile.ZipFile(io.BytesIO(zf.read(w))) as wf:
                if not any(n.endswith(".dist-info/RECORD") for n in wf.namelist()):
                    raise BuildError(f"{w} has no .dist-info/RECORD")
        if "__init__.py" not in names:
            raise BuildError("the add-on's __init__.py is not at the top of the zip")


# ---------------------------------------------------------------------------------------------
# validation with Blender's own checker
# ---------------------------------------------------------------------------------------------
def blender_ext_script() -> Path | None:
    """Blender's ``blender_ext.py`` (extension build/validate CLI) from the bpy module."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("bpy")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(list(spec.submodule_search_locations)[0])
    found = sorted(root.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    return found[-1] if found else None


def validate(zip_path: Path) -> str:
    """Run Blender's validator on ``zip_path``; returns its output, raises BuildError."""
    blender = shutil.which("blender")
    if blender:
        cmd = [blender, "--factory-startup", "--command", "extension", "validate", str(zip_path)]
    else:
        script = blender_ext_script()
        if script is None:
            raise BuildError("cannot validate: neither a 'blender' executable nor the bpy "
                             "module is available")
        cmd = [sys.executable, str(script), "validate", str(zip_path)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    out = (p.stdout + p.stderr).strip()
    if p.returncode != 0 or "error" in out.lower():
        why = out.splitlines()[-1] if out else f"exit status {p.returncode}"
        raise BuildError(f"Blender's validator rejected {zip_path.name}: {why}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=None, help="output folder (default: <repo>/dist)")
    ap.add_argument("--platforms", default=",".join(PLATFORMS),
                    help=f"comma-separated Blender platforms (default: {','.join(PLATFORMS)})")
    ap.add_argument("--wheel-dir", default=None,
                    help="pre-fetched wheels; missing ones are downloaded into it "
                         "(default: <repo>/work_data/blender_wheels)")
    ap.add_argument("--offline", action="store_true", help="never download; use --wheel-dir only")
    ap.add_argument("--validate", action="store_true",
                    help="check the zip with Blender's extension validator")
    args = ap.parse_args(argv)
    try:
        path = build(args.out, [p.strip() for p in args.platforms.split(",") if p.strip()],
                     args.wheel_dir, args.offline)
        if args.validate:
            print(validate(path))
    except BuildError as exc:
        print(f"build.py: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
