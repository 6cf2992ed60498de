"""The host's storage failing a write (full: ENOSPC; mounted read-only: EROFS; the device failing: EIO),
injected where the file is written. `test_atomic_files.py` covers what stays on disk; here, what the
caller is told: the API answered such a request 500 with no problem body, and a CLI command printed a
traceback. Now the API answers a problem (507 full, 503 otherwise, the path only in the log) and goes
on serving once the fault clears; a command exits 1 with one line naming the file."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from commerce import migrate
from crosscart.cli import app
from crosscart.settings import get_settings
from serving.routers import models as models_api
from tests.resilience.conftest import fault_settings, make_keys, seeded_factory
from tests.serving.conftest import auth
from training import registry_view

FAULTS = [
    pytest.param(errno.ENOSPC, 507, "insufficient_storage", id="ENOSPC"),
    pytest.param(errno.EROFS, 503, "storage_unavailable", id="EROFS"),
    pytest.param(errno.EIO, 503, "storage_unavailable", id="EIO"),
]
PLOT = b"\x89PNG the loss curve"
VERSION = registry_view.VersionView(
    name="recs", version="1", run_id="r1", aliases=(), created_ms=0, model="als", plots=("plots/loss.png",)
)


@pytest.mark.parametrize(("code", "status", "problem"), FAULTS)
def test_a_plot_download_the_disk_refuses_is_a_problem_and_the_next_one_is_served(
    code, status, problem, tmp_path, monkeypatch, open_client, caplog
):
    """The plot route downloads the artifact into a temporary directory on the host: with the disk
    refusing the copy half-way the answer was a 500 (and a traceback in the log only)."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    failing = [True]

    def download_artifacts(run_id, artifact_path, dst_path, tracking_uri):
        local = Path(dst_path, artifact_path)
        local.parent.mkdir(parents=True)
        with local.open("wb") as fh:
            fh.write(PLOT[:4])
            if failing[0]:
                raise OSError(code, os.strerror(code), str(local))
            fh.write(PLOT[4:])
        return str(local)

    import mlflow.artifacts

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", download_artifacts)
    monkeypatch.setattr(models_api.registry_cache, "versions", lambda uri, name: [VERSION])
    factory = seeded_factory(f"sqlite:///{tmp_path / 'crosscart.db'}")
    admin = auth(make_keys(factory)["admin"])
    client = open_client(fault_settings(tmp_path, model_name="recs"), factory)
    path = "/v1/models/recs/versions/1/plots/loss.png"

    before = set(scratch.iterdir())  # the app's own caches (jieba's)
    r = client.get(path, headers=admin)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["code"] == problem and body["instance"] == path
    assert str(tmp_path) not in r.text  # the host's paths stay in the log
    assert (status == 503) == ("retry-after" in r.headers)
    assert any(str(scratch) in m.getMessage() for m in caplog.records)  # the log names the file
    assert set(scratch.iterdir()) == before  # the half-copied plot went with its temporary directory

    failing[0] = False
    r = client.get(path, headers=admin)
    assert r.status_code == 200 and r.content == PLOT


def test_other_os_errors_stay_server_errors(tmp_path, monkeypatch, open_client):
    """Only the storage's refusals are answered as a problem: any other OSError is a bug, a 500."""

    def broken(*args):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", "/srv/plots/loss.png")

    monkeypatch.setattr(models_api.registry_cache, "versions", lambda uri, name: [VERSION])
    monkeypatch.setattr(registry_view, "plot_bytes", broken)
    factory = seeded_factory(f"sqlite:///{tmp_path / 'crosscart.db'}")
    admin = auth(make_keys(factory)["admin"])
    client = open_client(fault_settings(tmp_path, model_name="recs"), factory)
    with pytest.raises(FileNotFoundError):
        client.get("/v1/models/recs/versions/1/plots/loss.png", headers=admin)


@pytest.mark.parametrize(("code", "status", "problem"), FAULTS)
def test_a_command_whose_output_the_disk_refuses_exits_1_with_one_line(
    code, status, problem, tmp_path, monkeypatch
):
    """`campaign export` on a read-only or full disk: the file beside --out cannot even be created. The
    command printed a traceback (83 lines, exit 1); now one line, and --out is untouched."""
    url = f"sqlite:///{tmp_path / 'crosscart.db'}"
    migrate.upgrade(url)
    monkeypatch.setenv("CROSSCART_DATABASE_URL", url)
    monkeypatch.setenv("CROSSCART_DATA_DIR", str(tmp_path))
    out = tmp_path / "exports" / "audience.csv"
    out.parent.mkdir()
    out.write_text("shopper_id,arm\ns1,c1\n")
    real_open = os.open

    def refusing_open(path, flags, *args, **kwargs):
        if Path(path).parent == out.parent and flags & os.O_CREAT:
            raise OSError(code, os.strerror(code), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["campaign", "export", "c-1", "--out", str(out)])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert os.strerror(code) in lines[0] and str(out.parent) in lines[0]
    assert out.read_text() == "shopper_id,arm\ns1,c1\n"
    assert list(out.parent.iterdir()) == [out]


def test_an_events_export_the_disk_fills_half_way_leaves_the_previous_one_whole(tmp_path, monkeypatch):
    """`export_events` removed the previous parts, then wrote the new ones in place: a disk full at the
    second part left one new part (and half of the next) where the whole previous export had been. Now
    the parts are staged and published together, so the reader sees one whole export or the other."""
    import pandas as pd
    import pyarrow.parquet as pq

    from commerce.db import transaction
    from commerce.services.events import export_events, record_events

    factory = seeded_factory(f"sqlite:///{tmp_path / 'crosscart.db'}")
    at = pd.Timestamp("2026-06-01T12:00:00Z").to_pydatetime()
    events = [
        {"event_id": f"e{i}", "ts": at, "shopper_id": "s1", "product_id": "p01", "event_type": "view"}
        for i in range(5)
    ]
    out = tmp_path / "events"
    with transaction(factory) as s:
        record_events(s, events[:3])
    with factory() as s:
        export_events(s, out, batch_rows=10)
    previous = sorted(pd.read_parquet(out).event_id)
    with transaction(factory) as s:
        record_events(s, events[3:])

    write_table, written = pq.write_table, []

    def disk_fills_up(table, where, **kwargs):
        written.append(where)
        if len(written) == 2:
            Path(where).write_bytes(b"PAR1 half a part")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(where))
        write_table(table, where, **kwargs)

    monkeypatch.setattr(pq, "write_table", disk_fills_up)
    with pytest.raises(OSError), factory() as s:
        export_events(s, out, batch_rows=10)
    assert sorted(pd.read_parquet(out).event_id) == previous  # the previous export, whole
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [out.readlink().name]

    monkeypatch.setattr(pq, "write_table", write_table)
    with factory() as s:
        paths = export_events(s, out, batch_rows=10)
    assert paths == sorted(out.glob("part-*.parquet")) and len(paths) > 2
    assert sorted(pd.read_parquet(out).event_id) == sorted([*previous, "e3", "e4"])
