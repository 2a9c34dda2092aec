"""Parameter counts of a transformer shape by formula (torch-free, so the analysis can name shapes).

Tests check these against the torch model's own count.
"""

from __future__ import annotations

from pathlib import Path

from .errors import ScalerecError

# The SRT paper's grid (Table 3): (n_layers, n_heads, hidden), feed-forward inner size = hidden.
PAPER_SHAPES = ((24, 4, 256), (16, 4, 256), (8, 4, 256), (8, 4, 128), (8, 2, 128), (4, 2, 128), (2, 2, 128), (4, 2, 64))


def non_embedding_params(
    n_layers: int,
    hidden: int,
    inner: int | None = None,
    max_len: int = 50,
    item_encoder: str = "text",
    token_dim: int | None = None,
) -> int:
    """N of scalerec's model: transformer blocks, final norm, positions, and the text adapter (DESIGN §2)."""
    d, i = hidden, inner or hidden
    per_layer = (3 * d * d + 3 * d) + (d * d + d) + (d * i + i + i * d + d) + 4 * d  # qkv, out, ffn, 2 norms
    adapter = (2 * (token_dim or d) * d + d) if item_encoder == "text" else 0
    return n_layers * per_layer + 2 * d + max_len * d + adapter


def paper_catalog(item_encoder: str = "text") -> list[dict]:
    """The paper's Table 3 shapes with their non-embedding N for `item_encoder`, as predict's default catalog."""
    return [
        {
            "n_layers": layers,
            "n_heads": heads,
            "hidden": hidden,
            "n": non_embedding_params(layers, hidden, item_encoder=item_encoder),
            "source": "paper Table 3",
        }
        for layers, heads, hidden in PAPER_SHAPES
    ]


def load_shape_catalog(path: str | Path, item_encoder: str = "text") -> list[dict]:
    """Shapes a user can train, from TOML: `shapes = [[n_layers, n_heads, hidden], ...]` (or a grid spec's
    `[grid] shapes`). N is the non-embedding count of the model with `item_encoder` (DESIGN §2)."""
    from .config import load_toml

    spec = load_toml(path)
    shapes = spec.get("shapes", spec.get("grid", {}).get("shapes") if isinstance(spec.get("grid"), dict) else None)
    if not isinstance(shapes, list) or not shapes:
        raise ScalerecError(f"{path}: expected shapes = [[n_layers, n_heads, hidden], ...]")
    catalog = []
    for shape in shapes:
        if not (isinstance(shape, list) and len(shape) == 3 and all(isinstance(v, int) and v > 0 for v in shape)):
            raise ScalerecError(
                f"{path}: each shape must be [n_layers, n_heads, hidden] (positive integers), got {shape!r}"
            )
        layers, heads, hidden = shape
        if hidden % heads:
            raise ScalerecError(f"{path}: shape {shape}: hidden must be divisible by n_heads")
        catalog.append(
            {
                "n_layers": layers,
                "n_heads": heads,
                "hidden": hidden,
                "n": non_embedding_params(layers, hidden, item_encoder=item_encoder),
                "source": str(path),
            }
        )
    return catalog
