"""The shopper x product interaction data every recommender is fitted on.

`InteractionData` is the contract between feature jobs and models: a CSR matrix plus stable id maps
(string ids allowed), and optional side tables that feature-aware models (the ranker, cold start) use.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp


@dataclass(frozen=True)
class InteractionData:
    """Users x items weights with id maps.

    - `matrix`: CSR, shape (len(user_ids), len(item_ids)), float32 weights (>0 where interacted).
    - `user_ids` / `item_ids`: numpy arrays of ids (str); row i is user_ids[i], column j is item_ids[j].
    - `events`: optional long table behind the matrix with columns `user_id`, `item_id`, `ts`
      (datetime64[ns, UTC] or NaT), `weight`; time-aware models read it.
    - `item_features`: optional frame indexed by item id (e.g. `category_id`, `brand`, `origin_country`,
      `price`, `fulfillment`, `merchant_id`); `user_features`: optional frame indexed by user id
      (e.g. `region`, `segment`).
    """

    matrix: sp.csr_matrix
    user_ids: np.ndarray
    item_ids: np.ndarray
    events: pd.DataFrame | None = None
    item_features: pd.DataFrame | None = None
    user_features: pd.DataFrame | None = None
    user_index: dict = field(init=False, repr=False, compare=False)
    item_index: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.matrix.shape != (len(self.user_ids), len(self.item_ids)):
            raise ValueError(
                f"matrix shape {self.matrix.shape} does not match "
                f"{len(self.user_ids)} users x {len(self.item_ids)} items"
            )
        object.__setattr__(self, "user_index", {u: i for i, u in enumerate(self.user_ids.tolist())})
        object.__setattr__(self, "item_index", {t: j for j, t in enumerate(self.item_ids.tolist())})

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)
