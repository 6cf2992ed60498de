"""`crosscart train` when the disk under MLflow's artifact store is full (ENOSPC injected where a file is
copied into the store, as MLflow logs every artifact: staged in a temporary directory, then copied). The
command exited 1 with one line that named the temporary file the copy read from (`/tmp/tmp.../model/
requirements.txt`), not the store that is full: the line now names the file written, in the store, and
the champion stays the previous version."""

from __future__ import annotations

import errno
import os

from typer.testing import CliRunner

from crosscart.cli import app
from tests.training.conftest import planted_events
from training.registry import champion_version, registry_client

NAME = "full-recs"


def _train(uri, events_file):
    return CliRunner().invoke(
        app,
        ["train", "recommender", "--data", f"events:{events_file}", "--user-col", "shopper",
         "--item-col", "product", "--time-col", "when", "--model", "popularity",
         "--tracking-uri", uri, "--registered-name", NAME, "--force-promote"],
    )  # fmt: skip


def test_a_full_artifact_store_is_one_line_naming_the_store_and_the_champion_stays(tmp_path, monkeypatch):
    events_file = tmp_path / "events.csv"
    planted_events().to_csv(events_file, index=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert _train(uri, events_file).exit_code == 0  # v1 champion
    store = tmp_path / "mlartifacts"
    sendfile = os.sendfile

    def full_store(out_fd, in_fd, offset, count):  # shutil.copyfile's copy on Linux
        if os.readlink(f"/proc/self/fd/{out_fd}").startswith(f"{store}/"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return sendfile(out_fd, in_fd, offset, count)

    monkeypatch.setattr(os, "sendfile", full_store)
    result = _train(uri, events_file)
    monkeypatch.undo()

    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot write "), result.output
    assert lines[0].endswith(": No space left on device"), lines[0]
    written = lines[0].removeprefix("error: cannot write ").removesuffix(": No space left on device")
    assert written.startswith(f"{store}/"), lines[0]  # was the temporary file MLflow copied from
    client = registry_client(uri)
    assert str(champion_version(client, NAME).version) == "1"
    assert _train(uri, events_file).exit_code == 0  # room again: the next run promotes
    assert str(champion_version(client, NAME).version) != "1"
