"""Successive weekly campaigns on a generated marketplace's truth: plan, grant, observe, relearn.

The marketplace's shoppers keep the state they have at the end of the generated period (RFM,
tastes, price sensitivity: a stationary market), and every round draws their purchases from the
generator's own coupon response (`features.synth.truth.coupon_response`; gross basket lognormal
around the shopper's typical basket, lifted under a coupon; a buyer whose basket reaches the minimum
spend redeems at the generator's rate). Three strategies run side by side on the same shoppers:

- `closed_loop`: each round reserves a share of the budget for exploration (`explore_share` in the
  first round, shrinking by round down to `explore_floor`): a probe whose shoppers are drawn with
  known inclusion probabilities (leaning to likely responders with little history of their own) and
  get a coupon of the menu or none, uniformly, with the assignment probability logged; the rest of
  the budget is planned (`models.uplift.planner.plan_campaign`, random holdout) with a model
  refitted every round on all campaign rows so far (the campaign features plus where each shopper
  shops on the price ladder, `shopper_price_features`), and each shopper's own logged weeks then
  set that shopper's multipliers on its baseline and uplift and their own orders their basket
  (`models.uplift.shopper_response`), or enter as features. Predicted cost is calibrated on the
  realised cost of the earlier rounds' plans;
- `no_exploration`: today's planner, the `CouponTermsEffectModel` fitted on the marketplace's past
  campaigns, planning every round with its own cost margin;
- `response_model`: the same model's likeliest buyers first (`planner.response_plan`).

Every round's budget is a hard cap, as in the coupon service: redemptions beyond it are refused.

Per round and strategy: the plan's true expected incremental profit (exploration included) over
the oracle's (the planner on the true effects, whole budget, no holdout), true expected spend
against the budget, the plan's realised incremental profit (drawn outcomes minus the truth's
expected no-coupon outcome of the same shoppers) and, before launch, the policy value of the plan
from the closed loop's randomised history (`marketing.policy_value`: doubly robust when an outcome
model exists, else inverse propensity), with intervals for its expectation and for what it realises.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from features.campaign_features import (
    PRICE_EVENT_COLUMNS,
    campaign_training_table,
    encode_features,
    shopper_history_features,
    shopper_price_features,
)
from features.synth.generator import SCALES, Scale
from features.synth.model import BASKET_SIGMA, REDEEM_RATE, TREATED_BASKET_LIFT
from features.synth.truth import coupon_response, load_truth, shopper_rfm
from marketing.policy_value import pooled_policy_value, realized_interval
from models.uplift.base import CouponUpliftModel
from models.uplift.dose_response import DoseResponseUplift, coupon_dose
from models.uplift.effects import CouponTermsEffectModel, gross_basket
from models.uplift.planner import basket_terms, coupon_terms, plan_campaign, response_plan, score_options
from models.uplift.shopper_response import ShopperBasket, ShopperResponse
from training.uplift import fit_terms_model

__all__ = [
    "LOOP_SCALES",
    "STRATEGIES",
    "MENU",
    "LoopSettings",
    "LoopMarket",
    "load_loop_market",
    "simulate_loop",
]

STRATEGIES = ("closed_loop", "no_exploration", "response_model")
CONTROL = "control"
MENU = pd.DataFrame(
    {
        "coupon_id": ["A10", "A20", "A30", "A50"],
        "kind": "amount_off",
        "face_value": [10.0, 20.0, 30.0, 50.0],
        "min_spend": [99.0, 149.0, 199.0, 299.0],
        "cap": np.nan,
    }
)
HISTORY_FEATURES = (
    "loop_offers",
    "loop_offer_buys",
    "loop_offer_rate",
    "loop_plain_rate",
    "loop_rate_gap",
    "loop_recent_offers",
    "loop_offer_depth",
    "loop_redeems",
    "loop_discount_share",
    "loop_spend_gap",
)
WEEK_COLUMNS = ("arm_index", "converted", "spend", "net_spend", "redeemed", "cost", "reward")
RECENT_ROUNDS = 2  # the history's "recent offers": coupons in the last two rounds (fatigue shows there)
# The generator's tiny marketplace (500 shoppers) has too few past buyers to fit today's planner; the
# loop's quick scale keeps its small catalogue but enough shoppers for that.
LOOP_SCALES = {"tiny": Scale("loop-tiny", 3000, 200, 40, 20, 9.0, 3000), "demo": SCALES["demo"]}
LOOP_LEARNERS = ("terms", "auto", "logistic", "lgbm")
LOOP_HISTORY = ("posterior", "features")
MIN_HISTORY_ROWS = 200  # fewer logged campaign rows than this: the closed loop keeps the static model
COST_MARGIN = 1.1  # on the model's predicted cost of the probe (its cost is the plan's own spend)
PILOT_COST_PER_ROW = 0.5  # before any exploration, a randomised row is budgeted at half the mean face
# until a learned plan's realised cost is measured, plan at 1 / PILOT_SAFETY of the budget more than
# the past campaigns' margin asks: that margin is learned on other coupons (the no-exploration
# planner overspends this menu by up to ~20% with it)
PILOT_SAFETY = 1.5
# the probe: a PROBE_UNIFORM share of its weight spread evenly (everyone keeps a chance), the rest on
# likely responders with little history of their own; no shopper probed with more than PROBE_MAX_SHARE
PROBE_UNIFORM = 0.3
PROBE_FLOOR = 0.01  # uplift added to the model's before weighting, so no shopper weighs zero
PROBE_MAX_SHARE = 0.5
ASSIGN = "p_arm_"  # a probe row's logged chance of each arm index, for the learner's expected dose
CAP_DRAWS = 200  # simulated rounds per plan for the expected effect of the hard budget cap


@dataclass(frozen=True)
class LoopSettings:
    """What a loop run is given (library code reads no process settings)."""

    rounds: int = 8
    budget: float = 3000.0
    seed: int = 0
    margin_rate: float = 0.3
    explore_share: float = 0.1  # of the first round's budget, spent on randomised coupon terms
    # the share in round t is max(explore_floor, explore_share * t ** -explore_decay): exploration
    # pays most while little is known; the floor keeps every arm's propensity positive (a market
    # that drifts stays measurable). explore_decay 0 keeps the share fixed
    explore_floor: float = 0.02
    explore_decay: float = 0.5
    control_share: float = 0.1  # random holdout of every planned audience
    strategies: tuple[str, ...] = STRATEGIES
    # the closed loop's learner: `terms` (today's R-learner, uplift = depth x h(x), refitted on the
    # loop's rows) or a `DoseResponseUplift` conversion learner (auto, logistic, lgbm)
    learner: str = "terms"
    # how a shopper's own logged weeks enter the closed loop's effects: `posterior` (the learner on
    # static features, then each shopper's multipliers on its baseline and uplift learned by empirical
    # Bayes from their weeks, `models.uplift.shopper_response`) or `features` (the history features
    # in the learner's input)
    history: str = "posterior"
    coupons: pd.DataFrame = field(default_factory=lambda: MENU.copy())
    # coupon fatigue in the truth: a coupon's effect on a shopper is multiplied by `fatigue` per
    # coupon they got in the previous `fatigue_window` rounds (1.0: no fatigue)
    fatigue: float = 1.0
    fatigue_window: int = 2
    # contact policy of every strategy: no coupon for a shopper who got `frequency_cap` in the
    # previous `cap_window` rounds (None: no cap)
    frequency_cap: int | None = None
    cap_window: int = 3

    def __post_init__(self):
        if self.rounds < 1:
            raise ValueError("rounds must be at least 1")
        if not 0 < self.budget < math.inf:
            raise ValueError(f"budget must be positive and finite, got {self.budget}")
        if not 0 < self.explore_share < 1:
            raise ValueError("explore_share must be in (0, 1)")
        if not 0 < self.margin_rate <= 1:  # `nan` too: it failed only after the marketplace and planner
            raise ValueError(f"margin_rate (--margin) must be in (0, 1], got {self.margin_rate}")
        if not 0 < self.explore_floor <= self.explore_share or not 0 <= self.explore_decay < math.inf:
            raise ValueError("explore_floor must be in (0, explore_share] and explore_decay >= 0")
        if not 0 < self.fatigue <= 1 or self.fatigue_window < 1 or self.cap_window < 1:
            raise ValueError("fatigue must be in (0, 1], fatigue_window and cap_window at least 1")
        if self.frequency_cap is not None and self.frequency_cap < 1:
            raise ValueError("frequency_cap must be at least 1 (or None)")
        if self.history not in LOOP_HISTORY:
            raise ValueError(f"history must be one of {LOOP_HISTORY}, got {self.history!r}")
        if self.learner not in LOOP_LEARNERS:
            raise ValueError(f"learner must be one of {LOOP_LEARNERS}, got {self.learner!r}")
        if unknown := set(self.strategies) - set(STRATEGIES):
            raise ValueError(f"unknown strategies {sorted(unknown)}; choose from {STRATEGIES}")


@dataclass
class LoopMarket:
    """The shoppers' observable features and true response to each menu coupon (column 0: none)."""

    shopper_ids: np.ndarray
    features: pd.DataFrame  # encoded, one row per shopper, in shopper_ids order
    p_buy: np.ndarray  # (n, 1 + n_coupons) true purchase probability in a campaign week
    basket: np.ndarray  # (n,) expected gross basket without a coupon
    true_cost: np.ndarray  # (n, n_coupons) expected coupon cost if granted
    true_profit: np.ndarray  # (n, n_coupons) expected incremental profit if granted
    static_model: CouponUpliftModel  # today's planner, fitted on the past campaigns
    static_features: pd.DataFrame  # the static model's input columns
    past: pd.DataFrame  # the past campaigns' rows: features, arm, converted, spend (gross), redeemed
    past_coupons: pd.DataFrame  # the past platform-wide coupons' terms


