"""The run store under faults: altered records, damaged files, kills, signals, concurrent writers, a full disk and a
read-only store. Each test asserts the contract: a one-line error, nothing torn, and a rerun that completes to
the rows of an uninterrupted run."""

import dataclasses
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pandas as pd
import pytest
from conftest import tiny_config
from helpers import scalerec, scalerec_in_process

from scalerec.config_view import config_toml
from scalerec.errors import ScalerecError
from scalerec.store import RunStore, read_checkpoints
from scalerec.store.runstore import AlteredRunWarning
from scalerec.store.verify import verify_store
from scalerec.train.trainer import train_run


def _configs(n=3):
    return [tiny_config(n_users=users) for users in (60, 90, 120, 150)[:n]]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Three finished tiny runs (two checkpoints each)."""
    root = tmp_path_factory.mktemp("trained") / "runs"
    store = RunStore(root)
    for cfg in _configs():
        train_run(cfg, store, progress=False)
    return root


def _copy(trained, tmp_path):
    shutil.copytree(trained, tmp_path / "runs")
    return tmp_path / "runs"


def _alter(root: Path, run_id: str) -> None:
    """Edit a finished run's learning rate by hand, as the issue's fault did."""
    path = root / run_id / "config.json"
    config = json.loads(path.read_text())
    config["config"]["train"]["lr"] *= 10
    path.write_text(json.dumps(config, indent=2))


def _digest(root: Path) -> str:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return hashlib.sha256(b"".join(p.name.encode() + p.read_bytes() for p in files)).hexdigest()


def test_an_altered_run_is_caught_by_every_reader(trained, tmp_path):
    from scalerec.train.finetune import FinetuneConfig, finetune_run

    root = _copy(trained, tmp_path)
    cfg = _configs()[0]
    _alter(root, cfg.run_id)

    listed = json.loads(scalerec_in_process("runs", root, "--json", cwd=tmp_path).stdout)
    row = next(r for r in listed if r["run_id"] == cfg.run_id)
    assert row["status"] == "altered" and "hashes to" in row["reason"]

    with pytest.warns(AlteredRunWarning, match=cfg.run_id):
        rows = read_checkpoints(root)
    assert cfg.run_id not in set(rows.run_id) and rows.run_id.nunique() == 2
    assert cfg.run_id in rows.attrs["altered"]
    with pytest.raises(ScalerecError, match=f"run {cfg.run_id} is altered"):
        read_checkpoints(root, strict=True)

    args = ("fit-laws", root, "--out", tmp_path / "analysis", "--points", "all", "--bootstrap", "0", "--no-backtest")
    fitted = scalerec_in_process(*args, "--no-slices", "--json", cwd=tmp_path)
    laws = json.loads(fitted.stdout)
    assert laws["data"]["runs"] == 2 and cfg.run_id in laws["data"]["altered_runs_left_out"]
    assert any(w.startswith(f"run {cfg.run_id} left out: altered") for w in laws["warnings"])
    refused = scalerec_in_process(*args, "--strict", cwd=tmp_path, ok=False)
    assert refused.returncode == 1 and f"run {cfg.run_id} is altered" in refused.stderr

    for attempt in (
        lambda: train_run(cfg, RunStore(root), progress=False),  # `grid` and `train` skip or resume
        lambda: finetune_run(
            FinetuneConfig(parent_run_id=cfg.run_id, data=cfg.data, layer_epochs=1, embedding_epochs=0),
            RunStore(root),
            RunStore(tmp_path / "ft"),
            progress=False,
        ),
    ):
        with pytest.raises(ScalerecError, match=f"run {cfg.run_id} in .* is altered"):
            attempt()
    assert cfg.run_id not in RunStore(root).archive_finished(RunStore(tmp_path / "kept"))


def test_a_run_from_a_newer_scalerec_is_named_as_such(trained, tmp_path):
    root = _copy(trained, tmp_path)
    run_id = RunStore(root).run_ids()[0]
    path = root / run_id / "config.json"
    config = json.loads(path.read_text())
    config["config"]["train"]["a_field_from_the_future"] = 1
    path.write_text(json.dumps(config))
    (verdict,) = [
        v
        for v in json.loads(scalerec_in_process("runs", "--verify", root, "--json", cwd=tmp_path, ok=False).stdout)[
            "runs"
        ]
        if v["run_id"] == run_id
    ]
    assert verdict["verdict"] == "altered" and "newer scalerec" in verdict["why"]
    assert "a_field_from_the_future" in verdict["why"] and "known:" not in verdict["why"]


def test_a_grid_refuses_to_skip_an_altered_run(trained, tmp_path):
    root = _copy(trained, tmp_path)
    cfg = _configs()[1]
    _alter(root, cfg.run_id)
    spec = tmp_path / "grid.toml"
    spec.write_text(config_toml(cfg))  # the same run, as a grid spec of one
    assert scalerec_in_process("config", "show", spec, cwd=tmp_path).stdout.startswith(f"# {spec}: run id {cfg.run_id}")
    result = scalerec_in_process("grid", spec, "--runs", root, cwd=tmp_path, ok=False)
    assert result.returncode == 1 and f"run {cfg.run_id} in {root} is altered" in result.stderr


def _damage(root: Path, run_id: str, how: str) -> None:
    run = root / run_id
    rows = pd.read_parquet(run / "checkpoints.parquet")
    if how == "torn checkpoints":
        data = (run / "checkpoints.parquet").read_bytes()
        (run / "checkpoints.parquet").write_bytes(data[: len(data) // 2])
    elif how in ("duplicated step", "DONE without a final row", "rows of another run"):
        if how == "duplicated step":
            rows = pd.concat([rows, rows.iloc[[-1]]])
        elif how == "DONE without a final row":
            rows = rows.assign(is_final=False)
        else:
            rows = rows.assign(run_id="0123456789ab")
        RunStore(root).write_rows(run_id, rows.reset_index(drop=True))
    elif how == "unreadable config":
        (run / "config.json").write_text("{ not json")


@pytest.mark.parametrize(
    "how, verdict, why",
    [
        ("torn checkpoints", "damaged", "not a readable Parquet file"),
        ("duplicated step", "damaged", "1 duplicated step(s)"),
        ("DONE without a final row", "damaged", "the last row is not a final checkpoint"),
        ("rows of another run", "altered", "checkpoint rows carry run id 0123456789ab"),
        ("unreadable config", "damaged", "not a readable run config"),
        ("edited config", "altered", "hashes to"),
    ],
)
def test_verify_reports_each_fault_and_changes_nothing(trained, tmp_path, how, verdict, why):
    root = _copy(trained, tmp_path)
    run_id = _configs()[2].run_id
    _alter(root, run_id) if how == "edited config" else _damage(root, run_id, how)
    before = _digest(root)
    result = scalerec_in_process("runs", "--verify", root, "--json", cwd=tmp_path, ok=False)
    report = json.loads(result.stdout)
    assert result.returncode == 1 and report["counts"][verdict] == 1 and report["counts"]["whole"] == 2
    bad = next(r for r in report["runs"] if r["run_id"] == run_id)
    assert bad["verdict"] == verdict and why in bad["why"]
    assert _digest(root) == before


def test_verify_tells_unfinished_runs_from_damaged_ones(tmp_path):
    store = RunStore(tmp_path / "runs")
    partial, no_state, torn_state = _configs(3)
    for cfg in (partial, no_state, torn_state):
        train_run(cfg, store, progress=False, max_epochs=1)  # one of two epochs: resumable
    (store.state_path(no_state.run_id)).unlink()
    data = store.state_path(torn_state.run_id).read_bytes()
    store.state_path(torn_state.run_id).write_bytes(data[: len(data) // 2])
    report = json.loads(scalerec_in_process("runs", "--verify", store.root, "--json", cwd=tmp_path, ok=False).stdout)
    verdicts = {r["run_id"]: (r["verdict"], r["why"]) for r in report["runs"]}
    assert verdicts[partial.run_id] == ("unfinished", "1 checkpoint(s)")
    # rows written, then killed before the first state.pt: the trainer starts such a run over (Trainer._resume)
    assert verdicts[no_state.run_id][0] == "unfinished" and "from the start" in verdicts[no_state.run_id][1]
    assert verdicts[torn_state.run_id][0] == "damaged" and "state.pt" in verdicts[torn_state.run_id][1]


def test_verify_on_what_is_not_a_store_is_a_usage_error(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("x")
    for target in ("empty", "missing", "file"):
        result = scalerec_in_process("runs", "--verify", target, cwd=tmp_path, ok=False)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and "not a run store" in lines[0]


def test_imported_and_archived_runs_verify_whole(trained, tmp_path):
    from scalerec.analysis.synthetic_runs import loss_table

    loss_table(seed=1).to_csv(tmp_path / "runs.csv", index=False)
    scalerec_in_process(
        "import-table",
        "runs.csv",
        "--N",
        "params",
        "--T",
        "tokens",
        "--metric",
        "val_loss",
        "--run",
        "run",
        "--out",
        "imported",
        cwd=tmp_path,
    )
    RunStore(trained).archive_finished(RunStore(tmp_path / "kept"))
    for store, kind in (("imported", "imported (table)"), ("kept", "archived")):
        report = json.loads(scalerec_in_process("runs", "--verify", store, "--json", cwd=tmp_path).stdout)
        assert report["counts"]["whole"] == len(report["runs"]) > 0
        assert {r["kind"] for r in report["runs"]} == {kind}


# -- processes killed, signalled, racing, or starved --------------------------------------------------------------


TIMES = ["wall_time_s", "cpu_time_s", "eval_time_s"]  # what no two runs share


def _uninterrupted_rows(cfg, tmp_path):
    train_run(cfg, RunStore(tmp_path / "reference"), progress=False)
    return read_checkpoints(tmp_path / "reference").drop(columns=TIMES, errors="ignore")


def _spec(tmp_path, epochs=6):
    spec = tmp_path / "grid.toml"
    spec.write_text(
        "[data]\nn_users = 300\nn_items = 60\nmean_length = 8\n[model]\nn_layers = 1\nn_heads = 2\nhidden = 16\n"
        f"max_len = 10\ndropout = 0.1\n[train]\nepochs = {epochs}\nbatch_size = 16\nlr = 3e-3\nn_negatives = 20\n"
        'targets = "all"\neval_negatives = 30\n'
    )
    return spec


def _same_rows(root, reference):
    rows = read_checkpoints(root).drop(columns=TIMES, errors="ignore")
    assert not rows.duplicated(["run_id", "step"]).any()
    pd.testing.assert_frame_equal(
        rows.drop(columns=["training_semantics"], errors="ignore").sort_values("step").reset_index(drop=True),
        reference.drop(columns=["training_semantics"], errors="ignore").sort_values("step").reset_index(drop=True),
        check_exact=False,
        rtol=1e-6,
    )


def _start(args, cwd, output=subprocess.DEVNULL):
    """The real `scalerec` command, started and not waited for (for signals and kills)."""
    env = os.environ | {"TQDM_DISABLE": "1"}
    command = [sys.executable, "-m", "scalerec", *map(str, args)]
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=output, stderr=output, text=True)


def _run_after_first_checkpoint(args, root, cwd):
    process = _start(args, cwd, output=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and not list(Path(root).glob("*/checkpoints.parquet")):
        time.sleep(0.05)
    return process


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, -signal.SIGTERM)])
def test_a_signalled_grid_stops_cleanly_and_a_rerun_completes_it(tmp_path, sig, code):
    from scalerec.config import load_run_config

    spec = _spec(tmp_path)
    process = _run_after_first_checkpoint(["grid", spec, "--runs", "runs"], tmp_path / "runs", tmp_path)
    process.send_signal(sig)
    _, err = process.communicate(timeout=120)
    if process.returncode == 0:
        pytest.skip("the grid finished before the signal arrived")
    assert process.returncode == code
    if sig == signal.SIGINT:
        assert err.strip().splitlines()[-1].startswith("scalerec: interrupted")
    assert json.loads(scalerec("runs", "--verify", "runs", "--json", cwd=tmp_path).stdout)["counts"]["damaged"] == 0
    scalerec("grid", spec, "--runs", "runs", cwd=tmp_path)
    _same_rows(tmp_path / "runs", _uninterrupted_rows(load_run_config(spec), tmp_path))


@pytest.mark.slow
def test_two_grids_on_one_store_train_each_run_once(tmp_path):
    from scalerec.config import load_run_config

    spec = _spec(tmp_path, epochs=4)
    first, second = (_start(["grid", spec, "--runs", "runs"], tmp_path, output=subprocess.PIPE) for _ in range(2))
    results = [p.communicate(timeout=300) + (p.returncode,) for p in (first, second)]
    # one trains the run; the other finds it taken ("another process") or finished, and says so in one line
    assert sorted(code for *_, code in results)[0] == 0, results
    for _, err, code in results:
        if code:
            assert "another process" in err and err.count("Traceback") == 0
    scalerec("grid", spec, "--runs", "runs", cwd=tmp_path)  # a rerun: nothing left to train
    _same_rows(tmp_path / "runs", _uninterrupted_rows(load_run_config(spec), tmp_path))


@pytest.mark.slow
def test_kill_9_during_fit_laws_leaves_the_old_laws_or_none_and_a_rerun_completes(trained, tmp_path):
    root = _copy(trained, tmp_path)
    args = ["fit-laws", root, "--out", "analysis", "--points", "all", "--bootstrap", "400", "--no-slices"]
    for delay in (0.5, 1.5, 3.0):
        process = _start(args, tmp_path)
        time.sleep(delay)
        process.kill()
        process.wait()
        laws = tmp_path / "analysis" / "laws.json"
        if laws.exists():
            json.loads(laws.read_text())  # whole: never a torn file
    if shutil.which("pgrep"):  # its bootstrap workers died with it: nothing left waiting on a dead parent
        deadline = time.time() + 10
        while time.time() < deadline and subprocess.run(["pgrep", "-f", str(root)], capture_output=True).stdout:
            time.sleep(0.2)
        assert not subprocess.run(["pgrep", "-f", str(root)], capture_output=True).stdout
    scalerec(*args, cwd=tmp_path)
    assert json.loads((tmp_path / "analysis" / "laws.json").read_text())["data"]["runs"] == 3


@pytest.mark.slow
def test_kill_9_inside_cooldown_branches_resumes_to_the_uninterrupted_rows(tmp_path):
    """A WSD run whose cooldown branches take most of its time, killed with -9 at several instants after a branch
    row appears (inside the next branch, or between), then rerun: the rows of a run never interrupted."""
    cfg = tiny_config(epochs=6, n_users=300)
    train = dataclasses.replace(
        cfg.train, schedule="wsd", warmup_fraction=0.0, cooldown_share=0.5, cooldowns=(0.3, 0.45, 0.6, 0.75, 0.9)
    )
    cfg = dataclasses.replace(cfg, train=train)
    (tmp_path / "run.toml").write_text(config_toml(cfg))
    reference = _uninterrupted_rows(cfg, tmp_path)
    rows_file = tmp_path / "runs" / cfg.run_id / "checkpoints.parquet"
    for branches_seen, delay in ((1, 0.0), (2, 0.2), (3, 0.5)):
        process = _start(["train", "run.toml", "--runs", "runs"], tmp_path)
        deadline = time.time() + 120
        while time.time() < deadline and process.poll() is None:
            if rows_file.exists() and _cooldown_rows(rows_file) >= branches_seen:
                break
            time.sleep(0.01)
        time.sleep(delay)
        process.kill()
        process.wait()
    assert RunStore(tmp_path / "runs").status(cfg.run_id) != "done"  # the kills landed before its end
    scalerec("train", "run.toml", "--runs", "runs", cwd=tmp_path)
    _same_rows(tmp_path / "runs", reference)
    assert verify_store(tmp_path / "runs")[0]["verdict"] == "whole"


def _cooldown_rows(path: Path) -> int:
    try:
        return int(pd.read_parquet(path, columns=["cooldown"]).cooldown.notna().sum())
    except (OSError, ValueError):  # being replaced right now
        return 0


@pytest.mark.slow
def test_kill_9_during_prepare_leaves_nothing_that_looks_prepared_and_a_rerun_completes(tmp_path):
    from scalerec.config import DataConfig
    from scalerec.data.synthetic import generate

    tables = generate(DataConfig(n_users=20000, n_items=2000))
    frame = tables.interactions.merge(tables.items, on="item_id")
    frame.to_csv(tmp_path / "big.csv", index=False)
    args = ["data", "prepare", "big.csv", "--format", "table", "--out", "data/big"]
    process = _start(args, tmp_path, output=None)  # its output is the test's
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None and not list((tmp_path / "data").glob(".big.tmp-*")):
        time.sleep(0.005)  # killed while it writes its tables under a temporary name
    process.kill()
    process.wait()
    if process.returncode == 0:
        pytest.skip("prepare finished before the kill")
    assert not (tmp_path / "data" / "big" / "dataset.json").exists()
    scalerec(*args, "--force", cwd=tmp_path)
    scalerec(*args[:-1], "data/again", cwd=tmp_path)
    assert (
        json.loads((tmp_path / "data" / "big" / "dataset.json").read_text())["fingerprint"]
        == json.loads((tmp_path / "data" / "again" / "dataset.json").read_text())["fingerprint"]
    )


def _mount_tmpfs(path: Path, size: str, read_only: bool = False) -> bool:
    """A small filesystem of our own (root only; False where this machine does not allow it)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    return (
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True).returncode == 0
    )


