"""Run-store schema v1: the columns of checkpoints.parquet, their types and meanings (DESIGN §2).

Metric columns (`valid_ndcg_at_5`, `test_hit_at_10`, ...) are float64 and may vary with the ks evaluated; so may
their protocol (`__sampled_10000`) and slice (`__cold_le3`) twins and the slices' user counts (`test_users__cold_le3`,
int64), which runs write since scalerec 0.2 and older files lack. Every other column is fixed here. Renaming a
column or changing its meaning bumps SCHEMA_VERSION.
"""

from __future__ import annotations

import re

import pyarrow as pa

SCHEMA_VERSION = 1
METADATA_KEY = b"scalerec.schema_version"

FLOPS_CONVENTION = (
    "train_flops = 6 x forward_macs; forward_macs = fvcore multiply-accumulates of the training-step "
    "forward (item encoding of every window item and negative, transformer, logits, loss), counted "
    "once per batch shape; the trainer's encoding of each distinct item once per batch is an "
    "optimisation not credited here; scaled_dot_product_attention counted as batch*L*S*(E+Ev)"
)


def train_flops(forward_macs: float) -> float:
    """The one conversion from counted forward MACs to training FLOPs: 2 FLOPs per MAC, backward ≈ 2 × forward."""
    return 6.0 * forward_macs


COLUMNS: dict[str, tuple[pa.DataType, str]] = {
    "run_id": (pa.string(), "12 hex digits of sha256 of the run config's canonical JSON"),
    "step": (pa.int64(), "optimizer steps done"),
    "epoch": (pa.float64(), "passes over the training data"),
    "schedule_fraction": (pa.float64(), "step / planned total steps"),
    "is_final": (pa.bool_(), "last checkpoint of the run"),
    "seen_interactions": (pa.int64(), "T: cumulative training targets that entered the loss"),
    "dataset_interactions": (pa.int64(), "D: training interactions of the dataset the run trains on"),
    "train_flops": (pa.float64(), "C: cumulative training FLOPs = 6 x forward_macs"),
    "forward_macs": (pa.float64(), "cumulative fvcore count of the training-step forward (paper convention)"),
    "analytic_flops": (pa.float64(), "cumulative analytic estimate of train_flops, a cross-check"),
    "non_embedding_params": (pa.int64(), "N: trainable parameters except item lookup tables"),
    "embedding_params": (pa.int64(), "item lookup tables (ID table or text-token table)"),
    "position_embedding_params": (pa.int64(), "position embeddings (included in N)"),
    "total_params": (pa.int64(), "all trainable parameters"),
    "n_layers": (pa.int32(), "transformer layers"),
    "n_heads": (pa.int32(), "attention heads"),
    "hidden": (pa.int32(), "hidden size"),
    "inner_size": (pa.int32(), "feed-forward inner size"),
    "item_encoder": (pa.string(), "text or id"),
    "loss": (pa.string(), "sampled_softmax, full_ce or bce"),
    "n_negatives": (pa.int32(), "training negatives per sequence (0 for full_ce)"),
    "dataset": (pa.string(), "dataset name"),
    "n_users": (pa.int64(), "users in the dataset"),
    "n_items": (pa.int64(), "items in the catalog"),
    "valid_loss": (pa.float64(), "cross-entropy of the validation positive among its evaluation candidates"),
    "train_loss": (pa.float64(), "mean training loss since the previous checkpoint"),
    "lr": (pa.float64(), "learning rate at this step"),
    "wall_time_s": (pa.float64(), "cumulative training + evaluation wall time"),
}
# Optional columns, present only in the checkpoints of fine-tuning runs (scalerec finetune). Older files simply do not
# have them: adding them did not change schema v1 for anything else.
OPTIONAL_COLUMNS: dict[str, tuple[pa.DataType, str]] = {
    "block": (pa.string(), "the transformer's block family: sasrec or hstu"),
    "attention_dim": (pa.int32(), "query/key width per head (hidden / n_heads for sasrec)"),
    "linear_dim": (pa.int32(), "value width per head (hidden / n_heads for sasrec)"),
    "parent_run_id": (pa.string(), "fine-tuning: the pre-trained run it started from"),
    "stage": (pa.string(), "fine-tuning: the stage of progressive unfreezing ('layer 2 of 2', 'embeddings')"),
    "parent_train_flops": (
        pa.float64(),
        "fine-tuning: the pre-trained run's train_flops (train_flops counts only the fine-tuning)",
    ),
    # Written by every run since scalerec 0.2; a file without them was written earlier.
    "training_semantics": (
        pa.int32(),
        "what the code that computed this row computes (store/provenance.py); "
        "absent = 0, written before the number existed",
    ),
    "eval_protocol": (
        pa.string(),
        "how valid_*/test_* metrics rank: full, full-masked or sampled-K; absent = "
        "sampled-10000 or full as the run's config says",
    ),
    "executed_flops": (
        pa.float64(),
        "cumulative 6 x forward MACs of the work actually run (trimmed windows, real "
        "targets, distinct items encoded once; by formula); C stays train_flops",
    ),
    "cpu_time_s": (
        pa.float64(),
        "cumulative CPU time of the training process (all threads) for training + "
        "evaluation: unlike wall_time_s, not counted while it waits for a busy core or is "
        "stopped; up to threads x wall; NaN when resumed from a state without it",
    ),
    "eval_time_s": (
        pa.float64(),
        "cumulative wall seconds of wall_time_s spent evaluating (validation, test, slices); NaN when resumed from a "
        "state without it",
    ),
    # Written by WSD runs with cooldown branches (train.cooldowns) on every row.
    "cooldown": (
        pa.float64(),
        "a cooldown branch's row: the fraction of the planned steps at which it ends, annealed; NaN on the run's "
        "own trajectory. Its step, T, C and times are the branch's: the run's up to branch_step, then its own "
        "decay (the run's own rows' times include the branches run so far, its C does not)",
    ),
    "branch_step": (pa.int64(), "a cooldown branch's row: the step at which it left the stable phase; -1 otherwise"),
}
# What an older row holds for an optional column when a newer row is appended to its file (a resumed run).
OPTIONAL_DEFAULTS = {"training_semantics": 0}
# Evaluation slices (data/slices.py): a metric of the users of a slice under the run's protocol, and their count.
SLICE = r"cold_le\d+|history_\d+_(?:\d+|plus)|tail_items|head_items|noise_\d+pct|ahead_\d+"
METRIC_PATTERN = re.compile(rf"^(valid|test)_(ndcg|hit|mrr)_at_(\d+)(__(full|full_masked|sampled_\d+|{SLICE}))?$")
SLICE_USERS_PATTERN = re.compile(rf"^(valid|test)_users__({SLICE})$")


