"""Where datasets come from: the synthetic generator, prepared directories, and the raw formats `prepare` reads.
One place to add a dataset source."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import DataConfig, RunConfig
from ..errors import ScalerecError
from .tables import Tables

FORMATS = ("amazon2014", "amazon2018", "recbole", "table", "beauty")


@functools.lru_cache(maxsize=4)
def load_tables(cfg: DataConfig) -> Tables:
    """The canonical tables a DataConfig names (memoised: a grid process reuses them across runs)."""
    if cfg.name == "synthetic":
        from .synthetic import generate

        return generate(cfg)
    from .prepare import read_dataset

    tables = read_dataset(cfg.path)
    if cfg.fingerprint and cfg.fingerprint != tables.fingerprint:
        raise ScalerecError(
            f"{cfg.path}: dataset fingerprint {tables.fingerprint} is not the run's "
            f"{cfg.fingerprint}: the data changed since the run was configured"
        )
    return tables


def resolve_data(cfg: RunConfig) -> RunConfig:
    """Pin a prepared dataset's fingerprint into the config, so the run id changes whenever the data does."""
    return cfg if cfg.data.name != "prepared" else dataclasses.replace(cfg, data=resolve_data_config(cfg.data))


def resolve_data_config(data: DataConfig) -> DataConfig:
    """resolve_data for a DataConfig alone."""
    if data.name != "prepared":
        return data
    from .prepare import dataset_info

    fingerprint = dataset_info(data.path)["fingerprint"]
    if data.fingerprint and data.fingerprint != fingerprint:
        raise ScalerecError(f"data.fingerprint {data.fingerprint} does not match {data.path} ({fingerprint})")
    return dataclasses.replace(data, fingerprint=fingerprint)


def read_source(
    source: str | Path,
    fmt: str,
    *,
    meta: str | Path | None = None,
    items: str | Path | None = None,
    mapping: Any = None,
    skip_bad_lines: bool = False,
    progress: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """(interactions, items, report of skipped lines) from a raw source in one of FORMATS."""
    from .lines import LineErrors

    errors = LineErrors(skip_bad_lines)
    if fmt in ("amazon2014", "amazon2018"):
        from .amazon import read_meta, read_reviews

        interactions = read_reviews(source, errors, progress)
        if meta is None:
            item_table = pd.DataFrame({"item_id": interactions.item_id.unique().astype(str), "title": "", "brand": ""})
        else:
            wanted = set(interactions.item_id.cat.categories)
            item_table = read_meta(meta, int(fmt[-4:]), errors, wanted, progress)
    elif fmt == "recbole":
        from .recbole import read_recbole

        interactions, item_table = read_recbole(source)
    elif fmt == "table":
        from .tabular import ColumnMapping, read_table

        interactions, item_table = read_table(source, mapping or ColumnMapping(), items)
    elif fmt == "beauty":
        from .tabular import find_shared_beauty, read_shared_beauty

        directory = find_shared_beauty() if str(source) == "beauty" else Path(source)
        if directory is None or not Path(directory).is_dir():
            raise ScalerecError(
                "where is the 5-core Beauty data? give its directory as SOURCE, or set SCALEREC_BEAUTY to it"
            )
        interactions, item_table = read_shared_beauty(directory)
    else:
        raise ScalerecError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    return interactions, item_table, errors.report()


def prepare_dataset(
    source: str | Path,
    fmt: str,
    out: str | Path,
    *,
    name: str | None = None,
    kcore: int = 0,
    force: bool = False,
    **read_options: Any,
) -> tuple[Tables, dict[str, Any]]:
    """Read, clean and write a dataset directory; returns its tables and the cleaning report."""
    from .prepare import clean, write_dataset

    interactions, items, skipped = read_source(source, fmt, **read_options)
    interactions, items, steps = clean(interactions, items, kcore)
    if interactions.empty:
        raise ScalerecError(f"{source}: no interaction left after cleaning (k-core {kcore})")
    report = {"source": str(source), "format": fmt, "kcore": kcore, "bad_lines": skipped, "cleaning": steps}
    tables = write_dataset(out, name or Path(out).name, interactions, items, report, force)
    return tables, report
