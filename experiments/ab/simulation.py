"""Online tests on a simulated marketplace with known truth, to check the statistics themselves.

Each shopper has a latent keenness B ~ Beta with mean c_max (the larger arm CTR); under an arm with
mean CTR c their click probability per exposure is B * c / c_max, so the same shopper is keen (or
not) under both arms and the population CTR is exactly c. Exposures are 1 + Poisson(m - 1); clicks
turn into purchases with the arm's buy rate; order values are log-normal with the arm's mean. A
pre-period of the same shopper under the control arm gives the CUPED covariate. The true metric
values follow in closed form (`true_metrics`), so false-positive rate, power and CI coverage can be
measured. `simulate_units` draws the per-unit table directly (fast, for many runs); `simulate_events`
turns the very same draws into an event log in the documented schema.

`coupon_policy_scenario` builds the other kind of scenario from a generated marketplace
(`crosscart generate`): coupon policy A vs B, each shopper converting with the true probability the
generator's truth API (`features.synth.truth.coupon_response`) gives for that policy.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import special, stats

from experiments.ab import power as power_calc
from experiments.ab.analysis import analyze_units

START = pd.Timestamp("2026-01-01", tz="UTC")
VARIANTS = ("control", "treatment")


@dataclass(frozen=True)
class ArmTruth:
    """True behaviour of shoppers under one arm."""

    ctr: float  # mean click probability per exposure
    buy_rate: float  # purchase probability per click
    order_value: float  # mean CNY per purchase

    def __post_init__(self) -> None:
        if not (0 < self.ctr < 1 and 0 < self.buy_rate <= 1 and self.order_value > 0):
            raise ValueError(f"invalid arm truth {self}")


@dataclass(frozen=True)
class Scenario:
    """Two arms plus the population shape shared by both."""

    name: str
    control: ArmTruth
    treatment: ArmTruth
    mean_exposures: float = 4.0  # per shopper in the test window (at least 1)
    pre_exposures: float = 40.0  # per shopper in the (longer) pre-period that feeds CUPED
    concentration: float = 2.0  # Beta a + b of keenness: lower means more varied shoppers
    value_sigma: float = 0.6  # log-normal shape of order values

    def __post_init__(self) -> None:
        if (
            min(self.mean_exposures, self.pre_exposures) < 1
            or self.concentration <= 0
            or self.value_sigma < 0
        ):
            raise ValueError(f"invalid scenario {self.name!r}")

    def aa(self) -> Scenario:
        """The same scenario with the control arm on both sides (an A/A test)."""
        return replace(self, name=f"{self.name}-aa", treatment=self.control)

    @property
    def keenness(self):
        c_max = max(self.control.ctr, self.treatment.ctr)
        return stats.beta(c_max * self.concentration, (1 - c_max) * self.concentration)

    def click_scale(self, arm: ArmTruth) -> float:
        return arm.ctr / max(self.control.ctr, self.treatment.ctr)

    def truth(self, variant: str) -> dict[str, float]:
        return true_metrics(self, self.treatment if variant == VARIANTS[1] else self.control)

    def units(self, n_units: int, seed: int, shares=(0.5, 0.5)) -> pd.DataFrame:
        return simulate_units(self, n_units, seed, shares=shares)


SCENARIOS = {
    # Champion vs challenger recommender: the challenger's slates are clicked more often.
    "recommender": Scenario("recommender", ArmTruth(0.08, 0.25, 180.0), ArmTruth(0.096, 0.25, 180.0)),
    # Coupon policy A vs B: B's larger coupon converts more clicks but lowers the basket.
    "coupon": Scenario("coupon", ArmTruth(0.08, 0.25, 180.0), ArmTruth(0.08, 0.31, 165.0)),
}


def true_metrics(scenario: Scenario, arm: ArmTruth) -> dict[str, float]:
    """Population values of every analysed metric under `arm`, in closed form.

    With exposures E = 1 + Poisson(m - 1), E[s**E] = s * exp((m - 1)(s - 1)); with s = 1 - r b
    (r = click scale x buy rate, b the keenness) P(no purchase | b) = (1 - r b) exp(-(m - 1) r b), whose
    mean over b ~ Beta(a, c) is M(t) - r a / (a + c) 1F1(a + 1; a + c + 1; t) at t = -(m - 1) r, M being
    the Beta moment-generating function 1F1(a; a + c; t).
    """
    a, c = scenario.keenness.args
    r = scenario.click_scale(arm) * arm.buy_rate
    t = -(scenario.mean_exposures - 1) * r
    no_purchase = special.hyp1f1(a, a + c, t) - r * a / (a + c) * special.hyp1f1(a + 1, a + c + 1, t)
    orders = scenario.mean_exposures * arm.ctr * arm.buy_rate
    return {
        "conversion": float(1 - no_purchase),
        "ctr": arm.ctr,
        "orders_per_shopper": orders,
        "revenue_per_shopper": orders * arm.order_value,
    }


def _behaviour(
    scenario: Scenario, arm: ArmTruth, keen: np.ndarray, rng: np.random.Generator, mean_exposures: float
):
    """Exposures, clicks, purchases per unit and the value of every purchase (in unit order)."""
    exposures = 1 + rng.poisson(mean_exposures - 1, len(keen))
    clicks = rng.binomial(exposures, keen * scenario.click_scale(arm))
    purchases = rng.binomial(clicks, arm.buy_rate)
    mu = np.log(arm.order_value) - scenario.value_sigma**2 / 2
    return exposures, clicks, purchases, rng.lognormal(mu, scenario.value_sigma, int(purchases.sum()))


def _draw(scenario: Scenario, n_units: int, seed: int, shares: tuple[float, float]) -> dict:
    if n_units < 4:
        raise ValueError("simulate at least 4 units")
    if len(shares) != 2 or min(shares) <= 0:
        raise ValueError(f"shares must be two positive numbers, got {shares}")
    rng = np.random.default_rng(seed)
    keen = scenario.keenness.rvs(n_units, random_state=rng)
    is_t = rng.random(n_units) < shares[1] / (shares[0] + shares[1])
    _, _, pre_purchases, pre_values = _behaviour(
        scenario, scenario.control, keen, rng, scenario.pre_exposures
    )
    pre_value = np.bincount(np.repeat(np.arange(n_units), pre_purchases), pre_values, minlength=n_units)
    exposures = np.empty(n_units, dtype=np.int64)
    clicks, purchases, revenue = exposures.copy(), exposures.copy(), np.zeros(n_units)
    values = []
    for arm, mask in ((scenario.control, ~is_t), (scenario.treatment, is_t)):
        idx = np.flatnonzero(mask)
        exposures[idx], clicks[idx], purchases[idx], vals = _behaviour(
            scenario, arm, keen[idx], rng, scenario.mean_exposures
        )
        revenue[idx] = np.bincount(np.repeat(np.arange(len(idx)), purchases[idx]), vals, minlength=len(idx))
        values.append((idx, vals))
    return {
        "is_t": is_t,
        "exposures": exposures,
        "clicks": clicks,
        "purchases": purchases,
        "revenue": revenue,
        "pre_value": pre_value,
        "values": values,
    }


def simulate_units(scenario: Scenario, n_units: int, seed: int, *, shares=(0.5, 0.5)) -> pd.DataFrame:
    """The per-unit table `analysis.unit_table` would build from `simulate_events` with the same seed."""
    d = _draw(scenario, n_units, seed, shares)
    units = pd.DataFrame(
        {
            "variant": np.where(d["is_t"], VARIANTS[1], VARIANTS[0]),
            "exposures": d["exposures"],
            "clicks": d["clicks"],
            "purchases": d["purchases"],
            "revenue": d["revenue"],
            "converted": (d["purchases"] > 0).astype(float),
            "pre_value": d["pre_value"],
        },
        index=pd.Index([f"s{i}" for i in range(n_units)], name="unit_id"),
    )
    return units


def simulate_events(
    scenario: Scenario, n_units: int, seed: int, *, shares=(0.5, 0.5), experiment: str = "sim"
) -> pd.DataFrame:
    """An event log in the documented schema for one run of `scenario` with `n_units` shoppers."""
    d = _draw(scenario, n_units, seed, shares)
    unit_ids = np.array([f"s{i}" for i in range(n_units)])
    variant = np.where(d["is_t"], VARIANTS[1], VARIANTS[0])
    frames = []
    for idx, vals in d["values"]:
        for event_type, counts, value, minute in (
            ("exposure", d["exposures"][idx], 0.0, 0),
            ("click", d["clicks"][idx], 0.0, 1),
            ("purchase", d["purchases"][idx], vals, 2),
        ):
            rows = np.repeat(idx, counts)
            frames.append(
                pd.DataFrame(
                    {
                        "experiment": experiment,
                        "variant": variant[rows],
                        "unit_id": unit_ids[rows],
                        "event_type": event_type,
                        "value": value,
                        "ts": START + pd.to_timedelta(rows * 10 + minute, unit="min"),
                        "pre_value": d["pre_value"][rows],
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


@dataclass(frozen=True, eq=False)
class MarketplaceScenario:
    """Two arms whose per-shopper truth comes from a generated marketplace (`features.synth.truth`).

    Units are drawn with replacement from the marketplace's shoppers, so the population values are the
    shopper averages of the true probabilities and expected spends. A unit converts with its arm's
    probability and a converter spends (log-normal) its expected spend / probability on average. The
    CUPED covariate is the shopper's real spend over the 90 days before the test (`shopper_rfm`).
    """

    name: str
    p: tuple[np.ndarray, np.ndarray]  # conversion probability per shopper under control, treatment
    spend: tuple[np.ndarray, np.ndarray]  # expected spend per shopper under control, treatment
    pre_value: np.ndarray
    value_sigma: float = 0.6

    def aa(self) -> MarketplaceScenario:
        return replace(
            self, name=f"{self.name}-aa", p=(self.p[0], self.p[0]), spend=(self.spend[0], self.spend[0])
        )

    def truth(self, variant: str) -> dict[str, float]:
        arm = VARIANTS.index(variant)
        p, spend = self.p[arm].mean(), self.spend[arm].mean()
        return {
            "conversion": float(p),
            "orders_per_shopper": float(p),
            "revenue_per_shopper": float(spend),
            "ctr": 0.0,
        }

    def units(self, n_units: int, seed: int, shares=(0.5, 0.5)) -> pd.DataFrame:
        if n_units < 4:
            raise ValueError("simulate at least 4 units")
        rng = np.random.default_rng(seed)
        shopper = rng.integers(0, len(self.pre_value), n_units)
        is_t = rng.random(n_units) < shares[1] / (shares[0] + shares[1])
        p = np.where(is_t, self.p[1][shopper], self.p[0][shopper])
        per_buyer = np.where(is_t, self.spend[1][shopper], self.spend[0][shopper]) / p
        converted = rng.random(n_units) < p
        value = rng.lognormal(np.log(per_buyer) - self.value_sigma**2 / 2, self.value_sigma)
        return pd.DataFrame(
            {
                "variant": np.where(is_t, VARIANTS[1], VARIANTS[0]),
                "exposures": 1,
                "clicks": 0,
                "purchases": converted.astype(np.int64),
                "revenue": np.where(converted, value, 0.0),
                "converted": converted.astype(float),
                "pre_value": self.pre_value[shopper],
            },
            index=pd.Index([f"s{i}" for i in range(n_units)], name="unit_id"),
        )


COUPON_POLICIES = (
    {"kind": "amount_off", "value": 20.0, "min_spend": 199.0},  # policy A: 20 CNY off from 199
    {"kind": "percent_off", "value": 0.15, "cap": 60.0},  # policy B: 15% off, at most 60 CNY
)


def coupon_policy_scenario(marketplace: str | Path, policies=COUPON_POLICIES) -> MarketplaceScenario:
    """Coupon policy A vs B on a generated marketplace, each shopper reacting by their true tastes."""
    from features.synth.truth import coupon_response, load_truth, shopper_rfm

    truth = load_truth(marketplace)
    events = pd.read_parquet(
        Path(marketplace) / "events", columns=["shopper_id", "ts", "event_type", "value"]
    )
    rfm = shopper_rfm(events, truth.shopper_ids, events["ts"].max())
    arms = [coupon_response(truth, rfm, **policy) for policy in policies]
    return MarketplaceScenario(
        name=f"coupon-policies:{Path(marketplace).name}",
        p=tuple(a["p_treated"].to_numpy() for a in arms),
        spend=tuple(a["spend_treated"].to_numpy() for a in arms),
        pre_value=rfm["monetary"].to_numpy(dtype=float),
    )


@dataclass(frozen=True)
class SimulationResult:
    """Outcome of many simulated runs for one metric."""

    scenario: str
    mode: str  # "aa" or "power"
    metric: str
    runs: int
    n_units: int
    rejection_rate: float  # false-positive rate (A/A) or measured power
    expected_rate: float  # alpha (A/A) or the calculator's power
    ci_coverage: float  # share of runs whose absolute-lift CI contains the true lift
    true_lift: float
    mean_estimated_lift: float
    mean_ci_width: float  # average width of the absolute-lift CI (CUPED narrows it)

    def as_dict(self) -> dict:
        out = dict(self.__dict__)
        out["false_positive_rate" if self.mode == "aa" else "power"] = self.rejection_rate
        return out


def run_simulation(
    scenario: Scenario | MarketplaceScenario,
    *,
    mode: str = "aa",
    runs: int = 200,
    n_units: int | None = None,
    metric: str = "conversion",
    alpha: float = 0.05,
    target_power: float = 0.8,
    seed: int = 0,
    cuped: bool = False,
) -> SimulationResult:
    """Repeat the online test `runs` times and compare the rejection rate with what theory promises.

    In power mode `n_units` defaults to twice the calculator's per-arm sample size for `target_power`
    on `metric` (conversion uses the proportion calculator); the expected rate is the calculator's
    power at the units actually simulated.
    """
    if mode not in ("aa", "power"):
        raise ValueError(f"mode must be 'aa' or 'power', got {mode!r}")
    if runs < 1:
        raise ValueError("runs must be at least 1")
    power_calc.check_levels(alpha, target_power if mode == "power" else None)
    if mode == "aa":
        scenario = scenario.aa()
    truth_c, truth_t = scenario.truth(VARIANTS[0]), scenario.truth(VARIANTS[1])
    if metric not in truth_c:
        raise ValueError(f"unknown metric {metric!r}; known: {sorted(truth_c)}")
    true_lift = truth_t[metric] - truth_c[metric]
    if mode == "power":
        if metric != "conversion":
            raise ValueError("power mode checks the calculator on the conversion metric")
        if n_units is None:
            per_arm = power_calc.sample_size_proportion(
                truth_c["conversion"], true_lift, relative=False, alpha=alpha, power=target_power
            )
            n_units = 2 * per_arm
        expected = power_calc.power_proportion(
            truth_c["conversion"], truth_t["conversion"], n_units // 2, alpha=alpha
        )
    else:
        n_units = n_units or 2000
        expected = alpha

    rejected = covered = 0
    lifts, widths = [], []
    for run in range(runs):
        units = scenario.units(n_units, seed=seed * 1_000_003 + run)
        row = analyze_units(units, metrics=[metric], alpha=alpha, cuped=cuped)["comparisons"][0]
        rejected += row["p_value"] < alpha
        lo, hi = row["abs_ci"]
        covered += lo <= true_lift <= hi
        lifts.append(row["abs_lift"])
        widths.append(hi - lo)
    return SimulationResult(
        scenario=scenario.name,
        mode=mode,
        metric=metric,
        runs=runs,
        n_units=n_units,
        rejection_rate=rejected / runs,
        expected_rate=float(expected),
        ci_coverage=covered / runs,
        true_lift=float(true_lift),
        mean_estimated_lift=float(np.mean(lifts)),
        mean_ci_width=float(np.mean(widths)),
    )
