import math

import numpy as np
import pytest

from scalerec.train.evaluate import negative_mask, ranking_metrics


def test_ndcg_hit_mrr_by_hand():
    ranks = np.array([0, 1, 4, 5, 20])
    m = ranking_metrics(ranks, (5,), "valid")
    assert m["valid_hit_at_5"] == pytest.approx(3 / 5)
    assert m["valid_ndcg_at_5"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(6)) / 5)
    assert m["valid_mrr_at_5"] == pytest.approx((1 + 1 / 2 + 1 / 5) / 5)


def test_negative_mask_samples_k_items_without_the_positive():
    users, positives = np.arange(50), np.random.default_rng(0).integers(1, 301, 50)
    mask = negative_mask(users, positives, 300, 40, seed=7)
    assert (mask.sum(1) == 40).all()
    assert not mask[np.arange(50), positives - 1].any()
    assert mask.mean(0).std() < 0.1  # roughly uniform over items


def test_negative_mask_is_fixed_per_user_whatever_the_batch():
    positives = np.full(20, 3)
    whole = negative_mask(np.arange(20), positives, 100, 10, seed=1)
    part = negative_mask(np.arange(10, 20), positives[10:], 100, 10, seed=1)
    assert (whole[10:] == part).all()
    assert not (negative_mask(np.arange(20), positives, 100, 10, seed=2) == whole).all()


def test_capped_negatives_mean_full_catalog():
    mask = negative_mask(np.arange(3), np.array([1, 2, 3]), 10, 10_000, seed=0)
    assert (mask.sum(1) == 9).all()


def test_sampled_candidates_kept_between_evaluations_are_the_hashed_ones():
    """The evaluator hashes a sampled protocol's masks once per split and keeps them packed: the same masks as
    negative_mask for any rows (a catalog not a multiple of 8 items), on the first call and after."""
    from scalerec.config import TrainConfig
    from scalerec.data.split import Split
    from scalerec.train.evaluate import Evaluator

    rng = np.random.default_rng(1)
    n_items, n_users = 61, 37
    split = Split(
        np.arange(n_items),
        [rng.integers(1, n_items + 1, size=5) for _ in range(n_users)],
        valid=rng.integers(1, n_items + 1, n_users),
        test=rng.integers(1, n_items + 1, n_users),
        dropped_users=0,
    )
    evaluator = Evaluator(
        split, max_len=5, train=TrainConfig(eval_protocol="sampled-20", eval_seed=3, eval_slices=False), batch_size=8
    )
    for which, rows in (("valid", np.array([5, 0, 36, 12])), ("valid", np.arange(n_users)), ("test", np.arange(9))):
        expected = negative_mask(rows, evaluator.targets[which][rows], n_items, 20, seed=3)
        assert (evaluator.candidates("sampled-20", which, rows) == expected).all()


def test_evaluation_cut_to_each_batch_longest_history_ranks_as_the_full_width():
    """Users are evaluated in order of history length, each batch cut to its longest history: the metrics and the
    loss are those of ranking every user from the full max_len-wide padded input in one batch."""
    import torch

    from scalerec.config import ModelConfig, TrainConfig
    from scalerec.data.split import Split
    from scalerec.model.recommender import build_recommender
    from scalerec.train.evaluate import Evaluator

    rng = np.random.default_rng(0)
    n_items, max_len = 40, 8
    train = [rng.integers(1, n_items + 1, size=rng.integers(1, 14)) for _ in range(23)]  # some beyond max_len
    split = Split(
        np.arange(n_items),
        train,
        valid=rng.integers(1, n_items + 1, 23),
        test=rng.integers(1, n_items + 1, 23),
        dropped_users=0,
    )
    config = TrainConfig(eval_protocol="full", extra_eval_protocols=("full-masked",), eval_ks=(1, 5), eval_slices=False)
    torch.manual_seed(0)
    model = build_recommender(
        ModelConfig(item_encoder="id", n_layers=2, n_heads=2, hidden=16, max_len=max_len, dropout=0.0), n_items, None
    ).eval()
    evaluator = Evaluator(split, max_len=max_len, train=config, batch_size=5)
    assert len({int(w) for w in (evaluator.inputs["valid"][0] != 0).sum(1)}) > 3  # batches of different widths
    metrics = evaluator.evaluate(model, "valid", torch.device("cpu"))

    with torch.no_grad():  # the reference: every user at full width, in one batch, in user order
        states = model.last_states(torch.from_numpy(evaluator.inputs["valid"][0]))
        scores = states @ model.item_encoder(torch.arange(1, n_items + 1)).t()
    users = np.arange(len(train))
    pos = scores[torch.from_numpy(users), torch.from_numpy(split.valid - 1)].unsqueeze(1)
    for protocol, suffix in (("full", ""), ("full-masked", "__full_masked")):
        mask = torch.from_numpy(evaluator.candidates(protocol, "valid", users))
        ranks = ((scores >= pos) & mask).sum(1).numpy()
        found, _ = evaluator._ranks(
            model,
            model.item_encoder(torch.arange(n_items + 1)),
            "valid",
            users,
            evaluator.inputs["valid"],
            {"": protocol},
        )
        assert found[""].tolist() == ranks.tolist()  # per user, in user order (the slices index them by user)
        for name, value in ranking_metrics(ranks, (1, 5), "valid").items():
            assert metrics[name + suffix] == pytest.approx(value, abs=1e-12), name + suffix
        if not suffix:
            logits = torch.cat([pos, scores.masked_fill(~mask, float("-inf"))], 1)
            loss = float((torch.logsumexp(logits, 1) - logits[:, 0]).mean())
            assert metrics["valid_loss"] == pytest.approx(loss, rel=1e-5)