def load_loop_market(
    directory: str | Path, coupons: pd.DataFrame, margin_rate: float, channel: str = "site", seed: int = 0
) -> LoopMarket:
    """The marketplace at the end of its period, its truth for `coupons`, and today's planner."""
    directory = Path(directory)
    as_of = pd.Timestamp(json.loads((directory / "manifest.json").read_text())["end"])
    shoppers = pd.read_parquet(directory / "shoppers.parquet")
    shoppers = shoppers[pd.to_datetime(shoppers["created_at"], utc=True) < as_of]
    events = pd.read_parquet(directory / "events", columns=list(PRICE_EVENT_COLUMNS)).dropna(
        subset=["shopper_id"]
    )
    products = pd.read_parquet(directory / "products.parquet", columns=["product_id", "category_id", "price"])
    table = shopper_history_features(events, shoppers, as_of, channel)
    ids = table.index.to_numpy()
    # the closed loop's learner also reads where each shopper shops on the price ladder; today's
    # planner (the control) keeps the features it was trained on
    features = pd.concat(
        [encode_features(table), shopper_price_features(events, products, ids, as_of)], axis=1
    )
    static = fit_terms_model(directory, seed=seed)
    truth = load_truth(directory)
    rfm = shopper_rfm(events, ids, as_of)
    p_buy, frames = [], []
    for c in coupons.itertuples(index=False):
        cap = None if pd.isna(c.cap) else float(c.cap)
        r = coupon_response(truth, rfm, kind=c.kind, value=c.face_value, cap=cap, min_spend=c.min_spend)
        if not p_buy:
            p_buy.append(r["p_control"].to_numpy())
            basket = (r["spend_control"] / r["p_control"]).to_numpy()
        p_buy.append(r["p_treated"].to_numpy())
        frames.append(_true_candidates(ids, c.coupon_id, p_buy[0], p_buy[-1], basket))
    opts = score_options(pd.concat(frames, ignore_index=True), coupons, margin_rate)
    shape = (len(coupons), len(ids))
    return LoopMarket(
        shopper_ids=ids,
        features=features,
        p_buy=np.column_stack(p_buy),
        basket=basket,
        true_cost=opts["cost"].to_numpy().reshape(shape).T,
        true_profit=opts["profit"].to_numpy().reshape(shape).T,
        static_model=static,
        static_features=encode_features(table, list(static.feature_names_in_)),
        **_past_campaigns(directory, features.columns, events, products),
    )


def _past_campaigns(directory: Path, columns, events: pd.DataFrame, products: pd.DataFrame) -> dict:
    """The generator's past randomised campaigns as the loop's first history: platform-wide coupons
    only (a scoped coupon's effect depends on taste for its scope, which depth does not describe),
    with each row's price features as of its campaign's start."""
    X, labels = campaign_training_table(directory)
    starts = pd.read_parquet(directory / "campaigns.parquet").set_index("campaign_id")["start"]
    price = pd.concat(
        [
            shopper_price_features(events, products, rows["shopper_id"].unique(), starts[cid]).assign(
                campaign_id=cid
            )
            for cid, rows in labels.groupby("campaign_id")
        ]
    ).reset_index()
    key = pd.MultiIndex.from_frame(labels[["campaign_id", "shopper_id"]])
    X = pd.concat(
        [
            X.reset_index(drop=True),
            price.set_index(["campaign_id", "shopper_id"]).reindex(key).reset_index(drop=True),
        ],
        axis=1,
    )
    coupons = pd.read_parquet(directory / "coupons.parquet")
    coupons = coupons[coupons["scope_type"] == "platform"]
    terms = pd.DataFrame(
        {
            "coupon_id": coupons["coupon_id"].to_numpy(),
            "kind": coupons["kind"].to_numpy(),
            "face_value": coupons["value"].map(float).to_numpy(),
            "min_spend": coupons["min_spend"].map(float).to_numpy(),
            "cap": coupons["cap"].map(lambda v: np.nan if pd.isna(v) else float(v)).to_numpy(),
        }
    )
    keep = ((labels["arm"] == CONTROL) | labels["arm"].isin(terms["coupon_id"])).to_numpy()
    X, labels = X[keep], labels[keep]
    row_terms = terms.set_index("coupon_id").reindex(labels["arm"]).fillna({"face_value": 0.0})
    gross = gross_basket(labels["spend"].to_numpy(dtype=float), labels["redeemed"].to_numpy() == 1, row_terms)
    past = X.reindex(columns=list(columns), fill_value=0.0).reset_index(drop=True)
    past = past.assign(
        arm=labels["arm"].to_numpy(),
        converted=labels["converted"].to_numpy(dtype=int),
        spend=gross,
        redeemed=labels["redeemed"].to_numpy(dtype=int),
        net_spend=labels["spend"].to_numpy(dtype=float),
        group=labels["campaign_id"].astype(str).to_numpy(),
    )
    return {"past": past, "past_coupons": terms}


