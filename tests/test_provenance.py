"""Runs know which code made them: provenance in config.json, training semantics per row, stale runs refused."""

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from conftest import tiny_config
from helpers import scalerec

from scalerec import __version__
from scalerec.analysis.fit_laws import semantics_summary
from scalerec.errors import ScalerecError
from scalerec.store import RunStore, read_checkpoints
from scalerec.store.provenance import TRAINING_SEMANTICS
from scalerec.train.trainer import train_run

GRID = """
[data]
n_users = 60
n_items = 60
mean_length = 8
[model]
n_layers = 1
hidden = 8
max_len = 10
dropout = 0.1
[train]
epochs = 2
batch_size = 16
n_negatives = 10
eval_negatives = 20
targets = "all"
"""


def _age(store: RunStore, run_id: str) -> None:
    """Make a run look as scalerec 0.1 wrote it: no provenance in config.json, no semantics column in its rows."""
    config = store.read_config(run_id)
    for key in ("provenance", "provenance_history", "training_semantics"):
        config.pop(key)
    store.write_config(run_id, config)
    store.write_rows(run_id, store.read_rows(run_id).drop(columns=["training_semantics"]))


def test_config_and_rows_record_the_code(tmp_path):
    store = RunStore(tmp_path)
    cfg = tiny_config(epochs=1)
    train_run(cfg, store, progress=False)
    config = store.read_config(cfg.run_id)
    repo = Path(__file__).resolve().parents[1]
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert config["provenance"]["scalerec"] == __version__ != "0.1.0"
    if head.returncode == 0:  # a git checkout (CI's is one); an installed copy records None
        assert config["provenance"]["git_commit"] == head.stdout.strip()
        assert isinstance(config["provenance"]["git_dirty"], bool)
    assert config["training_semantics"] == TRAINING_SEMANTICS >= 1
    assert config["provenance_history"] == [config["provenance"]]
    assert set(store.read_rows(cfg.run_id).training_semantics) == {TRAINING_SEMANTICS}


@pytest.mark.slow
def test_grid_refuses_accepts_or_retrains_a_stale_run(tmp_path):
    (tmp_path / "grid.toml").write_text(GRID)
    runs = tmp_path / "runs"
    first = json.loads(scalerec("grid", tmp_path / "grid.toml", "--runs", runs, "--json").stdout)
    assert first["done"] == 1
    store = RunStore(runs)
    (run_id,) = store.run_ids()
    _age(store, run_id)

    refused = scalerec("grid", tmp_path / "grid.toml", "--runs", runs, ok=False)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
    assert f"run {run_id} was trained under training semantics 0" in refused.stderr
    assert "--retrain-stale" in refused.stderr and "--accept-stale" in refused.stderr
    listed = json.loads(scalerec("runs", runs, "--json").stdout)
    assert listed[0]["semantics"] == 0

    kept = json.loads(scalerec("grid", tmp_path / "grid.toml", "--runs", runs, "--accept-stale", "--json").stdout)
    assert kept["skipped"] == 1 and kept["done"] == 0
    assert store.semantics(run_id) == 0  # accepting does not relabel it

    both = scalerec("grid", tmp_path / "grid.toml", "--runs", runs, "--accept-stale", "--retrain-stale", ok=False)
    assert both.returncode == 2 and "exclude each other" in both.stderr

    retrained = json.loads(scalerec("grid", tmp_path / "grid.toml", "--runs", runs, "--retrain-stale", "--json").stdout)
    assert retrained["done"] == 1
    assert store.semantics(run_id) == TRAINING_SEMANTICS
    aside = runs / ".stale" / f"{run_id}-1"
    assert (aside / "DONE").exists() and "training_semantics" not in json.loads((aside / "config.json").read_text())
    assert store.run_ids() == [run_id]  # the folder kept aside is not a run of the store


def test_train_refuses_a_stale_partial_run_and_resumes_it_when_accepted(tmp_path):
    store = RunStore(tmp_path)
    cfg = tiny_config(epochs=3)
    assert train_run(cfg, store, progress=False, max_epochs=1) == "paused"
    _age(store, cfg.run_id)
    with pytest.raises(ScalerecError, match="training semantics 0"):
        train_run(cfg, store, progress=False)
    assert train_run(cfg, store, progress=False, accept_stale=True) == "done"
    rows = read_checkpoints(tmp_path)
    assert rows.training_semantics.tolist() == [0, TRAINING_SEMANTICS, TRAINING_SEMANTICS]
    config = store.read_config(cfg.run_id)
    assert config["training_semantics"] == 0 and config["provenance_history"][-1]["training_semantics"] == 1

    counts, warnings = semantics_summary(rows.assign(run_id="a"))
    assert counts == {"0": 1, str(TRAINING_SEMANTICS): 1}
    assert len(warnings) == 1 and "resumed by other code (e.g. a)" in warnings[0]


def test_old_stores_read_as_semantics_zero_and_uniform_stores_do_not_warn():
    old = pd.DataFrame({"run_id": ["a", "b"]})
    assert semantics_summary(old) == ({"0": 2}, [])
    new = old.assign(training_semantics=[1, 1])
    assert semantics_summary(new) == ({"1": 2}, [])
    mixed = semantics_summary(pd.DataFrame({"run_id": ["a", "b"], "training_semantics": [None, 1]}))
    assert mixed[0] == {"0": 1, "1": 1} and "mixes training semantics 0 (1 runs), 1 (1 runs)" in mixed[1][0]


def test_no_source_file_is_ignored_by_git():
    """A .gitignore pattern once hid a new module (data/ matched scalerec/data/): it ran here and was missing from
    every clone. Nothing under scalerec/, tests/, benchmarks/ or notebooks/ that git ignores may be source."""
    import shutil
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout")
    ignored = subprocess.run(
        [
            "git",
            "ls-files",
            "--others",
            "--ignored",
            "--exclude-standard",
            "scalerec",
            "tests",
            "benchmarks",
            "notebooks",
        ],
        cwd=root,
        capture_output=True,
        text=True,
    ).stdout.split()
    source = [
        f for f in ignored if f.endswith((".py", ".toml", ".json", ".ipynb")) and not f.startswith("benchmarks/work/")
    ]  # benchmark runs' own output
    assert source == []
