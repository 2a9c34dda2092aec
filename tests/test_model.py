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


@pytest.mark.parametrize("block", ["sasrec", "hstu"])
@pytest.mark.parametrize("encoder", ["text", "id"])
def test_last_states_from_a_table_of_every_item_equal_those_from_encoding_the_history(encoder, block):
    """Evaluation encodes the catalog once and looks histories up in it (row i = item i, row 0 padding)."""
    text = {
        "title_tokens": np.random.default_rng(0).integers(0, 9, size=(21, 4)),
        "brand_tokens": np.random.default_rng(1).integers(0, 9, size=(21, 2)),
        "vocab_size": 9,
    }
    model = build_recommender(
        ModelConfig(item_encoder=encoder, block=block, n_layers=2, n_heads=2, hidden=8, max_len=6), 20, text
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


def _hstu_by_hand(block, x, pair_bias=None):
    """HSTU's equations one number at a time (numpy, loops): the reference the block is checked against.
    `pair_bias(b, i, j)`: a further term added to the score of query i and key j (the time bias)."""
    w_uvqk = block.uvqk.weight.detach().numpy().T  # (d, h (2 dv + 2 dqk))
    w_o, b_o = block.out.weight.detach().numpy().T, block.out.bias.detach().numpy()
    bias, n, h = block.position_bias.detach().numpy(), block.max_len, block.n_heads
    dqk, dv = block.attention_dim, block.linear_dim

    def norm(row):
        return (row - row.mean()) / np.sqrt(row.var() + 1e-6)

    def silu(z):
        return z / (1 + np.exp(-z))

    out = np.zeros_like(x)
    for b in range(x.shape[0]):
        length = x.shape[1]
        proj = np.stack([silu(norm(x[b, i]) @ w_uvqk) for i in range(length)])
        u, v = proj[:, : h * dv], proj[:, h * dv : 2 * h * dv]
        q, k = proj[:, 2 * h * dv : 2 * h * dv + h * dqk], proj[:, 2 * h * dv + h * dqk :]
        for i in range(length):
            heads = []
            for head in range(h):
                qi = q[i, head * dqk : (head + 1) * dqk]
                acc = np.zeros(dv)
                for j in range(i + 1):  # causal: j <= i
                    kj = k[j, head * dqk : (head + 1) * dqk]
                    extra = pair_bias(b, i, j) if pair_bias else 0.0
                    a = silu(qi @ kj + bias[j - i + n - 1] + extra) / n
                    acc += a * v[j, head * dv : (head + 1) * dv]
                heads.append(acc)
            gated = u[i] * norm(np.concatenate(heads))
            out[b, i] = x[b, i] + gated @ w_o + b_o
    return out


def test_an_hstu_layer_computes_its_equations():
    from scalerec.model.transformer import HstuBlock

    torch.manual_seed(0)
    block = HstuBlock(hidden=6, n_heads=2, attention_dim=2, linear_dim=3, max_len=5, dropout=0.0).eval()
    with torch.no_grad():  # a bias large enough to matter, different at every distance
        block.position_bias.copy_(torch.linspace(-1, 1, 9))
    x = torch.randn(2, 4, 6, dtype=torch.float64)
    block = block.double()
    with torch.no_grad():
        np.testing.assert_allclose(block(x).numpy(), _hstu_by_hand(block, x.numpy()), rtol=1e-10, atol=1e-12)
    assert block.relative_bias(3)[0, 2] == block.position_bias[2 - 0 + 5 - 1]  # rab[i, j] = w[j - i + n - 1]


def test_hstu_is_causal_and_blind_to_padding_and_trimming():
    from scalerec.model.transformer import CausalTransformer

    torch.manual_seed(0)
    model = CausalTransformer(2, 2, 8, 0, 10, 0.0, block="hstu", attention_dim=4, linear_dim=4).eval()
    x = torch.randn(3, 10, 8)
    with torch.no_grad():
        full = model(x)
        changed = x.clone()
        changed[:, 6:] = torch.randn(3, 4, 8)  # later items, or padding, change nothing before them
        torch.testing.assert_close(model(changed)[:, :6], full[:, :6])
        torch.testing.assert_close(model(x[:, :6]), full[:, :6])  # a trimmed window: the same states


def test_hstu_parameter_count_follows_its_shape():
    cfg = ModelConfig(
        item_encoder="id",
        block="hstu",
        n_layers=3,
        n_heads=2,
        hidden=16,
        max_len=12,
        hstu_attention_dim=4,
        hstu_linear_dim=6,
    )
    counts = build_recommender(cfg, n_items=10, text=None).param_counts()
    d, h, dqk, dv, n = 16, 2, 4, 6, 12
    per_layer = d * h * (2 * dv + 2 * dqk) + (h * dv * d + d) + (2 * n - 1)  # W_uvqk, W_o and its bias, rab
    assert counts["non_embedding_params"] == 3 * per_layer + n * d + 2 * d  # + positions and the final LayerNorm


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"block": "mamba"}, "model.block must be one of"),
        ({"hstu_attention_dim": 8}, "are for block = 'hstu'"),
        ({"block": "hstu", "hstu_linear_dim": -1}, "must be >= 0"),
        ({"block": "hstu", "hidden": 10, "n_heads": 3}, "must be divisible by model.n_heads"),
    ],
)
def test_bad_block_settings_are_one_line_errors(fields, message):
    from scalerec.errors import ScalerecError

    with pytest.raises(ScalerecError, match=message):
        ModelConfig(**fields)