def _true_candidates(ids, coupon_id, p0, p1, basket) -> pd.DataFrame:
    """Planner candidates holding the truth, so `score_options` prices cost as outcomes are drawn."""
    return pd.DataFrame(
        {
            "shopper_id": np.arange(len(ids)),
            "coupon_id": coupon_id,
            "p_control": p0,
            "p_treated": p1,
            "spend_control": p0 * basket,
            "spend_treated": p1 * TREATED_BASKET_LIFT * basket,
            "basket_mean": TREATED_BASKET_LIFT * basket,
            "basket_sigma": BASKET_SIGMA,
            "redeem_rate": REDEEM_RATE,
        }
    )


def _fatigued(market: LoopMarket, recent: np.ndarray, fatigue: float, margin: float):
    """(p_buy, true_cost, true_profit) this round when shopper i got recent[i] coupons lately: each
    coupon's effect on purchase shrinks by fatigue ** recent[i]; cost follows the purchases."""
    f = fatigue ** np.asarray(recent, dtype=float)
    p0, p1 = market.p_buy[:, [0]], market.p_buy[:, 1:]
    p1f = p0 + f[:, None] * (p1 - p0)
    cost = market.true_cost * np.divide(p1f, p1, out=np.ones_like(p1), where=p1 > 0)
    profit = margin * market.basket[:, None] * (TREATED_BASKET_LIFT * p1f - p0) - cost
    return np.column_stack([p0[:, 0], p1f]), cost, profit


class _Contacts:
    """One strategy's coupons per shopper and round: fatigue (truth) and the frequency cap (policy)."""

    def __init__(self, n: int, s: LoopSettings):
        self.rounds: list[np.ndarray] = []
        self.n, self.s = n, s

    def recent(self, window: int) -> np.ndarray:
        return np.sum(self.rounds[-window:], axis=0) if self.rounds else np.zeros(self.n)

    def eligible(self) -> np.ndarray:
        if self.s.frequency_cap is None:
            return np.ones(self.n, dtype=bool)
        return self.recent(self.s.cap_window) < self.s.frequency_cap

    def truth(self, market: LoopMarket):
        return _fatigued(market, self.recent(self.s.fatigue_window), self.s.fatigue, self.s.margin_rate)

    def add(self, rows) -> None:
        got = np.zeros(self.n)
        np.add.at(got, np.asarray(rows, dtype=int), 1)
        self.rounds.append(got)


# -- one round's pieces ---------------------------------------------------------------------------


def _draw(
    market: LoopMarket, coupons: pd.DataFrame, rows, arm_index, margin: float, rng, p_buy=None, budget=np.inf
) -> pd.DataFrame:
    """One round's outcomes of giving shopper `rows` arm `arm_index` (0 = none, k = menu coupon k - 1)
    under a campaign `budget` (see `_draws`); `p_buy`: this round's purchase probabilities (fatigue
    applied), else the market's."""
    rows, k = np.asarray(rows, dtype=int), np.asarray(arm_index, dtype=int)
    d = {key: v[0] for key, v in _draws(market, coupons, rows, k, _p(market, p_buy), budget, rng, 1).items()}
    return pd.DataFrame(
        {
            "row": rows,
            "arm_index": k,
            "converted": d["converted"].astype(int),
            "spend": d["gross"],
            "net_spend": d["gross"] - d["cost"],
            "redeemed": d["redeemed"].astype(int),
            "cost": d["cost"],
            "reward": margin * d["gross"] - d["cost"],
            "refused": d["refused"].astype(int),
        }
    )


def _p(market: LoopMarket, p_buy):
    return market.p_buy if p_buy is None else p_buy


def _capped_truth(market, coupons, rows, arm_index, truth, budget: float, margin: float, rng) -> dict:
    """True expected spend and incremental profit of a round's grants under its hard budget, and how
    often the cap turns a redemption away. Profit: the exact uncapped expectation less the simulated
    mean of what the cap takes (zero in draws where it does not bind, so little simulation noise);
    spend: exact when no draw reaches the budget, else the simulated mean of the capped spend, which
    never exceeds it."""
    p_buy, cost, profit = truth
    rows, k = np.asarray(rows, dtype=int), np.asarray(arm_index, dtype=int)
    t = k > 0
    rows, k = rows[t], k[t]
    spend, value = float(cost[rows, k - 1].sum()), float(profit[rows, k - 1].sum())
    if not len(rows):
        return {"spend": 0.0, "profit": 0.0, "uncapped_spend": 0.0, "cap_binds": 0.0}
    d = _draws(market, coupons, rows, k, p_buy, budget, rng, CAP_DRAWS)
    refused = d["refused"]
    if not refused.any():
        return {"spend": spend, "profit": value, "uncapped_spend": spend, "cap_binds": 0.0}
    lost = np.where(refused, margin * d["basket"] - d["discount"] - margin * d["gross"], 0.0)
    return {
        "spend": float(d["cost"].sum(axis=1).mean()),
        "profit": value - float(lost.sum(axis=1).mean()),
        "uncapped_spend": spend,
        "cap_binds": float(refused.any(axis=1).mean()),
    }


def _draws(market: LoopMarket, coupons: pd.DataFrame, rows, k, p_buy, budget, rng, draws: int) -> dict:
    """`draws` joint outcomes (arrays (draws, len(rows))) of giving shopper rows[j] arm k[j] (0 = none,
    c = menu coupon c - 1) in one campaign whose coupons stop being redeemable once `budget` is used:
    redemptions arrive in random order and each takes its discount only while the budget still holds
    it (the coupon service's conditional update, `commerce.services.coupons.redeem`). A shopper turned
    away buys as they would have without the coupon (same draw), at the plain basket."""
    u = rng.random((draws, len(rows)))
    converted = u < p_buy[rows, k]
    plain_buy = u < p_buy[rows, 0]
    z = rng.standard_normal((draws, len(rows)))
    plain = market.basket[rows] * np.exp(BASKET_SIGMA * z - BASKET_SIGMA**2 / 2)
    basket = plain * np.where(k > 0, TREATED_BASKET_LIFT, 1.0)
    face = np.r_[0.0, coupons["face_value"].to_numpy(dtype=float)][k]
    min_spend = np.r_[np.inf, coupons["min_spend"].to_numpy(dtype=float)][k]
    wants = converted & (basket >= min_spend) & (rng.random((draws, len(rows))) < REDEEM_RATE)
    discount = np.where(wants, np.minimum(face, basket), 0.0)
    redeemed = wants & _admitted(discount, budget, rng)
    refused = wants & ~redeemed
    return {
        "converted": np.where(refused, plain_buy, converted),
        "gross": np.where(refused, np.where(plain_buy, plain, 0.0), np.where(converted, basket, 0.0)),
        "redeemed": redeemed,
        "cost": np.where(redeemed, discount, 0.0),
        "refused": refused,
        "basket": basket,
        "discount": discount,
    }


