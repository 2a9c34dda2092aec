import numpy as np
import pandas as pd
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from scalerec.config import DataConfig
from scalerec.data.batches import PopularitySampler, TrainingWindows
from scalerec.data.split import leave_one_out
from scalerec.data.synthetic import generate
from scalerec.data.tables import make_tables


def test_synthetic_is_deterministic_and_sizes_nest():
    small, large = generate(DataConfig(n_users=30, n_items=50)), generate(DataConfig(n_users=60, n_items=50))
    again = generate(DataConfig(n_users=30, n_items=50))
    assert small.fingerprint == again.fingerprint
    head = large.interactions[large.interactions.user_id.isin(small.interactions.user_id.unique())]
    pd.testing.assert_frame_equal(head.reset_index(drop=True), small.interactions)
    assert small.items.title.str.len().min() > 10 and (small.items.brand == "").any()


def test_synthetic_has_long_tail_and_sequential_structure():
    tables = generate(DataConfig(n_users=400, n_items=200))
    counts = tables.interactions.item_id.value_counts().to_numpy()
    assert counts[:20].sum() > 0.3 * counts.sum()  # top 10% of items take a large share
    pairs = tables.interactions.assign(nxt=tables.interactions.groupby("user_id").item_id.shift(-1)).dropna()
    top_next = pairs.groupby("item_id").nxt.agg(lambda s: s.value_counts().iloc[0] / len(s))
    assert top_next.mean() > 0.2  # an item's most common successor is far above chance (1/200)


def test_leave_one_out_and_unknown_items():
    inter = pd.DataFrame(
        {"user_id": ["a"] * 4 + ["b"] * 2, "item_id": ["x", "y", "z", "w", "x", "y"], "timestamp": [4, 1, 2, 3, 1, 2]}
    )
    items = pd.DataFrame({"item_id": ["x", "y", "z"], "title": ["t x", "t y", "t z"], "brand": ["", "b", ""]})
    tables = make_tables("t", inter, items)
    assert set(tables.items.item_id) == {"x", "y", "z", "w"}  # w has no text but does not vanish
    split = leave_one_out(tables)
    names = dict(enumerate(split.item_ids, start=1))
    assert split.n_users == 1 and split.dropped_users == 1
    assert [names[i] for i in split.train[0]] == ["y", "z"]
    assert names[split.valid[0]] == "w" and names[split.test[0]] == "x"


def _split(n_users=50):
    return leave_one_out(generate(DataConfig(n_users=n_users, n_items=40, mean_length=12)))


def test_both_target_modes_count_the_same_targets_per_epoch():
    split = _split()
    expected = sum(len(s) - 1 for s in split.train)
    for mode in ("last", "all"):
        windows = TrainingWindows(split, max_len=5, targets=mode)
        assert windows.targets_per_epoch == expected
        seen = sum(b.n_targets for b in windows.epoch(7, torch.Generator().manual_seed(0)))
        assert seen == expected
    one_pass = TrainingWindows(split, max_len=5, targets="last", prefix_batches="one-pass")
    assert one_pass.targets_per_epoch == expected
    assert sum(b.n_targets for b in one_pass.epoch(7, torch.Generator().manual_seed(0), batch_targets=True)) == expected


def test_windows_are_right_padded_slices_of_the_sequences():
    split = _split(10)
    windows = TrainingWindows(split, max_len=4, targets="last")
    flat = np.concatenate(split.train)
    for batch in windows.epoch(100, torch.Generator().manual_seed(1)):
        assert batch.seq.shape[1] <= 5 and (batch.seq[:, -1] != 0).any()  # trimmed to its longest window
        for row in batch.seq.numpy():
            real = row[row > 0]
            assert len(real) >= 2 and (row[len(real) :] == 0).all()
            assert any((flat[i : i + len(real)] == real).all() for i in range(len(flat) - len(real) + 1))


def test_popularity_sampler_follows_training_counts():
    counts = np.array([0, 1, 3, 6])
    sampler = PopularitySampler(counts)
    draws = sampler.sample(1000, 100, torch.Generator().manual_seed(0)).flatten().numpy()
    freq = np.bincount(draws, minlength=4) / len(draws)
    assert freq[0] == 0 and np.allclose(freq[1:], [0.1, 0.3, 0.6], atol=0.01)
    assert torch.allclose(sampler.log_q[1:], torch.log(torch.tensor([0.1, 0.3, 0.6])))


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(0, 1000), min_size=2, max_size=300).filter(lambda c: sum(c[1:]) > 0),
    st.sampled_from([0.0, 1.0]),
)
def test_the_sampler_alias_tables_are_exactly_the_popularity_distribution(counts, smoothing):
    """Walker's alias tables imply q exactly (each slot's kept mass plus the mass aliased to it), and an item of
    probability 0 — padding, or an unseen item without smoothing — is never drawn."""
    counts = np.array([0] + counts[1:])
    sampler = PopularitySampler(counts, smoothing)
    q = (counts + smoothing).astype(np.float64)
    q[0] = 0.0
    q /= q.sum()
    implied = sampler.accept.clone().index_add_(0, sampler.alias, 1 - sampler.accept).numpy() / len(counts)
    assert np.allclose(implied, q, rtol=1e-9, atol=1e-12)
    draws = sampler.sample(50, 40, torch.Generator().manual_seed(1)).flatten().numpy()
    assert (q[draws] > 0).all()
