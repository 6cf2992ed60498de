"""Next-item evaluation of session models, session-rec's protocol (Ludewig et al., UMUAI 2021).

- Split: `last-days:N` sends every session whose last click falls in the final N days of the data to
  test, the rest to train (session-rec's `split_data`); or a separate test file.
- Test clicks on items never seen in training are dropped, then test sessions with fewer than 2 clicks.
- For each test session x1..xL and each i < L, the model ranks all training items from the prefix
  x1..xi; the target is x(i+1). HR@k: share of predictions whose target is in the top k; MRR@k: mean
  of 1/rank, 0 beyond k. Repeated clicks stay (the next click may repeat an earlier one).
- Training sessions are used as they come: repeated clicks, one-click sessions and items seen once are
  kept, as in a raw click stream. Rows missing a session, item or time are dropped (and counted).
- `auto` tunes on the newest training sessions only (models.sessions.auto): the test split stays unseen.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.loaders import LoadReport, load_events
from models.sessions import SessionData, SessionRecommender, make_session_model
from models.sessions.evaluation import hit_rate_and_mrr, target_ranks

DAY = 86_400.0
DEFAULT_MODELS = ("pop", "spop", "sr", "vsknn", "stan", "vstan", "auto")


@dataclass(frozen=True)
class Clicks:
    """Clicks as (session_id, item_id, ts: float Unix seconds), with what the loader dropped."""

    frame: pd.DataFrame
    report: LoadReport


def load_clicks(
    spec: str,
    *,
    session_col: str,
    item_col: str,
    time_col: str,
    event_col: str | None = None,
    event_types: Iterable[str] | None = None,
    time_format: str | None = None,
    time_offset_col: str | None = None,
) -> Clicks:
    """Read `events:FILE` (CSV or Parquet). Times may be Unix seconds or ISO-8601 (or a common shop
    layout), plus `time_offset_col` milliseconds (Diginetica); `event_types` keeps only those types of
    `event_col` (e.g. views of a mixed event log)."""
    kind, sep, location = spec.partition(":")
    if kind != "events" or not sep or not location:
        raise ValueError(f"bad data spec {spec!r}; expected events:FILE")
    events, report = load_events(
        Path(location), user_col=session_col, item_col=item_col, time_col=time_col,
        event_col=event_col, time_format=time_format, time_offset_col=time_offset_col,
    )  # fmt: skip
    if event_types is not None:
        if event_col is None:
            raise ValueError("event types need the event type column (--event-col)")
        keep = events["event_type"].isin(list(event_types))
        report.add_dropped("other event type", int((~keep).sum()))
        events = events[keep]
    seconds = events["ts"].astype("int64").to_numpy() / 1e9
    frame = pd.DataFrame(
        {"session_id": events["user_id"].to_numpy(), "item_id": events["item_id"].to_numpy(), "ts": seconds}
    )
    return Clicks(frame, report)


def split_last_days(frame: pd.DataFrame, days: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test): sessions ending in the last `days` days of the data are test. A split leaving
    either empty is refused; when the clicks span less than `days`, saying so: times that are not unix
    seconds (Tmall's month and day, `829`) read as seconds span minutes."""
    if days <= 0:
        raise ValueError("last-days needs a positive number of days")
    session_end = frame.groupby("session_id", sort=False)["ts"].transform("max")
    is_test = (session_end >= frame["ts"].max() - days * DAY).to_numpy()
    if is_test.all() or not is_test.any():
        span = float(frame["ts"].max() - frame["ts"].min()) if len(frame) else 0.0
        short = span < days * DAY
        raise ValueError(
            "the split leaves no training or no test clicks"
            + (f": the clicks span {span:g} seconds (not unix seconds? give --time-format)" if short else "")
        )
    return frame[~is_test], frame[is_test]


def parse_split(text: str) -> float:
    kind, _, value = text.partition(":")
    try:
        days = float(value)
    except ValueError:
        days = float("nan")
    if kind != "last-days" or not days > 0:
        raise ValueError(f"bad split {text!r}; expected last-days:N with N > 0")
    return days


def held_out_sessions(train: SessionData, test: pd.DataFrame) -> SessionData:
    """Test clicks restricted to training items, then sessions of at least 2 clicks."""
    data = SessionData.from_frame(test, "session_id", "item_id", "ts", item_ids=train.item_ids)
    return data.select(np.arange(data.n_sessions), min_length=2)


def cutoffs_for(k: int) -> tuple[int, ...]:
    """The list lengths reported: k and 10 (the contract's hr@10 / mrr@10), longest first."""
    return tuple(sorted({k, 10}, reverse=True))


def evaluate_session_model(model: SessionRecommender, test: SessionData, k: int = 20) -> dict:
    """HR and MRR at each cutoff over every next-item prediction, plus the p99 time of one prediction."""
    cutoffs = cutoffs_for(k)
    ranks, timings = target_ranks(lambda prefix: model.rank_codes(prefix, cutoffs[0])[0], test)
    if not len(ranks):
        raise ValueError("no test session has two clicks on training items; nothing to evaluate")
    row: dict[str, float | int | str] = {}
    for cutoff in cutoffs:
        row[f"hr@{cutoff}"], row[f"mrr@{cutoff}"] = hit_rate_and_mrr(ranks, cutoff)
    row["n_predictions"] = len(ranks)
    row["n_sessions"] = test.n_sessions
    row["predict_ms_p99"] = float(np.percentile(timings * 1000.0, 99))
    return row


def evaluate_session_models(
    names: Iterable[str], train: pd.DataFrame, test: pd.DataFrame, k: int = 20
) -> Iterator[dict]:
    """Fit each named model on `train`, score it on `test`; one row per model, as soon as it is done."""
    train_data = SessionData.from_frame(train, "session_id", "item_id", "ts")
    test_data = held_out_sessions(train_data, test)
    for name in names:
        model = make_session_model(name)
        started = time.perf_counter()
        model.fit(train_data)
        fit_seconds = time.perf_counter() - started
        scores = evaluate_session_model(model, test_data, k)
        row = {"model": name, **scores, "fit_seconds": fit_seconds}
        if hasattr(model, "chosen_"):  # auto: what the validation split picked
            row["chosen"] = {"model": model.chosen_[0], "params": model.chosen_[1]}
        yield row
