"""What `scalerec fit-laws` is asked to fit, and the checks its input must pass."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ScalerecError
from .slices import MIN_SLICE_USERS

if TYPE_CHECKING:  # pandas is loaded by what reads rows, not by `scalerec --help`, which reads these names
    import pandas as pd

N_COLUMNS = {"non_embedding": "non_embedding_params", "total": "total_params"}
FLOPS_COLUMNS = ("train_flops", "forward_macs", "analytic_flops")  # forward_macs: the SRT paper's own convention
POINT_POLICIES = ("final", "tail", "all", "envelope", "best-per-run")  # the checkpoints the N,T law is fitted on
# resamples per slice at most: a dozen slices x 200 would triple fit-laws' time
SLICE_BOOTSTRAP = 50


@dataclass(frozen=True)
class FitOptions:
    metric: str = "valid_ndcg_at_5"
    flops: str = "train_flops"  # or forward_macs, the SRT paper's own convention
    points: str = "final"  # which checkpoints feed the N,T law: POINT_POLICIES
    n_column: str = "non_embedding"  # N of the N,T law: non_embedding | total
    bootstrap: int = 200  # resamples of whole runs for the 90% intervals (0 = none)
    huber_delta: float = 0.01  # in metric units
    seed: int = 0
    backtest: bool = True  # rolling-origin hold-outs that calibrate the intervals (backtest.py)
    slices: bool = True  # also fit Eq. 4 and the envelope per evaluation slice (slices.py)
    min_slice_users: int = MIN_SLICE_USERS  # checkpoints whose slice holds fewer users are left out of its fits
    direction: str | None = None  # "higher" or "lower" is better; None: from the metric's name (metric_direction)


def without_finetuning(checkpoints: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The checkpoints of runs trained from scratch, and how many fine-tuning rows were left out: a fine-tuning
    run (scalerec finetune) starts from another run's weights, so it is not a point of a scaling law."""
    if "parent_run_id" not in checkpoints.columns:
        return checkpoints, 0
    is_finetune = checkpoints.parent_run_id.notna().to_numpy()
    return checkpoints[~is_finetune].reset_index(drop=True), int(is_finetune.sum())


def cooldowns_as_runs(checkpoints: pd.DataFrame) -> pd.DataFrame:
    """A WSD run's cooldown branches (train.cooldowns) as runs of their own: each branch row is the annealed final
    checkpoint of a run that long, so every law takes it as a finished run's point. The branch gets the run id
    `<run>@<fraction>`; the run's own rows keep theirs. Rows without branches come back unchanged (idempotent).
    The bootstrap then resamples a branch apart from its run, though they share their stable phase."""
    if "cooldown" not in checkpoints.columns:
        return checkpoints
    branch = (checkpoints.cooldown.notna() & ~checkpoints.run_id.str.contains("@", regex=False)).to_numpy()
    if not branch.any():
        return checkpoints
    out = checkpoints.copy()
    out.loc[branch, "run_id"] = out.run_id[branch] + "@" + out.cooldown[branch].map("{:g}".format)
    out.loc[branch, "is_final"] = True
    return out


def law_runs(checkpoints: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The checkpoints laws are fitted on (cooldown branches as runs, fine-tuning left out) and how many fine-tuning
    rows were left out."""
    return without_finetuning(cooldowns_as_runs(checkpoints))


def check_columns(checkpoints: pd.DataFrame, options: FitOptions) -> None:
    """The metric, compute and N columns exist and are numbers (a named one-line error otherwise)."""
    import pandas as pd

    if options.n_column not in N_COLUMNS:
        raise ScalerecError(f"--n-column must be non_embedding or total, not {options.n_column!r}")
    metrics = sorted(c for c in checkpoints.columns if c.startswith(("valid_", "test_")))
    for column in (options.metric, options.flops, N_COLUMNS[options.n_column]):
        if column not in checkpoints.columns:
            known = f" (metrics in the store: {', '.join(metrics)})" if column == options.metric else ""
            raise ScalerecError(f"the run store has no column {column!r}{known}")
        values = checkpoints[column]
        if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            raise ScalerecError(
                f"column {column!r} holds {values.dtype} values, not numbers: it cannot be a "
                f"metric (metrics in the store: {', '.join(metrics)})"
            )
