"""Forecast evaluation: demand series, hand-computed metrics, the rolling-origin run, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from crosscart.cli import app
from experiments.forecast_metrics import coverage, mase, naive_scale, smape
from features.sales import demand_series, normalise_freq
from training.evaluate_forecast import evaluate_forecasters


def _sales(rows):
    return pd.DataFrame(
        {
            "item_id": [r[0] for r in rows],
            "ts": pd.to_datetime([r[1] for r in rows], utc=True),
            "quantity": [float(r[2]) for r in rows],
        }
    )


def test_demand_series_nets_returns_zero_fills_and_starts_at_first_sale():
    sales = _sales(
        [
            ("a", "2025-01-01", 3), ("a", "2025-01-02", -1),  # same week: 2
            ("a", "2025-01-20", 5),                            # a week with no sale in between: 0
            ("b", "2025-01-14", 1), ("b", "2025-01-15", -4),  # returns above sales: 0, not -3
        ]
    )  # fmt: skip
    series = demand_series(sales, "W")
    a = series[series.unique_id == "a"]
    b = series[series.unique_id == "b"]
    assert a["y"].tolist() == [2.0, 0.0, 0.0, 5.0]
    assert b["y"].tolist() == [0.0, 0.0]  # from b's first week to the file's last week
    assert a["ds"].iloc[0] == pd.Timestamp("2025-01-05")  # weeks end on Sunday (W-SUN)


def test_metrics_match_hand_computed_values():
    actual = np.array([0.0, 2.0, 4.0])
    forecast = np.array([0.0, 1.0, 6.0])
    # smape terms: 0 (both zero), 2*1/3, 2*2/10 -> mean * 100
    assert smape(actual, forecast) == pytest.approx(100 * (0 + 2 / 3 + 0.4) / 3)
    assert coverage(actual, np.array([0, 0, 5.0]), np.array([1, 3, 7.0])) == pytest.approx(2 / 3)
    errors = pd.DataFrame({"unique_id": ["x", "x", "y"], "cutoff": [1, 1, 1], "abs_error": [1.0, 3.0, 5.0]})
    scale = pd.Series([2.0, 0.0], index=pd.MultiIndex.from_tuples([("x", 1), ("y", 1)]))
    assert mase(errors, scale) == pytest.approx(1.0)  # x: 2/2; y skipped (zero scale)


def test_naive_scale_uses_history_up_to_the_cutoff_only():
    ds = pd.date_range("2025-01-05", periods=5, freq="W")
    series = pd.DataFrame({"unique_id": "x", "ds": ds, "y": [1.0, 3.0, 2.0, 10.0, 50.0]})
    cut = pd.DataFrame({"unique_id": ["x"], "cutoff": [ds[2]]})
    # |3-1|, |2-3| -> 1.5; the later jumps are not seen
    assert naive_scale(series, cut, 1).iloc[0] == pytest.approx(1.5)
    assert naive_scale(series, cut, 2).iloc[0] == pytest.approx(1.0)  # |2-1|


def test_seasonal_series_is_forecast_best_by_the_seasonal_models():
    days = pd.date_range("2025-01-01", periods=84, freq="D", tz="UTC")
    weekly = np.array([1, 1, 1, 1, 2, 8, 9], dtype=float)
    noise = np.random.default_rng(0).normal(0, 0.5, len(days))
    rows = [("s", d, weekly[i % 7] * 3 + noise[i]) for i, d in enumerate(days)]
    sales = pd.DataFrame(rows, columns=["item_id", "ts", "quantity"])
    rows, summary = evaluate_forecasters(
        demand_series(sales, "D"), ["seasonal_naive", "naive", "auto_ets"], freq="D", horizon=7
    )
    by = {r["model"]: r for r in rows}
    assert summary["season_length"] == 7
    # scaled by the in-sample seasonal naive error, the seasonal naive forecast sits near 1
    assert 0.5 < by["seasonal_naive"]["mase"] < 2.0
    assert by["naive"]["mase"] > 5 * by["seasonal_naive"]["mase"]
    assert by["auto_ets"]["mase"] < 2.0


def test_intermittent_models_beat_naive_on_noisy_demand():
    rng = np.random.default_rng(3)
    rows = []
    for i in range(40):
        rate = rng.gamma(1.5, 1.0)
        for day in rng.integers(0, 280, size=rng.poisson(rate * 40) + 1):
            rows.append((f"p{i}", pd.Timestamp("2025-01-01", tz="UTC") + pd.Timedelta(days=int(day)), 1))
    sales = pd.DataFrame(rows, columns=["item_id", "ts", "quantity"])
    results, summary = evaluate_forecasters(
        demand_series(sales, "W"), ["seasonal_naive", "imapa", "ensemble"], freq="W", horizon=4
    )
    by = {r["model"]: r for r in results}
    assert summary["n_series"] > 30
    assert by["imapa"]["mase"] < by["seasonal_naive"]["mase"]
    assert by["ensemble"]["mase"] < 1.0
    assert 0.5 < by["ensemble"]["coverage@80"] <= 1.0


def test_bad_arguments_are_clear():
    with pytest.raises(ValueError, match="unknown frequency"):
        normalise_freq("fortnight")
    sales = _sales([("a", "2025-01-01", 1), ("a", "2025-02-01", 1)])
    with pytest.raises(ValueError, match="periods of history"):
        evaluate_forecasters(demand_series(sales, "W"), ["naive"], freq="W", horizon=4)
    with pytest.raises(ValueError, match="unknown forecaster"):
        evaluate_forecasters(demand_series(sales, "W"), ["prophet"], freq="W", horizon=4)


def test_cli_prints_the_contracted_keys_per_model(tmp_path):
    rng = np.random.default_rng(0)
    lines = ["StockCode,InvoiceDate,Quantity", "85123A,not a date,3", ",12/1/2010 8:26,2"]
    for i in range(12):
        for day in rng.integers(0, 250, size=60):
            t = pd.Timestamp("2010-12-01 08:26") + pd.Timedelta(days=int(day))
            lines.append(
                f"{8500 + i},{t.month}/{t.day}/{t.year} {t.hour}:{t.minute:02d},{int(rng.integers(-1, 5))}"
            )
    path = tmp_path / "retail.csv"
    path.write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(
        app,
        ["evaluate", "forecast", "--data", f"events:{path}", "--item-col", "StockCode", "--time-col",
         "InvoiceDate", "--quantity-col", "Quantity", "--freq", "W", "--horizon", "4", "--models",
         "seasonal_naive,imapa", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [r["model"] for r in rows] == ["seasonal_naive", "imapa"]
    for row in rows:
        assert {"model", "mase", "smape", "coverage@80"} <= set(row)
        assert row["n_series"] == 12
    assert "1 bad timestamp" in result.stderr and "1 missing id" in result.stderr


def test_cli_refuses_a_missing_column(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("sku,when,qty\nA,2025-01-01,1\n")
    result = CliRunner().invoke(
        app,
        ["evaluate", "forecast", "--data", f"events:{path}", "--item-col", "sku", "--time-col", "when",
         "--quantity-col", "units", "--json"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "no column" in result.stderr


def test_global_model_learns_weekdays_and_the_promotion_calendar():
    rng = np.random.default_rng(5)
    days = pd.date_range("2025-01-01", periods=112, freq="D", tz="UTC")
    weekday = np.array([0.6, 0.6, 0.8, 0.8, 1.0, 1.8, 1.6])
    events = [(days[50], days[60]), (days[98], days[105])]  # the second falls in the held-out weeks
    boost = np.ones(len(days))
    for start, end in events:
        boost[(days >= start) & (days < end)] = 3.0
    rows = []
    for i in range(60):
        level = rng.gamma(2.0, 1.5)
        counts = rng.poisson(level * weekday[days.weekday] * boost)
        rows += [(f"p{i}", d, c) for d, c in zip(days, counts, strict=True) if c]
    sales = pd.DataFrame(rows, columns=["item_id", "ts", "quantity"])
    results, _ = evaluate_forecasters(
        demand_series(sales, "D"), ["seasonal_naive", "imapa", "lightgbm"], freq="D", horizon=7, n_windows=2,
        event_windows=events,
    )  # fmt: skip
    by = {r["model"]: r for r in results}
    assert by["lightgbm"]["mase"] < 0.8 * by["imapa"]["mase"]
    assert by["lightgbm"]["mase"] < 0.8 * by["seasonal_naive"]["mase"]
    assert 0.6 <= by["lightgbm"]["coverage@80"] <= 0.95


def _promotion_sales(events, n_items=40, days=112, lift=3.0, seed=7):
    """Daily unit sales with a weekday rhythm and `lift` times demand inside the event windows."""
    rng = np.random.default_rng(seed)
    index = pd.date_range("2025-01-01", periods=days, freq="D", tz="UTC")
    boost = np.ones(days)
    for start, end in events:
        boost[(index >= start) & (index < end)] = lift
    weekday = np.array([0.8, 0.8, 0.9, 1.0, 1.1, 1.3, 1.1])
    rows = []
    for i in range(n_items):
        counts = rng.poisson(rng.gamma(2.0, 1.5) * weekday[index.weekday] * boost)
        rows += [(f"p{i}", d, c) for d, c in zip(index, counts, strict=True) if c]
    return pd.DataFrame(rows, columns=["item_id", "ts", "quantity"]), index


def test_the_calendar_models_fit_only_on_history_before_each_origin(monkeypatch):
    import training.evaluate_forecast as ev

    seen = []

    def spy(real):
        def fit_and_forecast(history, freq, horizon, m, event_windows):
            out = real(history, freq, horizon, m, event_windows)
            seen.append((history["ds"].max(), out["ds"].min()))
            return out

        return fit_and_forecast

    for name, real in list(ev._CALENDAR_FORECASTS.items()):
        monkeypatch.setitem(ev._CALENDAR_FORECASTS, name, spy(real))
    sales, _ = _promotion_sales(
        [(pd.Timestamp("2025-03-01", tz="UTC"), pd.Timestamp("2025-03-08", tz="UTC"))]
    )
    series = demand_series(sales, "D")
    evaluate_forecasters(series, ["lightgbm", "calendar_level"], freq="D", horizon=7, n_windows=3)
    days = np.sort(series["ds"].unique())
    cutoffs = [days[len(days) - 21 - 1 + 7 * k] for k in range(3)]
    assert len(seen) == 6  # 2 models x 3 origins
    for last_seen, first_forecast in seen:
        assert last_seen in cutoffs  # the fit's history ends at an origin...
        assert first_forecast == last_seen + pd.Timedelta(days=1)  # ...and it forecasts the periods after it
    assert sorted({last for last, _ in seen}) == cutoffs


def test_cli_takes_an_events_calendar_and_the_calendar_model_uses_it(tmp_path):
    events = [
        (pd.Timestamp("2025-02-20", tz="UTC"), pd.Timestamp("2025-02-27", tz="UTC")),
        (pd.Timestamp("2025-04-16", tz="UTC"), pd.Timestamp("2025-04-20", tz="UTC")),  # held out
    ]
    sales, _ = _promotion_sales(events)
    path = tmp_path / "sales.csv"
    sales.assign(ts=sales["ts"].dt.strftime("%Y-%m-%d %H:%M")).to_csv(path, index=False)
    calendar = tmp_path / "calendar.csv"
    calendar.write_text("name,start,end\nspring,2025-02-20,2025-02-27\nflash,2025-04-16,2025-04-20\n")
    base = ["evaluate", "forecast", "--data", f"events:{path}", "--item-col", "item_id", "--time-col", "ts",
            "--quantity-col", "quantity", "--freq", "D", "--horizon", "7", "--windows", "2", "--models",
            "seasonal_naive,calendar_level", "--json"]  # fmt: skip

    def scores(args):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
        return {row["model"]: row for row in map(json.loads, lines)}

    blind, aware = scores(base), scores([*base, "--events-calendar", str(calendar)])
    assert {"model", "mase", "smape", "coverage@80"} <= set(aware["calendar_level"])
    assert aware["seasonal_naive"]["mase"] == pytest.approx(blind["seasonal_naive"]["mase"])
    assert aware["calendar_level"]["mase"] < 0.85 * blind["calendar_level"]["mase"]
    assert aware["calendar_level"]["mase"] < aware["seasonal_naive"]["mase"]
    assert 0.6 <= aware["calendar_level"]["coverage@80"] <= 0.95

    calendar.write_text("name,from,to\nspring,2025-02-20,2025-02-27\n")
    result = CliRunner().invoke(app, [*base, "--events-calendar", str(calendar)])
    assert result.exit_code == 2 and "start and end" in result.stderr
