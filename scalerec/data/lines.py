"""Streaming line readers for raw files: gzip-transparent, decoded line by line so that every error names its
file and line (`reviews.json:1234: …`), or is counted and skipped with `skip_bad_lines`."""

from __future__ import annotations

import gzip
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..errors import ScalerecError


class BadLine(ValueError):
    """Raised by a line parser: the message says what is wrong with the line."""


class LineErrors:
    """What was skipped, by reason, when bad lines are skipped rather than fatal."""

    def __init__(self, skip: bool) -> None:
        self.skip, self.counts, self.examples = skip, Counter(), {}

    def bad(self, path: Path, number: int, reason: str) -> None:
        if not self.skip:
            raise ScalerecError(f"{path.name}:{number}: {reason} (use --skip-bad-lines to skip such lines)")
        kind = reason.split(":")[0]
        self.counts[kind] += 1
        self.examples.setdefault(kind, f"{path.name}:{number}")

    def report(self) -> dict[str, Any]:
        return {
            "skipped_lines": sum(self.counts.values()),
            "by_reason": dict(self.counts),
            "first_example": self.examples,
        }


def _open(path: Path):
    with path.open("rb") as probe:
        magic = probe.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else path.open("rb")


def parsed_lines(
    path: str | Path, parse: Callable[[str], Any], errors: LineErrors, progress: bool = True
) -> Iterator[Any]:
    """Yield parse(line) for every non-blank line of a (possibly gzipped) text file."""
    path = Path(path)
    if path.is_dir():
        raise ScalerecError(f"{path}: is a directory, expected a (possibly gzipped) JSON-lines file")
    if not path.is_file():
        raise ScalerecError(f"{path}: no such file")
    number, seen = 0, 0
    with (
        _open(path) as handle,
        tqdm(desc=path.name, unit=" lines", unit_scale=True, disable=not progress, leave=False) as bar,
    ):
        try:
            for number, raw in enumerate(handle, start=1):
                if number % 10000 == 0:
                    bar.update(10000)
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    errors.bad(path, number, f"not UTF-8: byte {exc.start}")
                    continue
                if not line.strip():
                    continue
                try:
                    yield parse(line)
                    seen += 1
                except BadLine as exc:
                    errors.bad(path, number, str(exc))
        except (EOFError, zlib.error, gzip.BadGzipFile, OSError) as exc:
            raise ScalerecError(f"{path.name}:{number + 1}: truncated or corrupt gzip ({exc})") from None
    if seen == 0:
        raise ScalerecError(f"{path}: empty (no readable line)")
