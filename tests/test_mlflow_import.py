"""import-mlflow round trip: runs logged with the mlflow package itself, in SQLite and mlruns/ stores."""

import hashlib
import json
import shutil
import sqlite3

import numpy as np
import pytest
from helpers import scalerec

from scalerec.analysis.fit_laws import FitOptions, fit_laws
from scalerec.errors import ScalerecError
from scalerec.store import RunStore, read_checkpoints
from scalerec.store.mlflow_import import import_mlflow, imported_run_id
from scalerec.store.mlflow_mapping import load_mapping

mlflow = pytest.importorskip("mlflow")

SHAPES = [(1, 2, 16, 3_000), (2, 2, 32, 17_000)]
DATA = [1_000, 4_000]
EPOCHS = 4


def ndcg(n, t):
    return 0.3 - 2.0 / n**0.3 - 3.0 / t**0.3


def log_srt_grid(uri: str) -> dict[str, dict]:
    """An SRT-reference-style grid logged through MLflow; returns the truth per MLflow run id."""
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("srt-grid")
    truth = {}
    for layers, heads, hidden, n in SHAPES:
        for d in DATA:
            with mlflow.start_run() as run:
                mlflow.log_params(
                    {
                        "n_layers": layers,
                        "n_heads": heads,
                        "hidden_size": hidden,
                        "inner_size": hidden,
                        "nce_num_negatives": 100,
                        "train_batch_size": 128,
                        "n_inters": d,
                        "total_flops": 1.5e6 * hidden,
                        "model_non_emb_params": n,
                        "model_total_params": n + 40_000,
                    }
                )
                for epoch in range(1, EPOCHS + 1):
                    mlflow.log_metrics(
                        {
                            "valid/ndcg_at_5": ndcg(n, epoch * d),
                            "valid/hit_at_5": 0.5,
                            "valid/eval_loss": 3.0 - 0.1 * epoch,
                        },
                        step=epoch - 1,
                    )
            truth[run.info.run_id] = {"n": n, "d": d, "macs": 1.5e6 * hidden}
    with mlflow.start_run(run_name="deleted") as run:
        mlflow.log_metric("valid/ndcg_at_5", 0.1, step=0)
    mlflow.delete_run(run.info.run_id)
    return truth


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    truth = log_srt_grid(f"sqlite:///{root / 'mlflow.db'}")
    return root / "mlflow.db", truth


@pytest.mark.slow
def test_sqlite_round_trip_follows_the_srt_conventions(sqlite_store, tmp_path):
    db, truth = sqlite_store
    summaries = import_mlflow(str(db), load_mapping("srt"), tmp_path / "runs")
    assert len(summaries) == len(truth)  # the deleted run is left out
    rows = read_checkpoints(tmp_path / "runs")
    assert len(rows) == len(truth) * EPOCHS
    for mlflow_id, true in truth.items():
        run = rows[rows.run_id == imported_run_id(mlflow_id)].sort_values("epoch")
        epochs = np.arange(1, EPOCHS + 1)
        assert run.epoch.tolist() == epochs.tolist()
        assert run.seen_interactions.tolist() == (epochs * true["d"]).tolist()
        np.testing.assert_allclose(run.forward_macs, epochs * true["macs"] * true["d"] / 128)
        np.testing.assert_allclose(run.train_flops, 6 * run.forward_macs)
        np.testing.assert_allclose(run.valid_ndcg_at_5, ndcg(true["n"], epochs * true["d"]))
        np.testing.assert_allclose(run.valid_loss, 3.0 - 0.1 * epochs)
        assert run.is_final.tolist() == [False] * (EPOCHS - 1) + [True]
        assert (run.non_embedding_params == true["n"]).all() and (run.total_params == true["n"] + 40_000).all()
    assert {RunStore(tmp_path / "runs").status(s["run_id"]) for s in summaries} == {"done"}

    again = import_mlflow(str(db), load_mapping("srt"), tmp_path / "runs")  # replaces, never duplicates
    assert [s["run_id"] for s in again] == [s["run_id"] for s in summaries]
    assert len(read_checkpoints(tmp_path / "runs")) == len(rows)

    laws = fit_laws(rows, FitOptions(points="all", bootstrap=0, flops="forward_macs"))
    assert laws["data"]["runs"] == len(truth) and laws["laws"]["risk"]["params"]["alpha"] > 0


