"""Pages logged item by item: team-draft interleaving of two aliases, and epsilon-mixed exploration.

Both are composed without sponsored placements (a paid product at a fixed slot belongs to neither
ranker and has no exploration propensity). Interleaving drafts from the two rankers' finished pages
(every serving rule already applied to each), so each team only contributes what it would serve;
a page may then exceed a per-merchant cap by what the two pages share. Exploration replaces the
model's page, with probability epsilon, by a uniformly random ordered draw from the eligible products
(the same filters), so every shown product's propensity is exact:
(1 - epsilon) [it is the model's product at that slot] + epsilon / eligible products.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import replace

import numpy as np

from experiments.ab.interleaving import team_draft
from serving.ab import Assignment
from serving.catalog import CatalogSnapshot
from serving.recommend import Page, Pick, Policy, allowed_mask, recommend

_rng = random.Random()


def logged_page(
    catalog: CatalogSnapshot,
    chosen: Assignment,
    shopper_id: str,
    n: int,
    policy: Policy,
    rng: random.Random | None = None,
    **options,
) -> tuple[Page, list[dict]]:
    """The page for an interleaving or exploration assignment and its impression rows."""
    rng = rng or _rng
    policy = replace(policy, sponsored_positions=())
    page_id = uuid.uuid4().hex
    if chosen.interleave is not None:
        (alias_a, model_a), (alias_b, model_b) = chosen.interleave
        page_a = recommend(catalog, model_a, shopper_id, n, policy=policy, **options)
        page_b = recommend(catalog, model_b, shopper_id, n, policy=policy, **options)
        picks = {
            alias_a: {p.position: p for p in page_a.picks},
            alias_b: {p.position: p for p in page_b.picks},
        }
        shown, teams = team_draft(
            [p.position for p in page_a.picks], [p.position for p in page_b.picks], n, rng
        )
        team_alias = {"A": alias_a, "B": alias_b}
        chosen_picks = [picks[team_alias[t]][pos] for pos, t in zip(shown, teams, strict=True)]
        page = Page(chosen_picks, f"{page_a.model}+{page_b.model}", page_a.model_version, False, None)
        rows = [
            {
                "page_id": page_id,
                "slot": i,
                "product_id": str(catalog.product_ids[p.position]),
                "team": team_alias[t],
                "propensity": None,
            }
            for i, (p, t) in enumerate(zip(chosen_picks, teams, strict=True))
        ]
        return page, rows
    page = recommend(catalog, chosen.model, shopper_id, n, policy=policy, **options)
    eps = chosen.explore
    pool = np.flatnonzero(
        allowed_mask(
            catalog,
            shopper_id,
            category=options.get("category"),
            fulfillment=options.get("fulfillment"),
            exclude=options.get("seeds", ()),
        )
    )
    model_positions = [p.position for p in page.picks]
    if rng.random() < eps:  # the model's page is drawn from the same pool, so it always fits
        drawn = rng.sample(pool.tolist(), len(model_positions))
        page = replace(page, picks=[Pick(pos, 0.0, reason="exploration") for pos in drawn])
    rows = [
        {
            "page_id": page_id,
            "slot": i,
            "product_id": str(catalog.product_ids[p.position]),
            "team": None,
            "propensity": (1 - eps) * (p.position == model_positions[i]) + eps / max(len(pool), 1),
        }
        for i, p in enumerate(page.picks)
    ]
    return page, rows
