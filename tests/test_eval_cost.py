"""Evaluation that costs less and selects the same: test ranking only where best-on-validation can select
(train.test_when_best), the slices with forward passes of their own only at the final checkpoint
(train.slice_passes = "final"), and the evaluation time every row records (eval_time_s)."""

import dataclasses

import numpy as np
import pytest
from conftest import tiny_config

from scalerec.analysis.envelope import best_checkpoints
from scalerec.errors import ScalerecError
from scalerec.store import RunStore
from scalerec.train.trainer import train_run


def config(**train):
    cfg = tiny_config(epochs=10, n_users=120)  # its validation NDCG falls and recovers: not every checkpoint is best
    options = {"test_every_checkpoint": True, "early_stop_patience": 3, "lr": 3e-2} | train
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **options))


@pytest.fixture(scope="module")
def every_and_lean(tmp_path_factory):
    store = RunStore(tmp_path_factory.mktemp("eval"))
    every, lean = config(), config(test_when_best=True, slice_passes="final")
    for cfg in (every, lean):
        train_run(cfg, store, progress=False)
    return store.read_rows(every.run_id), store.read_rows(lean.run_id)


def test_lean_evaluation_selects_the_same_checkpoint_and_test_number(every_and_lean):
    every, lean = every_and_lean
    np.testing.assert_array_equal(every.valid_ndcg_at_5, lean.valid_ndcg_at_5)  # evaluation changes no training
    chosen_every, chosen_lean = best_checkpoints(every), best_checkpoints(lean)
    assert chosen_every.step.tolist() == chosen_lean.step.tolist()
    tests = [c for c in every.columns if c.startswith("test_") and "__" not in c]
    np.testing.assert_array_equal(chosen_every[tests].to_numpy(), chosen_lean[tests].to_numpy())


def test_lean_evaluation_skips_what_cannot_be_selected(every_and_lean):
    every, lean = every_and_lean
    improved = lean.valid_ndcg_at_5.to_numpy() > np.maximum.accumulate(np.r_[-np.inf, lean.valid_ndcg_at_5[:-1]])
    tested = lean.test_ndcg_at_5.notna().to_numpy()
    assert (tested == (improved | lean.is_final.to_numpy())).all() and not tested.all()  # some were skipped
    passes = [c for c in lean.columns if c.startswith(("valid_ndcg_at_5__noise", "valid_ndcg_at_5__ahead"))]
    assert passes and lean[passes].iloc[:-1].isna().all().all() and lean[passes].iloc[-1].notna().all()
    assert every[passes].notna().all().all()
    np.testing.assert_array_equal(lean[passes].iloc[-1], every[passes].iloc[-1])  # the same, where computed
    # the cheap slices (from the one pass's ranks) stay at every checkpoint
    slices = [c for c in every.columns if c.startswith("valid_ndcg_at_5__") and c not in passes]
    cheap = [c for c in slices if every[c].notna().all()]
    assert cheap and lean[cheap].notna().all().all()


def test_every_row_records_its_evaluation_time(every_and_lean):
    every, lean = every_and_lean
    for rows in (every, lean):
        assert (rows.eval_time_s > 0).all() and (rows.eval_time_s < rows.wall_time_s).all()
        assert (np.diff(rows.eval_time_s) > 0).all()  # what each costs: benchmarks/eval_share.py


def test_test_when_best_needs_test_every_checkpoint():
    with pytest.raises(ScalerecError, match="test_when_best"):
        config(test_every_checkpoint=False, test_when_best=True)
    with pytest.raises(ScalerecError, match="slice_passes"):
        config(slice_passes="sometimes")


def test_checkpoints_grow_apart_with_eval_growth(tmp_path):
    from scalerec.config import TrainConfig

    assert TrainConfig(epochs=10, eval_every=3).checkpoint_epochs == (3, 6, 9, 10)  # as before the field existed
    grown = TrainConfig(epochs=30, eval_growth=0.4).checkpoint_epochs
    assert grown[0] == 1 and grown[-1] == 30 and len(grown) < 10
    gaps = np.diff(grown[:-1])
    assert (np.diff(gaps) >= 0).all()  # the gaps never shrink (the last one is cut by the run's end)
    cfg = config(eval_growth=1.0, early_stop_patience=0)  # 10 epochs: checkpoints at 1, 3, 7, 10
    store = RunStore(tmp_path)
    train_run(cfg, store, progress=False)
    assert store.read_rows(cfg.run_id).epoch.tolist() == [1.0, 3.0, 7.0, 10.0]
    with pytest.raises(ScalerecError, match="eval_growth"):
        config(eval_growth=-1.0)
