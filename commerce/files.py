"""Files other programs read (exports, feature tables, batch-scored lists) appear whole or not at all."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

#: How the host's storage refuses a write: full (ENOSPC, EDQUOT: a quota), mounted read-only (EROFS) or
#: failing (EIO). Not a bug of the writer: the API answers it as a problem (serving/errors.py), a command
#: in one line (crosscart/cli), where either gave a traceback.
STORAGE_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
STORAGE_REFUSALS = STORAGE_FULL | {errno.EROFS, errno.EIO}


def is_storage_refusal(exc: BaseException) -> bool:
    """Whether `exc` is the host's storage refusing a write (STORAGE_REFUSALS)."""
    return isinstance(exc, OSError) and exc.errno in STORAGE_REFUSALS


def refused_path(exc: OSError) -> str | None:
    """The file a refused write was writing: a copy's (`shutil.copy`, MLflow's artifact logging) error
    names its source first and its destination, the file on the refusing disk, second."""
    return exc.filename2 or exc.filename


def _sync(path: Path) -> None:
    """Flush `path` (a file, or a directory's entries) to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _beside(path: Path, tag: str, writer: str) -> Path:
    """A hidden name next to `path` for `writer`'s (`_writer`) entry `tag` (same filesystem, so a rename
    moves it in one step), ending as `path` does (writers that pick compression by extension pick the
    same); the caller creates it, so it gets the usual permissions (mkstemp's would be private to this
    user)."""
    return path.with_name(f".{tag}-{writer}.{path.name}")


#: Ids of the writers this process runs now (its threads'): on NFS `flock` is a POSIX lock, which
#: another descriptor of the same process does not conflict with, so the lock cannot tell them apart.
_held: set[str] = set()
#: Pre-lock names (`.tag-host~pid-uuid.name`) carry no lock to test: such leftovers go when this old.
LEGACY_AGE_SECONDS = 24 * 3600
#: How long `staged_directory` waits for another publisher of the same path before `PublishBusy`.
PUBLISH_WAIT_SECONDS = 60.0
#: This process's publishers by path: `flock` does not order two threads on NFS (see `_held`).
_publishing: dict[str, threading.Lock] = {}


class PublishBusy(TimeoutError):
    """Another writer has been publishing the same path for PUBLISH_WAIT_SECONDS (a hung file system, or a
    stuck process holding `.publish.NAME`)."""

    def __init__(self, path: Path, waited: float) -> None:
        super().__init__(
            f"{path}: another writer is still publishing it after {waited:.0f} s (it holds "
            f"{publish_lock(path)}); nothing was published, the staged contents are removed"
        )


@contextmanager
def _writer(path: Path) -> Iterator[str]:
    """An id for this write's entries beside `path`, its lock file `.lock-<id>.<name>` held (`flock`,
    exclusive) until the block ends. The lock is the liveness proof `_clear_leftovers` tests: the kernel
    drops it when the process dies however it dies, in any container sharing the volume, where a host
    name and a pid (the names before) are not unique across containers nor PID namespaces. A cleaner
    that found the new file before it was locked may have removed it: then another id is taken."""
    while True:
        writer = uuid.uuid4().hex
        lock = _beside(path, "lock", writer)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        fcntl.flock(fd, fcntl.LOCK_EX)
        if _still_at(lock, fd):
            break
        os.close(fd)
    _held.add(writer)
    try:
        yield writer
    finally:
        lock.unlink(missing_ok=True)  # still held: no cleaner takes this writer for dead before
        os.close(fd)
        _held.discard(writer)


def _still_at(lock: Path, fd: int) -> bool:
    """Whether the file open as `fd` is still the one at `lock`: a lock file is removed by its holder
    before it lets go, so a file locked after that is no longer anyone's turn."""
    try:
        return os.path.samestat(os.stat(lock), os.fstat(fd))
    except FileNotFoundError:
        return False


def publish_lock(path: Path) -> Path:
    """The lock file beside `path` its publishers take in turn (`publishing_turn`)."""
    return path.with_name(f".publish.{path.name}")


