"""Parameter counts of a transformer shape by formula (torch-free, so the analysis can name shapes).

Tests check these against the torch model's own count.
"""

from __future__ import annotations

# The SRT paper's grid (Table 3): (n_layers, n_heads, hidden), feed-forward inner size = hidden.
PAPER_SHAPES = ((24, 4, 256), (16, 4, 256), (8, 4, 256), (8, 4, 128), (8, 2, 128), (4, 2, 128), (2, 2, 128),
                (4, 2, 64))


def non_embedding_params(n_layers: int, hidden: int, inner: int | None = None, max_len: int = 50,
                         item_encoder: str = "text", token_dim: int | None = None) -> int:
    """N of scalerec's model: transformer blocks, final norm, positions, and the text adapter (DESIGN §2)."""
    d, i = hidden, inner or hidden
    per_layer = (3 * d * d + 3 * d) + (d * d + d) + (d * i + i + i * d + d) + 4 * d  # qkv, out, ffn, 2 norms
    adapter = (2 * (token_dim or d) * d + d) if item_encoder == "text" else 0
    return n_layers * per_layer + 2 * d + max_len * d + adapter
