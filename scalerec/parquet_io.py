"""Parquet in and out without Arrow's thread pools.

Arrow decodes on a process-wide pool of native threads that it tears down at interpreter exit; on a loaded 2-core
machine that teardown can race a worker still alive and abort the process (SIGABRT, "terminate called without an
active exception", apache/arrow#34314) after the command has finished — a `scalerec` that did its work but exits
-6. scalerec's tables are small, so reading and writing them on the calling thread costs nothing and leaves no
native thread to race."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def read_arrow(path: str | Path) -> pa.Table:
    """One open, then parse from memory: reading by path opens the file more than once, so a writer's os.replace
    between two opens could pair one file's footer with the next one's pages. One descriptor is one file."""
    with Path(path).open("rb") as handle:
        return pq.read_table(pa.BufferReader(handle.read()), use_threads=False, pre_buffer=False)


def to_frame(table: pa.Table) -> pd.DataFrame:
    return table.to_pandas(use_threads=False)


def read_parquet(path: str | Path) -> pd.DataFrame:
    """A Parquet file as a DataFrame, read on this thread."""
    return to_frame(read_arrow(path))


def to_bytes(table: pa.Table) -> bytes:
    """A table as Parquet bytes, for an atomic write."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def from_frame(frame: pd.DataFrame, schema: pa.Schema | None = None) -> pa.Table:
    return pa.Table.from_pandas(frame, schema=schema, preserve_index=False, nthreads=1)


def write_parquet(frame: pd.DataFrame, path: str | Path) -> None:
    """A DataFrame to a Parquet file (no index), written on this thread."""
    pq.write_table(from_frame(frame.reset_index(drop=True)), str(path))
