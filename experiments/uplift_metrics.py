"""Uplift evaluation metrics, built to scikit-uplift's definitions (see /work/shared/REFERENCES.md).

Figures here are comparable with scikit-uplift's `qini_auc_score`, `uplift_auc_score`, `uplift_at_k`
and `uplift_by_percentile`: same ordering (stable sort, descending), same tie handling (one curve
point per distinct score), same normalisation. They are NOT comparable with CausalML's Qini values.

`treatment` is binary here (1 treated, 0 control); compare one arm against control at a time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from commerce.files import atomic_path

__all__ = [
    "qini_curve",
    "perfect_qini_curve",
    "qini_auc_score",
    "uplift_curve",
    "perfect_uplift_curve",
    "uplift_auc_score",
    "uplift_at_k",
    "uplift_by_percentile",
    "uplift_calibration",
    "plot_uplift_report",
]


def _check(y_true, uplift, treatment) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=float).ravel()
    u = np.asarray(uplift, dtype=float).ravel()
    t = np.asarray(treatment).ravel()
    if not (len(y) == len(u) == len(t)):
        raise ValueError(f"y_true, uplift and treatment differ in length: {len(y)}, {len(u)}, {len(t)}")
    if len(y) == 0:
        raise ValueError("no rows to evaluate")
    if not np.isin(t, [0, 1]).all():
        raise ValueError("treatment must be binary 0/1 (compare one arm against control at a time)")
    t = t.astype(float)
    if t.sum() == 0 or t.sum() == len(t):
        raise ValueError("both treated and control rows are needed")
    if not (np.isfinite(y).all() and np.isfinite(u).all()):
        raise ValueError("y_true and uplift must be finite")
    return y, u, t


def _ordered(y, u, t):
    """Rows by predicted uplift, descending; ties keep scikit-uplift's order (reversed stable sort)."""
    order = np.argsort(u, kind="mergesort")[::-1]
    y, u, t = y[order], u[order], t[order]
    # One curve point after the last row of each run of equal scores.
    thresholds = np.r_[np.where(np.diff(u))[0], u.size - 1]
    return y, t, thresholds


def _cumulative(y_true, uplift, treatment) -> tuple[np.ndarray, ...]:
    """At each curve point: rows targeted, treated and control rows, treated and control outcome sums."""
    y, t, th = _ordered(*_check(y_true, uplift, treatment))
    n_all = th + 1
    n_t = np.cumsum(t)[th]
    y_t = np.cumsum(y * t)[th]
    y_c = np.cumsum(y * (1 - t))[th]
    return n_all, n_t, n_all - n_t, y_t, y_c


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.zeros_like(a, dtype=float), where=b != 0)