def arrow_schema(columns: list[str], extra_columns: bool = False) -> pa.Schema:
    """The Arrow schema for a checkpoints table with these columns (fixed columns first, then metrics). Other
    columns are an error (a trainer bug), except with `extra_columns`: an imported table's own numeric columns
    (float64), which `fit-laws --metric` may name."""
    fields = [pa.field(name, dtype) for name, (dtype, _) in COLUMNS.items()]
    fields += [pa.field(name, dtype) for name, (dtype, _) in OPTIONAL_COLUMNS.items() if name in columns]
    fields += [pa.field(name, pa.float64()) for name in columns if METRIC_PATTERN.match(name)]
    fields += [pa.field(name, pa.int64()) for name in columns if SLICE_USERS_PATTERN.match(name)]
    extra = [
        name
        for name in columns
        if name not in COLUMNS
        and name not in OPTIONAL_COLUMNS
        and not METRIC_PATTERN.match(name)
        and not SLICE_USERS_PATTERN.match(name)
    ]
    if extra and not extra_columns:
        raise ValueError(f"columns not in schema v{SCHEMA_VERSION}: {extra}")
    fields += [pa.field(name, pa.float64()) for name in extra if extra_columns]
    return pa.schema(fields, metadata={METADATA_KEY: str(SCHEMA_VERSION).encode()})


def is_cooldown_row(rows):
    """True for the rows of a WSD run's cooldown branches (column `cooldown` set), a boolean Series."""
    import pandas as pd  # the readers' rows are pandas; writing a row needs only pyarrow

    if "cooldown" not in rows.columns:
        return pd.Series(False, index=rows.index)
    return rows.cooldown.notna()


def trajectory_step(rows):
    """Where each row sits on its run's own trajectory: its step, or where a cooldown branch left the run."""
    return rows.step.where(~is_cooldown_row(rows), rows.get("branch_step"))
