import dataclasses
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_config

from scalerec.store import RunStore, read_checkpoints
from scalerec.train.trainer import one_cycle, train_run


def _check_rows(df: pd.DataFrame, epochs: int) -> None:
    assert list(df.epoch) == [float(e) for e in range(1, epochs + 1)]  # no gap, no duplicate
    assert df.step.is_monotonic_increasing and df.step.is_unique
    assert (np.diff(df.train_flops) > 0).all() and (np.diff(df.seen_interactions) > 0).all()
    assert df.is_final.tolist() == [False] * (epochs - 1) + [True]


def test_a_run_records_every_checkpoint(tmp_path):
    cfg = tiny_config(epochs=3)
    assert train_run(cfg, RunStore(tmp_path), progress=False) == "done"
    df = read_checkpoints(tmp_path)
    _check_rows(df, 3)
    last = df.iloc[-1]
    assert last.seen_interactions == 3 * last.dataset_interactions - 3 * last.n_users  # each user's first item
    assert last.train_flops == 6 * last.forward_macs
    assert abs(last.analytic_flops / last.train_flops - 1) < 0.1
    assert 0 < df.executed_flops.iloc[0] < df.executed_flops.iloc[-1] < last.train_flops  # trimmed: less work
    assert (df.cpu_time_s > 0).all() and df.cpu_time_s.is_monotonic_increasing
    assert not np.isnan(last.test_ndcg_at_5) and np.isnan(df.test_ndcg_at_5.iloc[0])
    assert (tmp_path / cfg.run_id / "DONE").exists()
    assert train_run(cfg, RunStore(tmp_path), progress=False) == "skipped"


def test_resume_repeats_exactly_what_an_uninterrupted_run_does(tmp_path):
    cfg = tiny_config(epochs=4)
    train_run(cfg, RunStore(tmp_path / "whole"), progress=False, threads=1)
    store = RunStore(tmp_path / "parts")
    assert train_run(cfg, store, progress=False, max_epochs=2, threads=1) == "paused"
    # A crash between a checkpoint's row and its state.pt leaves a row the state does not know: it is redone.
    rows = store.read_rows(cfg.run_id)
    store.write_rows(cfg.run_id, pd.concat([rows, rows.tail(1).assign(step=10_000)], ignore_index=True))
    assert train_run(cfg, store, progress=False, threads=1) == "done"
    whole, parts = read_checkpoints(tmp_path / "whole"), read_checkpoints(tmp_path / "parts")
    _check_rows(parts, 4)
    for column in ("step", "seen_interactions", "train_flops", "valid_ndcg_at_5", "train_loss", "lr"):
        np.testing.assert_allclose(parts[column], whole[column], rtol=1e-5, err_msg=column)
    assert parts.cpu_time_s.is_monotonic_increasing  # the CPU time goes on across the resume


def test_evaluation_only_settings_change_no_number_of_the_training(tmp_path):
    """Slices and extra protocols add columns and nothing else: the ablation turns them off for its own runs and
    compares them with Table 1's run that has them."""
    cfg = tiny_config(epochs=2)
    lean = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, eval_slices=False, extra_eval_protocols=()))
    extra = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, extra_eval_protocols=("full",)))
    for name, run in (("lean", lean), ("extra", extra)):
        train_run(run, RunStore(tmp_path / name), progress=False, threads=1)
    lean_rows, extra_rows = read_checkpoints(tmp_path / "lean"), read_checkpoints(tmp_path / "extra")
    assert "valid_ndcg_at_5__noise_10pct" in extra_rows and "valid_ndcg_at_5__noise_10pct" not in lean_rows
    for column in ("train_loss", "valid_loss", "valid_ndcg_at_5", "test_ndcg_at_5", "lr", "train_flops"):
        np.testing.assert_array_equal(lean_rows[column], extra_rows[column], err_msg=column)


@pytest.mark.parametrize(
    "options",
    [dict(targets="last"), dict(loss="full_ce"), dict(item_encoder="id"), dict(loss="bce", item_encoder="id")],
)
def test_variants_train(tmp_path, options):
    cfg = tiny_config(epochs=1, **options)
    assert train_run(cfg, RunStore(tmp_path), progress=False) == "done"
    assert read_checkpoints(tmp_path).valid_ndcg_at_5.notna().all()


