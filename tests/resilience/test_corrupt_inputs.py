"""An input Parquet file cut short (a copy that died half-way, a full disk where it was written) ended
`crosscart db load` and `crosscart features build` with a traceback (71 and 117 lines) naming the file only
at its end; they now print one line naming it and exit 1, as for a refused write."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from commerce import migrate
from crosscart.cli import app
from crosscart.settings import get_settings


@pytest.mark.parametrize("cut", [0.0, 0.5, 0.99])
def test_a_load_from_a_parquet_file_cut_short_exits_1_with_one_line_naming_it(tmp_path, monkeypatch, cut):
    url = f"sqlite:///{tmp_path / 'crosscart.db'}"
    migrate.upgrade(url)
    monkeypatch.setenv("CROSSCART_DATABASE_URL", url)
    monkeypatch.setenv("CROSSCART_DATA_DIR", str(tmp_path))
    market = tmp_path / "market"
    market.mkdir()
    path = market / "categories.parquet"  # the first file `db load` reads
    pd.DataFrame({"category_id": ["root"], "parent_id": [None], "name": ["All"]}).to_parquet(path)
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * cut)])
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["db", "load", str(market)])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(path) in lines[0], result.output
