"""The laws.json mapping `scalerec fit-laws` writes: the fitted laws with what they were fitted on."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np
import pandas as pd

from .. import __version__
from ..shapes import paper_catalog
from . import laws
from .estimators import Law
from .fit import interval
from .fit_options import N_COLUMNS, FitOptions

LAWS_SCHEMA_VERSION = 2  # 2: the envelope laws take C, not ln C (their x_range with them)


def laws_mapping(checkpoints: pd.DataFrame, options: FitOptions, fitted: dict[str, Law]) -> dict[str, Any]:
    final = checkpoints[checkpoints.is_final] if checkpoints.is_final.any() else checkpoints
    n_col = N_COLUMNS[options.n_column]
    k_samples = final[options.flops] / (final[n_col] * final.seen_interactions)
    k = float(np.median(k_samples))
    saturating = fitted.get("saturating")
    usable = saturating is not None and not saturating.failures()
    shapes = (
        checkpoints.groupby(["n_layers", "n_heads", "hidden"])[n_col]
        .first()
        .reset_index()
        .rename(columns={n_col: "n"})
        .assign(source="runs")
        .to_dict("records")
    )
    # The catalog's N is computed, so only in the non-embedding convention (total parameters depend on the
    # vocabulary or catalog); with the runs' own item encoder, so that it is the N the laws were fitted on.
    # Imported tables have no item encoder (nor, often, a shape): no SRT catalog for them.
    encoders = checkpoints.item_encoder.dropna().mode() if "item_encoder" in checkpoints else pd.Series(["text"])
    encoder = str(encoders.iloc[0]) if len(encoders) else None
    # The paper's catalog counts SASRec blocks: runs of another block family choose among their own shapes only.
    sasrec_only = "block" not in checkpoints or set(checkpoints.block.dropna()) <= {"sasrec"}
    if options.n_column == "non_embedding" and encoder is not None and sasrec_only:
        shapes += paper_catalog(encoder)
    return {
        "schema_version": LAWS_SCHEMA_VERSION,
        "scalerec": __version__,
        "options": asdict(options),
        "data": {
            "runs": int(checkpoints.run_id.nunique()),
            "checkpoints": len(checkpoints),
            "finished_runs": int(checkpoints.is_final.sum()),
            "n_range": [float(checkpoints[n_col].min()), float(checkpoints[n_col].max())],
            "t_range": [float(checkpoints.seen_interactions.min()), float(checkpoints.seen_interactions.max())],
            "flops_range": [float(checkpoints[options.flops].min()), float(checkpoints[options.flops].max())],
            "dataset_interactions": sorted(int(v) for v in checkpoints.dataset_interactions.unique()),
            "epochs_range": [float(checkpoints.epoch.min()), float(checkpoints.epoch.max())],
            "n_column": n_col,
            "item_encoder": encoder,
        },
        "laws": {name: law.to_dict() for name, law in fitted.items()},
        "saturating_extra": {
            "asymptote": saturating.asymptote_,
            "asymptote_interval_90": list(
                interval(saturating.sign_of_a * (saturating.bootstrap_[:, 0] - saturating.bootstrap_[:, 3]))
            )
            if len(saturating.bootstrap_)
            else [None, None],
            "diminishing_returns_flops": _diminishing_returns(saturating),
        }
        if usable
        else {"asymptote": None, "asymptote_interval_90": [None, None], "diminishing_returns_flops": None},
        "allocation": {"k_flops_per_param_target": k, "k_range": [float(k_samples.min()), float(k_samples.max())]},
        "shapes": shapes,
    }


def _diminishing_returns(saturating: Law) -> float | None:
    """C past which each e-fold of compute gains less than half the steepest gain; None beyond float range."""
    ln_c = laws.diminishing_returns_ln_c(saturating.params_["b"], saturating.params_["c"])
    return float(np.exp(ln_c)) if ln_c < 700 else None


def semantics_summary(checkpoints: pd.DataFrame) -> tuple[dict[str, int], list[str]]:
    """Runs per training semantics (rows without the column: 0), and a warning when the store mixes them: rows of
    two semantics were computed by code that computes different things (store/provenance.py)."""
    column = checkpoints.get("training_semantics")
    semantics = (column.fillna(0) if column is not None else pd.Series(0, index=checkpoints.index)).astype(int)
    per_run = semantics.groupby(checkpoints.run_id).agg(lambda s: tuple(sorted(set(s))))
    counts = {str(v): int((per_run.map(lambda t, v=v: v in t)).sum()) for v in sorted(set(semantics))}
    warnings = []
    if len(counts) > 1:
        mixed_runs = per_run[per_run.map(len) > 1]
        warnings.append(
            "the store mixes training semantics "
            + ", ".join(f"{v} ({n} runs)" for v, n in counts.items())
            + (
                f"; {len(mixed_runs)} runs were resumed by other code (e.g. {mixed_runs.index[0]})"
                if len(mixed_runs)
                else ""
            )
            + ": their rows were computed differently; fit one semantics at a time or retrain "
            "(scalerec grid --retrain-stale)"
        )
    return counts, warnings
