import pytest
import torch

from scalerec.config import ModelConfig, RunConfig, TrainConfig, DataConfig
from scalerec.train.flops import analytic_forward_macs, count_forward_macs, train_flops
from scalerec.train.trainer import _Trainer
from scalerec.store import RunStore


@pytest.mark.parametrize("encoder, targets, loss", [("id", "all", "sampled_softmax"), ("text", "all", "sampled_softmax"),
                                                    ("text", "last", "sampled_softmax"), ("id", "all", "full_ce"),
                                                    ("id", "all", "bce")])
def test_fvcore_count_matches_the_analytic_formula(tmp_path, encoder, targets, loss):
    cfg = RunConfig(DataConfig(n_users=40, n_items=300, mean_length=10),
                    ModelConfig(item_encoder=encoder, n_layers=2, n_heads=4, hidden=64, inner_size=256, max_len=20),
                    TrainConfig(n_negatives=100, targets=targets, loss=loss, batch_size=8))
    trainer = _Trainer(cfg, RunStore(tmp_path), torch.device("cpu"), progress=False)
    seq, _ = next(trainer.windows.epoch(8, torch.Generator().manual_seed(0)))
    negatives = trainer.sampler.sample(len(seq), 100 if loss == "sampled_softmax" else 0, torch.Generator())
    measured, unsupported = count_forward_macs(trainer.step_module, (seq, negatives))
    analytic = analytic_forward_macs(cfg, len(seq), 300)
    assert measured == pytest.approx(analytic, rel=0.10)
    assert "aten::scaled_dot_product_attention" not in unsupported
    assert trainer.step_module.dedupe  # counting switched it off only for the count


def test_train_flops_is_six_times_forward_macs():
    assert train_flops(1.5e9) == 9e9
