"""Strict JSON for everything scalerec writes: NaN and ±inf become `null`.

Python's `json` writes bare `NaN`/`Infinity`, which is not JSON: `jq`, JavaScript and Python's own
`json.loads(..., parse_constant=...)`-free strict parsers reject it. A number the program could not compute (a failed
bootstrap refit, an undefined coverage) is `null` in every file and `--json` output; readers turn it back into NaN.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np


def finite_or_null(obj: Any) -> Any:
    """`obj` with numpy scalars and arrays as plain Python values and every non-finite float as None."""
    if isinstance(obj, dict):
        return {key: finite_or_null(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_null(value) for value in obj]
    if isinstance(obj, np.ndarray):
        return finite_or_null(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def dumps(obj: Any, **kwargs: Any) -> str:
    """json.dumps of `finite_or_null(obj)`, refusing any NaN left (there is none)."""
    return json.dumps(finite_or_null(obj), allow_nan=False, **kwargs)
