import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scalerec.errors import ScalerecError
from scalerec.store import RunStore, read_checkpoints
from scalerec.store.schema import COLUMNS


def _row(step: int, **extra) -> dict:
    row = {
        name: (
            0
            if pa.types.is_integer(t)
            else 0.0
            if pa.types.is_floating(t)
            else False
            if pa.types.is_boolean(t)
            else "x"
        )
        for name, (t, _) in COLUMNS.items()
    }
    return row | {"run_id": "abc", "step": step, "valid_ndcg_at_5": 0.1 * step} | extra


def test_schema_round_trip(tmp_path):
    store = RunStore(tmp_path)
    store.write_config("abc", {"run_id": "abc"})
    store.append_row("abc", _row(1))
    store.append_row("abc", _row(2, is_final=True))
    df = read_checkpoints(tmp_path)
    assert list(df.step) == [1, 2] and list(df.is_final) == [False, True]
    schema = pq.read_schema(tmp_path / "abc" / "checkpoints.parquet")
    assert schema.field("step").type == pa.int64() and schema.field("n_layers").type == pa.int32()
    assert schema.field("valid_ndcg_at_5").type == pa.float64()
    assert store.drop_rows_after("abc", 1) == 1 and list(store.read_rows("abc").step) == [1]


def test_unknown_columns_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="not in schema"):
        RunStore(tmp_path).append_row("abc", _row(1, surprise=1))


def test_foreign_parquet_and_empty_store(tmp_path):
    with pytest.raises(ScalerecError, match="no runs"):
        read_checkpoints(tmp_path)
    (tmp_path / "x").mkdir()
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "x" / "checkpoints.parquet")
    with pytest.raises(ScalerecError, match="no runs"):  # a folder without config.json is not a run
        read_checkpoints(tmp_path)
    (tmp_path / "x" / "config.json").write_text("{}")
    with pytest.raises(ScalerecError, match="not a scalerec checkpoints file"):
        read_checkpoints(tmp_path)
    (tmp_path / "x" / "checkpoints.parquet").write_text("garbage")
    with pytest.raises(ScalerecError, match="not a readable Parquet"):
        read_checkpoints(tmp_path)
    with pytest.raises(ScalerecError, match="no such"):
        read_checkpoints(tmp_path / "missing")


def test_lock_refuses_a_second_writer(tmp_path):
    store = RunStore(tmp_path)
    with store.lock("abc"):
        with pytest.raises(ScalerecError, match="another process"):
            with RunStore(tmp_path).lock("abc"):
                pass
    with RunStore(tmp_path).lock("abc"):  # released: another writer takes it, and holds it alone
        with pytest.raises(ScalerecError, match="another process"):
            with store.lock("abc"):
                pass


def _rewrite_forever(root, run_id, stop):
    """A writer that replaces the run's checkpoints file in a loop, with 1 to 40 rows."""
    store = RunStore(root)
    n = 1
    while not stop.is_set():
        store.write_rows(run_id, pd.DataFrame([_row(step, run_id=run_id) for step in range(n)]))
        n = n % 40 + 1


@pytest.mark.slow
def test_reading_checkpoints_while_a_writer_replaces_them_never_sees_a_torn_file(tmp_path):
    """`scalerec runs` or fit-laws beside a training run: reading by path let pyarrow open the file twice and mix two
    versions ('Unexpected end of stream', about 3% of reads); every read must give a whole version."""
    import multiprocessing
    import time

    store = RunStore(tmp_path)
    store.write_rows("r", pd.DataFrame([_row(0, run_id="r")]))
    stop = multiprocessing.get_context("fork").Event()
    writer = multiprocessing.get_context("fork").Process(target=_rewrite_forever, args=(tmp_path, "r", stop))
    writer.start()
    try:
        lengths, deadline = set(), time.time() + 3
        while time.time() < deadline:
            rows = store.read_rows("r")
            assert rows.step.tolist() == list(range(len(rows)))  # a whole version, in order
            lengths.add(len(rows))
    finally:
        stop.set()
        writer.join()
    assert len(lengths) > 5  # the writer really was replacing the file under the reader


def test_archive_copies_finished_runs_only_and_never_into_itself(tmp_path):
    store, dest = RunStore(tmp_path / "runs"), RunStore(tmp_path / "kept")
    for run_id in ("done1", "open1"):
        store.write_config(run_id, {"run_id": run_id})
        store.append_row(run_id, _row(1, run_id=run_id))
        store.state_path(run_id).write_bytes(b"weights")
    store.mark_done("done1")
    assert store.archive_finished(dest) == ["done1"]
    assert dest.run_ids() == ["done1"] and dest.status("done1") == "done"
    assert not dest.state_path("done1").exists()
    assert read_checkpoints(dest.root).equals(read_checkpoints(store.run_dir("done1")))
    assert store.archive_finished(dest) == []  # held already
    assert dest.archive_finished(store) == []  # the way back: finished there already
    with pytest.raises(ScalerecError, match="into itself"):
        store.archive_finished(RunStore(tmp_path / "runs"))
