"""Two processes publishing one directory at once (`commerce.files.staged_directory`) while a reader polls
it. Unordered, both publishers linked the version they found current as the previous one, so a version
published in between was replaced without ever being kept as the previous one (linked from neither, so
removed with the leftovers at the next publish, not the one after, nor `grace` after it was replaced): 1 to
6 of 80 versions a run, in five runs. Publishers now take turns (`.publish.NAME`)."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from commerce import files

VERSIONS = 40  # per publisher
PARTS = 3
PUBLISHER = """
import os, sys
from pathlib import Path
import commerce.files as files
out, log, tag = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
versions, parts = int(sys.argv[4]), int(sys.argv[5])
publish = files._publish
def logged(directory, path, writer):  # each publish as "replaced published" (O_APPEND: one write a line)
    before = os.readlink(path) if path.is_symlink() else "-"
    plain = publish(directory, path, writer)
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, f"{before} {directory.name}\\n".encode())
    os.close(fd)
    return plain
files._publish = logged
for version in range(versions):
    with files.staged_directory(out, grace=60) as staging:
        for part in range(parts):
            (staging / f"part-{part}").write_text(f"{tag}-{version}")
"""


def _publish(out: Path, version: str) -> None:
    with files.staged_directory(out, grace=60) as staging:
        for part in range(PARTS):
            (staging / f"part-{part}").write_text(version)


def test_two_processes_publish_in_turn_and_readers_never_miss_a_version(tmp_path):
    """Readers resolve `out` once and read its parts (as a replica loads a batch), with a grace long enough
    for them: none finds its version gone. Each publish replaced the version the one before it published,
    so every version was current and then kept as the previous one."""
    out, log, script = tmp_path / "lists", tmp_path / "publishes.log", tmp_path / "publish.py"
    script.write_text(PUBLISHER)
    _publish(out, "first")
    _publish(out, "second")  # a current version and a previous one
    root = str(Path(__file__).resolve().parents[2])
    done, reads, missing = threading.Event(), [0], []

    def poll():
        while not done.is_set():
            held = out.resolve()
            try:
                seen = {(held / f"part-{part}").read_text() for part in range(PARTS)}
                (files.previous_version(out) / "part-0").read_text()
            except FileNotFoundError as exc:
                missing.append(exc.filename)
                continue
            assert len(seen) == 1  # one version per read
            reads[0] += 1

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        publishers = [
            subprocess.Popen(
                [sys.executable, str(script), str(out), str(log), tag, str(VERSIONS), str(PARTS)],
                env={"PYTHONPATH": root},
            )
            for tag in ("a", "b")
        ]
        codes = [p.wait(timeout=300) for p in publishers]
    finally:
        done.set()
        reader.join()
    chain = [line.split() for line in log.read_text().splitlines()]
    assert codes == [0, 0] and len(chain) == 2 * VERSIONS
    replaced = {before for before, _ in chain}
    lost = [published for _, published in chain[:-1] if published not in replaced]
    assert lost == []  # was 1 to 6 of 80
    assert [before for before, _ in chain[1:]] == [published for _, published in chain[:-1]]
    assert missing == [] and reads[0] > 0
    assert {(out / f"part-{p}").read_text() for p in range(PARTS)} <= {f"{t}-{VERSIONS - 1}" for t in "ab"}


def test_a_publisher_waits_its_turn_then_gives_up_saying_why(tmp_path, monkeypatch):
    """A publisher stuck holding the turn (a hung file system): the next one waits PUBLISH_WAIT_SECONDS,
    then raises `PublishBusy`, its staged directory removed and the current version kept."""
    out = tmp_path / "lists"
    _publish(out, "current")
    monkeypatch.setattr(files, "PUBLISH_WAIT_SECONDS", 0.3)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'w'); "
         "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)",
         str(files.publish_lock(out))],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(files.PublishBusy, match="another writer is still publishing"):
            _publish(out, "blocked")
    finally:
        holder.kill()
        holder.wait()
    assert (out / "part-0").read_text() == "current"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".new-")] == [out.resolve().name]
    _publish(out, "next")  # the turn is free again, and its lock file gone with it
    assert (out / "part-0").read_text() == "next" and not files.publish_lock(out).exists()


def test_clearing_leftovers_never_removes_the_lock_file_of_a_publisher_in_its_turn(tmp_path, monkeypatch):
    """A clean-up opens the publish lock; its holder lets go (removing it) before the clean-up locks the
    file it opened, and the next publisher takes its turn on a new lock file. The clean-up found its own
    file free and removed the new one by name, so a third publisher could create another and publish at
    the same time as the second."""
    out = tmp_path / "lists"
    _publish(out, "current")
    lock, turn, real_open = files.publish_lock(out), files.publishing_turn(out), os.open
    lock.touch()  # held by a publisher, about to let go

    def open_then_turn_passes(path, flags, *args):
        fd = real_open(path, flags, *args)
        if Path(path) == lock and not flags & os.O_CREAT:  # the clean-up's open
            monkeypatch.setattr(os, "open", real_open)
            lock.unlink()  # the holder lets go
            turn.__enter__()  # the next publisher's turn, on a new lock file
        return fd

    monkeypatch.setattr(os, "open", open_then_turn_passes)
    try:
        files._clear_leftovers(out)
        assert lock.exists()  # was removed under the publisher holding it
        other = os.open(lock, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(other)
    finally:
        turn.__exit__(None, None, None)
    assert not lock.exists()


def test_a_clean_up_leaves_the_publish_lock_its_own_process_holds(tmp_path, monkeypatch):
    """On NFS `flock` is a POSIX lock, held by the process: a clean-up in another thread of the publishing
    process locked the publish lock as free, removed it (and, closing its descriptor, dropped the
    holder's lock), so another process could take a turn at once. `fcntl.lockf` is that lock here."""
    out = tmp_path / "lists"
    _publish(out, "current")
    monkeypatch.setattr(fcntl, "flock", fcntl.lockf)
    with files.publishing_turn(out):
        files._clear_leftovers(out)
        assert files.publish_lock(out).exists()
    assert not files.publish_lock(out).exists()
