"""What an MLflow import reads: a mapping (TOML, see mappings/srt.toml) of MLflow params and metrics to run-store
columns, and how the tracked runs counted FLOPs."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..config import load_toml
from ..errors import ScalerecError
from .schema import METRIC_PATTERN

PARAM_FIELDS = {  # run-store field -> required?
    "n_layers": True,
    "n_heads": True,
    "hidden": True,
    "dataset_interactions": True,
    "non_embedding_params": True,
    "batch_size": False,
    "batch_forward_macs": False,
    "inner_size": False,
    "n_negatives": False,
    "total_params": False,
    "embedding_params": False,
    "n_users": False,
    "n_items": False,
    "epochs": False,
    "dataset": False,
    "item_encoder": False,
    "loss": False,
}
METRIC_FIELDS = {"valid_loss", "train_loss", "lr", "forward_macs", "seen_interactions"}  # + metric columns
CONVENTIONS = ("per_batch", "metric")


@dataclass(frozen=True)
class Mapping:
    """Which MLflow params/metrics give which run-store columns (see mappings/srt.toml for the format)."""

    params: dict[str, str]
    metrics: dict[str, str]
    epoch_offset: int = 1
    convention: str = "per_batch"
    defaults: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def __post_init__(self) -> None:
        where = self.source or "mapping"
        for name in self.params:
            if name not in PARAM_FIELDS:
                raise ScalerecError(
                    f"{where}: [params] {name!r} is not a field import-mlflow fills (known: {', '.join(PARAM_FIELDS)})"
                )
        missing = [name for name, required in PARAM_FIELDS.items() if required and name not in self.params]
        if missing:
            raise ScalerecError(f"{where}: [params] must name the MLflow param for {', '.join(missing)}")
        for name in self.metrics:
            if name not in METRIC_FIELDS and not METRIC_PATTERN.match(name):
                raise ScalerecError(
                    f"{where}: [metrics] {name!r} is not a run-store column (valid_ndcg_at_5, "
                    f"test_hit_at_10, ..., or one of {', '.join(sorted(METRIC_FIELDS))})"
                )
        if not any(METRIC_PATTERN.match(name) for name in self.metrics):
            raise ScalerecError(f"{where}: [metrics] must map at least one ranking metric (e.g. valid_ndcg_at_5)")
        if self.convention not in CONVENTIONS:
            raise ScalerecError(f"{where}: flops.convention must be one of {', '.join(CONVENTIONS)}")
        if self.convention == "per_batch" and not {"batch_size", "batch_forward_macs"} <= set(self.params):
            raise ScalerecError(
                f"{where}: flops.convention = 'per_batch' needs [params] batch_size and batch_forward_macs"
            )
        if self.convention == "metric" and "forward_macs" not in self.metrics:
            raise ScalerecError(f"{where}: flops.convention = 'metric' needs [metrics] forward_macs")
        unknown = set(self.defaults) - {"item_encoder", "loss", "dataset"}
        if unknown:
            raise ScalerecError(f"{where}: [defaults] takes item_encoder, loss, dataset (not {sorted(unknown)})")


def builtin_mappings() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("scalerec.store.mappings").iterdir() if p.name.endswith(".toml"))


def load_mapping(name_or_path: str) -> Mapping:
    """A built-in mapping by name (`srt`) or a mapping TOML file."""
    if name_or_path in builtin_mappings():
        with resources.as_file(resources.files("scalerec.store.mappings") / f"{name_or_path}.toml") as path:
            spec = load_toml(path)
    else:
        if not Path(name_or_path).exists():
            raise ScalerecError(f"{name_or_path}: no such mapping file (built-in: {', '.join(builtin_mappings())})")
        spec = load_toml(name_or_path)
    unknown = set(spec) - {"params", "metrics", "steps", "flops", "defaults"}
    if unknown:
        raise ScalerecError(
            f"{name_or_path}: unknown section {sorted(unknown)[0]!r} (known: params, metrics, steps, flops, defaults)"
        )
    tables = {key: spec.get(key, {}) for key in ("params", "metrics", "steps", "flops", "defaults")}
    for key, table in tables.items():
        if not isinstance(table, dict):
            raise ScalerecError(f"{name_or_path}: [{key}] must be a table")
    return Mapping(
        params={k: str(v) for k, v in tables["params"].items()},
        metrics={k: str(v) for k, v in tables["metrics"].items()},
        epoch_offset=int(tables["steps"].get("epoch_offset", 1)),
        convention=str(tables["flops"].get("convention", "per_batch")),
        defaults=dict(tables["defaults"]),
        source=str(name_or_path),
    )
