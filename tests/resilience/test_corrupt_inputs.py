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


def damage_page(path, column):
    """Garbage in the middle of one column chunk's data pages (the middle row group's), the page headers
    before it and the footer left whole: the file opens, its schema reads, and only reading that column
    fails, with pyarrow's "Corrupt snappy compressed data" or "Index not in dictionary bounds", naming no
    file."""
    meta = pq.ParquetFile(path).metadata
    chunk = meta.row_group(meta.num_row_groups // 2).column(
        meta.schema.to_arrow_schema().get_field_index(column)
    )
    start = chunk.data_page_offset
    size = chunk.total_compressed_size - (start - (chunk.dictionary_page_offset or start))
    data = bytearray(path.read_bytes())
    for i in range(start + size // 4, start + 3 * size // 4):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


def write_labels(market, path, shift=pd.Timedelta(0)):
    """Labels (shopper_id, product_id, label_ts, label) from `market`'s purchases, `shift` later."""
    events = pd.read_parquet(market / "events")
    buys = events[events["event_type"] == "purchase"]
    labels = buys[["shopper_id", "product_id", "ts"]].rename(columns={"ts": "label_ts"}).assign(label=1)
    labels.assign(label_ts=labels["label_ts"] + shift).to_parquet(path, index=False)
    return path


def assert_error_line_naming(result, path):
    """Exit 1 with one `error: FILE: unreadable data (...)` line on stderr (stdout may hold what the
    command finished before: `batch-score`'s lists)."""
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: unreadable data ("), result.output


JOB_DAMAGE = {
    "event page": ("events/part-00000.parquet", "shopper_id"),
    "product page": ("products.parquet", "title"),
    "shopper page": ("shoppers.parquet", "region"),
    "labels page": ("labels.parquet", "product_id"),
}


@pytest.mark.parametrize("fault", JOB_DAMAGE)
def test_a_damaged_page_ends_the_feature_job_with_one_line_naming_the_file_and_writes_nothing(
    tiny_market, tmp_path, fault
):
    """`features job` checks its inputs' columns only (out of core, pages are read once, by the job): a
    damaged page escaped as pyarrow's traceback (OSError "Corrupt snappy compressed data"), naming no
    file; damaged labels were one line naming no file ("Index not in dictionary bounds"), after the
    feature job had published its outputs."""
    market = tmp_path / "market"
    shutil.copytree(tiny_market, market)
    labels = write_labels(market, market / "labels.parquet")
    name, column = JOB_DAMAGE[fault]
    damage_page(market / name, column)
    out = tmp_path / "out"
    args = ["features", "job", "--data", str(market), "--out", str(out), "--cluster", ""]
    result = CliRunner().invoke(app, [*args, "--labels", str(labels)])
    assert_error_line_naming(result, market / name)
    assert not out.exists(), list(
        out.rglob("*")
    )  # nothing published, nothing left behind: not even the directory it made


def test_a_damaged_labels_page_ends_the_training_set_with_one_line_naming_it(tiny_market, tmp_path):
    """The labels are read whole, so they are checked whole, not only their schema."""
    labels = write_labels(tiny_market, tmp_path / "labels.parquet")
    damage_page(labels, "product_id")
    out = tmp_path / "training.parquet"
    args = ["features", "training-set", "--data", str(tiny_market), "--labels", str(labels)]
    result = CliRunner().invoke(app, [*args, "--out", str(out)])
    assert_error_line_naming(result, labels)
    assert not out.exists()


@pytest.mark.parametrize("command", ["price-sensitivity", "evaluate search"])
def test_a_damaged_search_log_page_ends_the_command_with_one_line_naming_it(tiny_market, tmp_path, command):
    """`features price-sensitivity` and `evaluate search` read DATA/search_logs.parquet when present:
    unchecked, a damaged page ended them with pyarrow's traceback (OSError "Corrupt snappy compressed
    data")."""
    from features.synth.search_logs import SEARCH_LOGS, simulate_search_logs

    market = tmp_path / "market"
    shutil.copytree(tiny_market, market)
    simulate_search_logs(market, seed=0)
    damage_page(market / SEARCH_LOGS, "clicked")
    out = tmp_path / "out.parquet"
    if command == "price-sensitivity":
        args = ["features", "price-sensitivity", "--data", str(market), "--out", str(out)]
    else:
        args = ["evaluate", "search", "--data", str(market), "--save-ranker", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]  # after the bar's
    assert errors == [f"error: {market / SEARCH_LOGS}: unreadable data (Corrupt snappy compressed data.)"], (
        result.output
    )
    assert not out.exists()


def test_a_damaged_event_page_ends_the_coupon_scoring_with_one_line_naming_it(tracking_uri, tmp_path):
    """`batch-score --coupons-out` read its events and shoppers unchecked: a damaged page escaped as
    pyarrow's traceback. Now one line naming the part, and nothing published: the lists were published
    before the coupon scoring met the page (new lists beside the old coupon scores); both are staged
    and published together now."""
    from features.synth import generate_marketplace
    from tests.features.conftest import THREE_PARTS
    from tests.training.test_batch_scoring import _register_recommender
    from training.uplift import train_uplift_model

    market = tmp_path / "m"
    generate_marketplace(market, THREE_PARTS, seed=5)
    train_uplift_model(market, tracking_uri=tracking_uri, registered_name="crosscart-uplift")
    _register_recommender(tracking_uri)
    part = sorted((market / "events").glob("*.parquet"))[1]
    damage_page(part, "shopper_id")
    args = ["batch-score", "--model", "recs", "--tracking-uri", tracking_uri, "--cluster", ""]
    args += ["--alias", "champion", "--out", str(tmp_path / "lists"), "--data", str(market)]
    result = CliRunner().invoke(app, [*args, "--coupons-out", str(tmp_path / "coupons")])
    assert_error_line_naming(result, part)
    assert not (tmp_path / "coupons").exists() and not (tmp_path / "lists").exists()


def test_a_bad_input_files_message_is_one_line():
    """pyarrow's messages run over lines ("...don't know what type: \\nDeserializing page header
    failed."); the command prints the message as its one `error:` line."""
    from pathlib import Path

    from commerce.inputs import BadInputFile

    problem = "unreadable data (Couldn't deserialize thrift: \nDeserializing page header failed.)"
    message = str(BadInputFile(Path("/data/products.parquet"), problem))
    assert message == (
        "/data/products.parquet: unreadable data (Couldn't deserialize thrift: Deserializing page header "
        "failed.)"
    )


@pytest.mark.parametrize(
    ("error", "decoded_again"),
    [
        (OSError("Corrupt snappy compressed data."), True),
        (OSError(28, "No space left on device", "/out/part-00000.parquet"), False),
    ],
    ids=["decoding error no input reproduces", "the host's error (errno)"],
)
def test_traced_to_inputs_blames_an_input_only_when_one_reproduces_the_error(
    tiny_market, monkeypatch, error, decoded_again
):
    """A decoding error that no input reproduces (the inputs whole) is raised unchanged, a bug's; an
    OSError with an errno (a full disk while writing) is the host's, left to the command (one `cannot
    write` line) without decoding the inputs again."""
    from commerce import inputs

    checked = []
    check_file = inputs.check_file
    monkeypatch.setattr(
        inputs, "check_file", lambda path, *a, **k: (checked.append(path), check_file(path, *a, **k))
    )
    with pytest.raises(OSError) as raised:
        with inputs.traced_to_inputs(tiny_market / "events", tiny_market / "products.parquet"):
            raise error
    assert raised.value is error
    expected = [tiny_market / "events" / "part-00000.parquet", tiny_market / "products.parquet"]
    assert checked == (expected if decoded_again else [])


def test_traced_to_inputs_names_the_damaged_part(tiny_market, tmp_path):
    from commerce.inputs import BadInputFile, traced_to_inputs

    market = tmp_path / "market"
    shutil.copytree(tiny_market, market)
    damage_page(market / "shoppers.parquet", "region")
    with pytest.raises(BadInputFile, match="shoppers.parquet: unreadable data") as raised:
        with traced_to_inputs(market / "events", market / "shoppers.parquet"):
            pd.read_parquet(market / "shoppers.parquet")
    assert raised.value.path == market / "shoppers.parquet"
