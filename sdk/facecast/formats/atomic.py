"""Atomic file writing: a file either appears complete under its final name or not at all.

Every writer in :mod:`facecast.formats` goes through :class:`AtomicFile`:

1. a temporary file is created with :func:`tempfile.mkstemp` in the *same directory* as the
   target (so the final rename never crosses a filesystem), named ``.<target name>.<random>.tmp``;
2. data is written to it (possibly over a long time, by a streaming writer);
3. on :meth:`AtomicFile.commit` it is flushed, ``fsync``-ed, given the permissions a normally
   created file would have (or the permissions of the file it replaces), and moved over the
   target with :func:`os.replace` (atomic on POSIX and Windows); the directory is then fsync-ed
   so the rename itself survives a crash;
4. on :meth:`AtomicFile.abort`, on any exception inside ``with``, or when the object is
   garbage-collected while still open, the temporary file is closed and removed. An existing
   target is never touched unless the commit succeeds.

Two ways to use it::

    with atomic_write("take.csv", "w", newline="") as f:   # one-shot
        f.write(text)

    af = AtomicFile("take.json", "w")                     # long-lived (streaming writers)
    af.file.write(...)
    af.commit()            # or af.abort()
"""
from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import warnings
from typing import IO, Any, Iterator

__all__ = ["AtomicFile", "atomic_write"]

_WRITE_MODES = {"w", "wt", "wb"}


def _default_file_mode() -> int:
    """Permission bits a newly created regular file gets (0o666 minus the process umask)."""
    umask = None
    try:  # Linux: read the umask without changing it (os.umask is process-global, not thread-safe)
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    umask = int(line.split()[1], 8)
                    break
    except (OSError, ValueError):
        umask = None
    if umask is None:
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask


def _fsync_directory(directory: str) -> None:
    """Make a rename in ``directory`` durable; silently skipped where unsupported (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class AtomicFile:
    """A temporary file beside ``path`` that replaces ``path`` only on :meth:`commit`.

    ``mode`` is ``"w"``/``"wt"`` (text; ``encoding`` defaults to UTF-8) or ``"wb"`` (binary).
    The open file object is :attr:`file`. The object is also a context manager: leaving the
    ``with`` block normally commits, leaving it with an exception aborts.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        mode: str = "w",
        *,
        encoding: str | None = None,
        newline: str | None = None,
    ) -> None:
        if mode not in _WRITE_MODES:
            raise ValueError(f"AtomicFile mode must be one of {sorted(_WRITE_MODES)}, got {mode!r}")
        self.path = os.path.abspath(os.fspath(path))
        directory, name = os.path.split(self.path)
        if not name:
            raise ValueError(f"not a file path: {os.fspath(path)!r}")
        self._directory = directory
        self._done = False
        fd, self.temp_path = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
        try:
            if mode == "wb":
                self.file: IO[Any] = os.fdopen(fd, "wb")
            else:
                self.file = os.fdopen(fd, "w", encoding=encoding or "utf-8", newline=newline)
        except BaseException:
            os.close(fd)
            os.unlink(self.temp_path)
            raise

    @property
    def closed(self) -> bool:
        """True once committed or aborted."""
        return self._done

    def commit(self) -> None:
        """Flush and fsync the data, then atomically move it over the target.

        If anything fails the temporary file is removed, the target is left as it was, and the
        exception propagates.
        """
        if self._done:
            raise ValueError(f"{self.path}: atomic file already committed or aborted")
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            try:
                mode = stat.S_IMODE(os.stat(self.path).st_mode)
            except FileNotFoundError:
                mode = _default_file_mode()
            os.chmod(self.temp_path, mode)
            os.replace(self.temp_path, self.path)
        except BaseException:
            self.abort()
            raise
        self._done = True
        _fsync_directory(self._directory)

    def abort(self) -> None:
        """Discard everything written: close and delete the temporary file. Idempotent."""
        if self._done:
            return
        self._done = True
        try:
            self.file.close()
        except Exception:  # a failing close (e.g. a full disk on flush) must not stop cleanup
            pass
        try:
            os.unlink(self.temp_path)
        except FileNotFoundError:
            pass

    def __enter__(self) -> "AtomicFile":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    def __del__(self) -> None:
        # Safety net for an abandoned writer: never leave a temporary file behind.
        if getattr(self, "_done", True):
            return
        try:
            warnings.warn(
                f"AtomicFile for {self.path} was neither committed nor aborted; discarding it",
                ResourceWarning,
                stacklevel=2,
            )
            self.abort()
        except Exception:
            pass


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike[str],
    mode: str = "w",
    *,
    encoding: str | None = None,
    newline: str | None = None,
) -> Iterator[IO[Any]]:
    """Context manager yielding a file object whose content replaces ``path`` on success.

    On any exception inside the block the temporary file is removed and ``path`` is untouched.
    """
    af = AtomicFile(path, mode, encoding=encoding, newline=newline)
    try:
        yield af.file
    except BaseException:
        af.abort()
        raise
    af.commit()