@contextmanager
def publishing_turn(path: Path) -> Iterator[None]:
    """Hold the turn to publish `path` (`flock` on `publish_lock(path)`, and this process's lock for the
    path), waiting at most PUBLISH_WAIT_SECONDS, then `PublishBusy`. Unordered, two publishers both linked
    the version they found as the previous one, and the one published in between was linked from neither
    and removed at the next publish, its readers' grace ignored. The holder removes the file before it
    lets go; a waiter that then locks the removed file tries again, as `_writer` does."""
    wait = PUBLISH_WAIT_SECONDS
    deadline = time.monotonic() + wait
    local = _publishing.setdefault(str(path.absolute()), threading.Lock())
    if not local.acquire(timeout=wait):
        raise PublishBusy(path, wait)
    try:
        lock, pause = publish_lock(path), 0.001
        while True:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if time.monotonic() >= deadline:
                    raise PublishBusy(path, wait) from None
                time.sleep(pause)
                pause = min(pause * 2, 0.05)
                continue
            if _still_at(lock, fd):
                break
            os.close(fd)
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)
            os.close(fd)
    finally:
        local.release()


@contextmanager
def _dead(lock: Path) -> Iterator[bool]:
    """Whether the writer of `lock` has ended (no lock file, or its lock free), its lock held meanwhile
    so that it is not reused; a live writer's lock, held by another process or thread, is not waited for.
    A lock freed and removed between opening and locking it is not taken for dead: the file at `lock`
    may then be a new one, held (`publish_lock` is one name, created anew at each turn), and removing it
    let a third publisher create another and publish alongside its holder."""
    try:
        fd = os.open(lock, os.O_RDWR)
    except FileNotFoundError:
        yield True
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            same = _still_at(lock, fd)
        except BlockingIOError:
            same = False
        yield same
    finally:
        os.close(fd)


def _clear_leftovers(path: Path, grace: float = 0.0) -> None:
    """Remove what writers of `path` that died (SIGKILL, the OOM killer) left beside it: a killed
    batch-score left its whole staged batch each time. A previous directory that a kill between
    `_publish`'s two renames left hidden is put back first when `path` is missing. A writer is dead
    when its lock is free (`_writer`); the directories `path` and `previous_version(path)` link to are
    kept (read after the writer is found dead, so a writer that just published and ended is seen
    published), and so is an entry changed less than `grace` seconds ago (a superseded version is
    stamped when it is superseded: `_keep_previous`). Leftovers named before locks
    (`.tag-host~pid-uuid.name`) are removed once older than `LEGACY_AGE_SECONDS`; a publish lock
    (`publish_lock`) once no publisher holds it."""
    name = re.compile(rf"\.(new|old|tmp|link|prev|lock)-(.+~\d+-)?([0-9a-f]{{32}})\.{re.escape(path.name)}")
    writers: dict[str, list[tuple[str, Path]]] = {}
    for entry in path.parent.iterdir():
        found = name.fullmatch(entry.name)
        if found is None:
            continue
        if found[2] is None:
            if found[3] not in _held:
                writers.setdefault(found[3], []).append((found[1], entry))
        elif found[1] != "lock" and _age(entry) > LEGACY_AGE_SECONDS:
            _clear(path, found[1], entry, grace)
    for writer, entries in writers.items():
        lock = _beside(path, "lock", writer)
        with _dead(lock) as dead:
            if not dead:
                continue
            for tag, entry in entries:
                if tag != "lock":
                    _clear(path, tag, entry, grace)
            lock.unlink(missing_ok=True)
    turn = _publishing.get(str(path.absolute()))
    if turn is not None and turn.locked():  # this process publishing: its lock is not tested (`_held`)
        return
    with _dead(publish_lock(path)) as dead:  # a publisher killed in its turn left it (`publishing_turn`)
        if dead:
            publish_lock(path).unlink(missing_ok=True)


def _age(entry: Path) -> float:
    try:
        return time.time() - entry.lstat().st_mtime
    except FileNotFoundError:
        return 0.0


def _clear(path: Path, tag: str, entry: Path, grace: float) -> None:
    """Remove a dead writer's `entry`, unless `path` or `previous_version(path)` links to it or it
    changed less than `grace` seconds ago; a hidden previous directory (`old`) goes back to `path` when
    `path` is missing."""
    if any(link.is_symlink() and os.readlink(link) == entry.name for link in (path, previous_version(path))):
        return
    if tag == "old" and not os.path.lexists(path):
        os.replace(entry, path)
    elif _age(entry) >= grace:
        _remove(entry)


def _remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        entry.unlink(missing_ok=True)


