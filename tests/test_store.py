import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scalerec.errors import ScalerecError
from scalerec.store import RunStore, read_checkpoints
from scalerec.store.schema import COLUMNS


def _row(step: int, **extra) -> dict:
    row = {name: (0 if pa.types.is_integer(t) else 0.0 if pa.types.is_floating(t) else False
                  if pa.types.is_boolean(t) else "x") for name, (t, _) in COLUMNS.items()}
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
    with store.lock("abc"):  # released
        assert np.isfinite(1.0)