def test_file_store_imports_like_sqlite(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store in maintenance mode
    truth = log_srt_grid(f"file://{tmp_path / 'mlruns'}")
    summaries = import_mlflow(str(tmp_path / "mlruns"), load_mapping("srt"), tmp_path / "runs")
    assert {s["mlflow_run_id"] for s in summaries} == set(truth)
    rows = read_checkpoints(tmp_path / "runs")
    assert len(rows) == len(truth) * EPOCHS and rows.is_final.sum() == len(truth)


def test_an_out_of_date_database_imports_without_being_modified(sqlite_store, tmp_path):
    """A database as MLflow 1.0 left it (its first schema revision, metrics without step/is_nan)."""
    db = tmp_path / "old.db"
    shutil.copy(sqlite_store[0], db)
    with sqlite3.connect(db) as connection:
        connection.executescript("""
            CREATE TABLE metrics_old ("key" VARCHAR(250) NOT NULL, value FLOAT NOT NULL, timestamp BIGINT,
                                      run_uuid VARCHAR(32) NOT NULL);
            INSERT INTO metrics_old SELECT "key", value, timestamp + step, run_uuid FROM metrics;
            DROP TABLE metrics; ALTER TABLE metrics_old RENAME TO metrics;
            UPDATE alembic_version SET version_num = '451aebb31d03';""")
    with pytest.raises(Exception, match="(?i)out-of-date|upgrade"):  # MLflow itself refuses it
        mlflow.MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    scalerec("import-mlflow", db, "--out", tmp_path / "runs")
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    rows = read_checkpoints(tmp_path / "runs")
    assert len(rows) == len(sqlite_store[1]) * EPOCHS
    assert sorted(rows.epoch.unique()) == list(range(1, EPOCHS + 1))  # steps recovered from the time order


@pytest.mark.slow
def test_cli_table_and_bad_mappings(sqlite_store, tmp_path):
    db, truth = sqlite_store
    out = json.loads(
        scalerec(
            "import-mlflow", f"sqlite:///{db}", "--out", tmp_path / "runs", "--experiment", "srt-grid", "--json"
        ).stdout
    )
    assert len(out) == len(truth) and {r["experiment"] for r in out} == {"srt-grid"}
    listed = json.loads(scalerec("runs", tmp_path / "runs", "--json").stdout)
    assert {r["shape"] for r in listed} == {"1x2x16", "2x2x32"}

    (tmp_path / "absent.toml").write_text(
        '[params]\nn_layers = "n_layers"\nn_heads = "n_heads"\nhidden = "hidden_size"\n'
        'dataset_interactions = "n_inters"\nnon_embedding_params = "n_params"\nbatch_size = "train_batch_size"\n'
        'batch_forward_macs = "total_flops"\n[metrics]\nvalid_ndcg_at_5 = "valid/ndcg_at_5"\n'
    )
    for args, message in [
        (
            ["--mapping", tmp_path / "absent.toml"],
            "the mapping names params it does not have: non_embedding_params (param 'n_params')",
        ),
        (["--mapping", "nope"], "no such mapping file"),
        (["--experiment", "other"], "no experiment 'other'"),
    ]:
        result = scalerec("import-mlflow", db, "--out", tmp_path / "bad", *args, ok=False)
        assert result.returncode == 1 and result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert not (tmp_path / "bad").exists()  # nothing is written when any run fails to convert


def test_mapping_and_source_errors(tmp_path):
    (tmp_path / "m.toml").write_text('[params]\nn_layers = "a"\n')
    with pytest.raises(ScalerecError, match="must name the MLflow param for n_heads"):
        load_mapping(str(tmp_path / "m.toml"))
    (tmp_path / "not.db").write_text("hello")
    with pytest.raises(ScalerecError, match="not a SQLite database"):
        import_mlflow(str(tmp_path / "not.db"), load_mapping("srt"), tmp_path / "runs")
    with pytest.raises(ScalerecError, match="only SQLite databases"):
        import_mlflow("http://localhost:5000", load_mapping("srt"), tmp_path / "runs")
