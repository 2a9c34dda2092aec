"""Laws per family of runs (`fit-laws --by COLUMN`): every law fitted on each group of runs that share a value of
COLUMN (a block family, an item encoder, …), their exponents side by side, and the compute at which one family's
envelope overtakes another's, with its bootstrap interval."""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ScalerecError
from ..metric_direction import sign
from .fit import interval
from .fit_options import FitOptions
from .predict import fitted_laws

# The value of a column a run's rows predate: runs written before `block` was recorded are SASRec's.
MISSING_MEANS = {"block": "sasrec"}
MIN_RUNS = 3  # fewer runs cannot tell a law's exponents from its constants
GRID = 400  # points of the compute grid the envelopes are compared on
# compare()'s exponents, in the order tables show them, with their column headings. Eq. 4's α and β are ≈ 0 (its fit
# fails) where a metric is far below its ceiling; the power form's a and b (m ∝ N^a T^b) are then the N,T exponents.
EXPONENT_COLUMNS = {
    "alpha": "α (N)",
    "beta": "β (T)",
    "power_a": "a: m ∝ N^a",
    "power_b": "b: m ∝ T^b",
    "b": "b (envelope)",
    "n_opt_exponent": "N* exponent",
    "t_opt_exponent": "T* exponent",
}


def family_values(checkpoints: pd.DataFrame, column: str) -> pd.Series:
    """Each row's family: its value of `column` as text (a missing value: what it meant before it was recorded)."""
    if column not in checkpoints.columns:
        known = ", ".join(c for c in ("block", "item_encoder", "loss", "n_negatives") if c in checkpoints.columns)
        raise ScalerecError(f"--by: the run store has no column {column!r} (e.g. {known})")
    values = checkpoints[column]
    if column in MISSING_MEANS:
        values = values.fillna(MISSING_MEANS[column])
    if values.isna().any():
        raise ScalerecError(f"--by {column}: {int(values.isna().sum())} checkpoint rows have no value")
    return values.astype(str)


def fit_families(
    checkpoints: pd.DataFrame, options: FitOptions, column: str, fit: Any, progress: bool = False
) -> dict[str, Any]:
    """The laws.json `by` section: each family's laws.json mapping (`fit(rows, options)`), the families left out
    and why, and the comparison (exponents side by side, envelope crossovers)."""
    values = family_values(checkpoints, column)
    families, left_out = {}, {}
    for value in sorted(values.unique()):
        rows = checkpoints[(values == value).to_numpy()].reset_index(drop=True)
        runs = rows.run_id.nunique()
        if runs < MIN_RUNS:
            left_out[value] = f"{runs} run(s): a family needs at least {MIN_RUNS}"
            continue
        try:
            families[value] = fit(rows, options)
        except ScalerecError as exc:
            left_out[value] = str(exc)
    if not families:
        raise ScalerecError(
            f"--by {column}: no family has enough runs ("
            + "; ".join(f"{value}: {why}" for value, why in left_out.items())
            + ")"
        )
    return {"column": column, "families": families, "left_out": left_out, "comparison": compare(families)}


def _param(law: dict[str, Any] | None, name: str) -> dict[str, Any]:
    """A law's parameter with its interval; no value where the law was not fitted (too few runs, a metric it
    cannot take) or its fit failed (`status` says which)."""
    if law and law.get("status") != "failed" and name in (law.get("params") or {}):
        return {"value": law["params"][name], "interval_90": law.get("intervals_90", {}).get(name, [None, None])}
    return {"value": None, "interval_90": [None, None], "status": "failed" if law else "not fitted"}


