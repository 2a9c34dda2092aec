"""The SRT reference recipe as config fields, the evaluation protocols, OneCycleLR and early stopping."""

import dataclasses

import numpy as np
import pytest
import torch
from conftest import tiny_config

from scalerec.config import RunConfig, TrainConfig, recipe_names
from scalerec.data.split import Split
from scalerec.data.text import TextOptions, item_token_arrays
from scalerec.errors import ScalerecError
from scalerec.model.recommender import build_recommender
from scalerec.store import RunStore, read_checkpoints
from scalerec.train.evaluate import Evaluator
from scalerec.train.trainer import Trainer, train_run


def test_the_recipe_sets_every_reference_detail_and_the_file_wins():
    assert "srt-reference" in recipe_names()
    cfg = RunConfig.from_dict({"recipe": "srt-reference", "train": {"n_negatives": 1000}})
    m, t = cfg.model, cfg.train
    assert (m.block_norm, m.layer_norm_eps, m.init, m.pooling, m.token_tables) == (
        "post",
        1e-12,
        "normal",
        "sum",
        "per-field",
    )
    assert (m.tokenizer, m.text_normalise, m.title_tokens, m.brand_tokens, m.empty_brand) == (
        "bpe",
        "words",
        40,
        8,
        "unknown",
    )
    assert (t.targets, t.popularity_smoothing, t.temperature, t.weight_decay_on, t.clip_norm) == (
        "last",
        1.0,
        1.0,
        "all",
        0.0,
    )
    assert (t.schedule, t.warmup_fraction, t.early_stop_patience, t.protocol) == ("torch-one-cycle", 0.3, 5, "full")
    assert t.negatives_per_target and t.n_negatives == 1000 and t.lr == 1e-4 and t.batch_size == 128
    with pytest.raises(ScalerecError, match="unknown recipe 'srt'"):
        RunConfig.from_dict({"recipe": "srt"})
    # the fields the recipe sets beyond the defaults (early stopping, protocol, ...) are recorded in the run id
    assert cfg.run_id != RunConfig.from_dict({"train": {"n_negatives": 1000}}).run_id


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"model": {"pooling": "max"}}, "model.pooling must be one of"),
        ({"train": {"eval_protocol": "sampled-0"}}, "unknown evaluation protocol"),
        ({"train": {"prefix_batches": "batched"}}, "prefix_batches"),
        ({"train": {"clip_norm": -1.0}}, "clip_norm"),
    ],
)
def test_recipe_fields_are_checked(bad, message):
    with pytest.raises(ScalerecError, match=message):
        RunConfig.from_dict(bad)


def test_prefix_batches_mean_nothing_with_all_targets_and_leave_the_run_id_alone():
    one_pass = RunConfig.from_dict({"train": {"targets": "all", "prefix_batches": "one-pass"}})
    padded = RunConfig.from_dict({"train": {"targets": "all", "prefix_batches": "padded"}})
    assert one_pass.train.prefix_batches == "padded" and one_pass.run_id == padded.run_id


@pytest.mark.parametrize(
    "train", [{"targets": "all"}, {"targets": "last", "prefix_batches": "padded"}, {"loss": "bce"}, {"loss": "full_ce"}]
)
def test_window_negatives_are_sequence_negatives_where_a_window_is_one_sequence_or_one_sample(train):
    window = RunConfig.from_dict({"train": train | {"negatives_per": "window"}})
    sequence = RunConfig.from_dict({"train": train | {"negatives_per": "sequence"}})
    assert window.train.negatives_per == "sequence" and window.run_id == sequence.run_id
    one_pass = RunConfig.from_dict({"train": {"negatives_per": "window"}})  # the default: one-pass prefix samples
    assert not one_pass.train.negatives_per_target and RunConfig().train.negatives_per_target


