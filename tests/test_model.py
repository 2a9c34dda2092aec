import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from scalerec.config import ModelConfig
from scalerec.model.item_encoders import TextItemEncoder
from scalerec.model.losses import binary_cross_entropy_from_logits, full_cross_entropy_loss, sampled_softmax_from_logits
from scalerec.model.recommender import build_recommender
from scalerec.shapes import non_embedding_params


def test_text_encoder_mean_pools_each_field_then_adapts():
    title = np.array([[0, 0, 0], [1, 2, 0], [3, 0, 0]])
    brand = np.array([[0, 0], [4, 0], [0, 0]])  # item 2 has no brand
    encoder = TextItemEncoder(title, brand, vocab_size=5, token_dim=3, hidden=2)
    table = encoder.tokens.weight
    out = encoder(torch.tensor([[1, 2]]))
    pooled_1 = torch.cat([(table[1] + table[2]) / 2, table[4]])
    pooled_2 = torch.cat([table[3], torch.zeros(3)])
    assert torch.allclose(out[0, 0], encoder.adapter(pooled_1), atol=1e-6)
    assert torch.allclose(out[0, 1], encoder.adapter(pooled_2), atol=1e-6)


@pytest.mark.parametrize("pooling", ["mean", "sum"])
@pytest.mark.parametrize("per_field", [False, True])
def test_whole_catalog_encoding_equals_the_embedding_bags_with_the_same_gradients(pooling, per_field):
    """catalog(): fixed sparse poolings of the tables, against forward() over every item; repeated pieces,
    padding inside a title and items without brand included."""
    rng = np.random.default_rng(0)
    title = rng.integers(0, 9, size=(30, 6))
    title[0] = 0
    title[5] = [3, 3, 3, 0, 2, 0]
    brand = rng.integers(0, 9, size=(30, 2)) * (rng.random((30, 1)) < 0.7)
    encoder = TextItemEncoder(
        title, brand, vocab_size=12, token_dim=4, hidden=5, pooling=pooling, per_field_tables=per_field
    )
    weights = torch.randn(30, 5)
    results = []
    for encode in (lambda: encoder(torch.arange(30)), encoder.catalog):
        encoder.zero_grad()
        out = encode()
        (out * weights).sum().backward()
        results.append((out.detach(), [p.grad.clone() for p in encoder.parameters()]))
    torch.testing.assert_close(results[1][0], results[0][0])
    for catalog_grad, bag_grad in zip(results[1][1], results[0][1]):
        torch.testing.assert_close(catalog_grad, bag_grad)


@pytest.mark.parametrize("encoder", ["text", "id"])
def test_last_states_from_a_table_of_every_item_equal_those_from_encoding_the_history(encoder):
    """Evaluation encodes the catalog once and looks histories up in it (row i = item i, row 0 padding)."""
    text = {
        "title_tokens": np.random.default_rng(0).integers(0, 9, size=(21, 4)),
        "brand_tokens": np.random.default_rng(1).integers(0, 9, size=(21, 2)),
        "vocab_size": 9,
    }
    model = build_recommender(
        ModelConfig(item_encoder=encoder, n_layers=2, n_heads=2, hidden=8, max_len=6), 20, text
    ).eval()
    inputs = torch.tensor([[3, 7, 1, 0, 0, 0], [20, 2, 5, 5, 9, 11], [4, 0, 0, 0, 0, 0]])
    with torch.no_grad():
        table = model.item_encoder(torch.arange(21))
        torch.testing.assert_close(model.last_states(inputs, table), model.last_states(inputs))


@pytest.mark.parametrize("encoder", ["text", "id"])
@pytest.mark.parametrize("layers, hidden, inner", [(1, 16, 0), (2, 32, 64), (3, 8, 0)])
def test_parameter_counts_match_the_formula(encoder, layers, hidden, inner):
    cfg = ModelConfig(item_encoder=encoder, n_layers=layers, n_heads=2, hidden=hidden, inner_size=inner, max_len=12)
    text = {
        "title_tokens": np.zeros((11, 4), dtype=np.int64),
        "brand_tokens": np.zeros((11, 2), dtype=np.int64),
        "vocab_size": 30,
    }
    counts = build_recommender(cfg, n_items=10, text=text).param_counts()
    assert counts["non_embedding_params"] == non_embedding_params(layers, hidden, inner or None, 12, encoder)
    tables = 2 if cfg.token_tables == "per-field" else 1  # a title and a brand table, each the whole vocabulary
    assert counts["embedding_params"] == (tables * 30 * hidden if encoder == "text" else 11 * hidden)
    assert counts["total_params"] == counts["non_embedding_params"] + counts["embedding_params"]


