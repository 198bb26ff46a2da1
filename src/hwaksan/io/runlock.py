"""One writer per run folder: an advisory lock on ``DIR/.lock`` held for the whole run.

Two trainings into the same ``--out`` would interleave ``metrics.jsonl`` and overwrite each other's
checkpoints. :class:`RunLock` takes an exclusive ``fcntl.flock`` on ``DIR/.lock`` (released by the
kernel when the process dies, so a killed run never leaves a stale lock) and writes the holder's PID
into it, so a second writer is refused with one line naming the holder.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

__all__ = ["RunLock", "RunLockedError"]

LOCK_NAME = ".lock"


class RunLockedError(RuntimeError):
    """Another process holds the run folder."""


class RunLock:
    """Hold ``out_dir/.lock`` exclusively while the ``with`` block runs (or until :meth:`release`).

    Args:
        out_dir: the run folder (created if missing).
        what: the command, for the message (``"hwaksan train"``).

    Raises:
        RunLockedError: another live process holds the folder (the message names its PID).
        OSError: the folder cannot be created or written.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d, RunLock(d):
        ...     pass
    """

    def __init__(self, out_dir: str | os.PathLike, what: str = "a run") -> None:
        self.out_dir = Path(out_dir)
        self.what = what
        self._fd: int | None = None

    @property
    def path(self) -> Path:
        return self.out_dir / LOCK_NAME

    def acquire(self) -> RunLock:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            finally:
                os.close(fd)
            raise RunLockedError(
                f"{self.out_dir} is in use by another process (PID {holder}): wait for it to finish, "
                "stop it, or choose another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