def _with_origin(x: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if x.size == 0 or v[0] != 0 or x[0] != 0:
        x, v = np.r_[0, x], np.r_[0.0, v]
    return x, v


def qini_curve(y_true, uplift, treatment) -> tuple[np.ndarray, np.ndarray]:
    """(rows targeted, Qini value): treated responders minus control responders scaled to treated count."""
    n_all, n_t, n_c, y_t, y_c = _cumulative(y_true, uplift, treatment)
    return _with_origin(n_all, y_t - y_c * _safe_div(n_t, n_c))


def perfect_qini_curve(y_true, treatment) -> tuple[np.ndarray, np.ndarray]:
    """The Qini curve of the ideal ordering (treated responders first, control responders last)."""
    y, _, t = _check(y_true, np.zeros(len(np.asarray(y_true))), treatment)
    return qini_curve(y, y * t - y * (1 - t), t)


def uplift_curve(y_true, uplift, treatment) -> tuple[np.ndarray, np.ndarray]:
    """(rows targeted, (treated rate - control rate) x rows targeted) at each distinct score."""
    n_all, n_t, n_c, y_t, y_c = _cumulative(y_true, uplift, treatment)
    return _with_origin(n_all, (_safe_div(y_t, n_t) - _safe_div(y_c, n_c)) * n_all)


def perfect_uplift_curve(y_true, treatment) -> tuple[np.ndarray, np.ndarray]:
    """The uplift curve of scikit-uplift's ideal ordering (binary outcomes).

    scikit-uplift defines it for 0/1 outcomes only; for continuous ones we use the Qini ideal order
    (treated by outcome descending first, control by outcome ascending last).
    """
    y, _, t = _check(y_true, np.zeros(len(np.asarray(y_true))), treatment)
    if not np.isin(y, [0, 1]).all():
        return uplift_curve(y, y * t - y * (1 - t), t)
    control_responders = np.sum((y == 1) & (t == 0))
    treated_non_responders = np.sum((y == 0) & (t == 1))
    summand = y if control_responders > treated_non_responders else t
    return uplift_curve(y, 2 * (y == t) + summand, t)


def _normalized_area(actual, perfect) -> float:
    x_a, v_a = actual
    x_p, v_p = perfect
    baseline = np.trapezoid([0.0, v_p[-1]], [0.0, x_p[-1]])
    denominator = np.trapezoid(v_p, x_p) - baseline
    if denominator == 0:
        raise ValueError("the perfect curve equals the random line; the normalised area is undefined")
    return float((np.trapezoid(v_a, x_a) - baseline) / denominator)


def qini_auc_score(y_true, uplift, treatment) -> float:
    """Normalised Qini AUC: (model area - random area) / (perfect area - random area)."""
    return _normalized_area(qini_curve(y_true, uplift, treatment), perfect_qini_curve(y_true, treatment))


def uplift_auc_score(y_true, uplift, treatment) -> float:
    """Normalised area under the uplift curve (AUUC), scikit-uplift's `uplift_auc_score`."""
    return _normalized_area(uplift_curve(y_true, uplift, treatment), perfect_uplift_curve(y_true, treatment))


def uplift_at_k(y_true, uplift, treatment, k: float = 0.3, strategy: str = "overall") -> float:
    """Treated minus control response rate among the top k share by predicted uplift.

    `overall`: the top int(k*n) of all rows. `by_group`: top int(k*n_t) treated and int(k*n_c) control.
    """
    y, u, t = _check(y_true, uplift, treatment)
    if not 0 < k <= 1:
        raise ValueError(f"k must be a share in (0, 1], got {k}")
    order = np.argsort(u, kind="mergesort")[::-1]
    y, t = y[order], t[order]
    if strategy == "overall":
        top = int(len(y) * k)
        y_top, t_top = y[:top], t[:top]
        treated, control = y_top[t_top == 1], y_top[t_top == 0]
    elif strategy == "by_group":
        treated = y[t == 1][: int((t == 1).sum() * k)]
        control = y[t == 0][: int((t == 0).sum() * k)]
    else:
        raise ValueError(f"strategy must be 'overall' or 'by_group', got {strategy!r}")
    if len(treated) == 0 or len(control) == 0:
        raise ValueError(f"the top {k:.0%} holds no treated or no control rows; uplift@k is undefined")
    return float(treated.mean() - control.mean())


def uplift_by_percentile(
    y_true, uplift, treatment, bins: int = 10, strategy: str = "overall"
) -> pd.DataFrame:
    """Per-bin counts, response rates, uplift and its standard error, bins from highest predicted uplift.

    Bins are `numpy.array_split` of the ordered rows (`overall`) or of each group separately (`by_group`).
    """
    y, u, t = _check(y_true, uplift, treatment)
    if bins < 1 or bins > len(y):
        raise ValueError(f"bins must be in [1, {len(y)}], got {bins}")
    order = np.argsort(u, kind="mergesort")[::-1]
    y, t = y[order], t[order]
    if strategy == "overall":
        y_bins, t_bins = np.array_split(y, bins), np.array_split(t, bins)
        treated = [yb[tb == 1] for yb, tb in zip(y_bins, t_bins, strict=True)]
        control = [yb[tb == 0] for yb, tb in zip(y_bins, t_bins, strict=True)]
    elif strategy == "by_group":
        treated = np.array_split(y[t == 1], bins)
        control = np.array_split(y[t == 0], bins)
    else:
        raise ValueError(f"strategy must be 'overall' or 'by_group', got {strategy!r}")
    rows = []
    for i, (yt, yc) in enumerate(zip(treated, control, strict=True)):
        rt = yt.mean() if len(yt) else np.nan
        rc = yc.mean() if len(yc) else np.nan
        se_t = yt.std() / np.sqrt(len(yt)) if len(yt) else np.nan
        se_c = yc.std() / np.sqrt(len(yc)) if len(yc) else np.nan
        rows.append(
            {
                "percentile": f"{100 * i / bins:.0f}-{100 * (i + 1) / bins:.0f}",
                "n_treatment": len(yt),
                "n_control": len(yc),
                "response_rate_treatment": rt,
                "response_rate_control": rc,
                "uplift": rt - rc,
                "std_uplift": float(np.sqrt(se_t**2 + se_c**2)),
            }
        )
    return pd.DataFrame(rows)


def uplift_calibration(y_true, uplift, treatment, bins: int = 10) -> pd.DataFrame:
    """Mean predicted versus observed uplift per decile of predicted uplift (highest first)."""
    y, u, t = _check(y_true, uplift, treatment)
    if bins < 1 or bins > len(y):
        raise ValueError(f"bins must be in [1, {len(y)}], got {bins}")
    order = np.argsort(u, kind="mergesort")[::-1]
    table = uplift_by_percentile(y, u, t, bins=bins, strategy="overall")
    table.insert(1, "predicted_uplift", [b.mean() for b in np.array_split(u[order], bins)])
    return table.rename(columns={"uplift": "observed_uplift"})


def plot_uplift_report(y_true, uplift, treatment, out_dir: Path, prefix: str = "uplift") -> list[Path]:
    """Write Qini, uplift-curve and calibration PNGs to `out_dir`; returns their paths (for MLflow)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, curve, perfect, score in [
        ("qini", qini_curve, perfect_qini_curve, qini_auc_score),
        ("uplift_curve", uplift_curve, perfect_uplift_curve, uplift_auc_score),
    ]:
        x, v = curve(y_true, uplift, treatment)
        xp, vp = perfect(y_true, treatment)
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(x, v, label=f"model (normalised AUC {score(y_true, uplift, treatment):.3f})")
        ax.plot(xp, vp, label="perfect", alpha=0.6)
        ax.plot([0, xp[-1]], [0, vp[-1]], "--", label="random", color="grey")
        ax.set_xlabel("shoppers targeted")
        ax.set_ylabel("incremental responders")
        ax.legend()
        path = out_dir / f"{prefix}_{name}.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)
    cal = uplift_calibration(y_true, uplift, treatment)
    fig, ax = plt.subplots(figsize=(6, 4))
    pos = np.arange(len(cal))
    ax.bar(pos - 0.2, cal["observed_uplift"], 0.4, yerr=1.96 * cal["std_uplift"], label="observed")
    ax.bar(pos + 0.2, cal["predicted_uplift"], 0.4, label="predicted")
    ax.set_xticks(pos, cal["percentile"], rotation=45)
    ax.set_xlabel("percentile of predicted uplift")
    ax.set_ylabel("uplift")
    ax.legend()
    path = out_dir / f"{prefix}_calibration.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight")
    plt.close(fig)
    paths.append(path)
    return paths
