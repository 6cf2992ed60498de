"""Sample size and power for the planned fixed horizon (statsmodels power classes).

Conversion-type metrics use Cohen's h on the two proportions with the normal test; mean metrics use
the t test with effect size = minimum detectable effect / standard deviation.
"""

from __future__ import annotations

import math

from statsmodels.stats.power import NormalIndPower, TTestIndPower
from statsmodels.stats.proportion import proportion_effectsize


def check_levels(alpha: float, power: float | None = None, ratio: float = 1.0) -> None:
    """The test's level and power are probabilities, its ratio a positive number (not `nan`): the
    calculator's check and the simulations' (`crosscart experiment simulate --alpha nan` ran and
    reported "expected nan")."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if power is not None and not 0 < power < 1:
        raise ValueError(f"power must be in (0, 1), got {power}")
    if not 0 < ratio < math.inf:
        raise ValueError(f"ratio (treatment / control size) must be positive, got {ratio}")


def _treated_rate(baseline: float, mde: float, relative: bool) -> float:
    if not 0 < baseline < 1:
        raise ValueError(f"baseline rate must be in (0, 1), got {baseline}")
    treated = baseline * (1 + mde) if relative else baseline + mde
    if not 0 < treated < 1 or treated == baseline:
        raise ValueError(
            f"baseline {baseline} with effect {mde} gives treated rate {treated}: "
            "need a non-zero effect that stays inside (0, 1)"
        )
    return treated


def sample_size_proportion(
    baseline: float,
    mde: float,
    *,
    relative: bool = True,
    alpha: float = 0.05,
    power: float = 0.8,
    ratio: float = 1.0,
) -> int:
    """Control units needed to detect `mde` on a rate (treatment gets `ratio` times as many), two-sided."""
    check_levels(alpha, power, ratio)
    h = proportion_effectsize(_treated_rate(baseline, mde, relative), baseline)
    n = NormalIndPower().solve_power(effect_size=abs(h), alpha=alpha, power=power, ratio=ratio)
    return math.ceil(n)


def power_proportion(
    baseline: float, treated: float, n_control: int, *, alpha: float = 0.05, ratio: float = 1.0
) -> float:
    """Power of the two-sided test comparing two rates with `n_control` control units."""
    check_levels(alpha, None, ratio)
    if n_control < 2:
        raise ValueError(f"n_control must be at least 2, got {n_control}")
    h = proportion_effectsize(treated, baseline)
    return float(NormalIndPower().power(effect_size=abs(h), nobs1=n_control, alpha=alpha, ratio=ratio))


def sample_size_mean(
    std: float, mde: float, *, alpha: float = 0.05, power: float = 0.8, ratio: float = 1.0
) -> int:
    """Control units needed to detect an absolute difference `mde` in a mean with unit-level `std`."""
    check_levels(alpha, power, ratio)
    if not 0 < std < math.inf or not math.isfinite(mde) or mde == 0:
        raise ValueError(f"need a finite std > 0 and a finite non-zero mde, got std={std}, mde={mde}")
    n = TTestIndPower().solve_power(effect_size=abs(mde) / std, alpha=alpha, power=power, ratio=ratio)
    return math.ceil(n)


def power_mean(std: float, mde: float, n_control: int, *, alpha: float = 0.05, ratio: float = 1.0) -> float:
    """Power of Welch's test for an absolute difference `mde` in a mean with `n_control` control units."""
    check_levels(alpha, None, ratio)
    if not 0 < std < math.inf or not math.isfinite(mde) or n_control < 2:
        raise ValueError(
            f"need a finite std > 0, a finite mde and n_control >= 2, got std={std}, mde={mde},"
            f" n_control={n_control}"
        )
    return float(TTestIndPower().power(effect_size=abs(mde) / std, nobs1=n_control, alpha=alpha, ratio=ratio))
