"""Where a benchmark's table goes: benchmarks/results/<name>.md, written whole (a crash leaves the old file, never a
torn one) and printed."""

from __future__ import annotations

from pathlib import Path

from scalerec.store.runstore import atomic_write_bytes


def write_table(out: str | Path, lines: list[str], echo: bool = True) -> None:
    """Write `lines` to `out` (its folder made if needed) and, with `echo`, print them."""
    text = "\n".join(lines) + "\n"
    atomic_write_bytes(Path(out), text.encode())
    if echo:
        print(text, end="")


def written_at() -> str:
    """`at commit <12 hex> on <n> CPUs`: where a results file's numbers come from (its command says how)."""
    import os

    from scalerec.store.provenance import git_state

    return f"at commit {(git_state()[0] or 'unknown')[:12]} on {os.cpu_count()} CPUs"
