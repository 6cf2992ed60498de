"""Each shopper's own response to coupons, learned from their logged weeks by empirical Bayes.

A population model predicts a shopper's purchase chance without a coupon, p0(x), and a coupon's
uplift, tau(x, coupon), from features. Where the features miss what drives the response (a latent
price sensitivity, say), shoppers with the same x answer coupons very differently, and only their
own history tells them apart. `ShopperResponse` puts two multipliers per shopper on the population
model, a on the baseline and r on the uplift,

    P(buy in week w) = a_i * p0(x_i) + r_i * tau(x_i, coupon of week w)   (tau = 0 without a coupon),

and learns them from each shopper's logged weeks (bought or not, with which coupon or none):

- the prior g over a grid of (a, r) is estimated from every shopper at once (nonparametric maximum
  likelihood by EM, Laird 1978; the "g-modelling" of Efron 2016): it says how much shoppers depart
  from the population model, and how (a few strong responders, or many mild ones); nothing about the
  shape is assumed beyond the grid;
- each shopper's posterior over the grid is g times the likelihood of their own weeks: a shopper
  with no coupon week keeps the prior's mean uplift multiplier; a coupon week with a purchase far
  above their no-coupon rate moves r up, one without moves it down.

`predict(p0, tau)` gives the posterior mean purchase chances with and without each coupon;
`sample` draws (a, r) from each shopper's posterior (Thompson sampling, for exploration). The
population model must not have seen the weeks as features (the likelihood would count them twice).
"""

from __future__ import annotations

import numpy as np

__all__ = ["ShopperResponse", "ShopperBasket", "BASELINE_GRID", "UPLIFT_GRID"]

BASELINE_GRID = (0.33, 0.5, 0.7, 1.0, 1.4, 2.0, 3.0)
UPLIFT_GRID = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0)
P_CLIP = (1e-3, 0.995)


class ShopperResponse:
    """Per-shopper multipliers (a, r) on a population model's baseline and uplift; see the module
    docstring. `fit(shopper, p0, tau, bought, n_shoppers)` over logged weeks, then `a_`, `r_` (the
    posterior means), `predict`, `sample`."""

    def __init__(self, baseline_grid=BASELINE_GRID, uplift_grid=UPLIFT_GRID, iterations: int = 100):
        self.baseline_grid = np.asarray(baseline_grid, dtype=float)
        self.uplift_grid = np.asarray(uplift_grid, dtype=float)
        self.iterations = iterations

    def fit(self, shopper, p0, tau, bought, n_shoppers: int) -> ShopperResponse:
        """`shopper` (row index < n_shoppers), `p0`, `tau` (the population model's predictions for
        that shopper and the week's coupon; 0 for none) and `bought` (0/1), one entry per week."""
        shopper = np.asarray(shopper, dtype=int)
        p0, tau, y = (np.asarray(v, dtype=float) for v in (p0, tau, bought))
        if not (len(shopper) == len(p0) == len(tau) == len(y)):
            raise ValueError("shopper, p0, tau, bought differ in length")
        if len(shopper) and (shopper.min() < 0 or shopper.max() >= n_shoppers):
            raise ValueError("shopper indices must lie in [0, n_shoppers)")
        if not np.isin(y, (0, 1)).all():
            raise ValueError("bought must be 0 or 1")
        a, r = np.meshgrid(self.baseline_grid, self.uplift_grid, indexing="ij")
        self.grid_ = np.column_stack([a.ravel(), r.ravel()])  # (cells, 2)
        loglik = np.zeros((n_shoppers, len(self.grid_)))
        for c, (ac, rc) in enumerate(self.grid_):
            p = np.clip(ac * p0 + rc * tau, *P_CLIP)
            loglik[:, c] = np.bincount(shopper, y * np.log(p) + (1 - y) * np.log1p(-p), minlength=n_shoppers)
        lik = np.exp(loglik - loglik.max(axis=1, keepdims=True))
        g = self._start()
        informed = np.bincount(shopper, minlength=n_shoppers) > 0
        for _ in range(self.iterations):  # EM for the prior: g <- mean posterior of shoppers with weeks
            post = lik[informed] * g
            post /= post.sum(axis=1, keepdims=True)
            g = post.mean(axis=0) if len(post) else g
        self.prior_ = g
        post = lik * g
        self.posterior_ = post / post.sum(axis=1, keepdims=True)  # (n_shoppers, cells)
        self.a_, self.r_ = (self.posterior_ @ self.grid_).T
        return self

    def _start(self) -> np.ndarray:
        """EM's starting prior: the population model right on average (mean multipliers 1), spread
        over the whole grid so that the shoppers' weeks can move it anywhere. EM moves a flat start
        slowly, so that start would leave its own mean (about 2 on the uplift grid) in every
        shopper's posterior."""
        a, r = self.grid_[:, 0], self.grid_[:, 1]
        g = np.exp(-(np.log(a) ** 2) / (2 * 0.5**2) - r / 2)  # a lognormal around 1; r: mean 1.04
        return g / g.sum()

    def predict(self, p0, tau) -> tuple[np.ndarray, np.ndarray]:
        """(p_control, p_treated) per shopper: posterior means of a * p0 and a * p0 + r * tau.
        `p0` (n_shoppers,), `tau` (n_shoppers,) or (n_shoppers, n_coupons)."""
        p0, tau = np.asarray(p0, dtype=float), np.asarray(tau, dtype=float)
        base = np.clip(self.a_ * p0, *P_CLIP)
        r = self.r_ if tau.ndim == 1 else self.r_[:, None]
        return base, np.clip((base if tau.ndim == 1 else base[:, None]) + r * tau, *P_CLIP)

    def sample(self, rng) -> tuple[np.ndarray, np.ndarray]:
        """One (a, r) per shopper drawn from their posterior."""
        cum = np.cumsum(self.posterior_, axis=1)
        cell = (cum < rng.random(len(cum))[:, None]).sum(axis=1).clip(max=len(self.grid_) - 1)
        return self.grid_[cell, 0], self.grid_[cell, 1]


