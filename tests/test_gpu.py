"""The CUDA path (one code path with the CPU): run with `pytest -m gpu` on a machine with a GPU; skipped elsewhere."""

import pytest
import torch
from conftest import tiny_config

from scalerec.store import RunStore, read_checkpoints
from scalerec.train.trainer import train_run

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine"),
]


def test_a_run_on_cuda_records_what_the_same_run_on_cpu_records(tmp_path):
    cfg = tiny_config(epochs=2)
    for device in ("cpu", "cuda"):
        assert train_run(cfg, RunStore(tmp_path / device), device=device, progress=False) == "done"
    cpu, cuda = (read_checkpoints(tmp_path / device) for device in ("cpu", "cuda"))
    for column in ("train_flops", "seen_interactions", "non_embedding_params"):  # counted, not measured: equal
        assert list(cpu[column]) == list(cuda[column])
    # the same seeds on another device give another sample of the same training: close, not equal
    assert abs(cpu.train_loss.iloc[-1] - cuda.train_loss.iloc[-1]) < 0.5
    config = RunStore(tmp_path / "cuda").read_config(cfg.run_id)
    assert config["environment"]["device"].startswith("cuda")


def test_bf16_autocast_trains_on_cuda(tmp_path):
    import dataclasses

    cfg = tiny_config(epochs=1)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, precision="bf16"))
    assert train_run(cfg, RunStore(tmp_path), device="cuda", progress=False) == "done"
    assert read_checkpoints(tmp_path).valid_ndcg_at_5.notna().all()


def test_the_whole_catalog_encoding_on_cuda_gives_the_vectors_and_gradients_of_cpu():
    """TextItemEncoder.catalog(): EmbeddingBag sums over the pooling buffers, which move to the GPU with the model."""
    import numpy as np

    from scalerec.model.item_encoders import TextItemEncoder

    rng = np.random.default_rng(0)
    encoder = TextItemEncoder(
        rng.integers(0, 50, size=(200, 8)),
        rng.integers(0, 50, size=(200, 2)),
        vocab_size=50,
        token_dim=16,
        hidden=8,
        pooling="sum",
        per_field_tables=True,
    )
    results = []
    for device in ("cpu", "cuda"):
        encoder.to(device).zero_grad()
        out = encoder.catalog()
        out.pow(2).sum().backward()
        results.append((out.detach().cpu(), [p.grad.cpu() for p in encoder.parameters()]))
    torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-4, atol=1e-5)
    for cuda_grad, cpu_grad in zip(results[1][1], results[0][1]):
        torch.testing.assert_close(cuda_grad, cpu_grad, rtol=1e-4, atol=1e-5)
