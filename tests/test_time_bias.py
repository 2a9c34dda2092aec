"""HSTU's bucketed time bias (model.hstu_time_bias): its buckets and equation, causality, one-pass prefixes, the
evaluator's times, the FLOP count, and a run through the CLI on a table with real timestamps."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from helpers import scalerec
from test_model import _hstu_by_hand

from scalerec.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from scalerec.data.split import leave_one_out
from scalerec.data.synthetic import generate
from scalerec.errors import ScalerecError
from scalerec.model.transformer import TIME_BUCKETS, CausalTransformer, HstuBlock, time_buckets
from scalerec.store.runstore import RunStore
from scalerec.train.trainer import Trainer

DAY = 86_400


def _timed_table(path, n_users=40, n_items=150, mean_length=12, seed=0):
    """The synthetic data as a CSV table whose times are seconds, gaps of about 3 days (the synthetic data's own
    times are each user's order), and its items' text."""
    tables = generate(DataConfig(n_users=n_users, n_items=n_items, mean_length=mean_length, seed=seed))
    inter = tables.interactions.copy()
    gaps = np.random.default_rng(seed).exponential(3 * DAY, len(inter)).astype(np.int64) + 1
    inter["timestamp"] = 1_300_000_000 + inter.assign(gap=gaps).groupby("user_id").gap.cumsum()
    inter.to_csv(path / "events.csv", index=False)
    tables.items.to_csv(path / "items.csv", index=False)
    return path / "events.csv", path / "items.csv"


@pytest.fixture
def timed_data(tmp_path):
    events, items = _timed_table(tmp_path)
    out = tmp_path / "timed"
    scalerec("data", "prepare", events, "--format", "table", "--items", items, "--out", out)
    return out


def _config(data_path) -> RunConfig:
    return RunConfig(
        DataConfig(name="prepared", path=str(data_path)),
        ModelConfig(block="hstu", hstu_time_bias=True, n_layers=2, n_heads=2, hidden=16, max_len=8, dropout=0.0),
        TrainConfig(
            epochs=2,
            batch_size=24,
            n_negatives=20,
            targets="last",
            prefix_batches="one-pass",
            eval_negatives=30,
            popularity_smoothing=1.0,
        ),
    )


def test_time_buckets_are_the_log_of_the_gap_to_the_predicted_items_time():
    """[i, j] = floor(ln max(|t_{i+1} - t_j|, 1) / 0.301), by hand: ln 10 / 0.301 = 7.65, ln 90 / 0.301 = 14.95,
    ln 100 / 0.301 = 15.30, ln 86310 / 0.301 = 37.76, ln 86410 / 0.301 = 37.76; capped at 128."""
    times = torch.tensor([[0, 10, 100, 86_400 + 10]])
    expected = [
        [7, 0, 0],  # query at t_1 = 10: keys t_0 = 0 (gap 10)
        [15, 14, 0],  # query at t_2 = 100: gaps 100, 90
        [37, 37, 37],  # query at t_3 = 86410: gaps 86410, 86400, 86310
    ]
    buckets = time_buckets(times)
    assert buckets.shape == (1, 3, 3)
    for i in range(3):
        for j in range(i + 1):  # the causal part; the rest is never used
            assert buckets[0, i, j] == expected[i][j], (i, j)
            gap = max(abs(int(times[0, i + 1] - times[0, j])), 1)
            assert buckets[0, i, j] == math.floor(math.log(gap) / 0.301)
    assert time_buckets(torch.tensor([[0, 10**18]]))[0, 0, 0] == TIME_BUCKETS  # ln 1e18 / 0.301 = 137.7
    assert time_buckets(torch.tensor([[50, 20]]))[0, 0, 0] == math.floor(math.log(30) / 0.301)  # |gap|


def _time_term(block, times):
    """pair_bias for _hstu_by_hand: w_t[bucket(t_{i+1} - t_j)], the bucket computed here with math."""
    w = block.time_bias.detach().numpy()

    def term(b, i, j):
        gap = max(abs(int(times[b, i + 1] - times[b, j])), 1)
        return w[min(math.floor(math.log(gap) / 0.301), TIME_BUCKETS)]

    return term


def test_an_hstu_layer_with_time_bias_computes_its_equation():
    torch.manual_seed(0)
    block = HstuBlock(hidden=6, n_heads=2, attention_dim=2, linear_dim=3, max_len=5, dropout=0.0, time_bias=True)
    block = block.double().eval()
    with torch.no_grad():  # biases large enough to matter
        block.position_bias.copy_(torch.linspace(-1, 1, 9))
        block.time_bias.copy_(torch.linspace(-2, 2, TIME_BUCKETS + 1))
    x = torch.randn(2, 4, 6, dtype=torch.float64)
    times = torch.tensor([[0, 5, 5000, 90_000, 10**7], [100, 100, 101, 200_000, 200_001]])
    with torch.no_grad():
        got = block(x, time_buckets(times)).numpy()
        without = HstuBlock(6, 2, 2, 3, 5, 0.0).double().eval()
        without.load_state_dict({k: v for k, v in block.state_dict().items() if k != "time_bias"})
        assert not np.allclose(got, without(x).numpy())  # the time term changes the output
    expected = _hstu_by_hand(block, x.numpy(), _time_term(block, times))
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


def test_the_time_bias_is_drawn_after_every_other_weight():
    """From the same seed, a block with a time bias has the weights of one without, plus its bias: adding the field
    moved no draw of the blocks that existed before it."""
    torch.manual_seed(3)
    plain = HstuBlock(8, 2, 4, 4, 10, 0.1)
    torch.manual_seed(3)
    timed = HstuBlock(8, 2, 4, 4, 10, 0.1, time_bias=True)
    for name, value in plain.state_dict().items():
        torch.testing.assert_close(timed.state_dict()[name], value)
    assert plain.time_bias is None and timed.time_bias.shape == (TIME_BUCKETS + 1,)


def test_time_bias_is_causal_and_blind_to_padding_and_trimming_but_reads_the_query_time():
    torch.manual_seed(0)
    model = CausalTransformer(2, 2, 8, 0, 10, 0.0, block="hstu", attention_dim=4, linear_dim=4, time_bias=True)
    model = model.eval()
    x = torch.randn(3, 10, 8)
    times = torch.cumsum(torch.randint(1, 10 * DAY, (3, 11)), 1)
    with torch.no_grad():
        full = model(x, times)
        later = times.clone()
        later[:, 7:] += 1000 * DAY  # the times of items after position 6 (and of what 6 predicts: index 7)
        torch.testing.assert_close(model(x, later)[:, :6], full[:, :6])
        torch.testing.assert_close(model(x[:, :6], times[:, :7]), full[:, :6])  # a trimmed window
        moved = model(x, later)[:, 6]
        assert not torch.allclose(moved, full[:, 6])  # position 6 reads the time of what it predicts
        shifted = model(x, times + 123_456_789)  # only gaps matter
        torch.testing.assert_close(shifted, full)
    with pytest.raises(ValueError, match="needs times"):
        model(x)


@pytest.mark.parametrize("loss, negatives", [("sampled_softmax", 20), ("bce", 1)])
def test_prefix_samples_in_one_pass_with_times_equal_each_prefix_run_alone(tmp_path, timed_data, loss, negatives):
    """The one-pass equality of tests/test_flops.py with the time bias: each prefix window keeps its items' times
    and the time of its target last."""
    cfg = _config(timed_data)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, loss=loss, n_negatives=negatives))
    trainer = Trainer(cfg, RunStore(tmp_path / "runs"), torch.device("cpu"), progress=False)
    batch = next(trainer.epoch_batches(torch.Generator().manual_seed(0)))
    assert batch.times is not None and (batch.targets != 0).sum(1).max() > 1
    negatives = trainer.sampler.for_batch(
        batch, cfg.train.negatives, cfg.train.negatives_per_target, torch.Generator().manual_seed(1)
    )
    step = trainer.step_module

    def loss_and_grads(*inputs):
        step.zero_grad()
        value = step(*inputs)
        value.backward()
        return value.item(), [p.grad.clone() for p in step.parameters() if p.grad is not None]

    one_pass = loss_and_grads(*batch.step_inputs(negatives))
    rows, positions = (batch.targets != 0).nonzero(as_tuple=True)
    length = cfg.model.max_len
    seq = torch.zeros(len(rows), length + 1, dtype=torch.long)
    times = torch.zeros(len(rows), length + 1, dtype=torch.long)
    targets = torch.zeros(len(rows), length, dtype=torch.long)
    for i, (r, p) in enumerate(zip(rows.tolist(), positions.tolist())):
        window = slice(max(0, p + 1 - length), p + 2)
        n = len(batch.seq[r, window])
        seq[i, :n], times[i, :n] = batch.seq[r, window], batch.times[r, window]
        targets[i, n - 2] = seq[i, n - 1]
    step.shortcuts = False
    alone = loss_and_grads(seq, targets, negatives, times)
    assert alone[0] == pytest.approx(one_pass[0], rel=1e-5)
    assert len(alone[1]) == len(one_pass[1]) > 0
    for x, y in zip(alone[1], one_pass[1]):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in step.named_parameters() if "time_bias" in n)


def test_evaluation_reads_each_history_with_its_times_and_the_positives(tmp_path, timed_data):
    """The evaluator's rank of a user equals the model's state on that user's history, its times and the
    positive's time, built by hand; the ahead slice keeps the history's times and the positive's."""
    cfg = _config(timed_data)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, eval_protocol="full", eval_slices=True))
    trainer = Trainer(cfg, RunStore(tmp_path / "runs"), torch.device("cpu"), progress=False)
    split, evaluator, model = trainer.data.split, trainer.evaluator, trainer.model.eval()
    table = model.item_encoder(torch.arange(split.n_items + 1))
    users = np.arange(split.n_users)
    found = evaluator._ranks(model, table, "test", users, evaluator.inputs["test"], {"": "full"})[0][""]
    ahead, ahead_inputs = next((s, inputs) for s, inputs in evaluator.slices["test"] if s.name == "ahead_1")
    ahead_rows = dict(zip(ahead.users.tolist(), range(len(ahead.users))))
    ahead_found = evaluator._ranks(model, table, "test", ahead.users, ahead_inputs, {"": "full"})[0][""]
    with torch.no_grad():
        for u in (0, 7, 21):
            history = np.r_[split.train[u], split.valid[u]]
            stamps = np.r_[split.train_times[u], split.valid_times[u]]
            for cut, rank in ((len(history), found[u]), (len(history) - 1, ahead_found[ahead_rows[u]])):
                items = torch.from_numpy(history[:cut][-cfg.model.max_len :])[None]
                times = torch.from_numpy(np.r_[stamps[:cut][-cfg.model.max_len :], split.test_times[u]])[None]
                scores = (model.last_states(items, table, times) @ table[1:].t())[0]
                pos = scores[split.test[u] - 1]  # batched and alone differ by rounding: near-ties either way
                assert int((scores > pos + 1e-6).sum()) <= rank <= int((scores >= pos - 1e-6).sum()) - 1
                times[0, -1] += 30 * DAY  # another request time: other scores
                assert not torch.allclose(model.last_states(items, table, times) @ table[1:].t(), scores)
    assert len(ahead.users) > 0


