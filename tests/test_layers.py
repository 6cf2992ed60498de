"""Data flows one way: a lower package importing a higher one (also inside a function) fails here.

The contracts live in pyproject.toml ([tool.importlinter]); docs/architecture.md explains the layers.
import-linter runs in a child process: in-process it disables every logger that exists when it starts,
which silently breaks later tests (and any process) that rely on those loggers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_packages_import_only_downward_and_library_code_reads_no_settings():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # the packages of this checkout, not an installed copy
    run = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    done = subprocess.run(
        [sys.executable, "-c", run, "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.fail(f"import contracts broken:\n{done.stdout}{done.stderr}")
    assert "0 broken" in done.stdout and "2 kept" in done.stdout