def _admitted(discount: np.ndarray, budget: float, rng) -> np.ndarray:
    """(draws, m) whether each wanted discount fits the budget left when it arrives (random order);
    a discount that does not fit is refused, a later smaller one may still fit."""
    ok = np.ones(discount.shape, dtype=bool)
    over = discount.sum(axis=1) > budget + 1e-9
    if not over.any():
        return ok
    sub = discount[over]
    order = np.argsort(rng.random(sub.shape), axis=1)
    ordered = np.take_along_axis(sub, order, axis=1)
    spent = np.zeros(len(sub))
    took = np.zeros(ordered.shape, dtype=bool)
    for j in np.flatnonzero((ordered > 0).any(axis=0)):
        took[:, j] = spent + ordered[:, j] <= budget + 1e-9
        spent += np.where(took[:, j], ordered[:, j], 0.0)
    took |= ordered == 0
    back = np.empty_like(took)
    np.put_along_axis(back, order, took, axis=1)
    ok[over] = back
    return ok


class _History:
    """Each shopper's own campaign history (the loop's grant and outcome log up to the last finished
    round, so a round's features never hold its own outcome): what reveals how they answer coupons
    when static features cannot. Past grants and their mean depth, purchases and gross spend per
    week with and without a coupon, redemptions, the share of purchases made with a discount."""

    def __init__(self, n: int):
        self.offers, self.offer_buys, self.offer_spend = np.zeros(n), np.zeros(n), np.zeros(n)
        self.plain, self.plain_buys, self.plain_spend = np.zeros(n), np.zeros(n), np.zeros(n)
        self.depth, self.redeems = np.zeros(n), np.zeros(n)
        self.last: list[np.ndarray] = []

    def frame(self, index) -> pd.DataFrame:
        # smoothed toward a small prior so one week is not read as a sure rate
        offer_rate = (self.offer_buys + 0.2) / (self.offers + 1)
        plain_rate = (self.plain_buys + 0.2) / (self.plain + 1)
        offer_spend = self.offer_spend / (self.offers + 1)
        plain_spend = self.plain_spend / (self.plain + 1)
        buys = self.offer_buys + self.plain_buys
        return pd.DataFrame(
            {
                "loop_offers": self.offers,
                "loop_offer_buys": self.offer_buys,
                "loop_offer_rate": offer_rate,
                "loop_plain_rate": plain_rate,
                "loop_rate_gap": offer_rate - plain_rate,
                "loop_recent_offers": np.sum(self.last[-RECENT_ROUNDS:], axis=0)
                if self.last
                else np.zeros(len(self.offers)),
                "loop_offer_depth": np.divide(
                    self.depth, self.offers, out=np.zeros_like(self.depth), where=self.offers > 0
                ),  # fmt: skip
                "loop_redeems": self.redeems,
                "loop_discount_share": self.redeems / (buys + 1),
                "loop_spend_gap": offer_spend - plain_spend,
            },
            index=index,
        )

    def update(self, week: pd.DataFrame, depth: np.ndarray) -> None:
        """One finished round of every shopper: `week` (arm_index, converted, spend, redeemed per
        shopper row), `depth` per arm index (0 for none)."""
        k = week["arm_index"].to_numpy(dtype=int)
        treated = k > 0
        bought, gross = week["converted"].to_numpy(dtype=float), week["spend"].to_numpy(dtype=float)
        self.last.append(treated.astype(float))
        self.offers += treated
        self.offer_buys += np.where(treated, bought, 0.0)
        self.offer_spend += np.where(treated, gross, 0.0)
        self.plain += ~treated
        self.plain_buys += np.where(treated, 0.0, bought)
        self.plain_spend += np.where(treated, 0.0, gross)
        self.depth += depth[k]
        self.redeems += week["redeemed"].to_numpy(dtype=float)


def _arm_index(coupon_ids, coupons: pd.DataFrame) -> np.ndarray:
    lookup = {c: i + 1 for i, c in enumerate(coupons["coupon_id"])}
    return np.array([lookup.get(c, 0) for c in coupon_ids], dtype=int)


def _static_candidates(market: LoopMarket, rows, coupons) -> pd.DataFrame:
    return market.static_model.predict_candidates(
        market.static_features.iloc[rows], np.asarray(rows), coupons
    )


def _plan(
    candidates, coupons, budget, s: LoopSettings, cost_safety: float, rng
) -> tuple[np.ndarray, np.ndarray]:
    """(shopper rows, arm index, planned arm index) of a planned audience, holdout rows with arm 0."""
    plan = plan_campaign(
        candidates,
        coupons,
        budget,
        margin_rate=s.margin_rate,
        control_share=s.control_share,
        random_state=int(rng.integers(2**31)),
        cost_safety=cost_safety,
    )
    a = plan.assignments
    return (
        a["shopper_id"].to_numpy(dtype=int),
        _arm_index(a["arm"], coupons),
        _arm_index(a["coupon_id"], coupons),
    )


