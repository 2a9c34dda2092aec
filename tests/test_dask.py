"""The Dask executor: same runs and rows as the local one, a killed worker's run resumes, clear errors."""

import os
import signal
import threading
import time

import numpy as np
import pytest
from helpers import scalerec
from test_cli import TINY_GRID

from scalerec.grid.executors import run_dask
from scalerec.grid.spec import expand, load_spec
from scalerec.store import RunStore, read_checkpoints

pytestmark = pytest.mark.slow  # every test here starts a Dask cluster

distributed = pytest.importorskip("distributed")

SAME = ["run_id", "step", "epoch", "seen_interactions", "dataset_interactions", "train_flops", "non_embedding_params"]


def test_dask_grid_gives_the_local_executors_runs_and_rows(tmp_path):
    (tmp_path / "grid.toml").write_text(TINY_GRID)
    scalerec("grid", tmp_path / "grid.toml", "--runs", tmp_path / "local", "--workers", "2")
    scalerec("grid", tmp_path / "grid.toml", "--runs", tmp_path / "dask", "--workers", "2", "--executor", "dask")
    local = read_checkpoints(tmp_path / "local").sort_values(["run_id", "step"]).reset_index(drop=True)
    dask = read_checkpoints(tmp_path / "dask").sort_values(["run_id", "step"]).reset_index(drop=True)
    assert len(local) == len(dask) == 4 * 3
    assert local[SAME].equals(dask[SAME])
    np.testing.assert_allclose(local.valid_ndcg_at_5, dask.valid_ndcg_at_5, atol=1e-6)
    assert {RunStore(tmp_path / "dask").status(r) for r in dask.run_id} == {"done"}


def test_a_run_whose_worker_is_killed_resumes_from_its_state(tmp_path):
    (tmp_path / "grid.toml").write_text(
        TINY_GRID.replace("epochs = 3", "epochs = 40")
        .replace("[[1, 2, 8], [1, 2, 16]]", "[[1, 2, 16]]")
        .replace("[40, 120]", "[150]")
    )
    configs = expand(*load_spec(str(tmp_path / "grid.toml")))
    run_id, store = configs[0].run_id, RunStore(tmp_path / "runs")
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        result = {}
        thread = threading.Thread(
            target=lambda: result.update(
                report=run_dask(configs, store, scheduler=cluster.scheduler_address, threads_per_run=1, progress=False)
            )
        )
        thread.start()
        deadline = time.time() + 120
        while not store.state_path(run_id).exists():
            assert time.time() < deadline, "the run never reached its first checkpoint"
            time.sleep(0.1)
        assert store.status(run_id) != "done"
        (pid,) = client.run(os.getpid).values()
        os.kill(pid, signal.SIGKILL)  # the nanny restarts the worker; the scheduler reruns the task
        thread.join(timeout=300)
    report = result["report"]
    assert report.done == [run_id] and not report.failed
    rows = read_checkpoints(tmp_path / "runs")
    assert rows.step.is_unique and rows.step.is_monotonic_increasing  # nothing lost, nothing twice
    assert rows.epoch.tolist() == [float(e) for e in range(1, 41)]
    assert store.status(run_id) == "done"


def test_unreachable_scheduler_fails_within_seconds(tmp_path):
    (tmp_path / "grid.toml").write_text(TINY_GRID)
    started = time.time()
    result = scalerec(
        "grid",
        tmp_path / "grid.toml",
        "--runs",
        tmp_path / "runs",
        "--executor",
        "dask",
        "--scheduler",
        "tcp://127.0.0.1:9",
        ok=False,
    )
    assert time.time() - started < 60
    assert result.returncode == 1 and "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in result.stderr
    assert result.stderr.count("\n") == 1


def test_a_run_store_workers_cannot_write_is_refused(tmp_path):
    (tmp_path / "grid.toml").write_text(TINY_GRID)
    (tmp_path / "file").write_text("")
    result = scalerec(
        "grid", tmp_path / "grid.toml", "--runs", tmp_path / "file" / "runs", "--executor", "dask", ok=False
    )
    assert result.returncode == 1 and "cannot write the run store" in result.stderr, result.stderr


def test_a_run_that_fails_on_its_worker_is_reported_and_the_others_finish(tmp_path):
    """A dataset the worker cannot find is a ScalerecError raised on the worker: it comes back across the process
    boundary as that run's one-line reason, and the other runs of the grid still finish."""
    import dataclasses

    (tmp_path / "grid.toml").write_text(TINY_GRID)
    good = expand(*load_spec(str(tmp_path / "grid.toml")))[:1]
    missing = dataclasses.replace(
        good[0], data=dataclasses.replace(good[0].data, name="prepared", path=str(tmp_path / "nowhere"))
    )
    store = RunStore(tmp_path / "runs")
    report = run_dask([good[0], missing], store, workers=2, progress=False)
    assert report.done == [good[0].run_id]
    assert list(report.failed) == [missing.run_id]
    assert "nowhere" in report.failed[missing.run_id] and "\n" not in report.failed[missing.run_id]
    assert store.status(good[0].run_id) == "done"
