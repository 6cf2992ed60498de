"""The demo's memory of its steps (`DATA_DIR/demo-state.json`), kept here rather than in the demo command
because `crosscart serve` and the API read it too: a database whose demo load began and never finished
(Ctrl-C, SIGTERM, a crash) holds part of the marketplace, and only a rerun of the demo completes it."""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime
from pathlib import Path

logger = logging.getLogger(__name__)

STATE_FILE = "demo-state.json"
_UNFINISHED_LOAD = "load-unfinished:"  # + the database's fingerprint (a hash: no password in the file)


def fingerprint(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]


class StepLog:
    """Finished steps by fingerprint of their inputs, and the databases a load began on and has not
    finished: one small JSON file in the data directory, replaced whole at every change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: dict[str, str] = _read(path) if path.is_file() else {}

    def is_done(self, step: str, fingerprint: str) -> bool:
        return self.done.get(step) == fingerprint

    def mark(self, step: str, fingerprint: str) -> None:
        self.done[step] = fingerprint
        self._write()

    def load_begins(self, database_url: str) -> None:
        """Recorded before the load's first commit, so a load stopped at any point leaves it behind."""
        self.done[_unfinished_key(database_url)] = datetime.now(UTC).isoformat(timespec="seconds")
        self._write()

    def load_done(self, fingerprint: str, database_url: str) -> None:
        """The load step finished: recorded, and its database no longer unfinished, in one write."""
        self.done.pop(_unfinished_key(database_url), None)
        self.mark("load", fingerprint)

    def _write(self) -> None:
        from commerce.files import atomic_path

        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps(self.done, indent=2))


def _read(path: Path) -> dict[str, str]:
    """The file's steps, refused (ValueError naming the file) unless it holds a JSON object: a truncated
    or hand-edited file is not silently taken for "nothing done"."""
    try:
        done = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not the demo's step log ({exc}): delete it to rerun every step") from exc
    if not isinstance(done, dict):
        raise ValueError(
            f"{path} is not the demo's step log (not a JSON object): delete it to rerun every step"
        )
    return done


def _unfinished_key(database_url: str) -> str:
    return _UNFINISHED_LOAD + fingerprint("database", database_url)


def unfinished_load(data_dir: Path, database_url: str) -> str | None:
    """One line for the user when the demo began loading `database_url` and never finished, else None:
    a database the demo never loaded (production's) is never named in the file. An unreadable file names
    no database: it is warned about, and `/ready` and `serve` go on as without it."""
    try:
        log = StepLog(data_dir / STATE_FILE)
    except (ValueError, OSError) as exc:
        _warn_unreadable(str(exc))
        return None
    began = log.done.get(_unfinished_key(database_url))
    if began is None:
        return None
    return (
        f"the demo's load of the marketplace into this database (begun {began}) was stopped part-way"
        f" ({log.path}): run `make run` (or `crosscart demo`) again to finish it"
    )


_warned: set[str] = set()


def _warn_unreadable(message: str) -> None:
    """Once per message and process: `/ready` reads the file at every probe."""
    if message not in _warned:
        _warned.add(message)
        logger.warning("%s", message)
