"""Deterministic variant assignment: hash(salt + unit id) -> [0, 1), bucketed by traffic weights.

Pure standard-library code so every API replica gives the same answer with no shared state and no
start-up cost. Python's `hash()` is salted per process, so sha256 is used instead.

Layers make experiments mutually exclusive: a unit's position in a layer is hashed with the layer's
salt, and each experiment in the layer owns a disjoint slice `[traffic_start, traffic_end)` of it.
The variant is then hashed with the experiment's own salt, independent of the layer position.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import accumulate

_SCALE = float(1 << 64)


def unit_hash(salt: str, unit_id: str) -> float:
    """A uniform number in [0, 1) fixed by (salt, unit id): the first 64 bits of sha256."""
    digest = hashlib.sha256(f"{salt}:{unit_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


@dataclass(frozen=True)
class ExperimentSpec:
    """What assignment needs to know about one running experiment (no database, no I/O).

    `traffic_salt` places units on the experiment's layer (the layer's salt, shared by the experiments
    of one layer); without a layer it defaults to a salt of the experiment's own.
    """

    name: str
    salt: str
    variants: tuple[str, ...]
    weights: tuple[float, ...]
    traffic_start: float = 0.0
    traffic_end: float = 1.0
    traffic_salt: str = ""
    layer: str | None = None
    _bounds: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.name or not self.salt:
            raise ValueError("an experiment needs a name and a salt")
        if len(self.variants) < 2:
            raise ValueError(f"experiment {self.name!r} needs at least two variants")
        if len(set(self.variants)) != len(self.variants):
            raise ValueError(f"experiment {self.name!r} has duplicate variant names")
        if len(self.weights) != len(self.variants):
            raise ValueError(
                f"experiment {self.name!r}: {len(self.weights)} weights for {len(self.variants)} variants"
            )
        if any(not w > 0 for w in self.weights):
            raise ValueError(f"experiment {self.name!r}: weights must be positive, got {self.weights}")
        if not 0.0 <= self.traffic_start < self.traffic_end <= 1.0:
            raise ValueError(
                f"experiment {self.name!r}: traffic slice must satisfy "
                f"0 <= start < end <= 1, got [{self.traffic_start}, {self.traffic_end})"
            )
        if not self.traffic_salt:
            object.__setattr__(self, "traffic_salt", f"{self.salt}#traffic")
        total = sum(self.weights)
        # Cumulative upper bounds of each variant's bucket; the last is exactly 1.0.
        bounds = [c / total for c in accumulate(self.weights)]
        bounds[-1] = 1.0
        object.__setattr__(self, "_bounds", tuple(bounds))

    @property
    def expected_shares(self) -> dict[str, float]:
        """Each variant's share of assigned units, for the sample-ratio-mismatch check."""
        total = sum(self.weights)
        return {v: w / total for v, w in zip(self.variants, self.weights, strict=True)}

    @classmethod
    def from_config(cls, config: Mapping) -> ExperimentSpec:
        """Build from the plain dict `commerce.experiments.Experiment.as_config()` returns (or its JSON)."""
        variants = config["variants"]
        return cls(
            name=config["name"],
            salt=config["salt"],
            variants=tuple(v["name"] for v in variants),
            weights=tuple(float(v["weight"]) for v in variants),
            traffic_start=float(config.get("traffic_start", 0.0)),
            traffic_end=float(config.get("traffic_end", 1.0)),
            traffic_salt=config.get("traffic_salt") or "",
            layer=config.get("layer"),
        )


def assign(spec: ExperimentSpec, unit_id: str) -> str | None:
    """The unit's variant, or None when the unit falls outside the experiment's traffic slice."""
    unit_id = str(unit_id)
    position = unit_hash(spec.traffic_salt, unit_id)
    if not spec.traffic_start <= position < spec.traffic_end:
        return None
    return spec.variants[bisect_right(spec._bounds, unit_hash(spec.salt, unit_id))]


def assign_all(specs: Iterable[ExperimentSpec], unit_id: str) -> dict[str, str]:
    """Variants of every experiment the unit is in, by experiment name (for a response header/body)."""
    out: dict[str, str] = {}
    for spec in specs:
        variant = assign(spec, unit_id)
        if variant is not None:
            out[spec.name] = variant
    return out
