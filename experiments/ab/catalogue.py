"""The metric catalogue: one TOML file (experiments/ab/metrics.toml by default) that defines every
metric the experiment analysis knows, with its unit, good direction and guardrail threshold."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

DEFAULT_PATH = Path(__file__).with_name("metrics.toml")
UNIT_COLUMNS = ("converted", "purchases", "revenue", "clicks", "exposures")
DIRECTIONS = ("increase", "decrease")


@dataclass(frozen=True)
class Guardrail:
    harm: str  # the harmful direction
    max_relative_change: float  # relative change in the harmful direction tolerated before "breached"


@dataclass(frozen=True)
class MetricSpec:
    name: str
    description: str
    unit: str
    kind: str  # "mean" or "ratio"
    numerator: str
    denominator: str | None
    direction: str
    guardrail: Guardrail | None

    @property
    def definition(self) -> tuple[str, str, str | None]:
        return self.kind, self.numerator, self.denominator


def _spec(name: str, raw: dict) -> MetricSpec:
    def need(key):
        if key not in raw:
            raise ValueError(f"metric {name!r}: missing {key!r}")
        return raw[key]

    kind, direction = need("kind"), need("direction")
    num, den = need("numerator"), raw.get("denominator")
    if kind not in ("mean", "ratio"):
        raise ValueError(f"metric {name!r}: kind must be mean or ratio, got {kind!r}")
    if (kind == "ratio") != (den is not None):
        raise ValueError(f"metric {name!r}: a ratio needs a denominator, a mean must not have one")
    for col in filter(None, (num, den)):
        if col not in UNIT_COLUMNS:
            raise ValueError(f"metric {name!r}: {col!r} is not a per-unit column {UNIT_COLUMNS}")
    if direction not in DIRECTIONS:
        raise ValueError(f"metric {name!r}: direction must be one of {DIRECTIONS}")
    guard = raw.get("guardrail")
    if guard is not None:
        if guard.get("harm") not in DIRECTIONS or not guard.get("max_relative_change", -1) >= 0:
            raise ValueError(
                f"metric {name!r}: guardrail needs harm (increase|decrease), max_relative_change >= 0"
            )
        guard = Guardrail(guard["harm"], float(guard["max_relative_change"]))
    return MetricSpec(name, need("description"), need("unit"), kind, num, den, direction, guard)


@lru_cache(maxsize=8)
def load_catalogue(path: str | Path = DEFAULT_PATH) -> dict[str, MetricSpec]:
    """Metric name -> spec, from the TOML catalogue (checked; unknown columns are refused)."""
    try:
        raw = tomllib.loads(Path(path).read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    metrics = raw.get("metrics")
    if not metrics:
        raise ValueError(f"{path}: no [metrics.NAME] tables")
    return {name: _spec(name, spec) for name, spec in metrics.items()}
