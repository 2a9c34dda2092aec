"""The evaluation slices (data/slices.py): each definition on a hand-made case, and their columns end to end."""

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch

from scalerec.analysis import laws
from scalerec.analysis.fit_laws import FitOptions, fit_laws
from scalerec.analysis.report import render_report
from scalerec.config import TrainConfig
from scalerec.data.slices import evaluation_slices, slice_names, tail_items
from scalerec.data.split import Split
from scalerec.errors import ScalerecError
from scalerec.store.schema import arrow_schema
from scalerec.train.evaluate import Evaluator

# 6 users over items 1..10; training lengths 2, 3, 5, 6, 12, 25
TRAIN = [
    np.array([1, 2]),
    np.array([1, 2, 3]),
    np.array([1, 1, 2, 3, 4]),
    np.array([5, 6, 7, 8, 9, 1]),
    np.arange(1, 13) % 10 + 1,
    np.arange(25) % 10 + 1,
]


def _by_name(slices):
    return {s.name: s for s in slices}


def test_user_slices_by_training_length_partition_the_users():
    slices = _by_name(evaluation_slices(TRAIN, TRAIN, np.array([3, 4, 5, 6, 7, 8]), 10, seed=0))
    assert list(slices) == slice_names()
    assert slices["cold_le3"].users.tolist() == [0, 1]
    assert slices["cold_le5"].users.tolist() == [0, 1, 2]
    assert slices["history_6_10"].users.tolist() == [3]
    assert slices["history_11_20"].users.tolist() == [4]
    assert slices["history_21_plus"].users.tolist() == [5]
    buckets = ["cold_le5", "history_6_10", "history_11_20", "history_21_plus"]
    assert sorted(np.concatenate([slices[b].users for b in buckets]).tolist()) == list(range(6))


def test_tail_items_are_the_least_popular_80_percent_ties_by_id():
    # counts: item 1 x3, item 2 x2, item 3 x1, items 4..10 x0 -> head (top 20% of 10 = 2 items) is {1, 2}
    train = [np.array([1, 2, 3]), np.array([1, 2]), np.array([1])]
    assert np.flatnonzero(~tail_items(train, 10)).tolist() == [0, 1]
    # all tied: the smallest ids are the head
    assert np.flatnonzero(~tail_items([np.arange(1, 11)], 10)).tolist() == [0, 1]
    slices = _by_name(evaluation_slices(train, train, np.array([2, 3, 9]), 10, seed=0))
    assert slices["head_items"].users.tolist() == [0] and slices["tail_items"].users.tolist() == [1, 2]


def test_noise_replaces_about_the_rate_seeded_and_identical_whatever_the_window():
    rng = np.random.default_rng(1)
    histories = [rng.integers(1, 501, 40) for _ in range(500)]
    positives = np.ones(500, dtype=int)
    first = _by_name(evaluation_slices(histories, histories, positives, 500, seed=3))
    again = _by_name(evaluation_slices(histories, histories, positives, 500, seed=3))
    other = _by_name(evaluation_slices(histories, histories, positives, 500, seed=4))
    for name, rate in (("noise_10pct", 0.1), ("noise_30pct", 0.3)):
        noisy = first[name].inputs
        assert first[name].users.tolist() == list(range(500))  # every user
        changed = np.mean(np.concatenate([n != h for n, h in zip(noisy, histories)]))
        assert changed == pytest.approx(rate * (1 - 1 / 500), abs=0.01)  # a draw may hit the same item
        assert all((a == b).all() for a, b in zip(noisy, again[name].inputs))
        assert not all((a == b).all() for a, b in zip(noisy, other[name].inputs))
        assert all(1 <= n.min() and n.max() <= 500 and len(n) == len(h) for n, h in zip(noisy, histories))


