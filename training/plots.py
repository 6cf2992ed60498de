"""Figures logged with every training run (matplotlib `Figure` objects, no pyplot global state)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure


def metric_at_k_figure(curves: Mapping[str, Mapping[int, float]], title: str = "") -> Figure:
    """One line per metric over k: how quality changes with the length of the list shown."""
    fig = Figure(figsize=(6, 4), dpi=80)
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.13, top=0.92)
    ax = fig.add_subplot()
    for metric, by_k in sorted(curves.items()):
        ks = sorted(by_k)
        ax.plot(ks, [by_k[k] for k in ks], marker="o", label=metric)
    ax.set_xlabel("k (list length)")
    ax.set_ylabel("value")
    ax.set_title(title or "metrics at k")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def popularity_figure(
    recommended: Sequence[str], item_counts: Mapping[str, float], title: str = ""
) -> Figure:
    """Histogram of training popularity for recommended items against the whole catalogue.

    A model that only echoes best-sellers piles up at the right; the catalogue line shows the long tail
    it could have used.
    """
    catalogue = np.fromiter(item_counts.values(), dtype=float, count=len(item_counts))
    shown = np.array([item_counts.get(item, 0.0) for item in recommended], dtype=float)
    top = max(catalogue.max(initial=0.0), shown.max(initial=0.0), 1.0)
    bins = np.unique(np.geomspace(1.0, top + 1.0, 30) - 1.0)
    fig = Figure(figsize=(6, 4), dpi=80)
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.13, top=0.92)
    ax = fig.add_subplot()
    for values, label in ((catalogue, "catalogue items"), (shown, "recommended slots")):
        if len(values):  # share per bin, not density: log-width bins would distort a density
            ax.hist(values, bins=bins, weights=np.full(len(values), 1 / len(values)), alpha=0.5, label=label)
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlabel("training interactions of the item")
    ax.set_ylabel("share")
    ax.set_title(title or "popularity of recommended items")
    ax.legend()
    return fig
