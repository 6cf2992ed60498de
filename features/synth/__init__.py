"""The synthetic cross-border marketplace: catalog, shoppers, events and past coupon campaigns, with truth.

Generate (`crosscart generate --scale tiny|demo|large --seed N --out DIR`, or in Python):

    from features.synth import generate_marketplace
    manifest = generate_marketplace("var/market", "demo", seed=7)

The files are described in docs/data-contracts.md. Shoppers have latent tastes (sparse category
affinities, origin affinities, a low-rank latent vector, price sensitivity, brand loyalty, activity);
products have power-law popularity. The model (`features.synth.model`) makes preferences learnable:
what a shopper views and buys follows their tastes, so collaborative filtering beats popularity, and
observable features (category shares, price band, recency) can add on top.

Simulate against the truth (`features.synth.truth`):

    from features.synth.truth import load_truth, purchase_probabilities, shopper_rfm, coupon_response
    truth = load_truth("var/market")
    p = purchase_probabilities(truth, ["U0000001"], ["P0000003", "P0000042"])  # next organic purchase
    rfm = shopper_rfm(events, truth.shopper_ids, as_of="2025-11-20")  # observable drivers at a date
    effects = coupon_response(truth, rfm, kind="amount_off", value=30, min_spend=199)
    # -> p_control, p_treated, true_uplift, spend_control, spend_treated per shopper

`choice_probabilities` gives the next-view distribution; `truth.coupon_effects` the true effects of the
past campaigns (truth/coupon_effects.parquet).
"""

from features.synth.generator import GENERATOR_VERSION, SCALES, Scale, generate_marketplace

__all__ = ["GENERATOR_VERSION", "SCALES", "Scale", "generate_marketplace"]
