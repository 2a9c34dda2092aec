"""Fine-tuning: progressive unfreezing, EWC, the store's parent columns, resume, and clear errors."""

import dataclasses

import numpy as np
import pytest
import torch
from conftest import tiny_config
from helpers import scalerec

from scalerec.config import DataConfig
from scalerec.errors import ScalerecError
from scalerec.store import RunStore, read_checkpoints
from scalerec.train.finetune import FinetuneConfig, _FineTuner, finetune_run, stages
from scalerec.train.trainer import train_run

TARGET = DataConfig(n_users=60, n_items=80, mean_length=8, seed=1, transitions_seed=0)


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrain")
    cfg = tiny_config(n_layers=2, epochs=2)
    train_run(cfg, RunStore(root), progress=False)
    return RunStore(root), cfg


def _ft(parent_cfg, **changes):
    options = dict(
        parent_run_id=parent_cfg.run_id,
        data=TARGET,
        layer_epochs=2,
        embedding_epochs=2,
        lr=3e-3,
        eval_every=1,
        fisher_batches=3,
    )
    return FinetuneConfig(**(options | changes))


def test_stage_plan():
    assert stages(3, 10, 50) == [
        ("layer 3 of 3", 10, 1),
        ("layer 2 of 3", 10, 2),
        ("layer 1 of 3", 10, 3),
        ("embeddings", 50, -1),
    ]
    assert stages(2, 0, 5) == [("embeddings", 5, -1)]


def test_top_layer_first_then_everything(parent, tmp_path):
    parent_store, parent_cfg = parent
    ft = _ft(parent_cfg)
    pre = torch.load(parent_store.state_path(parent_cfg.run_id), weights_only=True)["model"]
    tuner = _FineTuner(ft, parent_store, RunStore(tmp_path), torch.device("cpu"), progress=False)
    assert tuner.run(max_epochs=2) == "paused"  # the first stage: only the top layer and the final norm train
    weights = tuner.model.state_dict()
    changed = {name for name in pre if not torch.equal(pre[name], weights[name])}
    assert changed and all(name.startswith(("transformer.blocks.1.", "transformer.norm.")) for name in changed)
    assert "transformer.blocks.1.ffn.0.weight" in changed
    assert tuner.run(max_epochs=None) == "done"
    changed = {name for name in pre if not torch.equal(pre[name], tuner.model.state_dict()[name])}
    assert {
        "item_encoder.tokens.weight",
        "transformer.blocks.0.ffn.0.weight",
        "transformer.positions.weight",
    } <= changed

    rows = read_checkpoints(tmp_path)
    assert rows.stage.tolist() == ["layer 2 of 2"] * 2 + ["layer 1 of 2"] * 2 + ["embeddings"] * 2
    assert (rows.parent_run_id == parent_cfg.run_id).all()
    parent_rows = read_checkpoints(parent_store.root)
    assert (rows.parent_train_flops == parent_rows.train_flops.iloc[-1]).all()
    assert rows.train_flops.iloc[0] < parent_rows.train_flops.iloc[-1]  # fine-tuning FLOPs only
    assert (rows.non_embedding_params == parent_rows.non_embedding_params.iloc[0]).all()
    assert rows.valid_ndcg_at_5.notna().all() and rows.n_items.iloc[0] == TARGET.n_items


@pytest.mark.slow
def test_resume_across_a_stage_boundary_repeats_the_uninterrupted_run(parent, tmp_path):
    parent_store, parent_cfg = parent
    ft = _ft(parent_cfg)
    torch.set_num_threads(1)
    finetune_run(ft, parent_store, RunStore(tmp_path / "whole"), progress=False)
    for stop in (2, 3):  # at the end of a stage, and inside one
        store = RunStore(tmp_path / f"parts{stop}")
        _FineTuner(ft, parent_store, store, torch.device("cpu"), False).run(max_epochs=stop)
        assert finetune_run(ft, parent_store, store, progress=False) == "done"
        whole, parts = read_checkpoints(tmp_path / "whole"), read_checkpoints(store.root)
        assert parts.stage.tolist() == whole.stage.tolist()
        for column in ("train_loss", "valid_ndcg_at_5", "train_flops"):
            np.testing.assert_allclose(parts[column], whole[column], rtol=1e-5, err_msg=f"{column} (stop {stop})")