def test_post_ln_with_normal_init_and_per_field_sum_pooling():
    text = {
        "title_tokens": np.array([[0, 0], [1, 2], [3, 0]]),
        "brand_tokens": np.array([[0], [4], [0]]),
        "vocab_size": 5,
    }
    cfg = RunConfig.from_dict({"recipe": "srt-reference", "model": {"hidden": 4, "n_heads": 2, "max_len": 3}}).model
    model = build_recommender(cfg, 2, text)
    encoder = model.item_encoder
    title, brand = encoder.tokens.weight, encoder.brand_table.weight
    out = encoder(torch.tensor([1, 2]))
    expected = encoder.adapter(
        torch.stack([torch.cat([title[1] + title[2], brand[4]]), torch.cat([title[3], torch.zeros(4)])])
    )
    torch.testing.assert_close(out, expected)
    assert model.transformer.post_norm and all(b.post_norm for b in model.transformer.blocks)
    assert model.transformer.norm.eps == 1e-12
    linear = model.transformer.blocks[0].attention.qkv
    assert float(linear.bias.detach().abs().max()) == 0.0 and 0.01 < float(linear.weight.detach().std()) < 0.03
    assert model.param_counts()["embedding_params"] == 2 * 5 * 4  # two token tables


def test_bpe_words_tokenizer_caps_its_vocabulary_and_fills_empty_brands(tmp_path, monkeypatch):
    monkeypatch.setenv("SCALEREC_CACHE", str(tmp_path))
    titles = ["Shampoo, Argan-Oil (500ml)!", "Lip gloss: pink", "Argan oil shampoo"]
    options = TextOptions(
        vocab_size=30000, tokenizer="bpe", normalise="words", title_tokens=40, brand_tokens=8, empty_brand="unknown"
    )
    title, brand, vocab, model = item_token_arrays(titles, ["Acme", "", "Acme"], options, "test")
    assert 8 < vocab < 30000  # capped by what three titles support; the cap is the size the model reports
    assert title.shape == (4, 40) and brand.shape == (4, 8)
    assert (brand[2] != 0).any() and not np.array_equal(brand[2], brand[1])  # "unknown", not padding
    assert options.clean("Argan-Oil (500ml)!") == "argan oil 500ml"


def _split() -> Split:
    # 3 users; items 1..6; histories chosen so that the protocols differ
    train = [np.array([1, 2]), np.array([3, 4]), np.array([5, 6, 1])]
    return Split(np.arange(6), train, valid=np.array([3, 5, 2]), test=np.array([4, 6, 3]), dropped_users=0)


class _FixedScores(torch.nn.Module):
    """A 'model' whose scores of items 1..6 are the same for every user: item i scores s[i - 1]."""

    def __init__(self, scores):
        super().__init__()
        self.scores = torch.tensor(scores)

    def item_encoder(self, items):
        return self.scores[items - 1].unsqueeze(1)

    def last_states(self, inputs, table=None, times=None):
        return torch.ones(len(inputs), 1)


def test_protocols_rank_by_hand_with_pessimistic_ties():
    split = _split()
    train = TrainConfig(eval_protocol="full", extra_eval_protocols=("full-masked", "sampled-2"), eval_ks=(1, 2))
    evaluator = Evaluator(split, max_len=5, train=train)
    model = _FixedScores([6.0, 5.0, 4.0, 4.0, 2.0, 1.0])  # items 3 and 4 tie
    metrics = evaluator.evaluate(model, "valid", torch.device("cpu"))
    # valid positives 3, 5, 2. full ranks (ties against the positive): item 3 -> 3 (1, 2 and its tie 4 above);
    # item 5 -> 4; item 2 -> 1
    assert metrics["valid_hit_at_2"] == pytest.approx(1 / 3)
    assert metrics["valid_mrr_at_2"] == pytest.approx((1 / 2) / 3)
    # full-masked: user 0 masks 1, 2 -> item 3 ranks 1 (its tie 4); user 1 masks 3, 4 -> item 5 ranks 2;
    # user 2 masks 5, 6, 1 -> item 2 ranks 0
    assert metrics["valid_hit_at_1__full_masked"] == pytest.approx(1 / 3)
    assert metrics["valid_hit_at_2__full_masked"] == pytest.approx(2 / 3)
    # sampled-2: exactly two negatives each, never the positive
    mask = evaluator.candidates("sampled-2", "valid", np.arange(3))
    assert mask.sum(1).tolist() == [2, 2, 2] and not mask[np.arange(3), split.valid - 1].any()
    # the test input history includes the validation item: user 0's test positive 4 has 1, 2, 3 masked
    test_mask = evaluator.candidates("full-masked", "test", np.arange(3))
    assert test_mask[0].tolist() == [False, False, False, False, True, True]


