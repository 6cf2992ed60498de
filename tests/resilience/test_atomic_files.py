"""Files other programs read appear whole or not at all: a write that fails (a full disk, a failed query,
a crash) leaves the previous file as it was and no half-written one."""

from __future__ import annotations

import errno
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from commerce import migrate
from commerce.files import atomic_path, made_directory, previous_version, staged_directory
from crosscart.cli import app
from crosscart.settings import get_settings


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    out = tmp_path / "audience.csv"
    out.write_text("the previous export\n")
    with pytest.raises(OSError), atomic_path(out) as tmp:
        tmp.write_text("half of the new")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert out.read_text() == "the previous export\n"
    assert list(tmp_path.iterdir()) == [out]

    with atomic_path(out) as tmp:
        pd.DataFrame({"shopper_id": ["s1"]}).to_csv(tmp, index=False)
    assert out.read_text() == "shopper_id\ns1\n" and list(tmp_path.iterdir()) == [out]


def test_an_export_that_fails_does_not_truncate_the_last_one(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'crosscart.db'}"
    migrate.upgrade(url)
    monkeypatch.setenv("CROSSCART_DATABASE_URL", url)
    monkeypatch.setenv("CROSSCART_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    out = tmp_path / "exports" / "audience.csv"
    out.parent.mkdir()
    out.write_text("shopper_id,arm\ns1,c1\n")
    try:
        result = CliRunner().invoke(app, ["campaign", "export", "no-such-campaign", "--out", str(out)])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2 and "no-such-campaign" in result.output
    assert out.read_text() == "shopper_id,arm\ns1,c1\n"  # was truncated to nothing
    assert list(out.parent.iterdir()) == [out]


def test_a_batch_score_that_dies_half_way_leaves_the_served_lists_whole(tmp_path, monkeypatch, tracking_uri):
    import training.batch_scoring
    from serving.precomputed import load_precomputed
    from tests.training.test_batch_scoring import _register_recommender

    uri = tracking_uri
    model = _register_recommender(uri)
    out = tmp_path / "lists"
    base = ["batch-score", "--model", "recs", "--tracking-uri", uri, "--n", "4", "--chunk-size", "10"]
    base += ["--cluster", "", "--out", str(out)]
    assert CliRunner().invoke(app, base).exit_code == 0
    served = load_precomputed(out)
    assert len(served) == len(model.user_ids_) > 10  # more than one chunk

    score_chunk, calls = training.batch_scoring._score_chunk, []

    def disk_fills_up(*args):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return score_chunk(*args)

    monkeypatch.setattr(training.batch_scoring, "_score_chunk", disk_fills_up)
    failed = CliRunner().invoke(app, base)
    assert failed.exit_code == 1 and failed.output.strip() == "error: cannot write: No space left on device"
    again = load_precomputed(out)  # a replica (re)loading now: the previous batch, whole (was: none)
    assert again is not None and again.stamp == served.stamp and len(again) == len(served)
    hidden = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert hidden == [out.readlink().name]  # the batch served; no staging left behind


def test_a_model_artifact_that_cannot_be_written_whole_leaves_the_previous_one(tmp_path, monkeypatch):
    import joblib

    import models.recommenders.common
    from features.interactions import build_interactions
    from models.recommenders import load_recommender, make_recommender
    from tests.training.conftest import planted_events

    events = planted_events().rename(columns={"shopper": "user_id", "product": "item_id"})
    model = make_recommender("itemknn").fit(
        build_interactions(events, time_col=None, event_col=None, value_col=None)
    )
    path = tmp_path / "model.joblib"
    model.save(path)
    before = path.read_bytes()

    def disk_fills_up(value, filename, **kwargs):
        with open(filename, "wb") as fh:
            fh.write(b"half an artifact")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(models.recommenders.common.joblib, "dump", disk_fills_up)
    with pytest.raises(OSError):
        model.save(path)
    monkeypatch.setattr(models.recommenders.common.joblib, "dump", joblib.dump)
    assert path.read_bytes() == before and list(tmp_path.iterdir()) == [path]
    assert load_recommender(path).recommend([str(model.user_ids_[0])], n=3) == model.recommend(
        [str(model.user_ids_[0])], n=3
    )


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_a_staged_directory_is_synced_before_its_swap_and_kept_when_the_swap_fails(tmp_path, monkeypatch):
    import commerce.files

    out = tmp_path / "lists"
    out.mkdir()
    (out / "part-0.parquet").write_text("previous")
    synced, sync = [], commerce.files._sync
    monkeypatch.setattr(commerce.files, "_sync", lambda p: (synced.append(p.name), sync(p)))
    with staged_directory(out) as staging:
        (staging / "part-0.parquet").write_text("new")
        (staging / "meta.json").write_text("{}")
    # the files and the staging directory before the swap (a crash never leaves an empty part under
    # `out`), then the parent directory, so the swap itself is on the disk
    assert sorted(synced[:2]) == ["meta.json", "part-0.parquet"]
    assert synced[2:] == [staging.name, tmp_path.name]
    assert (out / "part-0.parquet").read_text() == "new"
    assert out.is_symlink() and _names(tmp_path) == sorted([out.name, staging.name])

    replace = commerce.files.os.replace

    def link_cannot_move(src, dst):
        if Path(src).name.startswith(".link-"):
            raise OSError(errno.EIO, "Input/output error")
        replace(src, dst)

    monkeypatch.setattr(commerce.files.os, "replace", link_cannot_move)
    with pytest.raises(OSError), staged_directory(out) as failed:
        (failed / "part-0.parquet").write_text("newer")
    assert (out / "part-0.parquet").read_text() == "new"
    # the failed run's link and directory gone; the served batch was linked as the previous one first
    assert _names(tmp_path) == sorted([out.name, previous_version(out).name, staging.name])
    assert previous_version(out).readlink() == out.readlink()


def test_out_is_never_missing_while_batches_are_swapped_in(tmp_path, monkeypatch):
    """A replica polling `--out` (as CROSSCART_PRECOMPUTED_DIR) always finds it: every step of the swap is
    checked (the two renames of directories left it missing between them), and a reader thread polls
    through many swaps. A read that resolved a batch finds its file gone only once two more batches were
    swapped in since (the replaced batch is kept until the next swap): it was seen after one swap, once
    in 30 on a loaded host, when the replaced batch was removed at once."""
    import os
    import threading

    import commerce.files

    out = tmp_path / "lists"
    out.mkdir()  # written before swaps used links: the first swap exchanges it in one step
    (out / "meta.json").write_text("0")
    missing, replace, swaps = [], commerce.files.os.replace, [0]

    def checked_replace(src, dst):
        replace(src, dst)
        if not (out / "meta.json").exists():
            missing.append((Path(src).name, Path(dst).name))
        swaps[0] += Path(dst) == out

    monkeypatch.setattr(commerce.files.os, "replace", checked_replace)
    done, polls, read = threading.Event(), [0], []

    def poll():
        while not done.is_set():
            if not os.path.lexists(out):
                missing.append("reader")
            swapped = swaps[0]
            try:
                read.append((out.resolve() / "meta.json").read_text())
            except FileNotFoundError:
                if swaps[0] - swapped < 2:  # resolved the batch served at `swapped` or a later one
                    missing.append(f"read after {swaps[0] - swapped} swaps")
            polls[0] += 1

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        for batch in range(1, 31):
            with staged_directory(out) as staging:
                (staging / "meta.json").write_text(str(batch))
    finally:
        done.set()
        reader.join()
    assert missing == [] and polls[0] > 30
    assert (out / "meta.json").read_text() == "30" and set(read) <= {str(b) for b in range(31)}
    assert out.is_symlink() and (previous_version(out) / "meta.json").read_text() == "29"
    assert len(_names(tmp_path)) == 4  # the two links and the two batches they point at


def _publish(out: Path, version: str, parts: int = 5, **kwargs) -> Path:
    with staged_directory(out, **kwargs) as staging:
        for part in range(parts):
            (staging / f"part-{part}.parquet").write_text(f"{version}/{part}")
    return staging


def test_a_reader_in_the_replaced_version_reads_every_file_until_the_next_publish(tmp_path):
    """A replica resolves `--out` once (`load_precomputed`) and reads the parts one by one: a batch-score
    finishing in between removed the batch it was in, so the parts after the swap were gone."""
    out = tmp_path / "lists"
    first = _publish(out, "v1")
    held = out.resolve()
    assert (held / "part-0.parquet").read_text() == "v1/0"
    second = _publish(out, "v2")
    assert [(held / f"part-{p}.parquet").read_text() for p in range(5)] == [f"v1/{p}" for p in range(5)]
    assert (out / "part-0.parquet").read_text() == "v2/0" and previous_version(out).resolve() == held

    third = _publish(out, "v3")  # two publishes later the first batch goes
    assert not first.exists() and previous_version(out).resolve() == second
    assert _names(tmp_path) == sorted([out.name, previous_version(out).name, second.name, third.name])


def test_the_disk_holds_two_versions_over_many_publishes(tmp_path):
    out = tmp_path / "lists"
    for version in range(40):
        _publish(out, str(version), parts=2)
        assert len(_names(tmp_path)) == (2 if version == 0 else 4)
    assert (previous_version(out) / "part-1.parquet").read_text() == "38/1"


def test_replaced_versions_are_kept_for_the_grace_period(tmp_path):
    """With `grace`, a replaced version stays that long after it was replaced, however many publishes
    follow (readers slower than the publishes), and goes with the first publish after."""
    import os
    import time

    out = tmp_path / "lists"
    first = _publish(out, "v1", grace=60)
    held = out.resolve()
    for version in ("v2", "v3", "v4"):
        _publish(out, version, grace=60)
    assert (held / "part-4.parquet").read_text() == "v1/4"
    assert len([name for name in _names(tmp_path) if name.startswith(".new-")]) == 4
    long_ago = time.time() - 61
    os.utime(first, (long_ago, long_ago))  # replaced 61 s ago
    _publish(out, "v5", grace=60)
    assert not first.exists() and len([name for name in _names(tmp_path) if name.startswith(".new-")]) == 4
    _publish(out, "v6")  # no grace: the current and the previous version only
    assert len(_names(tmp_path)) == 4


def test_concurrent_writers_each_publish_whole_and_leave_two_versions(tmp_path):
    """Threads publishing one `out` at once (each its `_writer` lock): no writer loses its staged files to
    another's clean-up, `out` always holds a whole batch, and once they are done a publish leaves the
    current and the previous version only."""
    import threading

    out = tmp_path / "lists"
    _publish(out, "w0-0")
    errors, done, seen = [], threading.Event(), []

    def write(writer):
        try:
            for version in range(8):
                _publish(out, f"w{writer}-{version}")
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    def read():
        while not done.is_set():
            held = out.resolve()
            try:
                seen.append({(held / f"part-{p}.parquet").read_text().split("/")[0] for p in range(5)})
            except FileNotFoundError:
                pass  # no grace: a version goes two publishes after it was current, a slow reader's too

    writers = [threading.Thread(target=write, args=(w,)) for w in range(1, 5)]
    reader = threading.Thread(target=read)
    for thread in [reader, *writers]:
        thread.start()
    for thread in writers:
        thread.join()
    done.set()
    reader.join()
    assert errors == [] and seen and all(len(parts) == 1 for parts in seen)  # one batch per read
    last = _publish(out, "last")
    previous = previous_version(out).readlink().name
    assert _names(tmp_path) == sorted([out.name, previous_version(out).name, last.name, previous])


def test_without_an_exchange_a_plain_directory_is_replaced_once_by_two_renames(tmp_path, monkeypatch):
    import commerce.files

    out = tmp_path / "lists"
    out.mkdir()
    (out / "meta.json").write_text("old")
    monkeypatch.setattr(commerce.files, "exchange", lambda a, b: False)  # no renameat2: macOS, old glibc
    with staged_directory(out) as staging:
        (staging / "meta.json").write_text("new")
    assert out.is_symlink() and (out / "meta.json").read_text() == "new"
    assert _names(tmp_path) == sorted([out.name, staging.name])


def test_exchange_swaps_two_names_in_one_step(tmp_path):
    from commerce.files import exchange

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x").write_text("a")
    (tmp_path / "b").symlink_to("elsewhere")
    if not exchange(tmp_path / "a", tmp_path / "b"):
        pytest.skip("no renameat2 RENAME_EXCHANGE here (the fallback is tested above)")
    assert (tmp_path / "b" / "x").read_text() == "a" and (tmp_path / "a").is_symlink()
    with pytest.raises(FileNotFoundError):
        exchange(tmp_path / "a", tmp_path / "missing")


CRASH = """
import os, sys
from pathlib import Path
import commerce.files as files
step, out = sys.argv[1], Path(sys.argv[2])
def crash_after(name, when=lambda *args: True):
    real = getattr(os, name)
    def run(*args, **kwargs):
        real(*args, **kwargs)
        if when(*args):
            os._exit(9)
    setattr(files.os, name, run)
if step == "filling":
    with files.staged_directory(out) as staging:
        (staging / "meta.json").write_text("new")
        os._exit(9)
elif step == "aftersymlink":
    crash_after("symlink")
elif step == "afterprevious":  # the served batch linked as the previous one, not yet replaced
    crash_after("replace", lambda src, dst: Path(dst) == files.previous_version(out))
elif step == "afterreplace":
    crash_after("replace", lambda src, dst: Path(dst) == out)
else:
    files.shutil.rmtree = lambda *a, **k: os._exit(9)  # after the exchange, before the clean-up
with files.staged_directory(out) as staging:
    (staging / "meta.json").write_text("new")
"""


@pytest.mark.parametrize(
    "first, step",
    [
        *((first, step) for first in ("plain", "linked") for step in ("filling", "aftersymlink")),
        ("linked", "afterprevious"),  # a linked `out`'s batch is linked as the previous one
        ("linked", "afterreplace"),  # then `out` is relinked by a rename
        ("plain", "afterexchange"),  # a plain one is exchanged with the link
    ],
)
def test_a_crash_at_any_step_leaves_a_whole_output_and_the_next_run_cleans_up(tmp_path, step, first):
    """The process killed (no clean-up runs) while filling, after the new link is made, after the served
    batch is linked as the previous one, after the new link is renamed over `out` (before the batch
    before the previous one is removed), or after a plain `out` was exchanged. The next run leaves the
    current batch, the previous one (a whole batch) and nothing else."""
    import subprocess
    import sys

    out = tmp_path / "lists"
    if first == "plain":
        out.mkdir()
        (out / "meta.json").write_text("old")
    else:
        with staged_directory(out) as staging:
            (staging / "meta.json").write_text("old")
    script = tmp_path / "crash.py"
    script.write_text(CRASH)
    root = str(Path(__file__).resolve().parents[2])
    done = subprocess.run([sys.executable, str(script), step, str(out)], env={"PYTHONPATH": root})
    assert done.returncode == 9
    assert (out / "meta.json").read_text() in {"old", "new"}  # a whole batch, never none
    with staged_directory(out) as staging:
        (staging / "meta.json").write_text("next")
    assert (out / "meta.json").read_text() == "next"
    previous = previous_version(out)
    kept = [previous.name, previous.readlink().name] if previous.is_symlink() else []
    assert _names(tmp_path) == sorted([out.name, staging.name, script.name, *kept])  # left-overs removed
    assert not kept or (previous / "meta.json").read_text() in {"old", "new"}


@pytest.fixture
def umask():
    """Set the process umask for the test (`umask(mask)`), restored after it."""
    import os

    before = os.umask(0o022)
    os.umask(before)
    yield os.umask
    os.umask(before)


@pytest.mark.parametrize("mask", [0o002, 0o077], ids=["umask002", "umask077"])
@pytest.mark.parametrize("mode", [0o600, 0o644])
def test_atomic_path_publishes_exactly_the_mode_asked_whatever_the_umask(tmp_path, umask, mask, mode):
    """The temporary followed the umask (0664 under 002: a secret readable by the group, while written
    and once published; 0600 under 077 where 0644 was asked). It is now private while written and has
    exactly `mode` once published, a new file or one replacing another."""
    umask(mask)
    out = tmp_path / "keys.json"
    for text in ("first", "second"):
        with atomic_path(out, mode=mode) as tmp:
            assert tmp.stat().st_mode & 0o777 == 0o600  # no other user opens it while it is written
            tmp.write_text(text)
        assert out.read_text() == text and out.stat().st_mode & 0o777 == mode
    assert _names(tmp_path) == [out.name]


def test_a_write_that_fails_keeps_the_previous_file_and_its_mode(tmp_path, monkeypatch, umask):
    """A full disk mid-write (os.write refusing after the first block) leaves the previous file as it was,
    contents and mode, and no temporary beside it."""
    import os

    umask(0o002)
    out = tmp_path / "keys.json"
    with atomic_path(out, mode=0o600) as tmp:
        tmp.write_text("previous")
    write, calls = os.write, []

    def disk_fills_up(fd, data):
        calls.append(len(data))
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return write(fd, data[:10])

    monkeypatch.setattr(os, "write", disk_fills_up)
    with pytest.raises(OSError, match="No space"), atomic_path(out, mode=0o600) as tmp:
        fd = os.open(tmp, os.O_WRONLY)
        try:
            os.write(fd, b"x" * 100)
            os.write(fd, b"y" * 100)
        finally:
            os.close(fd)
    assert out.read_text() == "previous" and out.stat().st_mode & 0o777 == 0o600
    assert calls == [100, 100] and _names(tmp_path) == [out.name]


def _figures_fail_at(monkeypatch, nth: int) -> None:
    """Matplotlib's `savefig` writes half a PNG and hits a full disk at its `nth` call."""
    from matplotlib.figure import Figure

    savefig, calls = Figure.savefig, []

    def disk_fills_up(self, fname, *args, **kwargs):
        calls.append(fname)
        if len(calls) == nth:
            Path(fname).write_bytes(b"half a PNG")
            raise OSError(errno.ENOSPC, "No space left on device")
        return savefig(self, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", disk_fills_up)


def _digest(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.mark.parametrize("writer", ["ab_report", "uplift_plots", "study_report"])
def test_reports_and_plots_that_fail_half_way_leave_the_previous_files_whole(tmp_path, monkeypatch, writer):
    """The A/B report, the uplift plots and the study report wrote their files in place: a full disk at
    a figure left it half written (an unreadable PNG) under the previous one's name. Each file is now
    replaced whole or not at all (`atomic_path`): every PNG is whole, the report written after the
    failure is the previous one, no temporary is left."""
    import numpy as np

    from experiments.ab.report import write_report
    from experiments.uplift_metrics import plot_uplift_report
    from tests.ab.test_report import full_report
    from tests.ab.test_study import STUDY, tiny_factory, write_ratings
    from training.study import load_study, run_study

    out = tmp_path / "out"
    rng = np.random.default_rng(1)
    y, t, u = rng.integers(0, 2, 200), rng.integers(0, 2, 200), rng.normal(size=200)
    study_file = tmp_path / "study.toml"
    study_file.write_text(STUDY.format(data=write_ratings(tmp_path / "u.data")))

    def write():
        if writer == "ab_report":
            write_report(full_report(), out)
        elif writer == "uplift_plots":
            plot_uplift_report(y, u, t, out, prefix="m")
        else:
            run_study(load_study(study_file, seeds=[7]), out, tracking_uri=None, factory=tiny_factory,
                      log=lambda _: None)  # fmt: skip

    write()
    before = _digest(out)
    _figures_fail_at(monkeypatch, 1 if writer == "study_report" else 2)
    with pytest.raises(OSError, match="No space"):
        write()
    after = _digest(out)
    assert after.keys() == before.keys()  # no temporary left
    assert all(after[name][:4] == b"\x89PNG" for name in after if name.endswith(".png"))  # none half
    assert all(after[name] == before[name] for name in after if name.startswith("report."))


def test_search_logs_that_fail_half_way_leave_the_previous_log(tmp_path, monkeypatch):
    """`simulate_search_logs` wrote `search_logs.parquet` in place: a full disk mid-write left half a
    Parquet file (unreadable) where the previous log was."""
    from features.synth import generate_marketplace
    from features.synth.search_logs import SEARCH_LOGS, simulate_search_logs

    market = tmp_path / "m"
    generate_marketplace(market, "tiny", seed=4)
    simulate_search_logs(market, seed=4, max_searches=40)
    before = (market / SEARCH_LOGS).read_bytes()

    def disk_fills_up(self, path, *args, **kwargs):
        Path(path).write_bytes(b"PAR1 half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", disk_fills_up)
    with pytest.raises(OSError, match="No space"):
        simulate_search_logs(market, seed=5, max_searches=40)
    assert (market / SEARCH_LOGS).read_bytes() == before
    assert not [p.name for p in market.iterdir() if p.name.startswith(".")]  # no temporary left


def test_a_failed_block_removes_only_the_empty_directory_it_made(tmp_path):
    """`made_directory`: a command that failed leaves no directory it made, and never anything more."""
    made = tmp_path / "a" / "out"
    with pytest.raises(RuntimeError), made_directory(made):
        raise RuntimeError("the job failed")
    assert not made.exists() and (tmp_path / "a").is_dir()  # only the directory asked for
    existing = tmp_path / "existing"
    existing.mkdir()
    with pytest.raises(RuntimeError), made_directory(existing):
        raise RuntimeError("the job failed")
    assert existing.is_dir()  # not made by it: kept
    with pytest.raises(RuntimeError), made_directory(made) as out:
        (out / "another-writer").write_text("x")
        raise RuntimeError("the job failed")
    assert (made / "another-writer").exists()  # not empty: kept whole
    with made_directory(tmp_path / "fine") as out:
        (out / "part").write_text("x")
    assert (tmp_path / "fine" / "part").exists()
