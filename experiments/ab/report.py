"""The experiment report on disk: JSON, Markdown with the figures as PNG, optionally logged to MLflow.

Figures (matplotlib `Figure`, no pyplot state): the primary metric over the looks with the method's
interval or boundary, the segment breakdown as a forest plot, the interleaving preference and the
off-policy estimates with their intervals next to the logged rates.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from commerce.files import atomic_path


def _figure() -> tuple[Figure, object]:
    fig = Figure(figsize=(7, 4), dpi=80)
    fig.subplots_adjust(left=0.14, right=0.97, bottom=0.15, top=0.9)
    return fig, fig.add_subplot()


def sequential_figure(seq: dict) -> Figure:
    """Lift estimate per look; mSPRT's confidence sequence, or z against the boundaries."""
    fig, ax = _figure()
    for comp in seq["comparisons"]:
        looks = comp["looks"]
        x = np.arange(1, len(looks) + 1)
        if seq["method"] == "msprt":
            est = [lk["estimate"] for lk in looks]
            ax.plot(x, est, marker="o", label=f"{comp['treatment']} lift")
            ax.fill_between(x, [lk["ci_low"] for lk in looks], [lk["ci_high"] for lk in looks], alpha=0.2)
            ax.axhline(0, color="grey", lw=0.8)
            ax.set_ylabel(f"{seq['metric']} lift (confidence sequence)")
        else:
            ax.plot(x, [lk["z"] for lk in looks], marker="o", label=f"{comp['treatment']} z")
            bound = [lk["bound"] for lk in looks] if seq["method"] == "group-sequential" else [1.96] * len(x)
            ax.plot(x, bound, "r--", lw=1, label="boundary")
            ax.plot(x, [-b for b in bound], "r--", lw=1)
            ax.set_ylabel(f"{seq['metric']} z statistic")
    ax.set_xlabel("look")
    ax.set_title(f"{seq['method']}: {seq['metric']} by look")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def segments_figure(seg: dict) -> Figure:
    """Forest plot: absolute lift and CI per tested segment cell (filled = significant after correction)."""
    cells = [c for c in seg["cells"] if c["tested"]]
    fig = Figure(figsize=(7, 1.2 + 0.35 * max(len(cells), 1)), dpi=80)
    fig.subplots_adjust(left=0.4, right=0.97, bottom=0.1, top=0.9)
    ax = fig.add_subplot()
    for i, c in enumerate(cells):
        lo, hi = c["abs_ci"]
        ax.plot([lo, hi], [i, i], color="C0")
        ax.plot(c["abs_lift"], i, "o", color="C0", mfc="C0" if c["significant"] else "white")
    ax.set_yticks(range(len(cells)), [f"{c['segment']}={c['level']} {c['metric']}" for c in cells])
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_title(f"lift by segment ({seg['correction']}-corrected over {seg['tests']} tests)")
    return fig


def interleaving_figure(il: dict) -> Figure:
    fig, ax = _figure()
    lo, hi = il["ci"]
    ax.errorbar([il["delta"]], [0], xerr=[[il["delta"] - lo], [hi - il["delta"]]], fmt="o", capsize=6)
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_yticks([])
    ax.set_xlabel(f"preference for {il['teams']['A']} over {il['teams']['B']} (delta)")
    ax.set_title(f"interleaving: {il['wins_a']} wins, {il['wins_b']} losses, {il['ties']} ties")
    return fig


def offpolicy_figure(op: dict) -> Figure:
    fig = Figure(figsize=(8, 3.5), dpi=80)
    fig.subplots_adjust(left=0.08, right=0.97, bottom=0.15, top=0.85, wspace=0.3)
    for j, metric in enumerate(("ctr", "purchase_rate")):
        ax = fig.add_subplot(1, 2, j + 1)
        r = op[metric]
        for i, est in enumerate(("ips", "snips", "dr")):
            lo, hi = r[f"{est}_ci"]
            ax.errorbar([i], [r[est]], yerr=[[r[est] - lo], [hi - r[est]]], fmt="o", capsize=5)
        ax.axhline(op["logged"][metric], color="grey", ls="--", lw=1, label="logged (current)")
        ax.set_xticks(range(3), ["IPS", "SNIPS", "DR"])
        ax.set_title(f"{op.get('candidate', 'candidate')}: {metric}")
        ax.legend(fontsize=8)
    return fig