def test_one_cycle_schedule_shape():
    values = [one_cycle(s, 90, 1 / 3) for s in range(90)]
    assert values[29] == pytest.approx(1.0) and values[0] == pytest.approx(1 / 30)
    assert np.all(np.diff(values[:30]) > 0) and np.all(np.diff(values[30:]) < 0)
    assert values[-1] < 0.01


@pytest.mark.slow
def test_kill_9_loses_nothing_and_duplicates_nothing(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text(
        "[data]\nn_users = 150\nn_items = 60\nmean_length = 8\n"
        "[model]\nn_layers = 1\nn_heads = 2\nhidden = 16\nmax_len = 10\n"
        "[train]\nepochs = 40\nbatch_size = 8\nn_negatives = 20\neval_negatives = 30\n"
        "targets = 'all'\nlr = 0.003\n"
    )
    command = [sys.executable, "-m", "scalerec", "train", str(config), "--runs", str(tmp_path / "runs")]
    env = os.environ | {"TQDM_DISABLE": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300  # generous: a loaded machine starts the run slowly
    while time.time() < deadline:
        files = list((tmp_path / "runs").glob("*/checkpoints.parquet"))
        # the store's reader, not pd.read_parquet: pyarrow opening the path twice across the writer's rename tears it
        if files and len(read_checkpoints(files[0])) >= 3:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = len(read_checkpoints(tmp_path / "runs"))
    assert 3 <= before < 40
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    _check_rows(read_checkpoints(tmp_path / "runs"), 40)


def test_nan_loss_stops_the_run_and_is_recorded(tmp_path, monkeypatch):
    from scalerec.errors import ScalerecError
    from scalerec.model.recommender import TrainingStep

    cfg, store = tiny_config(epochs=3), RunStore(tmp_path)
    real_forward, calls = TrainingStep.forward, []

    def diverging(self, seq, targets, negatives):
        calls.append(1)
        loss = real_forward(self, seq, targets, negatives)
        return loss * float("nan") if len(calls) > 12 else loss  # diverges in the second epoch

    monkeypatch.setattr(TrainingStep, "forward", diverging)
    with pytest.raises(ScalerecError, match="training loss is nan"):
        train_run(cfg, store, progress=False)
    assert store.status(cfg.run_id) == "failed" and "training loss is nan" in store.failure(cfg.run_id)
    rows = store.read_rows(cfg.run_id)
    assert len(rows) == 1 and np.isfinite(rows.train_loss).all()  # the good epoch is kept, nothing after it


def test_clipping_and_weight_decay_groups(tmp_path, monkeypatch):
    import dataclasses

    import torch

    from scalerec.model.recommender import build_recommender
    from scalerec.train.trainer import make_optimizer

    cfg = tiny_config(epochs=1)  # 0.1's clipping and decay groups (the defaults since 0.2: none, and L2 on all)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, clip_norm=1.0, weight_decay_on="matrices"))
    clipped = []
    real_clip = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(
        torch.nn.utils,
        "clip_grad_norm_",
        lambda params, max_norm, **kw: clipped.append(max_norm) or real_clip(params, max_norm, **kw),
    )
    train_run(cfg, RunStore(tmp_path), progress=False)
    assert clipped and set(clipped) == {cfg.train.clip_norm}  # every step clips at train.clip_norm

    model = build_recommender(
        cfg.model,
        60,
        None
        if cfg.model.item_encoder == "id"
        else {
            "title_tokens": np.ones((61, 3), dtype=np.int64),
            "brand_tokens": np.ones((61, 1), dtype=np.int64),
            "vocab_size": 8,
        },
    )
    decay, no_decay = make_optimizer(model, cfg).param_groups
    assert decay["weight_decay"] == cfg.train.weight_decay and no_decay["weight_decay"] == 0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])
    names = {id(p): n for n, p in model.named_parameters()}
    assert any("norm" in names[id(p)] for p in no_decay["params"])  # LayerNorm gains are not decayed


