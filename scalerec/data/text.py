"""Item text -> SentencePiece token ids per field (title, brand), padded into fixed-width arrays."""

from __future__ import annotations

import io
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sentencepiece as spm

# One thread: 1 and 2 threads train different models, and the model must be a function of the data.
# hard_vocab_limit=False: the vocabulary is capped by what the corpus supports (reported as the piece count).
_SPM_OPTIONS = dict(
    hard_vocab_limit=False, num_threads=1, minloglevel=2, character_coverage=0.9995, max_sentence_length=8192
)
_WORDS = re.compile(r"\w+")


@dataclass(frozen=True)
class TextOptions:
    """How item text becomes tokens (the model config's text fields)."""

    vocab_size: int = 30000
    tokenizer: str = "unigram"  # SentencePiece model type: unigram or bpe (the reference's)
    normalise: str = "lower"  # lower, or words: lowercased and reduced to \w+ words (the reference's)
    title_tokens: int = 32
    brand_tokens: int = 8
    empty_brand: str = ""  # the reference writes "unknown" for an item without brand

    def clean(self, text: str) -> str:
        text = text.lower()
        return " ".join(_WORDS.findall(text)) if self.normalise == "words" else text

    @property
    def cache_tag(self) -> str:
        """What distinguishes cached SentencePiece models trained on the same catalog."""
        tag = f"v{self.vocab_size}"
        if (self.tokenizer, self.normalise, self.empty_brand) != ("unigram", "lower", ""):
            tag += f"-{self.tokenizer}-{self.normalise}-{self.empty_brand or 'none'}"
        return tag


def cache_dir() -> Path:
    """Where derived artefacts (SentencePiece models) are cached: $SCALEREC_CACHE or ~/.cache/scalerec."""
    return Path(os.environ.get("SCALEREC_CACHE", Path.home() / ".cache" / "scalerec"))


def train_sentencepiece(texts: list[str], options: TextOptions, cache_key: str) -> spm.SentencePieceProcessor:
    """Train (or load from the cache) a SentencePiece model on `texts` (already cleaned); cached under `cache_key`."""
    path = cache_dir() / "spm" / f"{cache_key}-{options.cache_tag}.model"
    if path.exists():
        return spm.SentencePieceProcessor(model_file=str(path))
    corpus = [t for t in texts if t.strip()] or ["empty"]
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus),
        model_writer=buffer,
        vocab_size=options.vocab_size,
        model_type=options.tokenizer,
        **_SPM_OPTIONS,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as tmp:  # atomic: a torn model is never read
        tmp.write(buffer.getvalue())
    os.replace(tmp.name, path)
    return spm.SentencePieceProcessor(model_proto=buffer.getvalue())


def encode_field(processor: spm.SentencePieceProcessor, texts: list[str], width: int) -> np.ndarray:
    """Token ids (of cleaned texts) shifted by one so 0 is padding; truncated to `width`; an empty text is all
    padding."""
    out = np.zeros((len(texts), width), dtype=np.int64)
    for row, ids in enumerate(processor.encode(texts)):
        ids = ids[:width]
        out[row, : len(ids)] = np.asarray(ids, dtype=np.int64) + 1
    return out


def item_token_arrays(
    titles: list[str], brands: list[str], options: TextOptions, cache_key: str, tokenizer: bytes | None = None
) -> tuple[np.ndarray, np.ndarray, int, bytes]:
    """(title tokens, brand tokens, vocabulary size incl. padding, the SentencePiece model); row 0 is padding.

    `tokenizer` (a serialized SentencePiece model, e.g. a pre-trained run's) is used instead of training one:
    that is how a fine-tuned model reads a new catalog with the token ids it learned.
    """
    titles = [options.clean(t) for t in titles]
    brands = [options.clean(b) or options.clean(options.empty_brand) for b in brands]
    if tokenizer is None:
        processor = train_sentencepiece(titles + brands, options, cache_key)
    else:
        processor = spm.SentencePieceProcessor(model_proto=tokenizer)
    title = encode_field(processor, [""] + titles, options.title_tokens)
    brand = encode_field(processor, [""] + brands, options.brand_tokens)
    return title, brand, processor.get_piece_size() + 1, processor.serialized_model_proto()