@contextmanager
def atomic_path(path: str | Path, mode: int | None = None) -> Iterator[Path]:
    """A temporary path beside `path` for the block to write; synced and renamed over `path` when the
    block succeeds, removed when it fails. Writing `path` in place left a truncated or half-written file
    that looked finished (a full disk, a failed query, a crash) and destroyed the previous one.

    With `mode`, the published file has exactly those permission bits whatever the process umask (a
    secret written under umask 002 was group-readable): the temporary is created empty and private to
    this user before the block writes it (writers that open it for writing keep its bits), and given
    `mode` just before the rename. Without, it gets the usual permissions (the umask's)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _clear_leftovers(path)
    with _writer(path) as writer:
        tmp = _beside(path, "tmp", writer)
        try:
            if mode is not None:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                try:
                    os.fchmod(fd, 0o600)  # not the umask's bits: no other user opens it meanwhile
                finally:
                    os.close(fd)
            yield tmp
            if mode is not None:
                os.chmod(tmp, mode)
            _sync(tmp)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    _sync(path.parent)  # the rename itself, so a finished write survives a crash


@contextmanager
def staged_directory(path: str | Path, grace: float = 0.0) -> Iterator[Path]:
    """A new directory beside `path` for the block to fill, published as `path` when the block succeeds
    and removed when it fails, so a run that dies half-way leaves the previous contents whole for their
    readers. What the block wrote is synced before it is published, as `atomic_path` syncs its file.

    `path` is a symbolic link to the hidden directory holding the current contents: publishing renames a
    new link over it (`os.replace`, one step), so a reader always finds `path`, the previous contents or
    the new, never neither (two renames of directories left it missing in between). A reader that
    resolves `path` once reads one version: the version it replaces is kept, linked from
    `previous_version(path)`, until the next publish, and then for `grace` seconds more from when it was
    replaced, so a reader that resolved `path` before a publish finishes in the version it resolved
    (removing the replaced version at once, as before, left such a reader with its files gone). Older
    versions, and what writers that died left beside `path` (`_clear_leftovers`), are removed before and
    after each publish: the disk holds the current version, the previous one and those replaced within
    `grace`. Writers of `path` at once fill their directories at once and publish in turn
    (`publishing_turn`: each waits up to PUBLISH_WAIT_SECONDS for the one publishing, then `PublishBusy`),
    so each version is current, then previous, in the order published. A `path` that is still a plain
    directory (written before links) is exchanged with the new link in one step (`exchange`); where
    that is unavailable, by two renames, missing for that instant, once; no reader resolved it to another
    name, so it is removed at once."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _clear_leftovers(path, grace)
    with _writer(path) as writer:
        staging = _beside(path, "new", writer)
        staging.mkdir()
        try:
            yield staging
            for root, _dirs, files in os.walk(staging):
                for name in files:
                    _sync(Path(root, name))
                _sync(Path(root))
            with publishing_turn(path):
                plain = _publish(staging, path, writer)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        _sync(path.parent)
        if plain is not None:
            _remove(plain)
    _clear_leftovers(path, grace)  # the version the previous one replaced, unless within `grace`


@contextmanager
def made_directory(path: str | Path) -> Iterator[Path]:
    """`path` as a directory (made with its parents if missing) for the block to write into; one this
    made is removed again if the block fails and leaves it empty, so a command that failed writes nothing,
    not even the directory. Never more than an empty directory: another writer may be filling it."""
    path = Path(path)
    made = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    try:
        yield path
    except BaseException:
        if made:
            with suppress(OSError):  # not empty (another writer's), or gone already
                path.rmdir()
        raise


def previous_version(path: str | Path) -> Path:
    """The link beside `path` to the version `staged_directory` last replaced, kept for its readers."""
    path = Path(path)
    return path.with_name(f".previous.{path.name}")


def _publish(directory: Path, path: Path, writer: str) -> Path | None:
    """Point `path` at `directory` (a sibling), replacing what `path` was in one step. A linked version
    is linked from `previous_version(path)` before it is replaced, so it is never unlinked from both;
    returns what a plain directory `path` is now named (None otherwise), for the caller to remove."""
    link = _beside(path, "link", writer)
    os.symlink(directory.name, link)  # relative: the pair keeps working when its parent moves
    try:
        if path.is_symlink():
            _keep_previous(path, os.readlink(path), writer)
            os.replace(link, path)
            return None
        if not path.exists():
            os.replace(link, path)
            return None
        if exchange(link, path):  # `link` now names the plain directory
            return link
        old = _beside(path, "old", writer)
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


def _keep_previous(path: Path, version: str, writer: str) -> None:
    """Link `previous_version(path)` to `version` (the name of a directory beside `path`), stamped now:
    the grace of a replaced version counts from its modification time (`_clear_leftovers`)."""
    with suppress(FileNotFoundError):  # a dangling `path` (its version removed by hand) is relinked
        os.utime(path.parent / version)
    link = _beside(path, "prev", writer)
    os.symlink(version, link)
    try:
        os.replace(link, previous_version(path))
    except BaseException:
        link.unlink(missing_ok=True)
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