def test_ewc_holds_the_weights_that_mattered_in_pretraining(parent, tmp_path):
    """EWC's own measure, the Fisher-weighted squared distance to the pre-trained weights, shrinks under EWC."""
    parent_store, parent_cfg = parent
    pre = torch.load(parent_store.state_path(parent_cfg.run_id), weights_only=True)["model"]
    fisher, distance = None, {}
    for lam in (1e6, 0.0):
        tuner = _FineTuner(
            _ft(parent_cfg, ewc_lambda=lam, layer_epochs=0),
            parent_store,
            RunStore(tmp_path / str(lam)),
            torch.device("cpu"),
            False,
        )
        if lam:
            fisher = tuner.fisher
            assert all((f >= 0).all() for f in fisher.values()) and any(f.sum() > 0 for f in fisher.values())
            assert float(tuner._penalty().detach()) == 0.0  # at the pre-trained weights
        tuner.run(None)
        weights = tuner.model.state_dict()
        distance[lam] = sum(float((fisher[n] * (weights[n] - pre[n]) ** 2).sum()) for n in fisher)
    assert distance[1e6] < 0.2 * distance[0.0]


def test_errors(parent, tmp_path):
    parent_store, parent_cfg = parent
    with pytest.raises(ScalerecError, match="no pre-trained run"):
        finetune_run(dataclasses.replace(_ft(parent_cfg), parent_run_id="0" * 12), parent_store, RunStore(tmp_path))
    id_cfg = tiny_config(item_encoder="id", epochs=1)
    train_run(id_cfg, RunStore(tmp_path / "id"), progress=False)
    with pytest.raises(ScalerecError, match="uses the id encoder"):
        finetune_run(_ft(id_cfg), RunStore(tmp_path / "id"), RunStore(tmp_path))
    # a tokenizer that does not match the pre-trained token table
    import shutil

    import sentencepiece as spm

    shutil.copytree(parent_store.run_dir(parent_cfg.run_id), tmp_path / "copy" / parent_cfg.run_id)
    other = __import__("io").BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(["alpha beta gamma delta"] * 50),
        model_writer=other,
        vocab_size=20,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    (tmp_path / "copy" / parent_cfg.run_id / "tokenizer.model").write_bytes(other.getvalue())
    with pytest.raises(ScalerecError, match="do not fit the model") as error:
        finetune_run(_ft(parent_cfg), RunStore(tmp_path / "copy"), RunStore(tmp_path / "out"))
    assert "\n" not in str(error.value) and "size mismatch for item_encoder.tokens.weight" in str(error.value)


@pytest.mark.slow
def test_cli_finetune_and_fit_laws_leave_it_out(parent, tmp_path):
    parent_store, parent_cfg = parent
    (tmp_path / "target.toml").write_text(
        "[data]\nn_users = 60\nn_items = 80\nmean_length = 8\nseed = 1\ntransitions_seed = 0\n"
    )
    out = scalerec(
        "finetune",
        "--from",
        parent_store.run_dir(parent_cfg.run_id),
        "--data",
        tmp_path / "target.toml",
        "--runs",
        tmp_path / "ft",
        "--layer-epochs",
        "1",
        "--embedding-epochs",
        "1",
        "--eval-every",
        "1",
        "--json",
    )
    result = __import__("json").loads(out.stdout)
    assert result["status"] == "done" and result["checkpoints"] == 3 and result["parent_run_id"] == parent_cfg.run_id
    bad = scalerec(
        "finetune",
        "--from",
        "nope",
        "--data",
        tmp_path / "target.toml",
        "--runs",
        tmp_path / "ft",
        "--parent-runs",
        tmp_path,
        ok=False,
    )
    assert bad.returncode == 1 and "no pre-trained run nope" in bad.stderr

    from scalerec.analysis.fit_laws import FitOptions, fit_laws

    both = read_checkpoints(parent_store.root, tmp_path / "ft")
    with pytest.raises(ScalerecError, match="at least 2 runs"):  # the fine-tuning run is not a scaling-law point
        fit_laws(both, FitOptions(bootstrap=0))


def test_an_hstu_parent_fine_tunes_layer_by_layer(tmp_path):
    """HSTU blocks go through the same stages: the top block first (its uvqk, output projection and position
    bias), then everything."""
    cfg = tiny_config(n_layers=2, epochs=1)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, block="hstu"))
    parent_store = RunStore(tmp_path / "pre")
    train_run(cfg, parent_store, progress=False)
    pre = torch.load(parent_store.state_path(cfg.run_id), weights_only=True)["model"]
    ft = _ft(cfg, layer_epochs=1, embedding_epochs=1)
    tuner = _FineTuner(ft, parent_store, RunStore(tmp_path / "ft"), torch.device("cpu"), progress=False)
    assert tuner.run(max_epochs=1) == "paused"
    changed = {name for name in pre if not torch.equal(pre[name], tuner.model.state_dict()[name])}
    assert "transformer.blocks.1.uvqk.weight" in changed and "transformer.blocks.1.position_bias" in changed
    assert all(name.startswith(("transformer.blocks.1.", "transformer.norm.")) for name in changed)
    assert tuner.run(max_epochs=None) == "done"
    rows = read_checkpoints(tmp_path / "ft")
    assert rows.block.eq("hstu").all() and rows.valid_ndcg_at_5.notna().all()