def _umount(path: Path) -> None:
    subprocess.run(["umount", str(path)], capture_output=True)


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_tears_nothing(tmp_path):
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "300k"):
        pytest.skip("needs root and tmpfs mounts to make a small filesystem")
    try:
        spec = _spec(tmp_path, epochs=40)
        result = scalerec("grid", spec, "--runs", disk / "runs", cwd=tmp_path, ok=False)
        assert result.returncode != 0 and "Traceback" not in result.stderr
        assert "No space left" in result.stderr or "No space left" in result.stdout
        report = json.loads(scalerec("runs", "--verify", disk / "runs", "--json", cwd=tmp_path, ok=False).stdout)
        assert report["counts"]["altered"] == 0
        for run in report["runs"]:  # whatever was written reads: no torn file
            assert "not a readable" not in run["why"], run
    finally:
        _umount(disk)


@pytest.mark.slow
def test_a_read_only_store_is_read_and_refused_for_writing_in_one_line(trained, tmp_path):
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "20m"):
        pytest.skip("needs root and tmpfs mounts to make a read-only filesystem")
    try:
        shutil.copytree(trained, disk / "runs")
        if subprocess.run(["mount", "-o", "remount,ro", str(disk)], capture_output=True).returncode:
            pytest.skip("cannot remount read-only here")
        assert (
            json.loads(scalerec("runs", "--verify", disk / "runs", "--json", cwd=tmp_path).stdout)["counts"]["whole"]
            == 3
        )
        cfg = dataclasses.replace(_configs()[0], seed=7)  # a run the store does not hold
        toml = tmp_path / "run.toml"
        toml.write_text(config_toml(cfg))
        result = scalerec("train", toml, "--runs", disk / "runs", cwd=tmp_path, ok=False)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1 and lines[-1].startswith("scalerec: error:") and "Read-only" in lines[-1]
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert read_checkpoints(disk / "runs").run_id.nunique() == 3
    finally:
        _umount(disk)


def test_the_committed_evidence_verifies_whole():
    """The stores committed under benchmarks/results/ (Table 1, the Beauty study) are the evidence behind the
    README's numbers: every record matches its id and reads whole."""
    from scalerec.store.verify import verify_store

    results = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
    stores = sorted({p.parent.parent for p in results.rglob("config.json")})
    assert stores, "no committed run store found"
    for store in stores:
        verdicts = verify_store(store)
        assert {v["verdict"] for v in verdicts} == {"whole"}, (store, [v for v in verdicts if v["verdict"] != "whole"])
