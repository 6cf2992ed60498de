"""Files other programs read (exports, feature tables, batch-scored lists) appear whole or not at all."""

from __future__ import annotations

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


def _clear_leftovers(path: Path) -> None:
    """Remove what writers of `path` that died on this host (SIGKILL, the OOM killer) left beside it:
    a killed batch-score left its whole staged batch each time. A previous directory that a kill
    between `staged_directory`'s two renames left hidden is put back first when `path` is missing.
    Leftovers of live processes, and of other hosts (shared storage), are left alone."""
    name = re.compile(rf"\.(new|old|tmp)-(.+)~(\d+)-[0-9a-f]{{32}}\.{re.escape(path.name)}")
    host = socket.gethostname()
    for entry in path.parent.iterdir():
        found = name.fullmatch(entry.name)
        if found is None or found[2] != host or _alive(int(found[3])):
            continue
        if found[1] == "old" and not path.exists():
            os.replace(entry, path)
        elif entry.is_dir() and not entry.is_symlink():
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
    """A new directory beside `path` for the block to fill; swapped in for `path` when the block
    succeeds (two renames), removed when it fails, so a run that dies half-way leaves the previous
    contents whole for their readers instead of a half-rewritten directory. What the block wrote is
    synced before the swap, as `atomic_path` syncs its file: a crash after it never leaves empty files
    under the new name. A reader that looks between the two renames finds no `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _clear_leftovers(path)
    staging = _beside(path, "new")
    staging.mkdir()
    try:
        yield staging
        for root, _dirs, files in os.walk(staging):
            for name in files:
                _sync(Path(root, name))
            _sync(Path(root))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = _beside(path, "old")
    moved = path.exists()
    if moved:
        os.replace(path, old)
    try:
        os.replace(staging, path)
    except BaseException:  # the previous contents back under their name, not left hidden
        if moved:
            os.replace(old, path)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _sync(path.parent)
    shutil.rmtree(old, ignore_errors=True)
