"""Private files, written safely: the one way a CLD process or CLI command writes a file someone asked for.

Personal data at rest is private by default (issue 10, findings 4 and 5):

- ``private_umask()`` sets the process umask to 077 (files 0600, folders 0700), once, at every service start and
  in the CLI;
- ``private_dir(path)`` creates a folder 0700 (and tightens an existing one); ``tighten(path)`` makes an existing
  file 0600 (state written by an earlier version with 0644);
- ``safe_writer(path)`` writes a file so that nothing planted next to it can redirect the write: the data goes
  to a temporary file created exclusively (``O_CREAT | O_EXCL | O_NOFOLLOW``, a random name, 0600) in the target
  folder, is flushed and ``fsync``-ed, and is renamed over the target only if the target is absent or a regular
  file (never a symlink, FIFO, device node or folder). The folder is ``fsync``-ed after the rename.

Every failure is a :class:`FileWriteError` whose message names the path and what is wrong with it (missing
folder, a folder, a symlink, not a regular file, permission denied, read-only file system, disk full), never the
data, so a CLI can print it as one line instead of a traceback.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any, Final

PRIVATE_UMASK: Final = 0o077
FILE_MODE: Final = 0o600
DIR_MODE: Final = 0o700

_REASONS: Final = {
    errno.ENOENT: "the folder does not exist",
    errno.ENOTDIR: "a part of the path is not a folder",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EISDIR: "it is a folder",
    errno.ELOOP: "it is a symbolic link",
    errno.EEXIST: "a file of that name appeared while writing",
    errno.ENAMETOOLONG: "the name is too long",
    errno.EXDEV: "the temporary file is on another device",
}


class FileWriteError(Exception):
    """A file could not be written safely. The message names the path and the reason, never the content."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"cannot write {path}: {reason}")
        self.path = path
        self.reason = reason


def private_umask() -> int:
    """Set the process umask to 077 (new files 0600, new folders 0700); returns the previous one."""
    return os.umask(PRIVATE_UMASK)


def os_reason(exc: OSError) -> str:
    """A short, fixed description of an OS error (no path, no data)."""
    return _REASONS.get(exc.errno or 0, errno.errorcode.get(exc.errno or 0, type(exc).__name__))


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) 0700, or tighten an existing folder to 0700. Returns ``path``."""
    path = Path(path)
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    st = path.stat()
    if stat.S_IMODE(st.st_mode) & 0o077 and st.st_uid == os.geteuid():
        os.chmod(path, DIR_MODE)
    return path


def tighten(path: Path) -> None:
    """Make an existing file of ours 0600 (a no-op for a missing file or one another user owns)."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) & 0o077 and st.st_uid == os.geteuid():
        os.chmod(path, FILE_MODE)


def check_target(path: Path) -> None:
    """Raise :class:`FileWriteError` unless ``path`` may be (over)written: its folder exists and is a folder,
    and ``path`` is absent or a regular file (not a symlink, FIFO, socket, device node or folder)."""
    path = Path(path)
    parent = path.parent
    try:
        pst = parent.stat()
    except FileNotFoundError:
        raise FileWriteError(path, "the folder does not exist") from None
    except OSError as exc:
        raise FileWriteError(path, os_reason(exc)) from None
    if not stat.S_ISDIR(pst.st_mode):
        raise FileWriteError(path, "its parent is not a folder")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise FileWriteError(path, os_reason(exc)) from None
    mode = st.st_mode
    if stat.S_ISLNK(mode):
        raise FileWriteError(path, "it is a symbolic link (refused: remove it or choose another name)")
    if stat.S_ISDIR(mode):
        raise FileWriteError(path, "it is a folder (give a file name)")
    if not stat.S_ISREG(mode):
        raise FileWriteError(path, "it is not a regular file (a FIFO, socket or device: refused)")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # some file systems do not open folders; the rename itself is done
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class AtomicFile:
    """A file being written safely (module docstring): ``file`` is the open temporary file; ``commit()`` flushes,
    ``fsync``-s and renames it over the target, ``abort()`` removes it. As a context manager it commits when
    the block ends without an exception and aborts otherwise. Streaming writers keep one open across calls."""

    def __init__(self, path: Path, *, binary: bool = False, newline: str | None = None) -> None:
        self.path = Path(path)
        check_target(self.path)
        self.tmp = self.path.parent / f".{self.path.name}.{secrets.token_hex(8)}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(self.tmp, flags, FILE_MODE)
        except OSError as exc:
            raise FileWriteError(self.path, os_reason(exc)) from None
        self._binary = binary
        self._raw: IO[Any] = os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline=newline)
        self._open = True

    @property
    def file(self) -> IO[Any]:
        return self._raw

    def commit(self) -> None:
        if not self._open:
            raise FileWriteError(self.path, "already closed")
        try:
            self._raw.flush()
            os.fsync(self._raw.fileno())
            self._raw.close()
            self._open = False
            check_target(self.path)  # again: something may have been planted while we wrote
            os.replace(self.tmp, self.path)
        except OSError as exc:
            self.abort()
            raise FileWriteError(self.path, os_reason(exc)) from None
        except FileWriteError:
            self.abort()
            raise
        _fsync_dir(self.path.parent)

    def abort(self) -> None:
        if self._open:
            with suppress(OSError):
                self._raw.close()
            self._open = False
        with suppress(OSError):
            os.unlink(self.tmp)

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_exc: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


@contextmanager
def safe_binary_writer(path: Path) -> Iterator[IO[bytes]]:
    """Write ``path`` atomically and privately (module docstring), in bytes. The file appears only when the
    block ends without an exception; otherwise the temporary file is removed and ``path`` is untouched."""
    with AtomicFile(path, binary=True) as f:
        try:
            yield f.file
        except OSError as exc:
            raise FileWriteError(f.path, os_reason(exc)) from None


@contextmanager
def safe_writer(path: Path, *, newline: str | None = None) -> Iterator[IO[str]]:
    """``safe_binary_writer`` for UTF-8 text (``newline`` as in ``open``)."""
    with AtomicFile(path, newline=newline) as f:
        try:
            yield f.file
        except OSError as exc:
            raise FileWriteError(f.path, os_reason(exc)) from None


def write_bytes(path: Path, data: bytes) -> None:
    """``safe_writer`` for a whole bytes value."""
    with safe_binary_writer(path) as fh:
        fh.write(data)


def write_text(path: Path, text: str, *, newline: str | None = None) -> None:
    """``safe_writer`` for a whole text value (UTF-8)."""
    with safe_writer(path, newline=newline) as fh:
        fh.write(text)
