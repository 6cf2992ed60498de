"""Loaders: named columns, both time formats, MovieLens files, and every dropped row accounted for."""

from __future__ import annotations

import pandas as pd
import pytest

from features.loaders import (
    MOVIELENS_GENRES,
    _read_columns,
    load_events,
    load_movielens,
    load_movielens_items,
    load_sales,
    load_synthetic,
)


def test_csv_with_odd_column_names_iso_and_unix_times(tmp_path):
    path = tmp_path / "orders.csv"
    path.write_text(
        "Kunde,Artikel,Zeit,Art,Menge\n"
        "0042,SKU-1,2024-03-01T10:00:00Z,purchase,2\n"
        "0042,SKU-2,1709287200,view,1\n"  # 2024-03-01 10:00:00 UTC as unix seconds
        "0043,SKU-1,2024-03-02 08:30:00+08:00,purchase,-1\n"  # a return
    )
    events, report = load_events(
        path, user_col="Kunde", item_col="Artikel", time_col="Zeit", event_col="Art", value_col="Menge"
    )
    assert list(events.columns) == ["user_id", "item_id", "ts", "event_type", "value"]
    assert events["user_id"].tolist() == ["0042", "0042", "0043"]  # leading zeros survive
    assert events["ts"].tolist() == [
        pd.Timestamp("2024-03-01 10:00", tz="UTC"),
        pd.Timestamp("2024-03-01 10:00", tz="UTC"),
        pd.Timestamp("2024-03-02 00:30", tz="UTC"),
    ]
    assert events["value"].tolist() == [2.0, 1.0, -1.0]
    assert report.rows_read == 3 and report.rows_kept == 3 and report.dropped == {}
    assert report.notes == {"negative value (returns)": 1}