class ShopperBasket:
    """Each shopper's order value, learned from their own purchases by empirical Bayes.

    A population model predicts a buyer's expected order value v(x); shoppers with the same x still
    differ (what they buy, how much), and the planner prices a coupon by that value: the incremental
    revenue, and whether the basket reaches the minimum spend. On the log scale, each purchase j of
    shopper i is log(order_j / v_ij) = u_i + e_j, with u_i ~ N(m, tau^2) the shopper's own offset and
    e_j ~ N(0, s^2) the week-to-week spread. `fit(shopper, log_ratio, n_shoppers)` estimates s^2
    from the within-shopper spread (shoppers with two or more purchases), tau^2 from the rest of the
    total variance (method of moments), and each shopper's posterior mean offset `u_` (shrunk toward
    m by their number of purchases) and posterior sd `u_sd_`; `within_` is s. A shopper without a
    purchase keeps u = m and sd = tau.
    """

    def fit(self, shopper, log_ratio, n_shoppers: int) -> ShopperBasket:
        shopper = np.asarray(shopper, dtype=int)
        z = np.asarray(log_ratio, dtype=float)
        if len(shopper) != len(z) or not np.isfinite(z).all():
            raise ValueError("shopper and log_ratio differ in length, or log_ratio is not finite")
        if len(shopper) and (shopper.min() < 0 or shopper.max() >= n_shoppers):
            raise ValueError("shopper indices must lie in [0, n_shoppers)")
        count = np.bincount(shopper, minlength=n_shoppers).astype(float)
        total = np.bincount(shopper, z, minlength=n_shoppers)
        mean_i = np.divide(total, count, out=np.zeros(n_shoppers), where=count > 0)
        repeat = count >= 2
        dev = z - mean_i[shopper]
        dof = float((count[repeat] - 1).sum())
        within = (
            float((dev[repeat[shopper]] ** 2).sum() / dof) if dof > 0 else float(np.var(z)) if len(z) else 0.0
        )
        self.mean_ = float(z.mean()) if len(z) else 0.0
        self.tau2_ = max(float(np.var(z)) - within, 0.0) if len(z) else 0.0
        self.within_ = float(np.sqrt(within))
        precision = count / max(within, 1e-12) + (1.0 / self.tau2_ if self.tau2_ > 0 else np.inf)
        gain = np.divide(count / max(within, 1e-12), precision, out=np.zeros(n_shoppers), where=precision > 0)
        self.u_ = self.mean_ + gain * (mean_i - self.mean_)
        self.u_sd_ = np.sqrt(
            np.divide(1.0, precision, out=np.zeros(n_shoppers), where=np.isfinite(precision))
        )
        return self