def test_ahead_drops_the_last_m_inputs_and_the_users_too_short_for_it():
    inputs = [np.array([1, 2]), np.array([1, 2, 3, 4]), np.array([5])]
    slices = _by_name(evaluation_slices(inputs, inputs, np.array([3, 5, 6]), 10, seed=0))
    assert slices["ahead_1"].users.tolist() == [0, 1]
    assert [x.tolist() for x in slices["ahead_1"].inputs] == [[1], [1, 2, 3]]
    assert slices["ahead_3"].users.tolist() == [1]
    assert [x.tolist() for x in slices["ahead_3"].inputs] == [[1]]


class _NextItem(torch.nn.Module):
    """A 'model' that scores item last-input + 1 highest and every other item 0 (ties: pessimistic ranks)."""

    n_items = 10

    def item_encoder(self, items):  # padding (0) gets item 1's vector: never attended to
        return torch.nn.functional.one_hot((items - 1).clamp(min=0), self.n_items).float()

    def last_states(self, inputs, table=None, times=None):
        last = inputs.gather(1, ((inputs > 0).sum(1, keepdim=True) - 1).clamp(min=0)).squeeze(1)
        return torch.nn.functional.one_hot(last.clamp(max=self.n_items - 1), self.n_items).float()


def test_the_evaluator_ranks_each_slice_from_its_own_inputs():
    # valid positives are last training item + 1: the plain pass ranks all first; two items ahead none does
    train = [np.array([1, 2, 3]), np.array([4, 5, 6, 7, 8, 1, 2]), np.array([2, 3, 4])]
    split = Split(np.arange(10), train, valid=np.array([4, 3, 5]), test=np.array([5, 4, 6]), dropped_users=0)
    evaluator = Evaluator(split, max_len=5, train=TrainConfig(eval_protocol="full", eval_ks=(1,)))
    metrics = evaluator.evaluate(_NextItem(), "valid", torch.device("cpu"))
    assert metrics["valid_hit_at_1"] == 1.0
    assert metrics["valid_hit_at_1__ahead_1"] == 0.0 and metrics["valid_users__ahead_1"] == 3
    assert metrics["valid_hit_at_1__cold_le3"] == 1.0 and metrics["valid_users__cold_le3"] == 2
    assert metrics["valid_users__history_6_10"] == 1 and metrics["valid_users__history_21_plus"] == 0
    assert np.isnan(metrics["valid_ndcg_at_1__history_21_plus"])  # an empty slice has no number, not 0
    assert metrics["valid_hit_at_1__noise_30pct"] <= 1.0
    assert not any("_mrr_" in name and "__" in name for name in metrics)  # slices: NDCG and HIT only
    # test inputs end with the validation item (4, 3, 5): their +1 are the test positives
    assert evaluator.evaluate(_NextItem(), "test", torch.device("cpu"))["test_hit_at_1"] == 1.0
    off = Evaluator(split, max_len=5, train=TrainConfig(eval_protocol="full", eval_ks=(1,), eval_slices=False))
    assert not any("__" in name for name in off.evaluate(_NextItem(), "valid", torch.device("cpu")))


def test_slice_columns_are_in_the_schema_and_unknown_slices_are_not():
    schema = arrow_schema(["valid_ndcg_at_5__noise_10pct", "test_users__cold_le3", "test_hit_at_10__ahead_3"])
    assert schema.field("test_users__cold_le3").type == pa.int64()
    assert schema.field("valid_ndcg_at_5__noise_10pct").type == pa.float64()
    with pytest.raises(ValueError, match="valid_users__tall_users"):
        arrow_schema(["valid_users__tall_users"])