def test_sampled_softmax_by_hand_with_logq():
    log_q = torch.log(torch.tensor([1.0, 0.5, 0.25, 0.25]))
    # state (1, 0) · positive (2, 0) = 2; · negatives (1, 0), (0, 1) = 1, 0
    loss = sampled_softmax_from_logits(
        torch.tensor([2.0]), torch.tensor([[1.0, 0.0]]), torch.tensor([1]), torch.tensor([[2, 3]]), log_q
    )
    logits = torch.tensor([2.0 - math.log(0.5), 1.0 - math.log(0.25), 0.0 - math.log(0.25)])
    assert loss.item() == pytest.approx((torch.logsumexp(logits, 0) - logits[0]).item(), rel=1e-6)


def test_accidental_hits_are_masked():
    log_q = torch.zeros(4)
    hit = sampled_softmax_from_logits(
        torch.tensor([1.0]), torch.tensor([[1.0, 5.0]]), torch.tensor([3]), torch.tensor([[1, 3]]), log_q
    )
    # The second negative is the positive itself: only the first negative competes.
    assert hit.item() == pytest.approx(math.log(2.0), rel=1e-6)


def test_bce_by_hand_leaves_accidental_hits_out():
    # logits of the positive 2; of the negatives 1, 0 and 2 (the third is the positive itself)
    loss = binary_cross_entropy_from_logits(
        torch.tensor([2.0]), torch.tensor([[1.0, 0.0, 2.0]]), torch.tensor([3]), torch.tensor([[1, 2, 3]])
    )
    softplus = lambda x: math.log1p(math.exp(x))  # noqa: E731  -log(1 - sigmoid(x)) = softplus(x)
    assert loss.item() == pytest.approx(softplus(-2.0) + (softplus(1.0) + softplus(0.0)) / 2, rel=1e-6)


def test_full_ce_matches_torch():
    torch.manual_seed(0)
    states, catalog = torch.randn(3, 4), torch.randn(5, 4)
    ids = torch.tensor([1, 5, 2])
    loss = full_cross_entropy_loss(states, catalog, ids, 2.0)
    assert loss.item() == pytest.approx(F.cross_entropy(states @ catalog.t() / 2.0, ids - 1).item(), rel=1e-6)


def test_bce_gives_every_position_its_own_negatives_as_sasrec_does():
    from scalerec.config import TrainConfig
    from scalerec.model.recommender import TrainingStep

    torch.manual_seed(0)
    n_items, length, n = 30, 4, 2
    model = build_recommender(
        ModelConfig(item_encoder="id", n_layers=1, n_heads=1, hidden=8, max_len=length, dropout=0.0), n_items, None
    ).eval()
    step = TrainingStep(model, TrainConfig(loss="bce", n_negatives=n, targets="all"), torch.zeros(n_items + 1), n_items)
    seq = torch.tensor([[3, 7, 9, 0, 0], [5, 6, 2, 8, 4]])
    targets = seq[:, 1:]
    negatives = torch.randint(1, n_items + 1, (6, n))  # one set per target, in row-major order of the targets
    negatives[0, 0] = 7  # an accidental hit at the first target (7): left out
    loss = step(seq, targets, negatives)

    encode = model.item_encoder
    states = model.transformer(encode(seq[:, :-1]))
    softplus = torch.nn.functional.softplus
    terms, k = [], 0
    for b in range(2):
        for p in range(length):
            target = seq[b, p + 1].item()
            if target == 0:
                continue
            own = [j for j in negatives[k].tolist() if j != target]
            k += 1
            pos = softplus(-(states[b, p] @ encode(torch.tensor(target))))
            neg = torch.stack([softplus(states[b, p] @ encode(torch.tensor(j))) for j in own]).mean()
            terms.append(pos + neg)
    assert loss.item() == pytest.approx(torch.stack(terms).mean().item(), rel=1e-5)
