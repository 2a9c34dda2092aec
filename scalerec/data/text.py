"""Item text -> SentencePiece token ids per field (title, brand), padded into fixed-width arrays."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np
import sentencepiece as spm

# One thread: 1 and 2 threads train different models, and the model must be a function of the data.
_SPM_OPTIONS = dict(model_type="unigram", hard_vocab_limit=False, num_threads=1, minloglevel=2,
                    character_coverage=0.9995, max_sentence_length=8192)
TITLE_TOKENS, BRAND_TOKENS = 32, 8


def cache_dir() -> Path:
    """Where derived artefacts (SentencePiece models) are cached: $SCALEREC_CACHE or ~/.cache/scalerec."""
    return Path(os.environ.get("SCALEREC_CACHE", Path.home() / ".cache" / "scalerec"))


def train_sentencepiece(texts: list[str], vocab_size: int, cache_key: str) -> spm.SentencePieceProcessor:
    """Train (or load from the cache) a SentencePiece model on `texts`; cached under `cache_key`."""
    path = cache_dir() / "spm" / f"{cache_key}-v{vocab_size}.model"
    if path.exists():
        return spm.SentencePieceProcessor(model_file=str(path))
    corpus = [t for t in texts if t.strip()] or ["empty"]
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(corpus), model_writer=buffer, vocab_size=vocab_size,
                                   **_SPM_OPTIONS)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as tmp:  # atomic: a torn model is never read
        tmp.write(buffer.getvalue())
    os.replace(tmp.name, path)
    return spm.SentencePieceProcessor(model_proto=buffer.getvalue())


def encode_field(processor: spm.SentencePieceProcessor, texts: list[str], width: int) -> np.ndarray:
    """Token ids shifted by one so 0 is padding; truncated to `width`; an empty text is all padding."""
    out = np.zeros((len(texts), width), dtype=np.int64)
    for row, ids in enumerate(processor.encode([t.lower() for t in texts])):
        ids = ids[:width]
        out[row, :len(ids)] = np.asarray(ids, dtype=np.int64) + 1
    return out


def item_token_arrays(titles: list[str], brands: list[str], vocab_size: int, cache_key: str,
                      tokenizer: bytes | None = None) -> tuple[np.ndarray, np.ndarray, int, bytes]:
    """(title tokens, brand tokens, vocabulary size incl. padding, the SentencePiece model); row 0 is padding.

    `tokenizer` (a serialized SentencePiece model, e.g. a pre-trained run's) is used instead of training one:
    that is how a fine-tuned model reads a new catalog with the token ids it learned.
    """
    if tokenizer is None:
        processor = train_sentencepiece([t.lower() for t in titles + brands], vocab_size, cache_key)
    else:
        processor = spm.SentencePieceProcessor(model_proto=tokenizer)
    title = encode_field(processor, [""] + titles, TITLE_TOKENS)
    brand = encode_field(processor, [""] + brands, BRAND_TOKENS)
    return title, brand, processor.get_piece_size() + 1, processor.serialized_model_proto()
