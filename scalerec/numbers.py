"""Human-friendly numbers: `1e6`, `2.5M`, `80K`, `1.2B`."""

from __future__ import annotations

import math
import re

from .errors import ScalerecError

_SUFFIX = {"": 1.0, "K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12}
_PATTERN = re.compile(r"^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*([KMBGT]?)\s*$", re.IGNORECASE)


def parse_number(text: str | float | int, *, name: str = "value", positive: bool = True) -> float:
    """Parse `1e6`, `2.5M`, `80k`... into a float; raise ScalerecError on anything else.

    With `positive=True` (the default) zero, negative, infinite and NaN values are rejected too.
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        match = _PATTERN.match(str(text))
        if not match:
            raise ScalerecError(f"{name}: {text!r} is not a number (examples: 1e6, 2.5M, 80K)")
        value = float(match.group(1)) * _SUFFIX[match.group(2).upper()]
    if not math.isfinite(value) or (positive and value <= 0):
        raise ScalerecError(f"{name}: {text!r} must be a positive finite number")
    return value


def format_number(value: float) -> str:
    """Short human form: 12345 -> '12.3K', 2.5e6 -> '2.5M'."""
    for suffix, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"
