"""Shared fixtures: tiny configs that train in a second or two on a CPU."""

from __future__ import annotations

import os

import pytest

from scalerec.config import DataConfig, ModelConfig, RunConfig, TrainConfig


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Keep SentencePiece models out of the user's cache; one cache for the whole session is fine."""
    monkeypatch.setenv("SCALEREC_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def tiny_config(**overrides) -> RunConfig:
    """A run that takes about a second: 80 users, 60 items, hidden 16, 2 epochs."""
    data = DataConfig(n_users=overrides.pop("n_users", 80), n_items=60, mean_length=8)
    model = ModelConfig(
        n_layers=overrides.pop("n_layers", 1),
        n_heads=2,
        hidden=overrides.pop("hidden", 16),
        max_len=10,
        dropout=0.1,
        item_encoder=overrides.pop("item_encoder", "text"),
    )
    train = TrainConfig(
        epochs=overrides.pop("epochs", 2),
        batch_size=16,
        lr=3e-3,
        n_negatives=20,
        targets=overrides.pop("targets", "all"),
        eval_every=1,
        eval_negatives=30,
        loss=overrides.pop("loss", "sampled_softmax"),
    )
    assert not overrides, overrides
    return RunConfig(data, model, train, seed=0)


os.environ.setdefault("TQDM_DISABLE", "1")
