"""Files other programs read (exports, feature tables, batch-scored lists) appear whole or not at all."""

from __future__ import annotations

import ctypes
import errno
import os
import re
import shutil
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _sync(path: Path) -> None:
    """Flush `path` (a file, or a directory's entries) to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _beside(path: Path, tag: str) -> Path:
    """An unused hidden name next to `path` (same filesystem, so a rename moves it in one step), ending
    as `path` does (writers that pick compression by extension pick the same); the caller creates it,
    so it gets the usual permissions (mkstemp's would be private to this user). It names the writing
    host and process, so that a later writer can tell a dead writer's leftovers (`_clear_leftovers`)."""
    return path.with_name(f".{tag}-{socket.gethostname()}~{os.getpid()}-{uuid.uuid4().hex}.{path.name}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


#: Names of what this process is writing now (its threads'): its other leftovers are as stale as a dead
#: process's (a long-running process, or a test, wrote the previous batch and then replaced it).
_writing: set[str] = set()


def _clear_leftovers(path: Path) -> None:
    """Remove what writers of `path` that died on this host (SIGKILL, the OOM killer) left beside it:
    a killed batch-score left its whole staged batch each time. A previous directory that a kill
    between `_publish`'s two renames left hidden is put back first when `path` is missing. The directory
    `path` links to is kept (its writer has exited: it is the current contents), and so are leftovers of
    live processes and of other hosts (shared storage)."""
    name = re.compile(rf"\.(new|old|tmp|link)-(.+)~(\d+)-[0-9a-f]{{32}}\.{re.escape(path.name)}")
    host = socket.gethostname()
    current = os.readlink(path) if path.is_symlink() else None
    for entry in path.parent.iterdir():
        found = name.fullmatch(entry.name)
        if found is None or entry.name == current or found[2] != host:
            continue
        pid = int(found[3])
        if entry.name in _writing if pid == os.getpid() else _alive(pid):
            continue
        if found[1] == "old" and not os.path.lexists(path):
            os.replace(entry, path)
        else:
            _remove(entry)


def _remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        entry.unlink(missing_ok=True)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path` for the block to write; synced and renamed over `path` when the
    block succeeds, removed when it fails. Writing `path` in place left a truncated or half-written file
    that looked finished (a full disk, a failed query, a crash) and destroyed the previous one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _clear_leftovers(path)
    tmp = _beside(path, "tmp")
    _writing.add(tmp.name)
    try:
        yield tmp
        _sync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        _writing.discard(tmp.name)
    _sync(path.parent)  # the rename itself, so a finished write survives a crash


@contextmanager
def staged_directory(path: str | Path) -> Iterator[Path]:
    """A new directory beside `path` for the block to fill, published as `path` when the block succeeds
    and removed when it fails, so a run that dies half-way leaves the previous contents whole for their
    readers. What the block wrote is synced before it is published, as `atomic_path` syncs its file.

    `path` is a symbolic link to the hidden directory holding the current contents: publishing renames a
    new link over it (`os.replace`, one step), so a reader always finds `path`, the previous contents or
    the new, never neither (two renames of directories left it missing in between). A reader that
    resolves `path` once reads one version throughout. After the switch the previous version is
    removed, as `_clear_leftovers` removes what writers that died left beside `path`. A `path` that is
    still a plain directory (written before links) is exchanged with the new link in one step
    (`exchange`); where that is unavailable, by two renames, missing for that instant, once."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _clear_leftovers(path)
    staging = _beside(path, "new")
    staging.mkdir()
    _writing.add(staging.name)
    try:
        yield staging
        for root, _dirs, files in os.walk(staging):
            for name in files:
                _sync(Path(root, name))
            _sync(Path(root))
        previous = _publish(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        _writing.discard(staging.name)
    _sync(path.parent)
    if previous is not None:
        _remove(previous)


def _publish(directory: Path, path: Path) -> Path | None:
    """Point `path` at `directory` (a sibling), replacing what `path` was in one step; returns what the
    previous contents are now named (None if there were none), for the caller to remove."""
    link = _beside(path, "link")
    os.symlink(directory.name, link)  # relative: the pair keeps working when its parent moves
    try:
        if path.is_symlink():
            previous = path.parent / os.readlink(path)
            os.replace(link, path)
            return previous if previous.name != directory.name else None
        if not path.exists():
            os.replace(link, path)
            return None
        if exchange(link, path):  # `link` now names the plain directory
            return link
        old = _beside(path, "old")
        os.replace(path, old)
        try:
            os.replace(link, path)
        except BaseException:  # the previous contents back under their name, not left hidden
            os.replace(old, path)
            raise
        return old
    except BaseException:
        if os.path.lexists(link) and link.is_symlink():
            link.unlink()
        raise


_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def exchange(a: Path, b: Path) -> bool:
    """Swap the names `a` and `b` in one step (Linux's renameat2 with RENAME_EXCHANGE, glibc 2.28+;
    Python has no binding). False where the C library or the file system lacks it: the caller falls back.
    """
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))
