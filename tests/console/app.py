"""The app the browser tests serve with uvicorn: the real app factory over the tiny demo's database and
MLflow registry, with one difference: the uplift model planning uses is the coupon-terms effect model
fitted on the tiny marketplace (what `crosscart campaign plan --data DIR` plans with), because the
registered per-kind model learns no profitable effect from the tiny demo's 500 shoppers and would plan
an empty audience, leaving nothing to launch and measure."""

from __future__ import annotations

import os


class FittedUplift:
    """A model source holding one fitted effect model (the ModelSource protocol of serving.model_store)."""

    def __init__(self, market_dir: str) -> None:
        from training.uplift import fit_terms_model

        self.model = fit_terms_model(market_dir, seed=0)  # a CouponUpliftModel, as the uplift store holds

    def champion(self) -> str:
        return "terms-1"

    def load(self, version: str):
        return self.model


def create():
    from crosscart.settings import Settings
    from serving.app import create_app

    settings = Settings()
    market = os.environ["CROSSCART_TEST_MARKET_DIR"]
    return create_app(settings, uplift_source=FittedUplift(market), warm_shoppers=0)
