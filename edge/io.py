"""Atomic file writes: a reader never sees half a file, even after a kill."""
from __future__ import annotations

import errno
import os
import re
import stat
import tempfile
from pathlib import Path


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()
"""Read once, at import: reading it means setting it, which is not safe while threads write files."""


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename; a symbolic link at
    ``path`` stays, and its target is written."""
    named = path
    path = Path(os.path.realpath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent or ".", prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:  # named as the user named it, not by the temporary file's name
        raise OSError(exc.errno, exc.strerror, str(named)) from None
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise OSError(exc.errno, exc.strerror, str(named)) from None
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


class Busy(OSError):
    """Another process holds the lock (:class:`OutputLock`)."""


class OutputLock:
    """An exclusive advisory lock (``flock``) that one process at a time holds on an output, through
    the file ``path`` (created, and removed on :meth:`release`). Taken at once or not at all: a second
    process gets :class:`Busy` naming the holder's process id. The lock is on a file of its own, not on
    the output or its partial file, because those are replaced by renames, which would hand a second
    process another file to lock. A lock left by a killed process is no lock: the kernel drops it."""

    def __init__(self, path: str | Path):
        import fcntl

        self.path = Path(path)
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)  # a link is not followed
        while True:
            fd = os.open(self.path, flags, 0o666 & ~_UMASK)
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise OSError(errno.EEXIST, "exists and is not a lock file", str(self.path))
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode("ascii", "replace").strip()
                os.close(fd)
                raise Busy(f"another lesionlite process{f' (pid {holder})' if holder.isdigit() else ''} "
                           f"is writing it") from None
            except BaseException:
                os.close(fd)
                raise
            try:  # the file may have been removed and replaced by its holder's release meanwhile
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        if not re.fullmatch(rb"(\d+\n)?", os.pread(fd, 64, 0)):  # someone's file of that name: leave it be
            os.close(fd)
            raise OSError(errno.EEXIST, "exists and is not a lesionlite lock file", str(self.path))
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd: int | None = fd

    def release(self) -> None:
        """Remove the lock file, then let go of the lock (in that order, so that a process waiting
        on the removed file sees it removed and takes a new one)."""
        fd, self._fd = self._fd, None  # once only, even if interrupted
        if fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(fd)
