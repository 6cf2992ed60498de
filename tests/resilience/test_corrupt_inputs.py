"""An input Parquet file a command cannot use (cut short by a copy that died half-way, a column renamed or
stored as text, damaged pages behind an intact footer) ended `crosscart db load` and `crosscart features
build` with a traceback (25 to 440 lines; a KeyError, a TypeError, or pyarrow's "Corrupt snappy
compressed data" naming no file); they now print one line naming the file and what is wrong and exit 1,
as for a refused write, and a `db load` stopped so has loaded nothing."""

from __future__ import annotations

import shutil

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from commerce import migrate
from crosscart.cli import app
from crosscart.settings import get_settings
from features.synth import generate_marketplace


def _run(tmp_path, monkeypatch, args):
    """`crosscart ARGS` on a migrated SQLite database of its own; returns the result and the database URL."""
    url = f"sqlite:///{tmp_path / 'crosscart.db'}"
    migrate.upgrade(url)
    monkeypatch.setenv("CROSSCART_DATABASE_URL", url)
    monkeypatch.setenv("CROSSCART_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(app, args), url
    finally:
        get_settings.cache_clear()


def assert_one_error_line(result, *words):
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert all(w in lines[0] for w in words), result.output


@pytest.mark.parametrize("cut", [0.0, 0.5, 0.99])
def test_a_load_from_a_parquet_file_cut_short_exits_1_with_one_line_naming_it(tmp_path, monkeypatch, cut):
    market = tmp_path / "market"
    market.mkdir()
    path = market / "categories.parquet"  # the first file `db load` reads
    pd.DataFrame({"category_id": ["root"], "parent_id": [None], "name": ["All"]}).to_parquet(path)
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * cut)])
    result, _ = _run(tmp_path, monkeypatch, ["db", "load", str(market)])
    assert_one_error_line(result, str(path))


@pytest.fixture(scope="module")
def tiny_market(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny") / "market"
    generate_marketplace(out, "tiny", seed=3)
    return out.resolve()


def _rename_brand(path):
    table = pq.read_table(path)
    pq.write_table(
        table.rename_columns(["brand_name" if c == "brand" else c for c in table.column_names]), path
    )


def _ts_as_text(path):
    table = pq.read_table(path)
    pq.write_table(
        table.set_column(table.column_names.index("ts"), "ts", pc.cast(table["ts"], pa.string())), path
    )


def _damage_pages(path):
    """Flip bytes in the data pages, the footer (the file's last bytes) left whole."""
    data = bytearray(path.read_bytes())
    for i in range(100, len(data) // 2, 7):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


FAULTS = {
    "renamed column": ("products.parquet", _rename_brand, "missing column brand"),
    "ts as text": ("events/part-00000.parquet", _ts_as_text, "column ts is string, not timestamp"),
    "damaged pages": ("products.parquet", _damage_pages, "unreadable data"),
    "damaged event pages": ("events/part-00000.parquet", _damage_pages, "unreadable data"),
}


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("command", ["db load", "features build"])
def test_a_bad_input_file_ends_the_command_with_one_line_naming_it_and_loads_nothing(
    tiny_market, tmp_path, monkeypatch, fault, command
):
    market = tmp_path / "market"
    shutil.copytree(tiny_market, market)
    name, damage, problem = FAULTS[fault]
    damage(market / name)
    args = command.split() + (
        [str(market)] if command == "db load" else ["--data", str(market), "--out", str(tmp_path / "out")]
    )
    result, url = _run(tmp_path, monkeypatch, args)
    assert_one_error_line(result, str(market / name), problem)
    with create_engine(url).connect() as db:  # categories come first, events after the catalog's commit
        assert db.execute(text("SELECT count(*) FROM categories")).scalar() == 0
    assert not (tmp_path / "out").exists()
