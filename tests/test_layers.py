"""Data flows one way: a lower package importing a higher one (also inside a function) fails here.

The contracts live in pyproject.toml ([tool.importlinter]); docs/architecture.md explains the layers.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_packages_import_only_downward_and_library_code_reads_no_settings(monkeypatch, capsys):
    from importlinter.cli import lint_imports

    monkeypatch.syspath_prepend(str(ROOT))  # the packages of this checkout, not an installed copy
    status = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True)
    report = capsys.readouterr().out
    if status != 0:
        pytest.fail(f"import contracts broken:\n{report}")
    assert "0 broken" in report and "2 kept" in report