def compare(families: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Exponents side by side (α, β of Eq. 4, a, b of the power form N^a T^b, b of the envelope, the exponents of
    N* and T*, the envelope's asymptote) and, for each pair of families, where one's envelope law overtakes the
    other's."""
    exponents = {
        value: {
            "alpha": _param(data["laws"].get("risk"), "alpha"),
            "beta": _param(data["laws"].get("risk"), "beta"),
            "power_a": _param(data["laws"].get("power_nt"), "a"),
            "power_b": _param(data["laws"].get("power_nt"), "b"),
            "b": _param(data["laws"].get("saturating"), "b"),
            "n_opt_exponent": _param(data["laws"].get("n_opt"), "exponent"),
            "t_opt_exponent": _param(data["laws"].get("t_opt"), "exponent"),
            "asymptote": _asymptote(data),
        }
        for value, data in families.items()
    }
    pairs = [crossover(a, families[a], b, families[b]) for a, b in combinations(sorted(families), 2)]
    return {"exponents": exponents, "crossovers": pairs}


def _asymptote(data: dict[str, Any]) -> float | None:
    law = data["laws"].get("saturating")
    return None if not law or law.get("status") == "failed" else data.get("saturating_extra", {}).get("asymptote")


def _first_crossing(grid: np.ndarray, diff: np.ndarray) -> float | None:
    """ln C where `diff` first changes sign on `grid` (ln C), by linear interpolation; None if it never does."""
    signs = np.sign(diff)
    change = np.nonzero(signs[:-1] * signs[1:] < 0)[0]
    if not len(change):
        return None
    i = change[0]
    return float(grid[i] - diff[i] * (grid[i + 1] - grid[i]) / (diff[i + 1] - diff[i]))


def crossover(name_a: str, data_a: dict[str, Any], name_b: str, data_b: dict[str, Any]) -> dict[str, Any]:
    """Where family a's envelope law overtakes b's (or b's a) over the compute both were fitted on, with the 5th
    and 95th percentiles of the crossing over paired bootstrap refits and the share of refits that cross at all."""
    out: dict[str, Any] = {"families": [name_a, name_b], "crossover_flops": None, "interval_90": [None, None]}
    laws_a, laws_b = fitted_laws(data_a), fitted_laws(data_b)
    usable = [(d["laws"].get("saturating") or {}).get("status") != "failed" for d in (data_a, data_b)]
    if "saturating" not in laws_a or "saturating" not in laws_b or not all(usable):
        out["note"] = "an envelope law failed or was not fitted: no comparison"
        return out
    law_a, law_b = laws_a["saturating"], laws_b["saturating"]
    range_a, range_b = data_a["data"]["flops_range"], data_b["data"]["flops_range"]
    low, high = max(range_a[0], range_b[0]), min(range_a[1], range_b[1])
    if not low < high:
        out["note"] = "the families' compute ranges do not overlap: no comparison"
        return out
    direction = sign(data_a["options"]["direction"])  # +1: higher is better
    grid = np.linspace(np.log(low), np.log(high), GRID)
    flops = np.exp(grid)
    curve_a, curve_b = law_a.predict(flops), law_b.predict(flops)
    diff = direction * (curve_a - curve_b)
    out["range_flops"] = [low, high]
    out["ahead_at_low"], out["ahead_at_high"] = (
        (name_a if diff[0] > 0 else name_b),
        (name_a if diff[-1] > 0 else name_b),
    )
    behind = curve_b[-1] if diff[-1] > 0 else curve_a[-1]
    out["lead_at_high"] = float(abs(diff[-1]) / abs(behind)) if behind else None  # relative to the one behind
    crossing = _first_crossing(grid, diff)
    draws = min(len(law_a.bootstrap_), len(law_b.bootstrap_))
    crossings, same_leader = [], 0
    for i in range(draws):
        d = direction * (
            law_a._function((flops,), law_a.bootstrap_[i]) - law_b._function((flops,), law_b.bootstrap_[i])
        )
        same_leader += bool(np.isfinite(d[-1]) and np.sign(d[-1]) == np.sign(diff[-1]))
        if np.isfinite(d).all() and (c := _first_crossing(grid, d)) is not None:
            crossings.append(c)
    out["share_of_refits_crossing"] = len(crossings) / draws if draws else None
    # how sure the leader at the largest common compute is the leader: the paired refits that agree
    out["share_of_refits_same_leader_at_high"] = same_leader / draws if draws else None
    if crossing is None:
        out["note"] = f"no crossover in the fitted range: {out['ahead_at_low']} is ahead throughout"
        return out
    out["crossover_flops"] = float(np.exp(crossing))
    if crossings:
        out["interval_90"] = [float(np.exp(v)) for v in interval(np.array(crossings))]
    out["note"] = f"{out['ahead_at_high']} overtakes {out['ahead_at_low']} at C = {out['crossover_flops']:.3g}"
    return out


def family_laws(data: dict[str, Any], family: str) -> dict[str, Any]:
    """One family's laws.json mapping, from a laws.json that `fit-laws --by` wrote."""
    by = data.get("by")
    if not by:
        raise ScalerecError("--family: this laws.json has no families (scalerec fit-laws --by COLUMN writes them)")
    if family not in by["families"]:
        left = by.get("left_out", {})
        why = f"; left out: {family}: {left[family]}" if family in left else ""
        raise ScalerecError(
            f"--family: no family {family!r} by {by['column']} (fitted: {', '.join(by['families'])}){why}"
        )
    return by["families"][family]


def exponent_cells(exponents: dict[str, Any]) -> list[str]:
    """A family's exponents as table cells, in EXPONENT_COLUMNS' order."""
    return [estimate_text(exponents[key]) for key in EXPONENT_COLUMNS]


def estimate_text(entry: dict[str, Any]) -> str:
    """`0.35 [0.3, 0.41]` for an exponents entry of compare() (`failed` or `not fitted` where there is no number)."""
    low, high = entry["interval_90"]
    if entry["value"] is None:
        return entry["status"]
    return f"{entry['value']:.3g}" + (f" [{low:.3g}, {high:.3g}]" if low is not None else "")


def crossover_text(pair: dict[str, Any]) -> str:
    """One sentence for a pair of compare()'s crossovers: who overtakes whom where, with its interval and how many
    bootstrap refits cross at all."""
    low, high = pair["interval_90"]
    band = f" (90% interval {low:.3g}–{high:.3g})" if pair["crossover_flops"] and low is not None else ""
    share = pair.get("share_of_refits_crossing")
    refits = f"; {share:.0%} of paired bootstrap refits cross in the compared range" if share is not None else ""
    leader, lead, agree = (
        pair.get("ahead_at_high"),
        pair.get("lead_at_high"),
        pair.get("share_of_refits_same_leader_at_high"),
    )
    at_high = ""
    if leader and lead is not None and agree is not None:
        at_high = (
            f"; at the largest compute both reached (C = {pair['range_flops'][1]:.3g}) {leader} leads by "
            f"{lead:.1%}, and {agree:.0%} of the refits agree"
        )
    return f"{' vs '.join(pair['families'])}: {pair['note']}{band}{refits}{at_high}"
