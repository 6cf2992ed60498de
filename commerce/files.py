"""Files other programs read (exports, feature tables, batch-scored lists) appear whole or not at all."""

from __future__ import annotations

import ctypes
import errno
import os
import re
import shutil
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
    so it gets the usual permissions (mkstemp's would be private to this user)."""
    return path.with_name(f".{tag}-{uuid.uuid4().hex}.{path.name}")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path` for the block to write; synced and renamed over `path` when the
    block succeeds, removed when it fails. Writing `path` in place left a truncated or half-written file
    that looked finished (a full disk, a failed query, a crash) and destroyed the previous one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _beside(path, "tmp")
    try:
        yield tmp
        _sync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _sync(path.parent)  # the rename itself, so a finished write survives a crash


@contextmanager
def staged_directory(path: str | Path) -> Iterator[Path]:
    """A new directory beside `path` for the block to fill, published as `path` when the block succeeds
    and removed when it fails, so a run that dies half-way leaves the previous contents whole for their
    readers. What the block wrote is synced before it is published, as `atomic_path` syncs its file.

    `path` is a symbolic link to the hidden directory holding the current contents: publishing renames a
    new link over it (`os.replace`, one step), so a reader always finds `path`, the previous contents or
    the new, never neither (two renames of directories left it missing in between). A reader that
    resolves `path` once reads one version throughout. After the switch the previous version and
    anything earlier runs left beside `path` when they died are removed: one writer per `path` at a
    time. A `path` that is still a plain directory (written before links) is exchanged with the new link
    in one step (`exchange`); where that is unavailable, by two renames, missing for that instant, once."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = _beside(path, "new")
    staging.mkdir()
    try:
        yield staging
        for root, _dirs, files in os.walk(staging):
            for name in files:
                _sync(Path(root, name))
            _sync(Path(root))
        _publish(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _sync(path.parent)
    _remove_stale(path)


def _publish(directory: Path, path: Path) -> None:
    """Point `path` at `directory` (a sibling), replacing what `path` was in one step."""
    link = _beside(path, "link")
    os.symlink(directory.name, link)  # relative: the pair keeps working when its parent moves
    try:
        if path.is_symlink() or not path.exists():
            os.replace(link, path)
        elif exchange(link, path):  # `link` now names the plain directory: stale, removed below
            shutil.rmtree(link, ignore_errors=True)
        else:
            old = _beside(path, "old")
            os.replace(path, old)
            try:
                os.replace(link, path)
            except BaseException:  # the previous contents back under their name, not left hidden
                os.replace(old, path)
                raise
    except BaseException:
        link.unlink(missing_ok=True)
        raise


def _remove_stale(path: Path) -> None:
    """Remove what staged swaps of `path` left beside it, except the directory `path` points at."""
    current = os.readlink(path)
    stale = re.compile(rf"\.(new|link|old)-[0-9a-f]{{32}}\.{re.escape(path.name)}")
    for entry in path.parent.iterdir():
        if entry.name == current or not stale.fullmatch(entry.name):
            continue
        if entry.is_symlink() or not entry.is_dir():
            entry.unlink(missing_ok=True)
        else:
            shutil.rmtree(entry, ignore_errors=True)


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