def test_the_fused_adam_makes_the_plain_adam_update():
    """make_optimizer takes torch's fused kernel where it exists; 20 steps of it and of the plain Adam from one model
    agree to float rounding (weight decay on and off, one-cycle momentum changing betas each step)."""
    import copy
    import dataclasses

    import torch

    from scalerec.model.recommender import build_recommender
    from scalerec.train.trainer import make_optimizer, make_scheduler

    cfg = tiny_config(epochs=1)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, schedule="torch-one-cycle", weight_decay=0.1))
    torch.manual_seed(0)
    model = build_recommender(
        cfg.model,
        60,
        {
            "title_tokens": np.ones((61, 3), dtype=np.int64),
            "brand_tokens": np.ones((61, 1), dtype=np.int64),
            "vocab_size": 8,
        },
    )
    plain_model, start = copy.deepcopy(model), copy.deepcopy(model)
    fused = make_optimizer(model, cfg)
    assert fused.defaults["fused"] or tuple(map(int, torch.__version__.split(".")[:2])) < (2, 4)
    twin = dict(zip(map(id, model.parameters()), plain_model.parameters()))
    plain = torch.optim.Adam(
        [{"params": [twin[id(p)] for p in g["params"]], "weight_decay": g["weight_decay"]} for g in fused.param_groups],
        lr=cfg.train.lr,
    )
    schedules = [make_scheduler(opt, cfg.train, 20) for opt in (fused, plain)]
    items = torch.randint(1, 61, (8, 5))
    for _ in range(20):
        for net, opt, schedule in zip((model, plain_model), (fused, plain), schedules):
            opt.zero_grad()
            net.item_encoder(items).pow(2).mean().backward()
            opt.step()
            schedule.step()
    moved = [not torch.equal(p, q) for p, q in zip(model.parameters(), start.parameters())]
    assert sum(moved) >= 3  # the steps did train
    for p, q in zip(model.parameters(), plain_model.parameters()):
        assert torch.allclose(p, q, rtol=1e-5, atol=1e-6)


def test_layer_wise_dropout_rates(tmp_path):
    import dataclasses

    from scalerec.errors import ScalerecError
    from scalerec.model.recommender import build_recommender

    cfg = tiny_config(n_layers=2)
    model_cfg = dataclasses.replace(cfg.model, layer_dropout=(0.1, 0.3), item_encoder="id")
    blocks = build_recommender(model_cfg, 60, None).transformer.blocks
    assert [b.attention.dropout for b in blocks] == [0.1, 0.3]
    with pytest.raises(ScalerecError, match="one rate per layer"):
        dataclasses.replace(cfg.model, layer_dropout=(0.1,))


def test_adam_to_sgd_switch_at_the_first_validation_loss_that_does_not_improve(tmp_path, monkeypatch):
    """The switch happens where validation says, is recorded, and a resumed run repeats the uninterrupted one."""
    import dataclasses

    from scalerec.train.evaluate import Evaluator

    real_evaluate, valid_calls = Evaluator.evaluate, []

    def evaluate(self, model, which, device, slice_passes=True, main=True):  # validation loss 3.0, 2.0, then 2.5
        metrics = real_evaluate(self, model, which, device, slice_passes, main)  # from epoch 3 on: the switch there
        if which == "valid":
            valid_calls.append(1)
            metrics["valid_loss"] = {1: 3.0, 2: 2.0}.get(len(valid_calls), 2.5)
        return metrics

    monkeypatch.setattr(Evaluator, "evaluate", evaluate)
    cfg = tiny_config(epochs=5)
    cfg = dataclasses.replace(
        cfg,
        train=dataclasses.replace(cfg.train, sgd_switch=True, sgd_lr=0.05, schedule="one-cycle", warmup_fraction=1 / 3),
    )
    whole = RunStore(tmp_path / "whole")
    train_run(cfg, whole, progress=False, threads=1)
    rows = read_checkpoints(tmp_path / "whole")
    per_epoch, total = int(rows.step.iloc[0]), int(rows.step.iloc[-1])
    assert whole.read_config(cfg.run_id)["sgd_from_step"] == 3 * per_epoch
    assert rows.lr.iloc[1] == pytest.approx(cfg.train.lr * one_cycle(2 * per_epoch, total, 1 / 3))  # Adam
    assert rows.lr.iloc[3] == pytest.approx(0.05 * one_cycle(4 * per_epoch, total, 1 / 3))  # SGD after the switch

    valid_calls.clear()
    parts = RunStore(tmp_path / "parts")
    train_run(cfg, parts, progress=False, threads=1, max_epochs=4)  # stops after the switch, resumes as SGD
    train_run(cfg, parts, progress=False, threads=1)
    resumed = read_checkpoints(tmp_path / "parts")
    np.testing.assert_allclose(resumed.train_loss, rows.train_loss, rtol=1e-5)
    np.testing.assert_allclose(resumed.lr, rows.lr, rtol=1e-6)
