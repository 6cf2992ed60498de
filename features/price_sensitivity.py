"""Per-shopper price sensitivity estimated from choice data (issue 16).

The mean price position of what a shopper views, carts and buys (`shopper_price_features`) mixes
their price sensitivity with which categories they browse and which brands they like. A shopper's
choices say more when each is compared with what else they could have done:

- `price_slope_cart`: does a view become a cart less often when the product is dear? A logistic
  regression of cart on the product's log price position (log price over its category's median) per
  (shopper, product) viewed, with the population's intercept, slope and a product-popularity
  control, plus a per-shopper intercept (their own cart rate) and slope, both shrunk toward zero by
  empirical Bayes (Gaussian priors whose variances are estimated by EM over all shoppers, with the
  Laplace approximation). The column is the population slope plus the shopper's posterior
  deviation: more negative = more put off by price.
- `price_tilt_view`: which brands a shopper looks at within a category. Each browsing choice
  (distinct session and brand) is a conditional-logit choice among the category's brands, at the
  population's view shares, tilted by d x the brand's price tier (mean log price position of its
  products). d is one Newton step from 0, i.e. the score sum(tier chosen - population's mean tier of
  the category) over the information sum(population's variance of the tier), shrunk by an empirical
  Bayes prior whose variance is the method-of-moments excess of the scores' spread over the
  information. Negative = keeps to cheaper brands than the population in the same categories.
- `price_slope_search` (only with search impression logs): the same shrunk logistic as the cart
  slope, of click on the shown product's log price position, with a fixed effect per position (its
  examination chance) and popularity as population controls.

Everything is read from the event log, the catalogue and (if given) the search impression log before
`as_of`; a shopper without the behaviour gets the population value (0 deviation). The pooled fits
use scikit-learn; the per-shopper step is a 2 x 2 Newton system solved in closed form for every
shopper at once (numpy bincount), a few CPU seconds for 20,000 shoppers and 600,000 views. A generic
mixed-model fitter (statsmodels' BinomialBayesMixedGLM, variational Bayes) fits the same model but
was not tried at this size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.linear_model import LogisticRegression

from commerce.files import atomic_path
from commerce.inputs import check_file, check_marketplace, marketplace_dir
from features.tables import as_utc, check_window

__all__ = [
    "SENSITIVITY_FEATURES",
    "SEARCH_SENSITIVITY_FEATURES",
    "price_ladder",
    "shrunk_logit_slopes",
    "shopper_price_sensitivity",
    "build_price_sensitivity",
]

SENSITIVITY_FEATURES = ("price_slope_cart", "price_tilt_view")
SEARCH_SENSITIVITY_FEATURES = ("price_slope_search",)
#: The columns of the search impression log (`crosscart search simulate-logs`) the search slope reads,
#: and their kind (`commerce.inputs.check_file`).
SEARCH_LOG_COLUMNS = {
    "ts": "timestamp",
    "shopper_id": "text",
    "position": "number",
    "product_id": "text",
    "clicked": "flag",
}
EM_ROUNDS = 30
NEWTON_STEPS = 3
MIN_VARIANCE = 1e-4  # floor of a prior variance, so a shrinkage never divides by zero


def price_ladder(products: pd.DataFrame) -> pd.DataFrame:
    """Per product (indexed by product_id): `position` (log price over its category's median) and
    `tier` (its brand's mean position), from products (product_id, category_id, brand, price)."""
    price = products["price"].map(float).to_numpy()
    cat = products["category_id"].to_numpy()
    median = pd.Series(price).groupby(cat).transform("median").to_numpy()
    position = np.log(price / median)
    tier = pd.Series(position).groupby(products["brand"].to_numpy()).transform("mean").to_numpy()
    return pd.DataFrame(
        {"category_id": cat, "brand": products["brand"].to_numpy(), "position": position, "tier": tier},
        index=pd.Index(products["product_id"].to_numpy(), name="product_id"),
    )


def shrunk_logit_slopes(
    group: np.ndarray,
    x: np.ndarray,
    successes: np.ndarray,
    trials: np.ndarray,
    offset: np.ndarray,
    n_groups: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Empirical-Bayes per-group intercept and slope deviations of a binomial logit.

    logit p = offset + a[g] + b[g] * x with a ~ N(0, va), b ~ N(0, vb) independent; va and vb are
    estimated by EM (Laplace approximation: each group's posterior mode and inverse Hessian, found by
    Newton steps on the 2 x 2 system, vectorised over groups). Returns (b, posterior variance of b);
    a group without rows has b = 0 and the prior variance. The EM averages over groups with rows only:
    an empty group's term is the current variance itself, so shoppers without the behaviour slowed
    the EM to a false stop and the estimates depended on how many of them were passed."""
    group = np.asarray(group, dtype=np.int64)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    a = np.zeros(n_groups)
    b = np.zeros(n_groups)
    va, vb = 1.0, 1.0
    sa = sb = np.full(n_groups, 1.0)

    def sums(w):
        return np.bincount(group, weights=w, minlength=n_groups)

    seen = sums(n) > 0
    if not seen.any():
        return b, np.full(n_groups, vb)

    for _ in range(EM_ROUNDS):
        for _ in range(NEWTON_STEPS):
            p = expit(offset + a[group] + b[group] * x)
            r, w = y - n * p, n * p * (1 - p)
            ga, gb = sums(r) - a / va, sums(r * x) - b / vb
            haa, hab, hbb = sums(w) + 1 / va, sums(w * x), sums(w * x * x) + 1 / vb
            det = haa * hbb - hab * hab
            a += (hbb * ga - hab * gb) / det
            b += (haa * gb - hab * ga) / det
        sa, sb = hbb / det, haa / det  # posterior variances (inverse Hessian's diagonal)
        va_new = max(float(np.mean((a * a + sa)[seen])), MIN_VARIANCE)
        vb_new = max(float(np.mean((b * b + sb)[seen])), MIN_VARIANCE)
        done = abs(va_new - va) < 1e-4 * va and abs(vb_new - vb) < 1e-4 * vb
        va, vb = va_new, vb_new
        if done:
            break
    return b, sb


def _pooled_logit(
    X: np.ndarray, successes: np.ndarray, trials: np.ndarray
) -> tuple[np.ndarray, float] | None:
    """Population binomial logit (coefficients, intercept) from aggregated rows; None when every trial
    went one way (nothing to fit)."""
    if not 0 < successes.sum() < trials.sum():
        return None
    rows = np.concatenate([X, X])
    labels = np.concatenate([np.ones(len(X)), np.zeros(len(X))])
    weight = np.concatenate([successes, trials - successes])
    keep = weight > 0
    model = LogisticRegression(C=1e6, max_iter=500)
    model.fit(rows[keep], labels[keep], sample_weight=weight[keep])
    return model.coef_[0], float(model.intercept_[0])


def _population_plus_shrunk(
    shoppers: pd.Series, X: np.ndarray, successes: np.ndarray, trials: np.ndarray, index: pd.Index
) -> pd.Series:
    """Per shopper of `index`: the pooled logit's slope on X's first column (the price position), plus
    the shopper's shrunk deviation from it (`shrunk_logit_slopes`, the pooled fit as offset); NaN
    everywhere when every trial went one way."""
    fitted = _pooled_logit(X, successes, trials)
    if fitted is None:
        return pd.Series(np.nan, index=index)
    coef, intercept = fitted
    offset = intercept + X @ coef
    code = index.get_indexer(shoppers)
    keep = code >= 0
    b, _ = shrunk_logit_slopes(
        code[keep], X[keep, 0], successes[keep], trials[keep], offset[keep], len(index)
    )
    return pd.Series(coef[0] + b, index=index)


def _cart_slope(views: pd.DataFrame, carts: pd.DataFrame, ladder: pd.DataFrame, index: pd.Index) -> pd.Series:
    """`price_slope_cart` per shopper of `index` (see the module docstring)."""
    out = pd.Series(np.nan, index=index)
    if views.empty:
        return out
    counts = views.groupby(["shopper_id", "product_id"]).size().rename("n").to_frame()
    carted = carts.groupby(["shopper_id", "product_id"]).size().rename("c")
    counts = counts.join(carted).fillna({"c": 0.0}).reset_index()
    counts["c"] = np.minimum(counts["c"], counts["n"])  # a cart of a product viewed before as_of only
    counts = counts.join(ladder[["position"]], on="product_id").dropna(subset=["position"])
    pop = views.groupby("product_id").size()
    log_pop = np.log(counts["product_id"].map(pop).to_numpy(dtype=float) / pop.mean())
    x = counts["position"].to_numpy()
    X = np.column_stack([x, log_pop])
    y, n = counts["c"].to_numpy(dtype=float), counts["n"].to_numpy(dtype=float)
    return _population_plus_shrunk(counts["shopper_id"], X, y, n, index)


def _view_tilt(views: pd.DataFrame, ladder: pd.DataFrame, index: pd.Index) -> pd.Series:
    """`price_tilt_view` per shopper of `index` (see the module docstring)."""
    out = pd.Series(0.0, index=index)
    if views.empty:
        return out
    v = views.join(ladder[["category_id", "brand", "tier"]], on="product_id").dropna(subset=["tier"])
    # one choice per session and brand: later views of a visit often stay on the same brand
    key = ["session_id", "brand"] if "session_id" in v.columns else ["shopper_id", "product_id"]
    choices = v.drop_duplicates(key)
    shares = choices.groupby(["category_id", "brand"]).size().rename("k").reset_index()
    tiers = ladder.drop_duplicates("brand").set_index("brand")["tier"]
    shares["tier"] = shares["brand"].map(tiers)
    shares["w"] = shares["k"] / shares.groupby("category_id")["k"].transform("sum")
    shares["wt"], shares["wt2"] = shares["w"] * shares["tier"], shares["w"] * shares["tier"] ** 2
    cat = shares.groupby("category_id")[["wt", "wt2"]].sum()
    mean, var = cat["wt"], cat["wt2"] - cat["wt"] ** 2
    score = (choices["tier"] - choices["category_id"].map(mean)).groupby(choices["shopper_id"]).sum()
    info = choices["category_id"].map(var).groupby(choices["shopper_id"]).sum()
    score = score.reindex(index, fill_value=0.0).to_numpy()
    info = info.reindex(index, fill_value=0.0).to_numpy()
    has = info > 0
    if not has.any():
        return out
    # E[score^2] = info + tau2 * info^2 for a shopper whose tilt is drawn with variance tau2
    tau2 = max(float(np.sum(score[has] ** 2 - info[has]) / np.sum(info[has] ** 2)), MIN_VARIANCE)
    return pd.Series(score / (info + 1.0 / tau2), index=index)


def _search_slope(search_logs: pd.DataFrame, ladder: pd.DataFrame, index: pd.Index) -> pd.Series:
    """`price_slope_search` per shopper of `index` (see the module docstring)."""
    out = pd.Series(np.nan, index=index)
    logs = search_logs.join(ladder[["position"]], on="product_id").dropna(subset=["position"])
    if logs.empty:
        return out
    grouped = (
        logs.groupby(["shopper_id", "product_id", "position_shown"])["clicked"]
        .agg(["sum", "size"])
        .reset_index()
        .join(ladder[["position"]], on="product_id")
    )
    shown = logs.groupby("product_id").size()
    log_pop = np.log(grouped["product_id"].map(shown).to_numpy(dtype=float) / shown.mean())
    slots = np.sort(grouped["position_shown"].unique())
    slot = (grouped["position_shown"].to_numpy()[:, None] == slots[None, 1:]).astype(float)
    x = grouped["position"].to_numpy()
    X = np.column_stack([x, log_pop, slot])
    y, n = grouped["sum"].to_numpy(dtype=float), grouped["size"].to_numpy(dtype=float)
    return _population_plus_shrunk(grouped["shopper_id"], X, y, n, index)


def shopper_price_sensitivity(
    events: pd.DataFrame,
    products: pd.DataFrame,
    shopper_ids,
    as_of,
    search_logs: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """SENSITIVITY_FEATURES (and SEARCH_SENSITIVITY_FEATURES with `search_logs`) per shopper, indexed
    by `shopper_ids`, from `events` (ts, shopper_id, product_id, event_type; session_id if present)
    before `as_of`, the catalogue (product_id, category_id, brand, price) and the search impression
    log (ts, shopper_id, position, product_id, clicked). A shopper without views (searches) gets the
    population's slope (a column with nothing to fit at all, 0)."""
    as_of = as_utc(as_of)
    ladder = price_ladder(products)
    index = pd.Index(np.asarray(shopper_ids, dtype=object), name="shopper_id")
    ts = pd.to_datetime(events["ts"], utc=True)
    past = events[(ts < as_of).to_numpy() & events["product_id"].notna().to_numpy()]
    past = past[past["product_id"].isin(ladder.index)]
    views = past[past["event_type"] == "view"]
    carts = past[past["event_type"] == "cart"]
    out = pd.DataFrame(index=index)
    out["price_slope_cart"] = _cart_slope(views, carts, ladder, index)
    out["price_tilt_view"] = _view_tilt(views, ladder, index)
    if search_logs is not None:
        logs = search_logs[(pd.to_datetime(search_logs["ts"], utc=True) < as_of).to_numpy()]
        logs = logs.rename(columns={"position": "position_shown"})
        out["price_slope_search"] = _search_slope(logs, ladder, index)
    # a column with nothing to fit (no carts, no clicks at all): 0 for everyone
    return out.astype(float).fillna(0.0)


def build_price_sensitivity(
    data_dir: str | Path, out: str | Path, as_of=None, search_logs: bool = True
) -> dict:
    """The feature job: `shopper_price_sensitivity` of every shopper of a marketplace directory
    (events/, products.parquet, shoppers.parquet; search_logs.parquet too if present and
    `search_logs`) as of `as_of` (default: just after the last event), written to the Parquet file
    `out` (shopper_id + the columns). Returns a summary."""
    d = marketplace_dir(data_dir)
    check_marketplace(d, ["events", "products.parquet", "shoppers.parquet"])
    logs_path = d / "search_logs.parquet"
    read_logs = search_logs and logs_path.exists()
    if read_logs:  # its pages too: damaged ones ended the job with pyarrow's traceback, naming no file
        check_file(logs_path, SEARCH_LOG_COLUMNS)
    if as_of is not None:
        check_window(d, as_of)
    events = pd.read_parquet(
        d / "events", columns=["ts", "shopper_id", "product_id", "event_type", "session_id"]
    ).dropna(subset=["shopper_id"])
    products = pd.read_parquet(
        d / "products.parquet", columns=["product_id", "category_id", "brand", "price"]
    )
    shoppers = pd.read_parquet(d / "shoppers.parquet", columns=["shopper_id"])
    as_of = events["ts"].max() + pd.Timedelta(microseconds=1) if as_of is None else as_utc(as_of)
    logs = pd.read_parquet(logs_path, columns=list(SEARCH_LOG_COLUMNS)) if read_logs else None
    table = shopper_price_sensitivity(events, products, shoppers["shopper_id"], as_of, search_logs=logs)
    with atomic_path(Path(out)) as tmp:
        table.reset_index().to_parquet(tmp, index=False)
    return {
        "shoppers": len(table),
        "columns": list(table.columns),
        "as_of": as_of.isoformat(),
        "out": str(out),
    }
