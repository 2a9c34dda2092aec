"""Which code made a run: package version, git commit, and the training-semantics number.

TRAINING_SEMANTICS is bumped whenever what a run computes changes (loss, sampler, batching, evaluation, FLOP
convention), so that a grid never mixes rows of two meanings under one run id: a run made under other semantics is
neither skipped as done nor resumed without the user saying so (`--accept-stale` or `--retrain-stale`), and
`fit-laws` warns on a store that mixes them. Stores written before the number existed read as semantics 0.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from typing import Any

from .. import __version__

TRAINING_SEMANTICS = 1
# What each number means, newest last: the history a reader of an old store needs.
SEMANTICS_HISTORY = {
    0: "runs written before provenance was recorded (scalerec 0.1.x): any earlier code",
    1: "scalerec 0.2: the 0.1 recipe (pre-LN, mean pooling, unigram tokens), named evaluation protocols recorded "
    "per row, optional reference-recipe fields (post-LN, sum pooling, BPE, per-target negatives, OneCycleLR, "
    "early stopping), prefix samples in one causal pass",
}
UNKNOWN_SEMANTICS = 0


@functools.lru_cache(maxsize=1)
def git_state() -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout the package runs from, or (None, None) outside a git checkout (an
    installed wheel). `dirty` looks at the package's own files only."""
    package = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "-C", str(package), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(package), "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit or None, bool(status.strip())


def code_provenance() -> dict[str, Any]:
    """What config.json records about the code that trains a run."""
    commit, dirty = git_state()
    return {"scalerec": __version__, "git_commit": commit, "git_dirty": dirty, "training_semantics": TRAINING_SEMANTICS}


def config_semantics(config: dict[str, Any]) -> int:
    """The training semantics a run was started under, from its config.json (0 when not recorded)."""
    return int(config.get("training_semantics", UNKNOWN_SEMANTICS))


def stale_message(run_id: str, semantics: int, more: int = 0) -> str:
    """The one line a grid or `train` prints when it meets a run made under other training semantics."""
    others = f" (and {more} more)" if more else ""
    return (
        f"run {run_id}{others} was trained under training semantics {semantics}, this scalerec computes "
        f"{TRAINING_SEMANTICS}: retrain with --retrain-stale (the old folder is kept under .stale/), or keep "
        "it as it is with --accept-stale"
    )
