"""Dataset name -> canonical tables. One place to add a dataset source."""

from __future__ import annotations

import functools

from ..config import DataConfig
from .tables import Tables


@functools.lru_cache(maxsize=4)
def load_tables(cfg: DataConfig) -> Tables:
    """The canonical tables a DataConfig names (memoised: a grid process reuses them across runs)."""
    from .synthetic import generate  # the only source so far; DataConfig validates the name

    return generate(cfg)