def _store_with_slices(seed=0):
    """Runs whose plain metric follows Eq. 4 with α 0.35, a cold-start slice with α 0.7 (gains more from size), a
    tail slice with α 0.15, and a noisy slice of only 100 users (too few to fit)."""
    rng = np.random.default_rng(seed)
    slices = {
        "": (3.0, 0.35, None),
        "__cold_le3": (60.0, 0.7, 800),
        "__tail_items": (0.5, 0.15, 900),
        "__noise_10pct": (3.0, 0.35, 100),
    }
    rows = []
    for n in (3e3, 1e4, 3e4, 1e5, 3e5):
        for d in (1e4, 3e4, 1e5):
            for epoch in range(1, 5):
                t = epoch * d * 4
                row = {
                    "run_id": f"n{n:g}d{d:g}",
                    "step": epoch,
                    "epoch": float(epoch),
                    "is_final": epoch == 4,
                    "schedule_fraction": epoch / 4,
                    "seen_interactions": int(t),
                    "dataset_interactions": int(d),
                    "train_flops": 12 * n * t,
                    "non_embedding_params": int(n),
                    "total_params": int(1.5 * n),
                    "n_layers": 2,
                    "n_heads": 2,
                    "hidden": int(n**0.5),
                }
                for suffix, (a, alpha, users) in slices.items():
                    row["valid_ndcg_at_5" + suffix] = laws.risk(n, t, 0.5, a, alpha, 40.0, 0.35) + rng.normal(0, 2e-3)
                    if users:
                        row["valid_users" + suffix] = users
                rows.append(row)
    return pd.DataFrame(rows)


@pytest.mark.slow
def test_fit_laws_compares_the_slices_exponents_and_leaves_out_small_slices():
    data = fit_laws(_store_with_slices(), FitOptions(bootstrap=30, huber_delta=1e-3, backtest=False))
    rows = {r["slice"]: r for r in data["slices"]}
    assert list(rows) == ["all", "cold_le3", "tail_items", "noise_10pct"]
    assert rows["all"]["users"] is None and rows["cold_le3"]["users"] == 800
    assert rows["cold_le3"]["alpha"] == pytest.approx(0.7, abs=0.15)
    assert rows["tail_items"]["alpha"] == pytest.approx(0.15, abs=0.1)
    assert rows["cold_le3"]["alpha_interval_90"][0] > rows["tail_items"]["alpha_interval_90"][1]
    assert "100–100 users" in rows["noise_10pct"]["left_out"] and "alpha" not in rows["noise_10pct"]
    report = render_report(
        _store_with_slices().assign(item_encoder="text"),
        data,
        {k: Path(k) for k in ("by_N", "by_D", "risk", "contours", "allocation")},
    )
    assert "## Slices" in report and "variance: `cold_le3`" in report
    assert "slices" not in fit_laws(_store_with_slices(), FitOptions(bootstrap=0, backtest=False, slices=False))


def test_a_slice_metric_is_fitted_without_its_too_small_checkpoints():
    store = _store_with_slices()
    store.loc[store.non_embedding_params == 3e3, "valid_users__cold_le3"] = 120  # the smallest runs: a tiny slice
    data = fit_laws(store, FitOptions(metric="valid_ndcg_at_5__cold_le3", bootstrap=0, backtest=False))
    assert data["data"]["runs"] == 12 and data["data"]["slice"]["left_out_runs"] == 3
    assert any("fewer than 500 users" in w for w in data["warnings"])
    assert "slices" not in data  # a slice's own slices are not a thing
    with pytest.raises(ScalerecError, match="fewer than 2 runs have at least 500"):
        fit_laws(store, FitOptions(metric="valid_ndcg_at_5__noise_10pct", bootstrap=0, backtest=False))


def test_the_slice_plot_draws_an_interval_that_misses_its_estimate():
    """A percentile bootstrap of few resamples can leave the point estimate outside its 90% interval (fit-laws
    --bootstrap 10 on the demo store did): the plot draws the interval as it is instead of failing."""
    import matplotlib

    matplotlib.use("Agg")
    from scalerec.analysis import plots

    row = {
        "slice": "all",
        "left_out": "",
        "alpha": 0.3,
        "alpha_interval_90": [0.1, 0.5],
        "b": 0.2,
        "b_interval_90": [0.25, 0.4],
    }  # b's interval lies above b
    laws = {"slices": [row, {**row, "slice": "cold_le3", "alpha": 0.6, "alpha_interval_90": [0.7, 0.9]}]}
    fig = plots.slice_exponents(laws)
    segments = fig.axes[1].collections[0].get_segments()
    assert [tuple(segment[:, 0]) for segment in segments] == [(0.25, 0.4), (0.25, 0.4)]