def test_a_time_bias_adds_no_multiply_accumulates(tmp_path, timed_data):
    """The bias is a lookup and an add per score: fvcore's count equals the count without it, and the analytic
    count still matches."""
    counts = []
    for time_bias in (True, False):
        cfg = _config(timed_data)
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, hstu_time_bias=time_bias))
        trainer = Trainer(cfg, RunStore(tmp_path / str(time_bias)), torch.device("cpu"), progress=False)
        counts.append(trainer.flops(next(trainer.epoch_batches(torch.Generator().manual_seed(0)))))
    assert counts[0] == counts[1] > 0


def test_leave_one_out_keeps_times_aligned_and_refuses_order_only_data(tmp_path, timed_data):
    from scalerec.data.prepare import read_dataset

    tables = read_dataset(timed_data)
    split = leave_one_out(tables, with_times=True)
    plain = leave_one_out(tables)
    assert plain.train_times is None
    inter = tables.interactions
    first = inter[inter.user_id == inter.user_id.iloc[0]]
    assert split.train_times[0].tolist() == first.timestamp.tolist()[:-2]
    assert [split.valid_times[0], split.test_times[0]] == first.timestamp.tolist()[-2:]
    assert all(len(t) == len(s) for t, s in zip(split.train_times, split.train))
    assert all(np.all(np.diff(t) >= 0) for t in split.train_times)
    with pytest.raises(ScalerecError, match="only each user's order"):
        leave_one_out(generate(DataConfig(n_users=20, n_items=40)), with_times=True)


