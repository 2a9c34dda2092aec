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