def test_malformed_rows_are_counted_by_reason(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text(
        "user,item,time,qty\n"
        "u1,p1,2024-01-01,1\n"
        ",p1,2024-01-01,1\n"  # missing user
        "u2,,2024-01-01,1\n"  # missing item
        "u3,p2,yesterday,1\n"  # bad timestamp
        "u4,p2,2024-01-02,lots\n"  # bad value
        "u5,p3,2024-01-02,1,extra\n"  # wrong number of fields
        "u6,p3,2024-01-03,\n"  # empty value
        "u7,p3,1709287200000,1\n"  # milliseconds, not seconds: out of range -> bad timestamp
    )
    events, report = load_events(path, user_col="user", item_col="item", time_col="time", value_col="qty")
    assert events["user_id"].tolist() == ["u1"]
    assert report.dropped == {
        "missing id": 2,
        "bad timestamp": 2,
        "bad value": 2,
        "wrong number of fields": 1,
    }
    assert report.rows_read == 8 and report.rows_kept == 1
    assert "2 bad value" in report.summary() and "kept 1" in report.summary()


def test_parquet_and_missing_columns(tmp_path):
    frame = pd.DataFrame(
        {"buyer": [1, 2], "sku": ["a", "b"], "when": pd.to_datetime(["2024-01-01", "2024-01-02"])}
    )
    frame.to_parquet(tmp_path / "ev.parquet")
    events, report = load_events(tmp_path / "ev.parquet", user_col="buyer", item_col="sku", time_col="when")
    assert events["user_id"].tolist() == ["1", "2"]
    assert events["ts"].iloc[1] == pd.Timestamp("2024-01-02", tz="UTC")
    assert report.rows_kept == 2
    with pytest.raises(ValueError, match="no column"):
        load_events(tmp_path / "ev.parquet", user_col="user", item_col="sku")
    with pytest.raises(FileNotFoundError):
        load_events(tmp_path / "nope.csv", user_col="a", item_col="b")


def test_movielens_ratings_and_items(tmp_path):
    (tmp_path / "u.data").write_text("196\t242\t3\t881250949\n186\t302\t3\n22\t377\t1\t878887116\n")
    events, report = load_movielens(tmp_path / "u.data")
    assert events["item_id"].tolist() == ["242", "377"]
    assert events["value"].tolist() == [3.0, 1.0]
    assert events["ts"].iloc[0] == pd.Timestamp(881250949, unit="s", tz="UTC")
    assert report.dropped == {"wrong number of fields": 1}  # the short row has no time field

    flags = ["0"] * len(MOVIELENS_GENRES)
    flags[MOVIELENS_GENRES.index("Comedy")] = "1"
    line = "|".join(["7", "Café au lait (1993)", "01-Jan-1993", "", "http://x", *flags])
    (tmp_path / "u.item").write_bytes((line + "\n").encode("latin-1"))
    items = load_movielens_items(tmp_path / "u.item")
    assert items.index.tolist() == ["7"]
    assert items.loc["7", "title"] == "Café au lait (1993)"
    assert items.loc["7", "Comedy"] == 1 and items.loc["7", "Drama"] == 0
    assert items.loc["7", "release_date"] == pd.Timestamp("1993-01-01")


def test_synthetic_directory_keeps_interactions_only(tmp_path):
    (tmp_path / "events").mkdir()
    pd.DataFrame(
        {
            "event_id": ["e1", "e2", "e3", "e4"],
            "ts": pd.to_datetime(["2024-01-01"] * 4, utc=True),
            "shopper_id": ["s1", "s1", "s2", "s2"],
            "product_id": ["p1", None, "p1", "p2"],
            "event_type": ["view", "search", "purchase", "purchase"],
            "quantity": pd.array([1, 0, 2, -1], dtype="int32"),
            "value": [0.0, 0.0, 20.0, -10.0],
        }
    ).to_parquet(tmp_path / "events" / "part-0.parquet")
    pd.DataFrame({"product_id": ["p1", "p2"], "brand": ["a", "b"]}).to_parquet(tmp_path / "products.parquet")
    pd.DataFrame({"shopper_id": ["s1", "s2"], "region": ["east", "west"]}).to_parquet(
        tmp_path / "shoppers.parquet"
    )
    events, report, products, shoppers = load_synthetic(tmp_path)
    assert events["event_type"].tolist() == ["view", "purchase", "purchase"]
    assert events["value"].tolist() == [1.0, 2.0, -1.0]  # quantity, so returns are negative
    assert report.notes["skipped non-interaction events"] == 1
    assert report.dropped == {}
    assert products.loc["p2", "brand"] == "b" and shoppers.loc["s1", "region"] == "east"


def test_shop_export_time_layouts_are_read_and_noted(tmp_path):
    # UCI-Online-Retail style: month first, no seconds; 13/1 cannot be day-first's month, so the guess is
    # month-first by evidence, not by the tie rule.
    path = tmp_path / "retail.csv"
    path.write_text(
        "CustomerID,StockCode,InvoiceDate\n"
        "12346,85123A,12/1/2010 8:26\n"
        "12347,71053,12/13/2010 17:05\n"
        "12347,84406B,not a date\n"
    )
    events, report = load_events(path, user_col="CustomerID", item_col="StockCode", time_col="InvoiceDate")
    assert list(events["ts"]) == [
        pd.Timestamp("2010-12-01 08:26", tz="UTC"),
        pd.Timestamp("2010-12-13 17:05", tz="UTC"),
    ]
    assert report.dropped == {"bad timestamp": 1}
    assert report.notes["times read as %m/%d/%Y %H:%M"] == 2


def test_an_explicit_time_format_wins_over_the_guess(tmp_path):
    path = tmp_path / "eu.csv"
    path.write_text("u,i,t\na,x,02/03/2024 10:00\nb,y,04/05/2024 11:30\n")
    events, _ = load_events(path, user_col="u", item_col="i", time_col="t", time_format="%d/%m/%Y %H:%M")
    assert list(events["ts"]) == [
        pd.Timestamp("2024-03-02 10:00", tz="UTC"),
        pd.Timestamp("2024-05-04 11:30", tz="UTC"),
    ]


def test_text_columns_are_read_once_per_distinct_value(tmp_path):
    """A text file's columns are categories (a string a row cost ~250 bytes a row on Favorita's
    train.csv), and the rules read per row still hold: the unix unit is picked by the median of the
    rows (5 of 8 in milliseconds), not of the distinct values (3 of 4 in seconds)."""
    path = tmp_path / "train.csv"
    path.write_text(
        "id,date,store_nbr,item_nbr,unit_sales\n"
        "0,1433221332117,1, 007 ,2\n"
        "1,1433221332117,2,007,1.5\n"
        "2,1433221332117,1,008,-1\n"
        "3,1433221332117,2,008,3\n"
        "4,1433221332117,1,009,1\n"
        "5,1433221332,1,009,1\n"  # seconds among milliseconds: a bad timestamp
        "6,1433221333,1,007,1\n"
        "7,1433221334,1,,1\n"  # no item
    )
    raw, _, _ = _read_columns(path, ["item_nbr", "date", "unit_sales"], None)
    assert all(isinstance(dtype, pd.CategoricalDtype) for dtype in raw.dtypes)
    assert raw["date"].cat.categories.tolist() == ["1433221332117", "1433221332", "1433221333", "1433221334"]
    sales, report = load_sales(path, item_col="item_nbr", time_col="date", quantity_col="unit_sales")
    assert sales["item_id"].tolist() == ["007", "007", "008", "008", "009"]
    assert sales["item_id"].dtype == object
    assert (sales["ts"] == pd.Timestamp("2015-06-02 05:02:12.117", tz="UTC")).all()
    assert sales["quantity"].tolist() == [2.0, 1.5, -1.0, 3.0, 1.0]
    assert report.dropped == {"bad timestamp": 2, "missing id": 1}
    assert report.notes == {"negative value (returns)": 1, "times read as unix milliseconds": 5}
