import pytest
import torch

from scalerec.config import ModelConfig, RunConfig, TrainConfig, DataConfig
from scalerec.train.flops import analytic_forward_macs, count_forward_macs, train_flops
from scalerec.train.trainer import _Trainer
from scalerec.store import RunStore


@pytest.mark.parametrize("encoder, targets, loss", [
    ("id", "all", "sampled_softmax"), ("text", "all", "sampled_softmax"), ("text", "last", "sampled_softmax"),
    ("id", "all", "full_ce"), ("id", "all", "bce"), ("text", "all", "bce")])
def test_fvcore_count_matches_the_analytic_formula(tmp_path, encoder, targets, loss):
    cfg = RunConfig(DataConfig(n_users=40, n_items=300, mean_length=10),
                    ModelConfig(item_encoder=encoder, n_layers=2, n_heads=4, hidden=64, inner_size=256, max_len=20),
                    TrainConfig(n_negatives=100, targets=targets, loss=loss, batch_size=8))
    trainer = _Trainer(cfg, RunStore(tmp_path), torch.device("cpu"), progress=False)
    seq, _ = next(trainer.windows.epoch(8, torch.Generator().manual_seed(0)))
    negatives = trainer.sampler.sample(len(seq), cfg.sampled_per_sequence, torch.Generator())
    measured, unsupported = count_forward_macs(trainer.step_module, (seq, negatives))
    analytic = analytic_forward_macs(cfg, len(seq), 300)
    assert measured == pytest.approx(analytic, rel=0.10)
    assert "aten::scaled_dot_product_attention" not in unsupported
    assert trainer.step_module.shortcuts  # counting switched it off only for the count


def test_train_flops_is_six_times_forward_macs():
    assert train_flops(1.5e9) == 9e9


@pytest.mark.parametrize("encoder, loss, negatives", [("text", "full_ce", 0), ("id", "full_ce", 0),
                                                      ("text", "sampled_softmax", 30), ("text", "sampled_softmax", 900),
                                                      ("id", "bce", 1), ("text", "bce", 2)])
def test_training_shortcuts_change_neither_the_loss_nor_its_gradients(tmp_path, encoder, loss, negatives):
    cfg = RunConfig(DataConfig(n_users=40, n_items=2000, mean_length=10),
                    ModelConfig(item_encoder=encoder, n_layers=1, n_heads=2, hidden=16, max_len=20, dropout=0.0),
                    TrainConfig(n_negatives=max(negatives, 1), loss=loss, batch_size=8))
    trainer = _Trainer(cfg, RunStore(tmp_path), torch.device("cpu"), progress=False)
    step = trainer.step_module
    seq, _ = next(trainer.windows.epoch(8, torch.Generator().manual_seed(0)))
    assert (seq == 0).any()  # the batch has padding targets to skip
    sampled = trainer.sampler.sample(len(seq), cfg.sampled_per_sequence, torch.Generator().manual_seed(1))
    if negatives > 1:  # 30 negatives take the gathered-bmm path, 900 the distinct-item-table path
        distinct = len(torch.unique(torch.cat([seq.flatten(), sampled.flatten()])))
        assert (distinct <= 2 * negatives) == (negatives == 900)
    results = []
    for shortcuts in (False, True):
        step.shortcuts = shortcuts
        step.zero_grad()
        value = step(seq, sampled)
        value.backward()
        results.append((value.item(), [p.grad.clone() for p in step.parameters() if p.grad is not None]))
    (nominal, nominal_grads), (fast, fast_grads) = results
    assert fast == pytest.approx(nominal, rel=1e-5)
    assert len(fast_grads) == len(nominal_grads) > 0
    for a, b in zip(nominal_grads, fast_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
