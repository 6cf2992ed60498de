"""The session-based family: fit on past sessions, recommend from the current session's item sequence.

A session is an ordered list of item ids (clicks, repeats included). Models work on integer item codes
internally (`rank_codes`), so offline evaluation and serving skip id lookups in the hot loop; `recommend`
is the id-level call everything else uses.

Artifacts are one joblib file {format, class, params, state} like the other recommenders (pickle
underneath: load only from a trusted registry).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import joblib
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from commerce.files import atomic_path

Ranked = list[tuple[str, float]]  # (item id, score), best first
ARTIFACT_FORMAT = "crosscart-session-recommender/1"


def to_unix_seconds(column: pd.Series) -> np.ndarray:
    """Times as float Unix seconds: numbers are taken as seconds, datetimes and ISO-8601 text are parsed
    (naive values read as UTC). Unreadable values raise."""
    if pd.api.types.is_numeric_dtype(column):
        return column.to_numpy(dtype=np.float64)
    if not pd.api.types.is_datetime64_any_dtype(column):
        text = column.astype(str)
        numeric = pd.to_numeric(text, errors="coerce")
        if numeric.notna().all():
            return numeric.to_numpy(dtype=np.float64)
        column = pd.to_datetime(text, utc=True, format="ISO8601")
    elif column.dt.tz is None:
        column = column.dt.tz_localize("UTC")
    return column.dt.tz_convert("UTC").astype("datetime64[ns, UTC]").astype("int64").to_numpy() / 1e9


@dataclass(frozen=True)
class SessionData:
    """Sessions as CSR over clicks: session s holds `items[indptr[s]:indptr[s + 1]]` in time order.

    `session_time` is each session's last click (Unix seconds), what "recent" neighbour sampling sorts by.
    """

    item_ids: np.ndarray  # code -> item id (object array)
    indptr: np.ndarray  # int64, n_sessions + 1
    items: np.ndarray  # int32 item codes, clicks in order
    session_time: np.ndarray  # float64, n_sessions

    @property
    def n_sessions(self) -> int:
        return len(self.indptr) - 1

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def session(self, s: int) -> np.ndarray:
        return self.items[self.indptr[s] : self.indptr[s + 1]]

    def select(self, sessions: np.ndarray, keep_click: np.ndarray | None = None, min_length: int = 1):
        """The given sessions (in that order), optionally only the clicks where `keep_click` (one flag per
        click of this data) holds, then only sessions left with at least `min_length` clicks."""
        flat, owner = segments(self.indptr, np.asarray(sessions, dtype=np.int64))
        if keep_click is not None:
            flat, owner = flat[keep_click[flat]], owner[keep_click[flat]]
        lengths = np.bincount(owner, minlength=len(sessions))
        long_enough = lengths >= min_length
        flat = flat[long_enough[owner]]
        indptr = np.concatenate([[0], np.cumsum(lengths[long_enough])]).astype(np.int64)
        return SessionData(
            self.item_ids, indptr, self.items[flat], self.session_time[np.asarray(sessions)[long_enough]]
        )

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        session_col: str = "session_id",
        item_col: str = "item_id",
        time_col: str = "ts",
        item_ids: np.ndarray | None = None,
    ) -> SessionData:
        """Group clicks into sessions ordered by time (ties keep file order). Ids are compared as text;
        rows missing a session, item or time are skipped. With `item_ids`, items outside that vocabulary
        are dropped (test data against a training vocabulary). Hash-based and vectorised: fine for tens of
        millions of clicks."""
        missing = [c for c in (session_col, item_col, time_col) if c not in frame.columns]
        if missing:
            raise ValueError(f"missing columns {missing}; have {list(frame.columns)}")
        complete = frame[[session_col, item_col, time_col]].notna().all(axis=1).to_numpy()
        if not complete.all():
            frame = frame[complete]
        items = frame[item_col].astype(str).to_numpy(dtype=object)
        sessions = frame[session_col].astype(str).to_numpy(dtype=object)
        times = to_unix_seconds(frame[time_col])
        if item_ids is None:
            codes, uniques = pd.factorize(items, sort=True)
            item_ids = np.asarray(uniques, dtype=object)
        else:
            item_ids = np.asarray(item_ids, dtype=object)
            codes = pd.Index(item_ids).get_indexer(items)
            keep = codes >= 0
            codes, sessions, times = codes[keep], sessions[keep], times[keep]
        session_codes = pd.factorize(sessions)[0]
        order = np.lexsort((np.arange(len(codes)), times, session_codes))
        session_codes, codes, times = session_codes[order], codes[order], times[order]
        counts = np.bincount(session_codes, minlength=session_codes.max() + 1 if len(session_codes) else 0)
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        last = times[indptr[1:] - 1] if len(codes) else np.empty(0)
        return cls(
            np.asarray(item_ids, dtype=object), indptr, codes.astype(np.int32), last.astype(np.float64)
        )


class SessionRecommender(BaseEstimator):
    """fit(SessionData) / recommend(item ids) / save / load.

    Subclasses implement `_fit(data)` and `_scores(codes)`, returning (candidate codes, scores) for a
    session given as item codes in click order; ranking, unknown ids and persistence live here once.
    """

    name = "session"

    def fit(self, data: SessionData) -> Self:
        if not isinstance(data, SessionData):
            raise TypeError(f"fit expects SessionData, got {type(data).__name__}")
        if data.n_sessions == 0 or len(data.items) == 0:
            raise ValueError("cannot fit on empty session data")
        self.item_ids_ = data.item_ids
        self.item_index_ = {item: i for i, item in enumerate(data.item_ids.tolist())}
        self._fit(data)
        return self

    @abstractmethod
    def _fit(self, data: SessionData) -> None: ...

    @abstractmethod
    def _scores(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def _check_fitted(self) -> None:
        if not hasattr(self, "item_ids_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted")

    def codes(self, items: Sequence[str]) -> np.ndarray:
        """Item codes of the known items of `items`, order kept (unknown items are skipped)."""
        self._check_fitted()
        index = self.item_index_
        return np.array([index[i] for i in items if i in index], dtype=np.int32)

    def rank_codes(
        self, codes: np.ndarray, n: int, exclude: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-n (codes, scores), best first; ties go to the lower code (deterministic)."""
        if len(codes) == 0:
            return np.empty(0, dtype=np.int64), np.empty(0)
        cand, scores = self._scores(codes)
        if exclude is not None and len(exclude):
            keep = ~np.isin(cand, exclude)
            cand, scores = cand[keep], scores[keep]
        keep = scores > 0
        cand, scores = cand[keep], scores[keep]
        if len(cand) > n:
            cut = np.argpartition(-scores, n - 1)[:n]
            cand, scores = cand[cut], scores[cut]
        order = np.lexsort((cand, -scores))
        return cand[order].astype(np.int64), scores[order].astype(np.float64)

    def recommend(self, items: Sequence[str], n: int = 20, exclude: Collection[str] = ()) -> Ranked:
        """Top-n next items for a session given as item ids in click order (unknown ids are ignored;
        a session with no known item gets an empty list, for callers to fill from popularity)."""
        if n < 1:
            raise ValueError("n must be positive")
        codes = self.codes(items)
        excluded = self.codes(list(exclude)) if exclude else None
        cand, scores = self.rank_codes(codes, n, excluded)
        ids = self.item_ids_
        return [(str(ids[c]), float(s)) for c, s in zip(cand.tolist(), scores.tolist(), strict=True)]

    def save(self, path: str | Path) -> None:
        self._check_fitted()
        state = {k: v for k, v in vars(self).items() if k.endswith("_") and k != "item_index_"}
        params = self.get_params()
        artifact = {"format": ARTIFACT_FORMAT, "class": type(self).__name__, "params": params, "state": state}
        with atomic_path(path) as tmp:  # a full disk leaves the previous artifact, not half of this one
            joblib.dump(artifact, tmp)

    @classmethod
    def _from_artifact(cls, artifact: dict[str, Any]) -> Self:
        model = cls(**artifact["params"])
        for key, value in artifact["state"].items():
            setattr(model, key, value)
        model.item_index_ = {item: i for i, item in enumerate(model.item_ids_.tolist())}
        return model


def segments(indptr: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat positions of the CSR rows `rows`, and for each position its index in `rows`."""
    starts, ends = indptr[rows], indptr[rows + 1]
    lengths = ends - starts
    owner = np.repeat(np.arange(len(rows)), lengths)
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(starts, lengths) + offsets, owner
