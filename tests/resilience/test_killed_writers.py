"""A job SIGKILLed while writing (the OOM killer, an operator, a node drain) cannot clean up after
itself: `crosscart batch-score` left its whole staged directory beside `--out` (a full batch, every
time it was killed), the atomic writes left their temporary file, and a kill between the staged
directory's two renames left no `--out` at all, the previous batch hidden under a `.old-` name. The
next write to the same path clears what writers that died on this host left, and puts a hidden previous
directory back first; a live writer's files are left alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from commerce.files import atomic_path, staged_directory

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
    with staged_directory(out) as staging:
        (staging / "part-0.parquet").write_text("v1")
    killed_writing(out, "directory")
    killed_writing(out, "directory")
    # the second run cleared the first's staged batch: at most one dead batch at a time (was one per kill)
    assert len(list(tmp_path.iterdir())) == 3  # the link, the batch it points at, one dead batch
    with staged_directory(out) as staging:
        (staging / "part-0.parquet").write_text("v2")
    served = out.readlink().name
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["lists", served])  # both dead batches gone
    assert (out / "part-0.parquet").read_text() == "v2"

    table = tmp_path / "features.parquet"
    killed_writing(table, "file")
    assert len(list(tmp_path.glob(".tmp-*"))) == 1
    with atomic_path(table) as tmp:
        tmp.write_text("whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["features.parquet", "lists", served])


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