def test_a_time_bias_run_through_the_cli(tmp_path, timed_data):
    """Trains and evaluates; N counts the time bias (129 per layer); a time bias on the synthetic data (order
    only) or on SASRec blocks is a one-line error."""
    body = (
        f'[data]\nname = "prepared"\npath = "{timed_data}"\n'
        '[model]\nblock = "hstu"\nhstu_time_bias = {}\nn_layers = 2\nn_heads = 2\nhidden = 16\nmax_len = 8\n'
        "[train]\nepochs = 2\nbatch_size = 32\nn_negatives = 10\neval_negatives = 30\n"
    )
    params = {}
    for flag in ("true", "false"):
        (tmp_path / f"{flag}.toml").write_text(body.replace("{}", flag))
        scalerec("train", tmp_path / f"{flag}.toml", "--runs", tmp_path / "runs")
    store = RunStore(tmp_path / "runs")
    assert len(store.run_ids()) == 2
    for run_id in store.run_ids():
        rows = store.read_rows(run_id)
        assert store.status(run_id) == "done" and rows.valid_ndcg_at_10.iloc[-1] > 0
        timed = store.read_config(run_id)["config"]["model"].get("hstu_time_bias", False)
        params[timed] = int(rows.non_embedding_params.iloc[-1])
    assert params[True] - params[False] == 2 * (TIME_BUCKETS + 1)

    (tmp_path / "synthetic.toml").write_text('[model]\nblock = "hstu"\nhstu_time_bias = true\n')
    result = scalerec("train", tmp_path / "synthetic.toml", "--runs", tmp_path / "runs2", ok=False)
    assert result.returncode != 0 and result.stderr.startswith("scalerec: error:")
    assert "only each user's order" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    (tmp_path / "sasrec.toml").write_text("[model]\nhstu_time_bias = true\n")
    result = scalerec("train", tmp_path / "sasrec.toml", "--runs", tmp_path / "runs2", ok=False)
    assert "are for block = 'hstu'" in result.stderr and len(result.stderr.strip().splitlines()) == 1