def _predicted_rewards(candidates, X: pd.DataFrame, coupons, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """(mean, variance), each (n, 1 + n_coupons): the model's expected reward per shopper and arm
    (0 = none) and its variance over one round's draw (a purchase with a lognormal gross basket,
    less the discount when redeemed). The variance is what one realised round adds to the error of a
    policy value that estimates the plan's expectation. `candidates`: a model's predict_candidates."""
    cand = candidates(X, np.arange(len(X)), coupons)
    opts = score_options(cand, coupons, margin)
    n, k = len(X), len(coupons)
    p1 = opts["p_treated"].to_numpy()
    gross = (
        opts["basket_mean"].to_numpy()
        if "basket_mean" in opts.columns
        else np.divide(opts["spend_treated"].to_numpy(), p1, out=np.zeros(len(p1)), where=p1 > 0)
    )
    spread = np.exp(opts["basket_sigma"].to_numpy() ** 2) if "basket_sigma" in opts.columns else 1.0
    cost, discount = opts["cost"].to_numpy(), opts["discount"].to_numpy()
    mean = margin * p1 * gross - cost
    square = margin**2 * p1 * gross**2 * spread - 2 * margin * gross * cost + cost * discount
    p0 = opts["p_control"].to_numpy().reshape(k, n)[0]
    plain = np.divide(opts["spend_control"].to_numpy().reshape(k, n)[0], p0, out=np.zeros(n), where=p0 > 0)
    spread0 = spread.reshape(k, n)[0] if np.ndim(spread) else spread
    control = margin * p0 * plain
    mean_all = np.column_stack([control, mean.reshape(k, n).T])
    square_all = np.column_stack([margin**2 * p0 * plain**2 * spread0, square.reshape(k, n).T])
    return mean_all, np.maximum(square_all - mean_all**2, 0.0)


def _oracle(
    market: LoopMarket,
    coupons,
    s: LoopSettings,
    rng,
    control_share: float = 0.0,
    truth=None,
    eligible=None,
    plans: dict | None = None,
) -> tuple[float, np.ndarray]:
    """(true profit, arm index per shopper) of the planner on the true effects (`truth`: this
    round's (p_buy, cost, profit), else the fresh market's), same budget and hard cap, same arms, the
    `eligible` shoppers only; `control_share` > 0 holds out the same random share of its audience as
    every plan does. `plans` keeps the plans made so far: the same truth and shoppers plan the same."""
    truth_now = truth if truth is not None else (market.p_buy, market.true_cost, market.true_profit)
    p_buy = truth_now[0]
    key = (control_share, hash(p_buy.tobytes()), None if eligible is None else hash(eligible.tobytes()))
    if plans is not None and key in plans:
        rows, arms, arm_of = plans[key]
        return _capped_truth(market, coupons, rows, arms, truth_now, s.budget, s.margin_rate, rng)[
            "profit"
        ], arm_of
    frames = [
        _true_candidates(market.shopper_ids, c, p_buy[:, 0], p_buy[:, i + 1], market.basket)
        for i, c in enumerate(coupons["coupon_id"])
    ]
    cand = pd.concat(frames, ignore_index=True)
    if eligible is not None:
        cand = cand[eligible[cand["shopper_id"].to_numpy()]]
    plan = plan_campaign(
        cand,
        coupons,
        s.budget,
        margin_rate=s.margin_rate,
        control_share=control_share,
        random_state=s.seed,
    )
    a = plan.assignments
    rows, arms = a["shopper_id"].to_numpy(dtype=int), _arm_index(a["arm"], coupons)
    arm_of = np.zeros(len(market.shopper_ids), dtype=int)
    arm_of[rows] = arms
    if plans is not None:
        plans[key] = rows, arms, arm_of
    capped = _capped_truth(market, coupons, rows, arms, truth_now, s.budget, s.margin_rate, rng)
    return capped["profit"], arm_of


def _true_uplift(market: LoopMarket) -> np.ndarray:
    return market.p_buy[:, 1:] - market.p_buy[:, [0]]


def _uplift_corr(predicted: np.ndarray, market: LoopMarket) -> float:
    """Correlation of a model's per-(shopper, coupon) uplift with the truth's: a diagnostic the
    learner never sees."""
    return float(np.corrcoef(np.asarray(predicted).ravel(), _true_uplift(market).ravel())[0, 1])


def _candidate_uplift(cand: pd.DataFrame, coupons, n: int) -> np.ndarray:
    """(n, n_coupons) p_treated - p_control from planner candidates over all n shoppers."""
    order = {c: i for i, c in enumerate(coupons["coupon_id"])}
    out = np.zeros((n, len(coupons)))
    out[cand["shopper_id"].to_numpy(dtype=int), cand["coupon_id"].map(order).to_numpy()] = (
        cand["p_treated"] - cand["p_control"]
    ).to_numpy()
    return out


# -- the loop -------------------------------------------------------------------------------------


def simulate_loop(market: LoopMarket, s: LoopSettings) -> list[dict]:
    """Run `s.rounds` campaigns per strategy; one dict per round and strategy (see the module doc)."""
    coupons = s.coupons
    rng = np.random.default_rng(s.seed)
    n = len(market.shopper_ids)
    # the oracle runs its own campaigns on the truth, under the same fatigue and contact policy; the
    # design oracle also holds out the same share of its audience as every plan
    oracles = {"oracle": _Contacts(n, s), "design": _Contacts(n, s)}
    oracle_plans: dict = {}
    contacts = {strategy: _Contacts(n, s) for strategy in s.strategies}
    history = _History(n)
    # the closed loop's rounds: every shopper's arm, purchase and gross order value
    weeks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    # the closed loop's campaign rows, features as of their round; the past campaigns come first
    # (no loop history yet, their coupons' own terms; not used for policy value: other arms)
    past = pd.concat([market.past, _History(len(market.past)).frame(market.past.index)], axis=1)
    logged: list[pd.DataFrame] = [past.assign(arm_index=-1, propensity=np.nan, round=0)]
    all_coupons = pd.concat([coupons, market.past_coupons], ignore_index=True)
    menu_ids = np.r_[[CONTROL], coupons["coupon_id"].to_numpy()]
    depth = np.r_[0.0, coupon_dose(coupons)["depth"].to_numpy()]  # each arm's depth in the history
    static_all = _static_candidates(market, np.arange(n), coupons)
    static_corr = _uplift_corr(_candidate_uplift(static_all, coupons, n), market)
    calib = {"predicted": 0.0, "realised": 0.0}
    pv_log: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # the closed loop's rounds, for policy value
    out = []
    for rnd in range(1, s.rounds + 1):
        oracle, oracle_arm = _oracle(
            market, coupons, s, rng, 0.0, oracles["oracle"].truth(market), oracles["oracle"].eligible(),
            oracle_plans,
        )  # fmt: skip
        oracles["oracle"].add(np.flatnonzero(oracle_arm))
        design_oracle, design_arm = _oracle(
            market, coupons, s, rng, s.control_share, oracles["design"].truth(market),
            oracles["design"].eligible(), oracle_plans,
        )  # fmt: skip
        oracles["design"].add(np.flatnonzero(design_arm))
        X = pd.concat([market.features, history.frame(market.features.index)], axis=1)
        log = pd.concat(logged, ignore_index=True) if logged else None
        # with the posterior, the learner sees no outcome of a shopper's own weeks as a feature (the
        # posterior's likelihood reads them); the recent coupons it got are grants, not outcomes
        columns = X.columns if s.history == "features" else [*market.features.columns, "loop_recent_offers"]
        model, learner = _fit_loop_model(log, columns, all_coupons, s.seed, s.learner, menu_ids)
        if model is not None and s.history == "posterior" and weeks:
            model, learner = _Personalised(model, X, coupons, weeks), f"{learner}+posterior"
        # the policy value's outcome model: the population model, never a shopper's own weeks (its
        # correction terms read those weeks' rewards; a model fitted to them would hide their error)
        population = model.population_candidates if isinstance(model, _Personalised) else getattr(
            model, "predict_candidates", None)  # fmt: skip
        q, q_var = (
            _predicted_rewards(population, X, coupons, s.margin_rate) if model is not None else (None, None)
        )
        explore = log[log["propensity"].notna()] if log is not None else None
        loop_corr = (
            _uplift_corr(model.predict_uplift(X, coupons), market) if model is not None else static_corr
        )
        plans = {}
        for strategy in s.strategies:
            eligible = contacts[strategy].eligible()
            plans[strategy] = _round_plan(
                strategy, market, X, model, static_all, calib, s, rng, eligible, explore_share(s, rnd)
            )
        earlier = list(pv_log)  # before launch: every strategy's plan is valued on earlier rounds only
        for strategy, (rows, arms, explore_rows, predicted, learned, planned, logging) in plans.items():
            pv = _plan_value(earlier, rows, arms, n, q, q_var)
            truth = contacts[strategy].truth(market)
            p_buy, true_cost, true_profit_of = truth
            # the plan and the probe are one campaign under one hard budget
            granted_rows = np.r_[rows, explore_rows["row"].to_numpy(dtype=int)]
            granted_arms = np.r_[arms, explore_rows["arm_index"].to_numpy(dtype=int)]
            drawn = _draw(market, coupons, granted_rows, granted_arms, s.margin_rate, rng, p_buy, s.budget)
            exploit = drawn.iloc[: len(rows)].reset_index(drop=True)
            probe = drawn.iloc[len(rows) :].reset_index(drop=True)
            probe["propensity"] = explore_rows["propensity"].to_numpy(dtype=float)
            for col in (c for c in explore_rows.columns if c.startswith(ASSIGN)):
                probe[col] = explore_rows[col].to_numpy(dtype=float)
            capped = _capped_truth(
                market, coupons, granted_rows, granted_arms, truth, s.budget, s.margin_rate, rng
            )
            treated_rows = np.r_[rows[arms > 0], probe["row"].to_numpy()[probe["arm_index"].to_numpy() > 0]]
            contacts[strategy].add(treated_rows)
            true_spend, true_profit = capped["spend"], capped["profit"]
            plan_spend = float(true_cost[rows[arms > 0], arms[arms > 0] - 1].sum())
            t = exploit["arm_index"].to_numpy() > 0
            baseline = s.margin_rate * market.p_buy[rows[t], 0] * market.basket[rows[t]]
            realized = float((exploit["reward"].to_numpy()[t] - baseline).sum())
            plan_true = float(true_profit_of[rows[t], arms[t] - 1].sum())
            in_oracle = oracle_arm[rows[t]] > 0
            if learned:  # the closed loop's learned plans calibrate its later ones
                calib["predicted"] += predicted["cost"]
                calib["realised"] += float(exploit["cost"].sum())
            if strategy == "closed_loop":
                # randomisation groups: the probe, and each planned coupon's audience (coupon or holdout)
                campaign = pd.concat(
                    [
                        probe.assign(group=f"r{rnd}-probe"),
                        exploit.assign(propensity=np.nan, group=[f"r{rnd}-{c}" for c in planned]),
                    ],
                    ignore_index=True,
                ).assign(round=rnd)
                campaign["arm"] = menu_ids[campaign["arm_index"].to_numpy(dtype=int)]
                feats = X.iloc[campaign["row"].to_numpy()].reset_index(drop=True)
                logged.append(pd.concat([campaign, feats], axis=1))
                # every shopper's week: the campaign's rows, everyone else's purchases without a coupon
                week = _draw(market, coupons, np.arange(n), np.zeros(n, dtype=int), s.margin_rate, rng, p_buy)
                week = week.set_index("row")
                week.loc[campaign["row"].to_numpy(), list(WEEK_COLUMNS)] = campaign[
                    list(WEEK_COLUMNS)
                ].to_numpy()
                history.update(week, depth)
                weeks.append(
                    (
                        week["arm_index"].to_numpy(dtype=int),
                        week["converted"].to_numpy(dtype=int),
                        week["spend"].to_numpy(dtype=float),
                    )
                )
                # every shopper's arm and reward this round, with the round's logging propensity
                pv_log.append(
                    (week["arm_index"].to_numpy(dtype=int), week["reward"].to_numpy(dtype=float), logging)
                )
            out.append(
                {
                    "round": rnd,
                    "strategy": strategy,
                    "profit_vs_oracle": true_profit / oracle if oracle > 0 else None,
                    "profit_vs_design_oracle": true_profit / design_oracle if design_oracle > 0 else None,
                    "true_profit": true_profit,
                    "oracle_profit": oracle,
                    "design_oracle_profit": design_oracle,
                    # diagnostics against the truth (never shown to a learner)
                    "randomized_rows": 0 if explore is None else int(len(explore)),
                    "uplift_corr": loop_corr if strategy == "closed_loop" else static_corr,
                    "oracle_overlap": float(in_oracle.mean()) if t.any() else None,
                    "oracle_arm_agreement": float(
                        (oracle_arm[rows[t]][in_oracle] == arms[t][in_oracle]).mean()
                    )
                    if in_oracle.any()
                    else None,
                    "true_spend": true_spend,
                    "budget": s.budget,
                    # what the grants would have cost without the hard cap, and how often it binds
                    "uncapped_spend": capped["uncapped_spend"],
                    "cap_binds": capped["cap_binds"],
                    "refused": int(drawn["refused"].sum()),
                    "plan_true_profit": plan_true,
                    "plan_true_spend": plan_spend,
                    "plan_predicted_spend": predicted["cost"],
                    "predicted_profit": predicted["profit"],
                    # the model's own forecast outside the logged data's interval: worth a look
                    "policy_value_disagrees": None
                    if pv["mean_low"] is None
                    else not pv["mean_low"] <= predicted["profit"] <= pv["mean_high"],
                    "realized_profit": realized,
                    "policy_value": pv["value"],
                    "policy_value_low": pv["low"],
                    "policy_value_high": pv["high"],
                    "policy_value_method": pv["method"],
                    # the interval for the plan's expected profit (the one above adds this round's draw)
                    "policy_value_mean_low": pv["mean_low"],
                    "policy_value_mean_high": pv["mean_high"],
                    "treated": int(len(treated_rows)),
                    "explored": int(len(probe)),
                    "explore_share": explore_share(s, rnd) if strategy == "closed_loop" else None,
                    "learner": learner if strategy == "closed_loop" else "static",
                    "cost_safety": calib.get("safety") if strategy == "closed_loop" else None,
                }
            )
    return out


class _Personalised(CouponUpliftModel):
    """The loop's population model with each shopper's own multipliers on its baseline and uplift
    (`ShopperResponse`, fitted on every shopper's logged weeks, 0 = no coupon) and on its basket
    (`ShopperBasket`, from the order values of their purchases in those weeks); shopper ids are
    the loop's shopper rows. `weeks`: per round, every shopper's (arm, bought, gross order value)."""

    def __init__(self, model: CouponUpliftModel, X: pd.DataFrame, coupons: pd.DataFrame, weeks):
        self.model = model
        n, k = len(X), len(coupons)
        cand = model.predict_candidates(X, np.arange(n), coupons)
        # this round's population candidates of every shopper, reused while X and the menu are these
        self.base_, self._index, self._coupons = cand, X.index, coupons
        p0 = cand["p_control"].to_numpy()[:n]
        tau = (cand["p_treated"] - cand["p_control"]).to_numpy().reshape(k, n).T
        arms = np.concatenate([w[0] for w in weeks])
        shopper = np.tile(np.arange(n), len(weeks))
        t = arms > 0
        week_tau = np.zeros(len(arms))
        week_tau[t] = tau[shopper[t], arms[t] - 1]
        bought = np.concatenate([w[1] for w in weeks])
        self.response_ = ShopperResponse().fit(shopper, p0[shopper], week_tau, bought, n)
        # each buyer's order values against the population's: with a coupon its basket under that
        # coupon, else the plain one (expected spend over purchase chance)
        gross = np.concatenate([w[2] for w in weeks])
        plain = np.divide(cand["spend_control"].to_numpy()[:n], p0, out=np.zeros(n), where=p0 > 0)
        under = cand["basket_mean"].to_numpy().reshape(k, n).T if "basket_mean" in cand else None
        expected = plain[shopper]
        if under is not None:
            expected[t] = under[shopper[t], arms[t] - 1]
        seen = (bought == 1) & (gross > 0) & (expected > 0)
        self.basket_ = ShopperBasket().fit(shopper[seen], np.log(gross[seen] / expected[seen]), n)

    @property
    def feature_names_in_(self):
        return self.model.feature_names_in_

    @property
    def cost_factor_(self):
        return self.model.cost_factor_

    @property
    def learner_(self):
        return getattr(self.model, "learner_", None)

    def fit(self, X, treatment, outcome, **fit_params):
        """Refits the population model; each shopper's multipliers, learned from their weeks, stay."""
        self.model.fit(X, treatment, outcome, **fit_params)
        self.base_ = None  # the cached candidates belong to the previous population fit
        return self

    def predict_uplift(self, X, coupons=None) -> np.ndarray:
        cand = self.predict_candidates(X, np.arange(len(X)), coupons)
        return (cand["p_treated"] - cand["p_control"]).to_numpy().reshape(len(coupons), len(X)).T

    def population_candidates(self, X, shopper_ids, coupons) -> pd.DataFrame:
        ids = np.asarray(shopper_ids, dtype=int)
        if self.base_ is not None and coupons is self._coupons and X.index.equals(self._index[ids]):
            n = len(self._index)
            rows = (np.arange(len(coupons))[:, None] * n + ids[None, :]).ravel()
            return self.base_.iloc[rows].reset_index(drop=True)
        return self.model.predict_candidates(X, shopper_ids, coupons)

    def predict_candidates(self, X, shopper_ids, coupons=None) -> pd.DataFrame:
        cand = self.population_candidates(X, shopper_ids, coupons)
        ids = cand["shopper_id"].to_numpy(dtype=int)
        p0, p1 = cand["p_control"].to_numpy(), cand["p_treated"].to_numpy()
        a, r = self.response_.a_[ids], self.response_.r_[ids]
        q0 = np.clip(a * p0, 1e-3, 0.995)
        q1 = np.clip(q0 + r * (p1 - p0), 1e-3, 0.995)
        out = cand.assign(
            p_control=q0,
            p_treated=q1,
            spend_control=cand["spend_control"] * np.divide(q0, p0, out=np.ones_like(p0), where=p0 > 0),
            spend_treated=cand["spend_treated"] * np.divide(q1, p1, out=np.ones_like(p1), where=p1 > 0),
        )
        if "basket_mean" not in cand:
            return out
        # each shopper's own order value: the lognormal mean of their posterior offset, and the
        # spread left around it (the week-to-week spread plus what the posterior still does not know)
        b = self.basket_
        u, sd = b.u_[ids], b.u_sd_[ids]
        scale = np.exp(u + (sd**2 + b.within_**2) / 2)
        basket = cand["basket_mean"].to_numpy() * scale
        sigma = np.sqrt(b.within_**2 + sd**2)
        terms = coupon_terms(coupons).set_index("coupon_id").loc[cand["coupon_id"]].reset_index()
        rate = cand["redeem_rate"].to_numpy() if "redeem_rate" in cand else 1.0
        _, discount = basket_terms(basket, sigma, terms)
        return out.assign(
            spend_control=out["spend_control"] * scale,
            spend_treated=q1 * np.maximum(basket - rate * discount, 0.0),
            basket_mean=basket,
            basket_sigma=sigma,
        )


def _fit_loop_model(log, columns, coupons, seed, learner, menu) -> tuple[CouponUpliftModel | None, str]:
    """The closed loop's dose-response model on all campaign rows so far (None while too few);
    `menu`: the arm ids by arm index (control first)."""
    if log is None or len(log) < MIN_HISTORY_ROWS:
        return None, "static"
    arm = log["arm"].to_numpy()
    y = log["converted"].to_numpy()
    for group in (arm == CONTROL, arm != CONTROL):
        if len(np.unique(y[group])) < 2 or y[group].sum() < 3:
            return None, "static"
    if learner == "terms":  # today's R-learner (uplift = depth x h(x)), refitted on the loop's rows
        # the probe's rows: each with its known chance of every arm (menu arm index order)
        assign = [f"{ASSIGN}{a}" for a in range(len(menu))]
        assignment = log.reindex(columns=assign).set_axis(list(menu), axis=1)
        model = CouponTermsEffectModel(control=CONTROL, calibrate=False, random_state=seed).fit(
            log[list(columns)],
            arm,
            y,
            log["net_spend"],
            log["redeemed"],
            coupons,
            groups=log["group"],
            assignment=assignment,
        )
        return model, "terms"
    model = DoseResponseUplift(control=CONTROL, learner=learner, random_state=seed).fit(
        log[list(columns)], arm, y, log["spend"], log["redeemed"], coupons
    )
    return model, model.learner_


def explore_share(s: LoopSettings, rnd: int) -> float:
    """The budget share of round `rnd`'s probe (1-based): `explore_share` decaying as
    rnd ** -explore_decay, never below `explore_floor`."""
    return max(s.explore_floor, s.explore_share * float(rnd) ** -s.explore_decay)


def _round_plan(strategy, market, X, model, static_all, calib, s: LoopSettings, rng, eligible, share):
    """(planned rows, planned arms, this round's exploration rows, the model's predicted cost and
    profit of the plan, whether a learned model planned it, each planned row's coupon, the round's
    logging propensity or None). Only `eligible` shoppers (the contact policy) are planned or
    probed; the probe's outcomes are drawn with the plan's, under one budget."""
    n = len(market.shopper_ids)
    coupons = s.coupons
    static_all = static_all[eligible[static_all["shopper_id"].to_numpy()]]
    if strategy == "response_model":
        # the same margin on predicted cost as today's planner: both read the static model's costs
        budget = s.budget / market.static_model.cost_factor_
        best = response_plan(static_all, coupons, budget, margin_rate=s.margin_rate)
        rows, arms = best["shopper_id"].to_numpy(dtype=int), _arm_index(best["coupon_id"], coupons)
        return rows, arms, _empty(), _predicted(static_all, rows, arms, s), False, arms, None
    if strategy == "no_exploration":
        rows, arms, planned = _plan(static_all, coupons, s.budget, s, market.static_model.cost_factor_, rng)
        return rows, arms, _empty(), _predicted(static_all, rows, arms, s), False, planned, None
    # closed loop: the plan over everyone, then a randomised probe (a probed shopper gets the probe's
    # arm, uniform over none and the coupons, instead of a planned one): each shopper is probed with a
    # known inclusion probability, so every shopper's arm had a known chance, the logging propensity
    pool = np.flatnonzero(eligible)
    k = len(coupons)
    budget = (1 - share) * s.budget
    if model is None:
        cand = static_all
        safety = market.static_model.cost_factor_
        per_row = np.full(len(pool), PILOT_COST_PER_ROW * float(coupons["face_value"].mean()))
        weight = np.ones(len(pool))
    else:
        cand = model.predict_candidates(X.iloc[pool], pool, coupons)
        # realised over predicted cost of the earlier learned plans, once they predicted a material
        # spend (a ratio of crumbs is noise): the plan aims at the budget in expectation, and the hard
        # cap, not a margin, keeps the noise around it from overspending
        material = calib["predicted"] >= 0.1 * s.budget
        # before that, today's planner's margin learned on the past campaigns
        ratio = (
            calib["realised"] / calib["predicted"]
            if material
            else PILOT_SAFETY * market.static_model.cost_factor_
        )
        safety = max(model.cost_factor_, ratio)
        calib["safety"] = safety
        opts = score_options(cand, coupons, s.margin_rate)
        # the model's cost over many shoppers is about right (it is the chosen few where it runs low)
        per_row = COST_MARGIN * opts["cost"].to_numpy().reshape(k, len(pool)).sum(axis=0) / (k + 1)
        uplift = (opts["p_treated"] - opts["p_control"]).to_numpy().reshape(k, len(pool)).max(axis=0)
        weight = _probe_weight(uplift, X["loop_offers"].to_numpy()[pool])
    rows, arms, planned = _plan(cand, coupons, budget, s, safety, rng)
    inclusion = np.zeros(n)
    inclusion[pool] = _inclusion(weight, per_row, share * s.budget)
    propensity = _logging_propensity(eligible, k, rows, arms, planned, inclusion)
    probe_rows = np.flatnonzero(rng.random(n) < inclusion)
    probe_arms = np.minimum((rng.random(len(probe_rows)) * (k + 1)).astype(int), k)
    chance = 1.0 / (k + 1)
    probe = pd.DataFrame(
        {
            "row": probe_rows,
            "arm_index": probe_arms,
            "propensity": chance,
            **{f"{ASSIGN}{a}": chance for a in range(k + 1)},
        }
    )
    keep = ~np.isin(rows, probe_rows)
    rows, arms, planned = rows[keep], arms[keep], planned[keep]
    return rows, arms, probe, _predicted(cand, rows, arms, s), model is not None, planned, propensity


def _probe_weight(uplift: np.ndarray, offers: np.ndarray) -> np.ndarray:
    """Where the probe looks: shoppers the model thinks may respond (predicted best uplift, never
    below a floor) and whose own response is least known (fewer coupons so far), mixed with a uniform
    share so that every shopper keeps a chance (`PROBE_UNIFORM`): a coupon tried on a likely
    persuadable makes their history informative, one on a sure thing or a lost cause mostly costs."""
    promise = np.clip(uplift, 0.0, None) + PROBE_FLOOR
    focused = promise / np.sqrt(1.0 + offers)
    return (1 - PROBE_UNIFORM) * focused / focused.mean() + PROBE_UNIFORM


def _inclusion(weight: np.ndarray, cost: np.ndarray, budget: float) -> np.ndarray:
    """Poisson-sampling inclusion probabilities proportional to `weight` (at most PROBE_MAX_SHARE
    each) whose expected cost (`cost` per probed shopper) is `budget`."""
    cost = np.maximum(cost, 1e-9)
    lo, hi = 0.0, PROBE_MAX_SHARE / float(weight.min())
    if float((np.minimum(hi * weight, PROBE_MAX_SHARE) * cost).sum()) <= budget:
        return np.minimum(hi * weight, PROBE_MAX_SHARE)
    for _ in range(60):
        mid = (lo + hi) / 2
        if float((np.minimum(mid * weight, PROBE_MAX_SHARE) * cost).sum()) > budget:
            hi = mid
        else:
            lo = mid
    return np.minimum(lo * weight, PROBE_MAX_SHARE)


def _logging_propensity(eligible: np.ndarray, k: int, rows, arms, planned, inclusion) -> np.ndarray:
    """(n, 1 + k) each shopper's chance of each arm this round: the probe includes shopper i with
    probability inclusion[i] and gives a uniform arm; the others get their planned coupon, except
    the plan's random holdout (its share of the coupon's audience), and everyone unplanned (capped
    shoppers included) gets nothing."""
    n = len(eligible)
    plan = np.zeros((n, k + 1))
    plan[:, 0] = 1.0
    for c in np.unique(planned):
        mine = planned == c
        hold = float((arms[mine] == 0).mean())
        plan[rows[mine], 0] = hold
        plan[rows[mine], c] = 1.0 - hold
    share = np.where(eligible, np.broadcast_to(np.asarray(inclusion, dtype=float), (n,)), 0.0)[:, None]
    return share / (k + 1) + (1 - share) * plan


def _predicted(cand: pd.DataFrame, rows, arms, s: LoopSettings) -> dict:
    """The planning model's own expected coupon cost and incremental profit of a plan's grants."""
    opts = score_options(cand, s.coupons, s.margin_rate).set_index(["shopper_id", "coupon_id"])
    t = arms > 0
    keys = list(zip(rows[t], s.coupons["coupon_id"].to_numpy()[arms[t] - 1], strict=True))
    if not keys:
        return {"cost": 0.0, "profit": 0.0}
    chosen = opts.loc[keys]
    return {"cost": float(chosen["cost"].sum()), "profit": float(chosen["profit"].sum())}


def _empty() -> pd.DataFrame:
    return pd.DataFrame({"row": pd.Series(dtype=int), "arm_index": pd.Series(dtype=int),
                         "propensity": pd.Series(dtype=float)})  # fmt: skip


def _plan_value(pv_log, rows, arms, n: int, q, q_var) -> dict:
    """The plan's incremental profit estimated from the closed loop's earlier rounds (every shopper,
    each round's logging propensity; `marketing.policy_value.pooled_policy_value`). `low`, `high`:
    the interval for the profit the plan will realise this round (the estimate's error plus the
    round's own outcome noise, `q_var` summed over the plan's grants, `realized_interval`);
    `mean_low`, `mean_high`: the interval for its expectation."""
    if not pv_log:
        return dict.fromkeys(("value", "low", "high", "mean_low", "mean_high", "method"))
    target = np.zeros(n, dtype=int)
    target[rows] = arms  # holdout and unplanned shoppers: no coupon
    logged, reward, propensity = (np.stack(parts) for parts in zip(*pv_log, strict=True))
    v = pooled_policy_value(reward, logged, propensity, target, q=q, q_var=q_var)
    value, low, high, method = (v.dr, v.dr_low, v.dr_high, "dr") if v.dr is not None else (
        v.ips, v.ips_low, v.ips_high, "ips")  # fmt: skip
    noise = 0.0 if q_var is None else float(q_var[rows[arms > 0], arms[arms > 0]].sum())
    r_low, r_high = realized_interval(value, low, high, noise)
    return {
        "value": value,
        "low": r_low,
        "high": r_high,
        "mean_low": low,
        "mean_high": high,
        "method": method,
    }