def figures(report: dict) -> dict[str, Figure]:
    out = {"sequential": sequential_figure(report["sequential"])} if "sequential" in report else {}
    if report.get("segments", {}).get("tests"):
        out["segments"] = segments_figure(report["segments"])
    if "interleaving" in report:
        out["interleaving"] = interleaving_figure(report["interleaving"])
    if "offpolicy" in report:
        out["offpolicy"] = offpolicy_figure(report["offpolicy"])
    return out


def _markdown(report: dict, pngs: list[str]) -> str:
    lines = [f"# Experiment {report['experiment']}", "", f"Status: {report['status']}", ""]
    lines += [
        "| treatment | metric | control | treatment | lift | 95% CI | p (adj.) | verdict |",
        "|" + "---|" * 8,
    ]
    for r in report["comparisons"]:
        lo, hi = r["abs_ci"]
        lines.append(
            f"| {r['treatment']} | {r['metric']} | {r['control_value']:.4g} | {r['treatment_value']:.4g} | "
            f"{r['abs_lift']:+.4g} | [{lo:+.4g}, {hi:+.4g}] | {r['p_adjusted']:.3g} | {r['verdict']} |"
        )
    if "sequential" in report:
        seq = report["sequential"]
        lines += ["", f"## Inference in force: {seq['method']} ({seq['metric']})", ""]
        lines += [f"- {c['treatment']}: {c['verdict']} ({len(c['looks'])} looks)" for c in seq["comparisons"]]
    if "interleaving" in report:
        il = report["interleaving"]
        lines += [
            "",
            "## Interleaving",
            "",
            f"delta {il['delta']:+.3f}, 95% CI [{il['ci'][0]:+.3f}, "
            f"{il['ci'][1]:+.3f}], sign test p = {il['p_value']:.3g}, winner: {il['winner'] or 'none yet'}",
        ]
    if "offpolicy" in report:
        op = report["offpolicy"]
        lines += [
            "",
            f"## Off-policy estimates for {op.get('candidate')}",
            "",
            "| metric | logged | IPS | SNIPS | DR (95% CI) |",
            "|---|---|---|---|---|",
        ]
        for m in ("ctr", "purchase_rate"):
            r = op[m]
            lines.append(
                f"| {m} | {op['logged'][m]:.4f} | {r['ips']:.4f} | {r['snips']:.4f} | "
                f"{r['dr']:.4f} [{r['dr_ci'][0]:.4f}, {r['dr_ci'][1]:.4f}] |"
            )
        if "offline_metrics" in op:
            lines += [
                "",
                "Offline ranking metrics: "
                + ", ".join(f"{k} {v:.4f}" for k, v in op["offline_metrics"].items()),
            ]
    if report.get("segments"):
        seg = report["segments"]
        lines += [
            "",
            f"## Segments ({seg['correction']} over {seg['tests']} tests)",
            "",
            "| segment | level | metric | units (c/t) | lift | p (adj.) |",
            "|---|---|---|---|---|---|",
        ]
        for c in seg["cells"]:
            lift = f"{c['abs_lift']:+.4g}" if c["tested"] else "too few units"
            padj = f"{c['p_adjusted']:.3g}" if c["tested"] else "-"
            lines.append(
                f"| {c['segment']} | {c['level']} | {c['metric']} | "
                f"{c['units'][0]}/{c['units'][1]} | {lift} | {padj} |"
            )
    lines += [""] + [f"![{Path(p).stem}]({p})" for p in pngs]
    return "\n".join(lines) + "\n"


def write_report(report: dict, out_dir: str | Path) -> Path:
    """report.json, report.md and one PNG per figure under `out_dir` (the CLI may log the directory to
    MLflow with `training.tracking.log_directory`), each written whole or not at all
    (`commerce.files.atomic_path`)."""
    out = Path(out_dir)
    pngs = []
    for name, fig in figures(report).items():
        with atomic_path(out / f"{name}.png") as tmp:
            fig.savefig(tmp)
        pngs.append(f"{name}.png")
    with atomic_path(out / "report.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2, default=str) + "\n")
    path = out / "report.md"
    with atomic_path(path) as tmp:
        tmp.write_text(_markdown(report, pngs))
    return path
