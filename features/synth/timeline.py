"""The simulated period: daily session intensity (weekly rhythm, the discount season) and hours of the day.

Times are int64 microseconds since the Unix epoch, UTC, throughout the generator.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta

import numpy as np

US_PER_SECOND = 1_000_000
US_PER_DAY = 86_400 * US_PER_SECOND

# Monday..Sunday: weekends browse more.
WEEKDAY_WEIGHTS = np.array([0.92, 0.90, 0.94, 0.97, 1.05, 1.15, 1.12])
# Session starts per UTC hour; peaks at 12-14 UTC (20-22 h Beijing time) and a lunch bump at 04 UTC.
HOUR_WEIGHTS = np.array(
    [
        2.0,
        2.4,
        2.6,
        3.0,
        4.2,
        3.6,
        3.2,
        3.4,
        3.6,
        3.8,
        4.2,
        5.0,
        6.2,
        6.8,
        6.0,
        3.6,
        1.6,
        0.7,
        0.4,
        0.3,
        0.3,
        0.4,
        0.7,
        1.2,
    ]
)
SEASON_SESSION_BOOST = 1.8


def to_us(value: str | datetime) -> int:
    """An ISO date/time (UTC when naive) as epoch microseconds."""
    dt = datetime.fromisoformat(value) if isinstance(value, str) else value
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(round(dt.timestamp() * US_PER_SECOND))


@dataclass(frozen=True)
class Timeline:
    """`days` days from `start` (UTC midnight); one discount season [season_start, season_end)."""

    start: str = "2025-08-01"
    days: int = 122
    season_name: str = "Double 11"
    season_start: str = "2025-10-31"
    season_end: str = "2025-11-12"
    discount: float = 0.15

    def ending_on(self, day: date) -> Timeline:
        """This period moved by whole days so that it ends at the start (UTC) of `day`: its last day is
        the one before, the season keeps its place in it. The generator draws from the new dates (their
        weekdays), so one seed and one `day` always give the same marketplace."""
        shift = day - (datetime.fromisoformat(self.start).date() + timedelta(days=self.days))

        def moved(iso: str) -> str:
            return (datetime.fromisoformat(iso).date() + shift).isoformat()

        return replace(
            self,
            start=moved(self.start),
            season_start=moved(self.season_start),
            season_end=moved(self.season_end),
        )

    @property
    def start_us(self) -> int:
        return to_us(self.start)

    @property
    def end_us(self) -> int:
        return self.start_us + self.days * US_PER_DAY

    @property
    def season_us(self) -> tuple[int, int]:
        return to_us(self.season_start), to_us(self.season_end)

    def in_season(self, ts_us: np.ndarray) -> np.ndarray:
        lo, hi = self.season_us
        return (ts_us >= lo) & (ts_us < hi)

    def day_weights(self) -> np.ndarray:
        """Relative session intensity per day of the period."""
        day_start = self.start_us + np.arange(self.days, dtype=np.int64) * US_PER_DAY
        weekday = (day_start // US_PER_DAY + 3) % 7  # 1970-01-01 was a Thursday (index 3)
        return WEEKDAY_WEIGHTS[weekday] * np.where(self.in_season(day_start), SEASON_SESSION_BOOST, 1.0)

    def sample_times(self, rng: np.random.Generator, not_before_us: np.ndarray) -> np.ndarray:
        """One session start per entry, drawn from the intensity restricted to [not_before, end)."""
        cum = np.concatenate([[0.0], np.cumsum(self.day_weights())])
        first_day = np.clip((not_before_us - self.start_us) // US_PER_DAY, 0, self.days - 1)
        u = cum[first_day] + rng.random(len(not_before_us)) * (cum[-1] - cum[first_day])
        day = np.clip(np.searchsorted(cum, u, side="right") - 1, 0, self.days - 1)
        hour = rng.choice(24, size=len(day), p=HOUR_WEIGHTS / HOUR_WEIGHTS.sum())
        within = rng.integers(0, 3600 * US_PER_SECOND, size=len(day))
        ts = self.start_us + day * US_PER_DAY + hour * 3600 * US_PER_SECOND + within
        return np.maximum(ts, not_before_us + 60 * US_PER_SECOND)

    def active_share(self, not_before_us: np.ndarray) -> np.ndarray:
        """Share of the period's intensity that falls after each `not_before` (1 for earlier)."""
        cum = np.concatenate([[0.0], np.cumsum(self.day_weights())])
        first_day = np.clip((not_before_us - self.start_us) // US_PER_DAY, 0, self.days)
        return (cum[-1] - cum[first_day]) / cum[-1]
