"""Write the outputs of `scalerec fit-laws`: laws.json, report.md and figures/, each atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import jsonio
from ..numbers import format_number
from ..store.runstore import atomic_write_bytes
from . import plots
from .candidates import NT_CANDIDATES
from .fit_options import N_COLUMNS, SLICE_BOOTSTRAP, law_runs
from .slices import keep_large_slices

FORMULAS = {
    "saturating": "m(C) = a / (1 + exp(−b (ln C − c))) − d",
    "linear": "m(C) = p + q ln C",
    "risk": "m(N, T) = E − A / N^alpha − B / T^beta",
    "n_opt": "N*(C) = k · C^exponent",
    "t_opt": "T*(C) = k · C^exponent",
    "loss_nt": "L(N, T) = E + A / N^alpha + B / T^beta",
    "loss_n": "L(N) = E + (N0 / N)^alpha",
    "saturating_decreasing": "m(C) = d − a / (1 + exp(−b (ln C − c)))",
    "power": "y(C) = k · C^exponent",
    "power_nt": "m(N, T) = k · N^a · T^b",
    "loss_depth": "m(N, T, L) = E + A / N^alpha + B / T^beta − G ln L",
    "loss_repeat": "m(N, T, D) = E + A / N^alpha + B / T_eff^beta, T_eff = min(T, D) + D R (1 − exp(−(T/D − 1)/R))",
    "loss_schedule": "m(N, T, f) = E + A / N^alpha + B / T^beta − S (1 − f), f the schedule fraction done",
    "loss_negatives": "m(N, T, K) = E + A / N^alpha + B / T^beta + G ln K, K negatives per target",
    "risk_depth": "m(N, T, L) = E − A / N^alpha − B / T^beta − G ln L",
    "risk_repeat": "m(N, T, D) = E − A / N^alpha − B / T_eff^beta, T_eff = min(T, D) + D R (1 − exp(−(T/D − 1)/R))",
    "risk_schedule": "m(N, T, f) = E − A / N^alpha − B / T^beta − S (1 − f), f the schedule fraction done",
    "risk_negatives": "m(N, T, K) = E − A / N^alpha − B / T^beta + G ln K, K negatives per target",
}


FORMS_ASYMPTOTE = {"saturating": "a − d", "saturating_decreasing": "d − a"}


def _atomic_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_analysis(checkpoints: pd.DataFrame, data: dict[str, Any], out: str | Path) -> dict[str, Path]:
    """laws.json, figures/*.png and report.md under `out`; returns their paths."""
    out = Path(out)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    paths = {"laws": out / "laws.json", "report": out / "report.md"}
    _atomic_text(paths["laws"], jsonio.dumps(data, indent=2))
    options = data["options"]
    checkpoints = law_runs(checkpoints)[0].dropna(subset=[options["metric"]])
    if options.get("min_slice_users"):  # a slice metric: plot only what was fitted
        checkpoints, _ = keep_large_slices(checkpoints, options["metric"], options["min_slice_users"])
    figures_dir = out / "figures"
    figures = {
        "by_N": plots.save(plots.metric_vs_compute(checkpoints, data, "N"), figures_dir / "metric_vs_flops_by_N.png"),
        "by_D": plots.save(plots.metric_vs_compute(checkpoints, data, "D"), figures_dir / "metric_vs_flops_by_D.png"),
        "allocation": plots.save(plots.allocation(checkpoints, data), figures_dir / "allocation.png"),
        "risk": plots.save(plots.nt_law_fit(checkpoints, data), figures_dir / "risk_law_fit.png"),
        "contours": plots.save(plots.nt_contours(checkpoints, data), figures_dir / "nt_contours.png"),
    }
    if data.get("backtest"):
        figures["backtest"] = plots.save(plots.backtest(data), figures_dir / "backtest.png")
    if data.get("by"):
        figures["families"] = plots.save(plots.family_envelopes(checkpoints, data), figures_dir / "families.png")
    if any(not r["left_out"] and r["slice"] != "all" for r in data.get("slices") or []):
        figures["slices"] = plots.save(plots.slice_exponents(data), figures_dir / "slice_exponents.png")
    _atomic_text(paths["report"], render_report(checkpoints, data, {k: v.relative_to(out) for k, v in figures.items()}))
    return paths | {f"figure_{k}": v for k, v in figures.items()}


def _pct(value: float | None, places: int = 0) -> str:
    return "–" if value is None else f"{value:.{places}%}"


def _fmt(value: float | None) -> str:
    if value is None or not np.isfinite(value):
        return "–"
    return f"{value:.4g}"


def _law_section(name: str, law: dict[str, Any] | None, not_fitted: dict[str, str] | None = None) -> list[str]:
    """A law's parameters with their intervals; a failed fit shows no number, only why it failed."""
    if law is None:
        why = (not_fitted or {}).get(name)
        return [f"### {name}: not fitted", "", f"{why or 'the store gave it nothing to fit'}.", ""] if why else []
    form = law.get("law", name)
    formula = FORMULAS.get(form, FORMULAS.get(name, form))
    if law.get("status") == "failed":
        return [
            f"### {name}: `{formula}` — **failed**",
            "",
            "Not determined by these runs, so no number is reported or used: " + "; ".join(law["why"]) + ". "
            "(Its unreliable numbers are in laws.json under `unreliable_params`; `predict --law` forces it.)",
            "",
        ]
    lines = [f"### {name}: `{formula}`", "", "| parameter | value | 90% interval |", "|---|---|---|"]
    for param, value in law["params"].items():
        low, high = law["intervals_90"][param]
        lines.append(f"| {param} | {_fmt(value)} | [{_fmt(low)}, {_fmt(high)}] |")
    q, draws = law["quality"], law["bootstrap"]
    refits = sum(all(v is not None and v == v for v in draw) for draw in draws)  # failed draws are null (or NaN)
    failed = f" ({len(draws) - refits} of {len(draws)} resamples could not be fitted)" if refits < len(draws) else ""
    lines += [
        "",
        f"RMSE {_fmt(q['rmse'])}, R² {_fmt(q['r2'])}, AIC {_fmt(q['aic'])}, BIC {_fmt(q['bic'])}, "
        f"{q['n_points']} points, {refits} bootstrap refits{failed}.",
        "",
    ]
    if law["flags"]:
        lines += ["**Do not trust this fit blindly:** " + "; ".join(law["flags"]) + ".", ""]
    return lines


def _backtest_section(backtest: dict[str, Any] | None, figure: Path | None) -> list[str]:
    """How far to trust each law: its error and interval coverage on held-out runs, by extrapolation distance."""
    if not backtest:
        return []
    origins = backtest["origins"]
    axes = ", ".join(f"{sum(o['axis'] == a for o in origins)} by {a}" for a in ("N", "C", "D"))
    lines = [
        "## Backtest: how far to trust each law",
        "",
        f"Rolling-origin hold-outs ({len(origins)} origins: {axes}; {backtest['skipped_origins']} skipped for "
        "too few points): the largest runs along each axis held out, the laws refitted on the rest, and what "
        "they did not see predicted. Intervals: " + backtest["method"] + ". Coverage is cross-validated: "
        "each origin is judged by a calibration that left it out.",
        "",
        f"| law | held-out points | MAE | MAPE | inside the calibrated {backtest['level']:.0%} interval | "
        "calibration |",
        "|---|---|---|---|---|---|",
    ]
    judged = [("risk", "N,T law (Eq. 4)"), ("saturating", "envelope law (Eq. 3)")]
    judged += [("loss_n", "L(N) (LSRM)")] if "loss_n" in backtest["laws"] else []
    for name, label in judged:
        entry = backtest["laws"].get(name) or {}
        if not entry.get("n"):
            lines.append(f"| {label} | 0 | – | – | – | no backtest point |")
            continue
        cal = entry["calibration"]
        how = f"q = {cal['q']:.3g} from {cal['n_scores']} points" if cal["calibrated"] else cal["why"]
        lines.append(
            f"| {label} | {entry['n']} | {_fmt(entry['mae'])} | {_pct(entry['mape'], 1)} | "
            f"{_pct(entry['coverage_calibrated_cv'])} | {how} |"
        )
    lines += [
        "",
        "By extrapolation distance:",
        "",
        "| law | distance | points | MAE | MAPE | inside |",
        "|---|---|---|---|---|---|",
    ]
    for name, _ in judged:
        for b in (backtest["laws"].get(name) or {}).get("by_distance", []):
            lines.append(
                f"| {name} | {b['distance']} | {b['n']} | {_fmt(b['mae'])} | {_pct(b['mape'], 1)} | "
                f"{_pct(b['coverage_calibrated_cv'])} |"
            )
    selection = backtest.get("selection") or {}
    if selection.get("candidates"):
        lines += [
            "",
            "N,T law forms on the same held-out points (the selected one answers `predict --N --T`):",
            "",
            "| law | held-out points | MAE | MAPE | inside | BIC (full fit) | |",
            "|---|---|---|---|---|---|---|",
        ]
        for c in selection["candidates"]:
            mark = (
                "**selected**"
                if c["law"] == selection["selected"]
                else "failed: not eligible"
                if c.get("failed")
                else ""
                if c.get("eligible", True)
                else "not eligible: BIC not below Eq. 4's"
            )
            lines.append(
                f"| `{c['law']}` | {c['n']} | {_fmt(c['mae'])} | {_pct(c['mape'], 1)} | "
                f"{_pct(c['coverage_calibrated_cv'])} | {_fmt(c.get('bic'))} | {mark} |"
            )
        lines += [
            "",
            f"Selected: `{selection['selected']}`, {selection['why']}."
            if selection["selected"]
            else f"No N,T law selected: {selection['why']}.",
        ]
    lines.append("")
    if figure:
        lines += [f"![backtest]({figure})", ""]
    return lines


def _slices_section(rows: list[dict[str, Any]] | None, min_users: int, figure: Path | None) -> list[str]:
    """The exponents of every evaluation slice side by side: which hard cases gain most from size and compute."""
    if not rows:
        return []
    lines = [
        "## Slices: which cases gain most from size",
        "",
        "The envelope law (Eq. 3) and the N,T law (Eq. 4) refitted on each slice's metric (the users of a slice "
        "ranked under the run's protocol; data/slices.py defines them). α: how fast the metric rises with N; "
        "β: with T; b: the envelope's slope per e-fold of compute. Intervals: 90% bootstrap over runs (at most "
        f"{SLICE_BOOTSTRAP} resamples per slice); "
        f"checkpoints whose slice holds fewer than {min_users} users are left out.",
        "",
        "| slice | users | α [90%] | β [90%] | b [90%] | best on the envelope |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        users = "all" if row["slice"] == "all" else "–" if row["users"] is None else str(row["users"])
        if row["left_out"]:
            lines.append(f"| `{row['slice']}` | {users} | left out: {row['left_out']} | | | |")
            continue
        cells = [
            "failed"
            if row[p] is None
            else f"{_fmt(row[p])} [{_fmt(row[p + '_interval_90'][0])}, {_fmt(row[p + '_interval_90'][1])}]"
            for p in ("alpha", "beta", "b")
        ]
        lines.append(f"| `{row['slice']}` | {users} | {' | '.join(cells)} | {_fmt(row['best_on_envelope'])} |")
    fitted = [r for r in rows if not r["left_out"]]
    described = [r for r in fitted if (r.get("r2") or 0) >= 0.5]  # a law that explains little ranks nothing
    if len(described) > 1:
        top = max(described, key=lambda r: -1 if r["alpha"] is None else r["alpha"])
        lines += [
            "",
            f"Fastest with N among the slices whose N,T law explains at least half the variance: "
            f"`{top['slice']}` (α = {_fmt(top['alpha'])}); a slice's exponent differs from another's only "
            "where their intervals do not overlap.",
        ]
    flagged = [f"`{r['slice']}`: {'; '.join(r['flags'])}" for r in fitted if r.get("flags")]
    if flagged:
        lines += ["", "**Fits to read with care:** " + " · ".join(flagged) + "."]
    return lines + (["", f"![slice exponents]({figure})"] if figure else []) + [""]


def _families_section(by: dict[str, Any] | None, figure: Path | None) -> list[str]:
    """fit-laws --by: each family's exponents side by side, and where one family's envelope overtakes another's."""
    if not by:
        return []
    from .families import EXPONENT_COLUMNS, crossover_text, exponent_cells

    lines = [
        f"## Families by `{by['column']}`",
        "",
        "Every law fitted on each family's runs alone (90% bootstrap intervals).",
        "",
        "| family | runs | " + " | ".join(EXPONENT_COLUMNS.values()) + " |",
        "|---" * (2 + len(EXPONENT_COLUMNS)) + "|",
    ]
    for family, exps in by["comparison"]["exponents"].items():
        cells = exponent_cells(exps)
        lines.append(f"| {family} | {by['families'][family]['data']['runs']} | " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"- {crossover_text(pair)}." for pair in by["comparison"]["crossovers"]]
    lines += [f"- {by['column']} = {family} left out: {why}." for family, why in by["left_out"].items()]
    if figure:
        lines += ["", f"![families]({figure})"]
    return [*lines, ""]


def _holdout_section(holdout: dict[str, Any], metric: str) -> list[str]:
    if not holdout:
        return []
    lines = ["## Held-out extrapolation check", ""]
    for kind, check in holdout.items():
        what = (
            f"the {check['k']} largest runs by {check['by']} held out ({', '.join(check['held_out_runs'])}); "
            f"laws refitted on the other {check['fit_on_runs']}"
            if kind == "largest"
            else f"laws refitted on the {check['fit_on_checkpoints']} checkpoints with at most "
            f"{check['budget']:.3g} FLOPs"
        )
        lines += [f"**{what}.**", ""]
        for law, label, key in (
            ("risk_law", "N,T law, final checkpoint of each held-out run", "run_id"),
            ("loss_n_law", "L(N), final checkpoint of each held-out run", "run_id"),
            ("envelope_law", "saturating law, envelope beyond the fitted compute", "flops"),
        ):
            c = check.get(law)
            if not c:
                continue
            if c.get("refused"):
                lines += [f"{label}: no prediction, {c['refused']}.", ""]
                continue
            rows = c.get("per_run") or c.get("points")
            lines += [
                f"{label}: MAE {_fmt(c['mae'])}, MAPE {_pct(c['mape'], 1)}, observed inside the 90% interval "
                f"{_pct(c['coverage_90'])} of {c['n']} ({c.get('interval', 'bootstrap')}).",
                "",
                f"| {key} | observed {metric} | predicted | 90% interval |",
                "|---|---|---|---|",
            ]
            for r in rows[:20]:
                low_high = r["interval_90"]
                interval = "–" if low_high is None else f"[{_fmt(low_high[0])}, {_fmt(low_high[1])}]"
                label_value = r[key] if key == "run_id" else f"{r[key]:.3g}"
                lines.append(f"| {label_value} | {r['observed']:.4f} | {r['predicted']:.4f} | {interval} |")
            if len(rows) > 20:
                lines.append(f"| … {len(rows) - 20} more in laws.json | | | |")
            lines.append("")
    return lines


def render_report(checkpoints: pd.DataFrame, data: dict[str, Any], figures: dict[str, Path]) -> str:
    options, summary = data["options"], data["data"]
    metric = options["metric"]
    final = checkpoints[checkpoints.is_final]
    table = final.assign(N=final.non_embedding_params, D=final.dataset_interactions).sort_values(["N", "D"])[
        ["n_layers", "n_heads", "hidden", "N", "D", "seen_interactions", options["flops"], metric]
    ]
    lines = [
        "# Scaling-law report",
        "",
        f"Metric `{metric}`, compute `{options['flops']}`, N = `{N_COLUMNS[options['n_column']]}`, "
        f"N,T law fitted on `{options['points']}` checkpoints, Huber δ = {options['huber_delta']}, "
        f"{options['bootstrap']} bootstrap resamples of whole runs (seed {options['seed']}).",
        "",
        f"{summary['runs']} runs ({summary['finished_runs']} finished), {summary['checkpoints']} checkpoints; "
        f"N {format_number(summary['n_range'][0])}–{format_number(summary['n_range'][1])}, "
        f"T {format_number(summary['t_range'][0])}–{format_number(summary['t_range'][1])}, "
        f"FLOPs {summary['flops_range'][0]:.3g}–{summary['flops_range'][1]:.3g}"
        + (
            f"; {summary['dropped_non_finite_rows']} checkpoints with a NaN/inf metric were left out"
            if summary.get("dropped_non_finite_rows")
            else ""
        )
        + ".",
        "",
        *[f"**Warning:** {w}." for w in data.get("warnings", [])],
        "## Final checkpoints",
        "",
        "| layers | heads | hidden | N | D | T | FLOPs | " + metric + " |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in table.itertuples(index=False):
        lines.append(
            f"| {row[0]} | {row[1]} | {row[2]} | {format_number(row[3])} | {format_number(row[4])} | "
            f"{format_number(row[5])} | {row[6]:.3g} | {row[7]:.4f} |"
        )
    extra, laws, skipped = data["saturating_extra"], data["laws"], data.get("not_fitted") or {}

    def section(name: str) -> list[str]:
        return _law_section(name, laws.get(name), skipped)

    direction = options.get("direction") or "higher"
    lines += [
        "",
        "## Envelope: metric vs compute",
        "",
        f"`{metric}` is better {direction}: the envelope is the {'lowest' if direction == 'lower' else 'highest'}"
        " metric reached at each compute.",
        "",
        f"![by N]({figures['by_N']})",
        "",
        f"![by D]({figures['by_D']})",
        "",
    ]
    lines += section("saturating")
    if extra["asymptote"] is not None:
        lines += [
            f"Asymptote {FORMS_ASYMPTOTE.get(laws['saturating'].get('law'), 'a − d')} = "
            f"{_fmt(extra['asymptote'])} (90% interval [{_fmt(extra['asymptote_interval_90'][0])}, "
            f"{_fmt(extra['asymptote_interval_90'][1])}]); diminishing returns past C ≈ "
            f"{_fmt(extra['diminishing_returns_flops'])} (each e-fold of compute then gains less than half the "
            "steepest gain).",
            "",
        ]
    lines += section("linear")
    if "saturating" in laws and "linear" in laws and laws["saturating"].get("status") != "failed":
        sat, lin = laws["saturating"]["quality"], laws["linear"]["quality"]
        better = "saturating" if sat["aic"] < lin["aic"] else "linear"
        lines += [
            f"By AIC the **{better}** law describes the envelope better (ΔAIC = {abs(sat['aic'] - lin['aic']):.3g}).",
            "",
        ]
    lines += [
        "## Risk decomposition: metric vs N and T",
        "",
        f"![risk]({figures['risk']})",
        "",
        f"![N,T contours]({figures['contours']})",
        "",
    ]
    lines += section("risk")
    for name in NT_CANDIDATES:  # candidates the backtest weighs against Eq. 4
        lines += section(name) if name in laws or name in skipped else []
    lines += ["## Compute-optimal allocation", "", f"![allocation]({figures['allocation']})", ""]
    lines += section("n_opt") + section("t_opt")
    if direction == "lower" and "loss_n" in laws:
        lines += ["## The loss against N alone (the LSRM paper's law)", ""] + section("loss_n")
    elif "loss_nt" in laws:
        lines += [
            "## Loss laws (validation cross-entropy among the evaluation candidates)",
            "",
            "Fitted on the same checkpoints as the N,T law, with the Huber loss on residuals of log-loss; "
            "quality is reported in loss units.",
            "",
        ]
        lines += section("loss_nt") + section("loss_n")
    lines += _backtest_section(data.get("backtest"), figures.get("backtest"))
    lines += _holdout_section(data.get("holdout", {}), data["options"]["metric"])
    lines += _slices_section(data.get("slices"), options.get("min_slice_users"), figures.get("slices"))
    lines += _families_section(data.get("by"), figures.get("families"))
    alloc = data["allocation"]
    lines += [
        f"Budget model C = k·N·T with k = {alloc['k_flops_per_param_target']:.3g} FLOPs per parameter per "
        f"target (median over finished runs; range {alloc['k_range'][0]:.3g}–{alloc['k_range'][1]:.3g}).",
        "",
        "Ask `scalerec predict --flops C` for a budget, `scalerec predict --N N --T T` for a run.",
        "",
    ]
    return "\n".join(lines)
