"""Interleaving and off-policy reports from logged impressions (`experiment_impressions`) and events.

A click or purchase event (`unit_id`, `product_id`, `ts`) is credited to the latest impression of that
product to that shopper at or before the event, within `window` (default 24 hours); a product bought
without a click still credits its impression. Interleaving credits each impression's team (clicks +
purchase_weight x purchases) and compares the two teams per shopper (`interleaving.preference`).
Off-policy estimates need the candidate's ranked product ids for each logged shopper; pages are the
logged pages of the most common length, explored pages being those whose median propensity is below
half the largest logged propensity (a random page's items all have the small propensity).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from experiments.ab import interleaving, offpolicy

IMPRESSION_COLUMNS = ("unit_id", "page_id", "slot", "product_id", "ts")


def attribute(impressions: pd.DataFrame, events: pd.DataFrame, window: str = "24h") -> pd.DataFrame:
    """The impressions with `click` and `purchase` (0/1) columns from the events that followed them."""
    missing = [c for c in IMPRESSION_COLUMNS if c not in impressions.columns]
    if missing:
        raise ValueError(f"impression log lacks columns {missing}")
    if "product_id" not in events.columns:
        raise ValueError("the event log needs a product_id column to credit clicks to shown products")
    imp = impressions.assign(
        unit_id=impressions["unit_id"].astype(str),
        product_id=impressions["product_id"].astype(str),
        ts=pd.to_datetime(impressions["ts"], utc=True),
    ).reset_index(drop=True)
    imp["row"] = np.arange(len(imp))
    out = imp.assign(click=0, purchase=0)
    for kind in ("click", "purchase"):
        ev = events.loc[events["event_type"] == kind, ["unit_id", "product_id", "ts"]].dropna()
        if ev.empty:
            continue
        ev = ev.assign(
            unit_id=ev["unit_id"].astype(str),
            product_id=ev["product_id"].astype(str),
            ts=pd.to_datetime(ev["ts"], utc=True),
        ).sort_values("ts")
        matched = pd.merge_asof(
            ev,
            imp[["unit_id", "product_id", "ts", "row"]].sort_values("ts"),
            on="ts",
            by=["unit_id", "product_id"],
            tolerance=pd.Timedelta(window),
            direction="backward",
        ).dropna(subset=["row"])
        hit = matched["row"].astype(int).unique()
        out.loc[hit, kind] = 1
    return out.drop(columns="row")


def interleaving_report(attributed: pd.DataFrame, purchase_weight: float = 1.0, alpha: float = 0.05) -> dict:
    """Preference between the two teams of an interleaving variant, per shopper."""
    teams = sorted(attributed["team"].dropna().unique())
    if len(teams) != 2:
        raise ValueError(f"interleaving needs exactly two teams in the impressions, found {teams}")
    value = attributed["click"] + purchase_weight * attributed["purchase"]
    per = value.groupby([attributed["unit_id"], attributed["team"]]).sum().unstack(fill_value=0.0)
    per = per.reindex(columns=teams, fill_value=0.0)
    result = interleaving.preference(per[teams[0]].to_numpy(), per[teams[1]].to_numpy(), alpha)
    winner = {"A": teams[0], "B": teams[1]}.get(result.pop("winner"))
    return {
        "teams": {"A": teams[0], "B": teams[1]},
        "pages": int(attributed["page_id"].nunique()),
        "clicks": {t: int(attributed.loc[attributed["team"] == t, "click"].sum()) for t in teams},
        "purchases": {t: int(attributed.loc[attributed["team"] == t, "purchase"].sum()) for t in teams},
        "purchase_weight": purchase_weight,
        **result,
        "winner": winner,
    }


def offpolicy_report(
    attributed: pd.DataFrame, candidate: Mapping[str, Sequence[str]], alpha: float = 0.05
) -> dict:
    """IPS, SNIPS and DR of the candidate's click and purchase rate per slot, plus the logged rates."""
    if attributed["propensity"].isna().any():
        raise ValueError(
            "off-policy evaluation needs a propensity on every impression (an exploration variant)"
        )
    sizes = attributed.groupby("page_id")["slot"].agg(["count", "max"])
    k = int(sizes["count"].mode().iloc[0])
    full = sizes.index[(sizes["count"] == k) & (sizes["max"] == k - 1)]
    pages = attributed[attributed["page_id"].isin(full)].sort_values(["page_id", "slot"])
    units = pages.groupby("page_id", sort=True)["unit_id"].first()
    lists = [list(candidate.get(u, ())) for u in units]
    depth = max((len(x) for x in lists), default=0)
    if depth < k:
        raise ValueError(f"the candidate's lists must hold at least {k} products per logged shopper")
    codes = pd.Index(pd.unique(pd.Series([p for x in lists for p in x] + pages["product_id"].tolist())))
    shown = codes.get_indexer(pages["product_id"]).reshape(-1, k)
    cand = np.full((len(lists), depth), -1, dtype=np.int64)
    for i, x in enumerate(lists):
        cand[i, : len(x)] = codes.get_indexer(x)
    if (cand[:, :k] < 0).any():
        raise ValueError(f"the candidate returned fewer than {k} products for some logged shoppers")
    prop = pages["propensity"].to_numpy(float).reshape(-1, k)
    explored = np.median(prop, axis=1) < prop.max() / 2
    rewards = {
        "ctr": pages["click"].to_numpy().reshape(-1, k),
        "purchase_rate": pages["purchase"].to_numpy().reshape(-1, k),
    }
    estimates = offpolicy.evaluate(shown, prop, explored, rewards, cand, alpha)
    return {
        "pages": int(len(full)),
        "pages_left_out": int(len(sizes) - len(full)),
        "slots": k,
        "explored_pages": int(explored.sum()),
        "logged": {m: float(r.mean()) for m, r in rewards.items()},
        **estimates,
    }
