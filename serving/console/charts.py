"""Server-side SVG charts: no chart library in the browser, nothing to download, readable without script.

Each chart is an `<svg role="img">` with a title and a description for screen readers; the numbers it
plots are also in the page's tables.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from markupsafe import Markup, escape

WIDTH, HEIGHT = 640, 260
PAD_L, PAD_R, PAD_T, PAD_B = 64, 16, 16, 44
COLORS = ("#1f5fa8", "#b4461b", "#2f7d32")
MAX_POINTS = 200


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 5, 10) if raw <= m * step)
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step) + 1)]


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.3g}"


def thin(xs: Sequence[float], *series: Sequence[float], limit: int = MAX_POINTS):
    """At most `limit` evenly spaced points (first and last kept), so the page stays small."""
    n = len(xs)
    if n <= limit:
        return (list(xs), *[list(s) for s in series])
    idx = sorted({round(i * (n - 1) / (limit - 1)) for i in range(limit)})
    return ([xs[i] for i in idx], *[[s[i] for i in idx] for s in series])


def line_chart(
    chart_id: str,
    title: str,
    xs: Sequence[float],
    series: Sequence[tuple[str, Sequence[float]]],
    *,
    x_label: str,
    y_label: str,
    marker: float | None = None,
    marker_label: str = "",
) -> Markup:
    """Lines over a shared x axis, an optional vertical marker (e.g. the chosen budget)."""
    if not xs:
        return Markup("<p>No data to plot.</p>")
    ys_all = [y for _, ys in series for y in ys if math.isfinite(y)]
    x_lo, x_hi = min(xs), max([*xs, marker or xs[0]])
    y_lo, y_hi = min([0.0, *ys_all]), max([0.0, *ys_all])
    if y_hi == y_lo:
        y_hi = y_lo + 1
    if x_hi == x_lo:
        x_hi = x_lo + 1

    def sx(x: float) -> float:
        return PAD_L + (x - x_lo) / (x_hi - x_lo) * (WIDTH - PAD_L - PAD_R)

    def sy(y: float) -> float:
        return HEIGHT - PAD_B - (y - y_lo) / (y_hi - y_lo) * (HEIGHT - PAD_T - PAD_B)

    parts = [
        f'<svg id="{chart_id}" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="{chart_id}-t {chart_id}-d" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{chart_id}-t">{escape(title)}</title>',
        f'<desc id="{chart_id}-d">{escape(y_label)} against {escape(x_label)}; '
        + escape(", ".join(f"{name}: from {_fmt(ys[0])} to {_fmt(ys[-1])}" for name, ys in series if ys))
        + "</desc>",
    ]
    for t in _ticks(y_lo, y_hi):
        y = sy(t)
        parts.append(f'<line x1="{PAD_L}" x2="{WIDTH - PAD_R}" y1="{y:.1f}" y2="{y:.1f}" class="gridline"/>')
        parts.append(f'<text x="{PAD_L - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
    for t in _ticks(x_lo, x_hi):
        x = sx(t)
        parts.append(f'<text x="{x:.1f}" y="{HEIGHT - PAD_B + 16}" text-anchor="middle">{_fmt(t)}</text>')
    parts.append(
        f'<text x="{(PAD_L + WIDTH - PAD_R) / 2}" y="{HEIGHT - 6}" text-anchor="middle">'
        f"{escape(x_label)}</text>"
    )
    parts.append(f'<line x1="{PAD_L}" x2="{WIDTH - PAD_R}" y1="{sy(0):.1f}" y2="{sy(0):.1f}" class="axis"/>')
    for (name, ys), color in zip(series, COLORS, strict=False):
        points = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(xs, ys, strict=True) if math.isfinite(y))
        parts.append(
            f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{points}">'
            f"<title>{escape(name)}</title></polyline>"
        )
    if marker is not None:
        x = sx(marker)
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{PAD_T}" y2="{HEIGHT - PAD_B}" class="marker"/>'
            f'<text x="{x + 4:.1f}" y="{HEIGHT - PAD_B - 6}">{escape(marker_label)}</text>'
        )
    legend_y = PAD_T + 4
    for i, ((name, _), color) in enumerate(zip(series, COLORS, strict=False)):
        y = legend_y + 16 * i
        parts.append(
            f'<rect x="{PAD_L + 8}" y="{y}" width="12" height="4" fill="{color}"/>'
            f'<text x="{PAD_L + 26}" y="{y + 6}">{escape(name)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def interval_chart(
    chart_id: str, title: str, rows: Sequence[tuple[str, float | None, float | None, float | None]]
) -> Markup:
    """One row per figure, each on its own scale: the estimate as a dot, its 95% interval as a bar, and
    zero marked, so one sees at a glance whether the interval excludes no effect."""
    row_h, left, right = 44, 230, WIDTH - 24
    height = PAD_T + row_h * len(rows) + 8
    parts = [
        f'<svg id="{chart_id}" class="chart" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-labelledby="{chart_id}-t" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{chart_id}-t">{escape(title)}</title>',
    ]
    for i, (label, est, low, high) in enumerate(rows):
        vals = [v for v in (est, low, high) if v is not None and math.isfinite(v)]
        y = PAD_T + row_h * i + row_h / 2
        parts.append(f'<text x="8" y="{y + 4:.1f}">{escape(label)}</text>')
        if not vals:
            parts.append(f'<text x="{left}" y="{y + 4:.1f}">undefined for these data</text>')
            continue
        lo, hi = min([0.0, *vals]), max([0.0, *vals])
        span = (hi - lo) or 1.0

        def sx(v: float, lo: float = lo, span: float = span) -> float:
            return left + (v - lo) / span * (right - left)

        parts.append(
            f'<line x1="{sx(0):.1f}" x2="{sx(0):.1f}" y1="{y - 14:.1f}" y2="{y + 14:.1f}" class="axis"/>'
        )
        if low is not None and high is not None and math.isfinite(low) and math.isfinite(high):
            parts.append(
                f'<line x1="{sx(low):.1f}" x2="{sx(high):.1f}" y1="{y:.1f}" y2="{y:.1f}" '
                f'stroke="{COLORS[0]}" stroke-width="6" stroke-opacity="0.35"/>'
                f'<text x="{sx(low):.1f}" y="{y + 20:.1f}" text-anchor="middle">{_fmt(low)}</text>'
                f'<text x="{sx(high):.1f}" y="{y + 20:.1f}" text-anchor="middle">{_fmt(high)}</text>'
            )
        if est is not None and math.isfinite(est):
            parts.append(f'<circle cx="{sx(est):.1f}" cy="{y:.1f}" r="5" fill="{COLORS[0]}"/>')
    parts.append("</svg>")
    return Markup("".join(parts))
