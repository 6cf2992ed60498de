"""The metric catalogue: the TOML file the analysis reads, its checks, and guardrail tolerances."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from experiments.ab import analysis
from experiments.ab.catalogue import load_catalogue


def test_default_catalogue_defines_the_analysed_metrics():
    cat = load_catalogue()
    assert set(cat) == {"conversion", "orders_per_shopper", "revenue_per_shopper", "ctr"}
    assert cat["ctr"].definition == ("ratio", "clicks", "exposures")
    assert cat["revenue_per_shopper"].unit == "CNY per shopper"
    assert cat["revenue_per_shopper"].guardrail.max_relative_change == 0.02
    assert analysis.METRICS == {n: m.definition for n, m in cat.items()}


@pytest.mark.parametrize(
    "body, message",
    [
        (
            "[metrics.x]\nkind='mean'\nnumerator='revenue'\ndirection='up'\ndescription=''\nunit=''",
            "direction",
        ),
        (
            "[metrics.x]\nkind='ratio'\nnumerator='clicks'\ndirection='increase'\ndescription=''\nunit=''",
            "ratio",
        ),
        (
            "[metrics.x]\nkind='mean'\nnumerator='bogus'\ndirection='increase'\ndescription=''\nunit=''",
            "per-unit",
        ),
        ("[other]\n", r"no \[metrics"),
        ("[metrics.x\n", "Expected"),
    ],
)
def test_bad_catalogues_are_refused(tmp_path, body, message):
    path = tmp_path / "m.toml"
    path.write_text(body)
    with pytest.raises(ValueError, match=message):
        load_catalogue(path)


def test_guardrail_tolerance_from_the_catalogue():
    # Revenue per shopper 1% lower: significantly worse, but within the catalogue's 2% tolerance;
    # 10% lower is breached.
    rng = np.random.default_rng(0)

    def run(treated_mean):
        n = 2000
        variant = np.repeat(["control", "treatment"], n)
        revenue = np.concatenate([rng.normal(100, 1, n), rng.normal(treated_mean, 1, n)])
        units = pd.DataFrame(
            {
                "variant": variant,
                "exposures": 1,
                "clicks": rng.integers(0, 2, 2 * n),
                "purchases": 1,
                "revenue": revenue,
                "converted": rng.integers(0, 2, 2 * n).astype(float),
            }
        )
        report = analysis.analyze_units(
            units, metrics=["conversion"], guardrails={"revenue_per_shopper": "decrease"}
        )
        return next(r for r in report["comparisons"] if r["metric"] == "revenue_per_shopper")

    mild = run(99.0)
    assert mild["guardrail_tolerance"] == 0.02 and mild["abs_ci"][1] < 0  # significantly worse...
    assert mild["verdict"] == "guardrail ok"  # ...but within tolerance
    assert run(90.0)["verdict"] == "guardrail breached"
