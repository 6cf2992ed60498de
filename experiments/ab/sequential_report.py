"""The sequential view of an experiment's event log: the result as it stood at every daily look.

Look k keeps only the events up to the end of day k (UTC) and rebuilds the per-unit table
(`analysis.unit_table`), so each look shows exactly what a marketer saw that day. Mean metrics use the
per-unit values, the ratio metric (CTR) its delta-method linearisation. `sequential.decisions` turns
the looks into the method's verdict:
- msprt: always-valid p-value and confidence sequence; a rejection at any look stands;
- group-sequential: O'Brien-Fleming-like boundaries at information fraction units / planned units
  (the plan is required) and the last look at or past the plan is final;
- fixed: the fixed-horizon test, which refuses to call anything before the planned units are in (the
  naive per-look p-values are shown only as a warning of what peeking would have said).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from experiments.ab import sequential
from experiments.ab.analysis import METRICS, linearised_ratio, unit_table


def _look_stats(units: pd.DataFrame, control: str, treatment: str, metric: str) -> tuple[float, float, int]:
    kind, num, den = METRICS[metric]
    pair = units[units["variant"].isin([control, treatment])]
    is_t = (pair["variant"] == treatment).to_numpy()
    if min(is_t.sum(), (~is_t).sum()) < 2:
        raise ValueError("too few units")
    y = pair[num].to_numpy(float)
    if kind == "ratio":
        d_ = pair[den].to_numpy(float)
        y_t, y_c = linearised_ratio(y[is_t], d_[is_t]), linearised_ratio(y[~is_t], d_[~is_t])
    else:
        y_t, y_c = y[is_t], y[~is_t]
    d, v = sequential.diff_of_means(len(y_t), y_t.sum(), (y_t**2).sum(), len(y_c), y_c.sum(), (y_c**2).sum())
    return float(d), float(v), int(len(y_t) + len(y_c))


def sequential_report(
    events: pd.DataFrame,
    experiment: str,
    *,
    method: str = "msprt",
    metric: str = "conversion",
    control: str | None = None,
    planned_units: int | None = None,
    alpha: float = 0.05,
    look_every: str = "1D",
) -> dict:
    """Per treatment, the method's evidence at every look and its verdict now.

    `planned_units` is per variant (as in `analysis.analyze_units`); the looks are the ends of each
    `look_every` period from the first exposure on.
    """
    if method not in sequential.METHODS:
        raise ValueError(f"method must be one of {sequential.METHODS}, got {method!r}")
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; known: {sorted(METRICS)}")
    if method == "group-sequential" and planned_units is None:
        raise ValueError("group-sequential needs the planned units per variant (--planned-units)")
    full = unit_table(events, experiment).units
    variants = sorted(full["variant"].unique())
    control = control or ("control" if "control" in variants else variants[0])
    ev = events[events["experiment"] == experiment]
    ts = pd.to_datetime(ev["ts"], utc=True)
    start = ts[ev["event_type"] == "exposure"].min().floor(look_every)
    cuts = pd.date_range(start + pd.Timedelta(look_every), ts.max().ceil(look_every), freq=look_every)
    cuts = cuts if len(cuts) else pd.DatetimeIndex([ts.max().ceil(look_every)])
    planned_total = None if planned_units is None else 2 * planned_units
    out = {"method": method, "metric": metric, "alpha": alpha, "control": control, "comparisons": []}
    for treatment in (v for v in variants if v != control):
        looks = []
        for cut in cuts:
            units = unit_table(ev[ts < cut], experiment).units if cut <= ts.max() else full
            try:
                d, v, n = _look_stats(units, control, treatment, metric)
            except ValueError:
                continue  # too early: fewer than two units per arm
            if looks and n == looks[-1]["units"]:
                continue  # nothing new since the last look
            looks.append({"look_end": cut, "units": n, "estimate": d, "variance": v})
            if planned_total is not None and n >= planned_total:
                break  # the plan is complete: later data does not change the decision
        if not looks:
            raise ValueError(f"{treatment!r} vs {control!r}: no look has two units per arm yet")
        d = np.array([x["estimate"] for x in looks])
        v = np.array([x["variance"] for x in looks])
        n = np.array([x["units"] for x in looks], float)
        plan = planned_total or n[-1]
        res = sequential.decisions(method, d, v, n, planned_units=plan, alpha=alpha)
        for i, look in enumerate(looks):
            look["z"] = float(d[i] / np.sqrt(v[i]))
            for key in ("p_value", "ci_low", "ci_high", "bound"):
                if key in res:
                    look[key] = float(res[key][i])
            # A fixed test's per-look rejections are what naive peeking would have claimed.
            look["naive_reject" if method == "fixed" else "reject"] = bool(res["reject"][i])
        complete = planned_total is not None and n[-1] >= planned_total
        if method == "fixed" and planned_total is None:
            verdict = "no planned horizon: the fixed-horizon p-value is valid only at a single planned look"
        elif method == "fixed":
            verdict = _fixed_verdict(complete, looks[-1], d[-1], v[-1], alpha)
        else:
            first = next((i for i, x in enumerate(looks) if x["reject"]), None)
            if first is not None:
                direction = "increase" if d[first] > 0 else "decrease"
                verdict = f"significant {direction} at look {first + 1}"
            elif complete:
                verdict = "no significant difference (planned units reached)"
            else:
                verdict = "continue: no boundary crossed yet"
        out["comparisons"].append(
            {"treatment": treatment, "looks": looks, "verdict": verdict, "plan_complete": bool(complete)}
        )
    return out


def _fixed_verdict(complete: bool, last: dict, d: float, v: float, alpha: float) -> str:
    """A fixed-horizon test reads its p-value once, at the planned units, and not before."""
    if not complete:
        return "not yet conclusive: fixed horizon not reached (peeking at its p-value is not valid)"
    p = float(sequential.fixed_p_values(d, v))
    last["p_value"] = p
    if p >= alpha:
        return "no significant difference"
    return "significant increase" if d > 0 else "significant decrease"
