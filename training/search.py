"""Search spaces and grids for hyper-parameter search, as typed on the command line, driven by optuna.

Space (`--space`), parameters separated by commas:
- `factors=16..128:log`: integers (both bounds integers), sampled on a log scale with `:log`;
- `regularization=0.001..0.1:log`: floats;
- `weighting=cosine|bm25`: a choice.
Grid (`--grid`, repeatable; or several parameters separated by `;`): `k=10,50,100`.
Values are typed the same way as `--param k=v`: int, float, true/false, none, else string.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


def parse_value(text: str) -> Any:
    """'10' -> 10, '0.1' -> 0.1, 'true' -> True, 'none' -> None, anything else stays a string."""
    text = text.strip()
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def _split_pair(item: str, what: str) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    if not sep or not name.strip() or not value.strip():
        raise ValueError(f"{what} {item!r} is not NAME=VALUE")
    return name.strip(), value.strip()


def parse_params(pairs: Sequence[str]) -> dict[str, Any]:
    """`["factors=64", "regularization=0.01"]` -> {"factors": 64, "regularization": 0.01}."""
    params: dict[str, Any] = {}
    for pair in pairs:
        name, value = _split_pair(pair, "parameter")
        if name in params:
            raise ValueError(f"parameter {name!r} given twice")
        params[name] = parse_value(value)
    return params


@dataclass(frozen=True)
class Dimension:
    """One searched parameter: a numeric range (optionally log-scaled) or a set of choices."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: tuple[Any, ...] | None = None

    def suggest(self, trial) -> Any:
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.integer:
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log)


def parse_space(text: str) -> list[Dimension]:
    """Parse a `--space` string (grammar in the module docstring)."""
    dims: list[Dimension] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, spec = _split_pair(item, "space entry")
        if "|" in spec:
            dims.append(Dimension(name, choices=tuple(parse_value(v) for v in spec.split("|"))))
            continue
        bounds, _, scale = spec.partition(":")
        if scale not in ("", "log"):
            raise ValueError(f"space entry {item!r}: scale must be ':log' or nothing, got {scale!r}")
        low_text, dots, high_text = bounds.partition("..")
        low, high = parse_value(low_text), parse_value(high_text)
        if not dots or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
            raise ValueError(f"space entry {item!r} is not NAME=LOW..HIGH[:log] or NAME=A|B|C")
        if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
            raise ValueError(f"space entry {item!r}: need finite LOW < HIGH")
        if scale == "log" and low <= 0:
            raise ValueError(f"space entry {item!r}: a log scale needs LOW > 0")
        integer = isinstance(low, int) and isinstance(high, int)
        dims.append(Dimension(name, low, high, log=scale == "log", integer=integer))
    if not dims:
        raise ValueError("empty search space")
    names = [d.name for d in dims]
    if len(set(names)) != len(names):
        raise ValueError(f"search space names a parameter twice: {names}")
    return dims


def parse_grid(specs: Sequence[str]) -> dict[str, list[Any]]:
    """`["k=10,50,100", "shrink=0,10"]` (or one string joined by `;`) -> {"k": [10, 50, 100], ...}."""
    grid: dict[str, list[Any]] = {}
    for item in filter(None, (p.strip() for spec in specs for p in spec.split(";"))):
        name, values = _split_pair(item, "grid entry")
        if name in grid:
            raise ValueError(f"grid names {name!r} twice")
        grid[name] = [parse_value(v) for v in values.split(",") if v.strip()]
    if not grid:
        raise ValueError("empty grid")
    return grid


def grid_size(grid: dict[str, list[Any]]) -> int:
    return math.prod(len(v) for v in grid.values())


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination, in a stable order."""
    return [dict(zip(grid, combo, strict=True)) for combo in itertools.product(*grid.values())]


def make_study(direction: str, seed: int, grid: dict[str, list[Any]] | None = None):
    """An in-memory optuna study: TPE with a fixed seed, or a grid sampler over `grid`."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if grid is not None:
        sampler = optuna.samplers.GridSampler(grid, seed=seed)
    else:
        sampler = optuna.samplers.TPESampler(seed=seed)
    return optuna.create_study(direction=direction, sampler=sampler)
