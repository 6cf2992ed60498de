"""A raw e-commerce click stream shaped like the public ones session-rec evaluates on (RetailRocket,
Diginetica, RSC15), for checking session models and `crosscart evaluate session` without those files.

What makes real streams hard, and is built in here:
- power-law popularity (Zipf over topics and within each topic) with items launched over time and
  fading after launch, so recent sessions matter and many items are clicked only once or twice;
- very short visits: about 40% one click, 25% two clicks, and a long browsing tail;
- repeated clicks (a visit goes back to an item it saw), item-to-item successors (the next page most
  shoppers open after an item) and topic switches within a visit;
- stray clicks on random catalog items.

Vectorised over sessions: one numpy pass per click position, no per-click Python.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

DAY = 86_400.0
EPOCH = 1_700_000_000.0  # the stream's first second (Unix time)


@dataclass(frozen=True)
class StreamShape:
    """Knobs of the stream; defaults give the mix described in the module docstring."""

    items_per_topic: int = 40
    topic_zipf: float = 0.9
    item_zipf: float = 1.1
    fade_days: float = 8.0  # an item's pull halves about every fade_days x ln 2 after launch
    one_click_share: float = 0.4  # geometric length: P(1) = this
    long_visit_share: float = 0.1  # visits with an extra geometric(long_visit_extra) clicks
    long_visit_extra: float = 0.1
    repeat: float = 0.15  # next click repeats an earlier click of the visit
    successor: float = 0.3  # next click is the current item's usual successor
    switch: float = 0.08  # next click starts a new topic
    stray: float = 0.02  # next click is any catalog item
    mean_gap_seconds: float = 60.0


def click_stream(
    n_sessions: int, n_items: int, days: int = 30, seed: int = 0, shape: StreamShape | None = None
) -> pd.DataFrame:
    """Clicks as (session_id: str, item_id: str, ts: float Unix seconds), sessions in start order."""
    shape = shape or StreamShape()
    if n_sessions < 1 or n_items < 2 or days < 1:
        raise ValueError("need at least one session, two items and one day")
    rng = np.random.default_rng(seed)
    n_topics = max(1, n_items // shape.items_per_topic)
    topic = np.sort(rng.integers(0, n_topics, n_items))  # items grouped by topic
    topic_start = np.searchsorted(topic, np.arange(n_topics + 1))
    within = np.arange(n_items) - topic_start[topic]
    base = rng.permutation(n_topics)[topic] + 1.0
    weight = base**-shape.topic_zipf * (rng.permuted(within) + 1.0) ** -shape.item_zipf
    launch = rng.uniform(-days, days, n_items) * DAY
    successor = topic_start[topic] + rng.integers(0, np.maximum(np.diff(topic_start)[topic], 1))

    # per-day pull of every item, one cumulative array over (day, item)
    day_mid = (np.arange(days) + 0.5) * DAY
    age = day_mid[:, None] - launch[None, :]
    pull = np.where(age >= 0, weight * np.exp(-np.maximum(age, 0) / (shape.fade_days * DAY)), 0.0)
    pull[:, weight.argmax()] += 1e-12  # no day without any launched item
    cum = np.cumsum(pull.ravel())
    before = np.concatenate([[0.0], cum])

    def draw(day: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """An item in [lo, hi) of each day's row, by that day's pull (a random one if none pulls)."""
        a, b = day * n_items + lo, day * n_items + hi
        total = before[b] - before[a]
        pick = np.searchsorted(cum, before[a] + rng.random(len(day)) * total, side="right")
        fallback = lo + rng.integers(0, np.maximum(hi - lo, 1))
        return np.where(total > 0, np.clip(pick, a, b - 1) - day * n_items, fallback)

    start = np.sort(rng.uniform(0, days * DAY, n_sessions))
    day = np.minimum((start // DAY).astype(np.int64), days - 1)
    length = rng.geometric(shape.one_click_share, n_sessions)
    long_visit = rng.random(n_sessions) < shape.long_visit_share
    length[long_visit] += rng.geometric(shape.long_visit_extra, int(long_visit.sum()))
    max_len = int(length.max())
    clicks = np.full((n_sessions, max_len), -1, dtype=np.int64)
    everything_lo, everything_hi = np.zeros(n_sessions, np.int64), np.full(n_sessions, n_items)
    clicks[:, 0] = draw(day, everything_lo, everything_hi)
    current_topic = topic[clicks[:, 0]]
    for j in range(1, max_len):
        live = np.flatnonzero(length > j)
        if len(live) == 0:
            break
        last = clicks[live, j - 1]
        r = rng.random(len(live))
        cuts = np.cumsum([shape.repeat, shape.successor, shape.switch, shape.stray])
        nxt = np.empty(len(live), dtype=np.int64)
        rep = r < cuts[0]
        nxt[rep] = clicks[live[rep], rng.integers(0, j, int(rep.sum()))]
        suc = (r >= cuts[0]) & (r < cuts[1])
        nxt[suc] = successor[last[suc]]
        new = (r >= cuts[1]) & (r < cuts[2])
        nxt[new] = draw(day[live[new]], everything_lo[: new.sum()], everything_hi[: new.sum()])
        stray = (r >= cuts[2]) & (r < cuts[3])
        nxt[stray] = rng.integers(0, n_items, int(stray.sum()))
        same = r >= cuts[3]
        t = current_topic[live[same]]
        nxt[same] = draw(day[live[same]], topic_start[t], topic_start[t + 1])
        clicks[live, j] = nxt
        current_topic[live[new]] = topic[nxt[new]]

    session = np.repeat(np.arange(n_sessions), length)
    position = np.arange(len(session)) - np.repeat(np.cumsum(length) - length, length)
    items = clicks[session, position]
    gaps = rng.exponential(shape.mean_gap_seconds, len(session))
    gaps[position == 0] = 0.0
    offset = np.cumsum(gaps) - np.repeat(np.cumsum(gaps)[np.cumsum(length) - length], length)
    labels = rng.permutation(n_items)  # ids say nothing about topic or popularity
    return pd.DataFrame(
        {
            "session_id": np.char.add("v", session.astype(str)),
            "item_id": np.char.add("i", labels[items].astype(str)),
            "ts": EPOCH + start[session] + offset,
        }
    )
