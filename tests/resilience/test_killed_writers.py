"""A job SIGKILLed while writing (the OOM killer, an operator, a node drain) cannot clean up after
itself: `crosscart batch-score` left its whole staged directory beside `--out` (a full batch, every
time it was killed), the atomic writes left their temporary file, and a kill between the staged
directory's two renames left no `--out` at all, the previous batch hidden under a `.old-` name. The
next write to the same path clears what writers that died left, and puts a hidden previous directory
back first; a live writer's files are left alone. A writer is alive while it holds its lock file
(`flock`): its host name and pid, which the names carried before, are not unique across containers that
share a host name and a volume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from commerce.files import LEGACY_AGE_SECONDS, atomic_path, previous_version, staged_directory

ROOT = Path(__file__).resolve().parents[2]
KILLED_WRITING = """
import os, signal, sys
from pathlib import Path
from commerce.files import atomic_path, staged_directory
out = Path(sys.argv[1])
if sys.argv[2] == "file":
    with atomic_path(out) as tmp:
        tmp.write_text("half")
        os.kill(os.getpid(), signal.SIGKILL)
elif sys.argv[2] == "directory":
    with staged_directory(out) as staging:
        (staging / "part-0.parquet").write_text("half")
        os.kill(os.getpid(), signal.SIGKILL)
else:  # a plain `out` (no exchange here): killed between moving it aside and linking the new batch in
    import commerce.files as files
    files.exchange = lambda a, b: False
    replace = os.replace
    def replace_then_die(src, dst):
        replace(src, dst)
        os.kill(os.getpid(), signal.SIGKILL)
    os.replace = replace_then_die
    with staged_directory(out) as staging:
        (staging / "part-0.parquet").write_text("new")
"""


def killed_writing(out: Path, what: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ran = subprocess.run([sys.executable, "-c", KILLED_WRITING, str(out), what], env=env, cwd=ROOT)
    assert ran.returncode == -signal.SIGKILL


def test_a_killed_writers_leftovers_go_with_the_next_write(tmp_path):
    out = tmp_path / "lists"
    with staged_directory(out) as first:
        (first / "part-0.parquet").write_text("v1")
    killed_writing(out, "directory")
    killed_writing(out, "directory")
    # the second run cleared the first's staged batch: at most one dead batch at a time (was one per kill)
    assert len(list(tmp_path.iterdir())) == 4  # the link, the batch it points at, one dead batch + its lock
    with staged_directory(out) as staging:
        (staging / "part-0.parquet").write_text("v2")
    served, previous = out.readlink().name, previous_version(out).name
    # both dead batches gone; v1 kept for its readers until the next publish
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["lists", served, previous, first.name])
    assert (out / "part-0.parquet").read_text() == "v2"

    table = tmp_path / "features.parquet"
    killed_writing(table, "file")
    assert len(list(tmp_path.glob(".tmp-*"))) == 1
    with atomic_path(table) as tmp:
        tmp.write_text("whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["features.parquet", "lists", served, previous, first.name]
    )


def test_a_previous_directory_hidden_by_a_kill_between_the_renames_is_put_back(tmp_path):
    out = tmp_path / "lists"
    out.mkdir()  # written before `out` was a link; where no exchange exists it is moved aside, then linked
    (out / "part-0.parquet").write_text("v1")
    killed_writing(out, "between-renames")
    assert not out.exists()  # replicas find no lists until the next run
    with pytest.raises(RuntimeError), staged_directory(out):
        raise RuntimeError("the next run fails too")
    assert (out / "part-0.parquet").read_text() == "v1"  # was left hidden under its .old- name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lists"]


def test_a_live_writers_files_are_left_alone(tmp_path):
    out = tmp_path / "lists"
    with staged_directory(out) as mine, staged_directory(out) as other:  # two runs at once, this process
        (mine / "part-0.parquet").write_text("a")
        (other / "part-0.parquet").write_text("b")
    assert (out / "part-0.parquet").read_text() == "a"  # the outer run swapped in last


WRITING_IN_ANOTHER_CONTAINER = """
import os, sys, time
from pathlib import Path
os.getpid = lambda: int(sys.argv[3])  # its own PID namespace: its pid names another process here
from commerce.files import atomic_path, staged_directory
out = Path(sys.argv[1])
with (staged_directory if sys.argv[2] == "directory" else atomic_path)(out) as entry:
    (entry / "part-0.parquet" if sys.argv[2] == "directory" else entry).write_text("live")
    print(entry.name, flush=True)
    time.sleep(600)
"""


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    return int(done.stdout)


@pytest.mark.parametrize("what", ["directory", "file"])
@pytest.mark.parametrize("pid_here", ["dead", "this test's", "another live"])
def test_a_writer_in_another_container_is_alive_while_it_runs(tmp_path, what, pid_here):
    """Another container on the volume, same host name: its writer's pid is a finished process's here
    or this process's (its files were removed while it wrote) or another live one's (kept for good after
    it was killed)."""
    out = tmp_path / ("lists" if what == "directory" else "features.parquet")
    pid = {"dead": _dead_pid, "this test's": os.getpid, "another live": os.getppid}[pid_here]()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-c", WRITING_IN_ANOTHER_CONTAINER, str(out), what, str(pid)]
    other = subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        entry = tmp_path / other.stdout.readline().strip()
        assert entry.name.startswith((".new-", ".tmp-"))
        with staged_directory(out) if what == "directory" else atomic_path(out) as mine:
            (mine / "part-0.parquet" if what == "directory" else mine).write_text("mine")
        live = entry / "part-0.parquet" if what == "directory" else entry
        assert live.read_text() == "live"  # left alone while its writer runs
    finally:
        other.kill()
        other.wait()
        other.stdout.close()
    with staged_directory(out) if what == "directory" else atomic_path(out) as mine:
        (mine / "part-0.parquet" if what == "directory" else mine).write_text("again")
    left = {p.name for p in tmp_path.iterdir()}
    if what == "directory":  # the current batch and "mine", kept as the previous one
        previous = previous_version(out)
        assert left == {"lists", out.readlink().name, previous.name, previous.readlink().name}
        assert (previous / "part-0.parquet").read_text() == "mine"
    else:
        assert left == {"features.parquet"}


def test_leftovers_named_before_locks_go_once_a_day_old(tmp_path):
    """Names carrying host and pid (before the lock files) prove nothing either way: kept until old."""
    out = tmp_path / "lists"
    recent, old = (tmp_path / f".new-host~{n}-{uuid.uuid4().hex}.lists" for n in (7, 8))
    recent.mkdir()
    old.mkdir()
    long_ago = time.time() - LEGACY_AGE_SECONDS - 60
    os.utime(old, (long_ago, long_ago))
    with staged_directory(out) as staging:
        (staging / "part-0.parquet").write_text("v1")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["lists", out.readlink().name, recent.name])


def test_a_lock_file_removed_before_its_writer_locked_it_is_not_used(tmp_path, monkeypatch):
    """A cleaner that finds a new lock file before its writer has locked it takes the writer for dead and
    removes it; the writer then takes another, so that its entries never go without a lock file."""
    import fcntl

    flock, removed = fcntl.flock, []

    def cleaner_first(fd, operation):
        if not removed:
            removed.extend(tmp_path.glob(".lock-*"))
            for lock in removed:
                lock.unlink()
        return flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", cleaner_first)
    out = tmp_path / "lists"
    with staged_directory(out) as staging:
        writer = staging.name.split(".")[1].removeprefix("new-")
        assert len(removed) == 1 and writer not in removed[0].name
        assert (tmp_path / f".lock-{writer}.lists").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["lists", out.readlink().name])