def test_torch_one_cycle_goes_from_lr_over_25_to_lr_then_lr_over_2_5_and_cycles_beta1(tmp_path):
    cfg = tiny_config(epochs=4)
    cfg = dataclasses.replace(
        cfg, train=dataclasses.replace(cfg.train, schedule="torch-one-cycle", lr=1e-3, warmup_fraction=0.3)
    )
    trainer = Trainer(cfg, RunStore(tmp_path), torch.device("cpu"), progress=False)
    lrs, betas = [], []
    generator = torch.Generator().manual_seed(0)
    for _ in range(cfg.train.epochs):
        for batch in trainer.epoch_batches(generator):
            lrs.append(trainer.optimizer.param_groups[0]["lr"])
            betas.append(trainer.optimizer.param_groups[0]["betas"][0])
            trainer.step(batch, generator)
    assert len(lrs) == trainer.total_steps
    assert lrs[0] == pytest.approx(1e-3 / 25) and max(lrs) == pytest.approx(1e-3, rel=1e-2)
    assert lrs[-1] == pytest.approx(1e-3 / 25 / 0.1)  # the last step's: 4e-5 at lr 1e-4
    assert betas[0] == pytest.approx(0.95) and min(betas) == pytest.approx(0.85, abs=1e-3)


def test_early_stopping_ends_the_run_after_patience_checkpoints_without_improvement(tmp_path):
    cfg = tiny_config(epochs=30)
    # lr 0 after warm-up cannot improve: the validation metric stalls, so the run stops early
    cfg = dataclasses.replace(
        cfg, train=dataclasses.replace(cfg.train, lr=1e-9, early_stop_patience=2, test_every_checkpoint=True)
    )
    assert train_run(cfg, RunStore(tmp_path), progress=False) == "done"
    rows = read_checkpoints(tmp_path)
    assert len(rows) < 30 and rows.is_final.tolist() == [False] * (len(rows) - 1) + [True]
    best = rows.valid_ndcg_at_5.cummax()
    assert (best.iloc[-3] == best.iloc[-1]) and rows.test_ndcg_at_5.notna().all()
    assert set(rows.eval_protocol) == {"sampled-30"}
    assert RunStore(tmp_path).status(cfg.run_id) == "done"


def test_the_iclrec_recipe_is_iclrec_s_sasrec_and_trains_at_a_constant_rate(tmp_path):
    import torch

    from scalerec.train.trainer import make_scheduler

    cfg = RunConfig.from_dict({"recipe": "iclrec-sasrec"})
    m, t = cfg.model, cfg.train
    assert (m.item_encoder, m.n_layers, m.n_heads, m.hidden, m.ffn_size, m.dropout) == ("id", 2, 2, 64, 256, 0.5)
    assert (t.loss, t.n_negatives, t.targets, t.lr, t.batch_size, t.weight_decay) == ("bce", 1, "all", 1e-3, 256, 0.0)
    assert (t.epochs, t.early_stop_patience, t.protocol) == (300, 40, "full-masked")
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=t.lr)
    scheduler = make_scheduler(optimizer, t, total_steps=100)
    rates = []
    for _ in range(100):
        optimizer.step()
        scheduler.step()
        rates.append(optimizer.param_groups[0]["lr"])
    assert set(rates) == {1e-3}
