"""Typed, frozen run configuration; TOML in, canonical JSON out; the run id is a hash of that JSON."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import sys
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import ScalerecError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass(frozen=True)
class DataConfig:
    """Which dataset a run trains on.

    name = "synthetic": the built-in generator (scalerec.data.synthetic), sized by n_users / n_items.
    name = "prepared":  a directory written by `scalerec data prepare` or `data subsample`, given as `path`; its
                        fingerprint is filled in from the directory (and checked, when given) so that the run id
                        changes whenever the data does.
    """

    name: str = "synthetic"
    n_users: int = 2000  # synthetic: users generated; user u depends only on (seed, u), so sizes nest
    n_items: int = 2000  # synthetic: catalog size
    seed: int = 0  # synthetic: catalog and sequences
    mean_length: float = 20.0  # synthetic: mean interactions per user
    transitions_seed: int = -1  # synthetic: seed of the category transitions (-1: = seed); a catalog with another
    # seed but the same transitions is a new, related domain (for transfer)
    path: str = ""  # prepared: the dataset directory
    fingerprint: str = ""  # prepared: hash of its tables (filled in by resolve_data)

    def __post_init__(self) -> None:
        _check_finite(self)
        if self.name not in ("synthetic", "prepared"):
            raise ScalerecError(f"data.name: unknown dataset {self.name!r} (known: synthetic, prepared)")
        if self.name == "prepared" and not self.path:
            raise ScalerecError("data.path: a prepared dataset needs the directory `scalerec data prepare` wrote")
        if self.name != "synthetic" and self.transitions_seed != -1:
            raise ScalerecError("data.transitions_seed is for the synthetic dataset")
        if self.name == "synthetic" and (self.path or self.fingerprint):
            raise ScalerecError("data.path and data.fingerprint are for name = 'prepared' datasets")
        _check_min(self, "n_users", 10)
        _check_min(self, "n_items", 20)
        if self.mean_length < 5:
            raise ScalerecError("data.mean_length must be at least 5")


def data_config_from_dict(mapping: dict[str, Any], where: str = "[data]") -> DataConfig:
    """A [data] table alone (fine-tuning names only the new domain's data)."""
    return _build(DataConfig, mapping, where)


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the SASRec-style transformer and its item encoder."""

    item_encoder: str = "text"  # "text" (SRT: SentencePiece title+brand) or "id" (classic SASRec)
    block: str = "sasrec"  # "sasrec": softmax attention + feed-forward; "hstu": HSTU's gated pointwise attention
    hstu_attention_dim: int = 0  # hstu: query/key width per head; 0 means = hidden / n_heads
    hstu_linear_dim: int = 0  # hstu: value (and gate) width per head; 0 means = hidden / n_heads
    hstu_time_bias: bool = False  # hstu: the reference's bucketed time bias (needs data with real timestamps)
    n_layers: int = 2
    n_heads: int = 2
    hidden: int = 64
    inner_size: int = 0  # feed-forward width; 0 means = hidden (the paper's Table 3)
    max_len: int = 50
    dropout: float = 0.5  # hidden and attention dropout (the paper's 0.5)
    layer_dropout: tuple[float, ...] = ()  # LSRM: a rate per transformer layer, bottom first (empty: `dropout`)
    token_dim: int = 0  # text token embedding width; 0 means = hidden
    vocab_size: int = 30000  # SentencePiece vocabulary, capped by what the item text supports
    # The SRT reference code's details (recipe "scalerec-0.1" holds 0.1's values):
    block_norm: str = "post"  # "post": LN(x + f(x)), an input LN, no final LN; "pre": x + f(LN(x)) and a final LN
    layer_norm_eps: float = 1e-12
    init: str = "normal"  # "normal": every Linear and Embedding N(0, 0.02), biases 0; "default": PyTorch's
    pooling: str = "sum"  # text fields' token pooling: "sum" or "mean" (masked; padding left out)
    token_tables: str = "per-field"  # "per-field": one token table each for title and brand; "shared": one
    tokenizer: str = "bpe"  # SentencePiece model type: "bpe" or "unigram"
    text_normalise: str = "words"  # "words": lowercased, reduced to \w+ words; "lower": lowercased text
    title_tokens: int = 40  # pieces kept per title
    brand_tokens: int = 8  # pieces kept per brand
    empty_brand: str = "unknown"  # the text of an item without brand

    def __post_init__(self) -> None:
        _check_finite(self)
        if self.item_encoder not in ("text", "id"):
            raise ScalerecError(f"model.item_encoder must be 'text' or 'id', not {self.item_encoder!r}")
        _check_choice(self, "block", ("sasrec", "hstu"))
        if self.hstu_attention_dim < 0 or self.hstu_linear_dim < 0:
            raise ScalerecError(
                "model.hstu_attention_dim and model.hstu_linear_dim must be >= 0 (0 means = hidden / n_heads)"
            )
        if self.block != "hstu" and (self.hstu_attention_dim or self.hstu_linear_dim or self.hstu_time_bias):
            raise ScalerecError(
                "model.hstu_attention_dim, model.hstu_linear_dim and model.hstu_time_bias are for block = 'hstu'"
            )
        for name in ("n_layers", "n_heads", "hidden", "max_len"):
            _check_min(self, name, 1)
        if self.hidden % self.n_heads:
            raise ScalerecError(f"model.hidden ({self.hidden}) must be divisible by model.n_heads ({self.n_heads})")
        if not 0 <= self.dropout < 1 or not all(0 <= r < 1 for r in self.layer_dropout):
            raise ScalerecError("model.dropout and model.layer_dropout rates must be in [0, 1)")
        if self.layer_dropout and len(self.layer_dropout) != self.n_layers:
            raise ScalerecError(
                f"model.layer_dropout needs one rate per layer ({self.n_layers}), got {len(self.layer_dropout)}"
            )
        if self.inner_size < 0 or self.token_dim < 0:
            raise ScalerecError("model.inner_size and model.token_dim must be >= 0 (0 means = hidden)")
        _check_min(self, "vocab_size", 8)
        _check_choice(self, "block_norm", ("pre", "post"))
        _check_choice(self, "init", ("default", "normal"))
        _check_choice(self, "pooling", ("mean", "sum"))
        _check_choice(self, "token_tables", ("shared", "per-field"))
        _check_choice(self, "tokenizer", ("unigram", "bpe"))
        _check_choice(self, "text_normalise", ("lower", "words"))
        _check_min(self, "title_tokens", 1)
        _check_min(self, "brand_tokens", 1)
        if not 0 < self.layer_norm_eps < 1:
            raise ScalerecError("model.layer_norm_eps must be in (0, 1)")

    @property
    def attention_dim(self) -> int:
        """HSTU's query/key width per head (SASRec's head width)."""
        return self.hstu_attention_dim or self.hidden // self.n_heads

    @property
    def linear_dim(self) -> int:
        """HSTU's value width per head (SASRec's head width)."""
        return self.hstu_linear_dim or self.hidden // self.n_heads

    @property
    def ffn_size(self) -> int:
        return self.inner_size or self.hidden

    @property
    def token_width(self) -> int:
        return self.token_dim or self.hidden


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, loss and evaluation. Defaults are the SRT paper's (REFERENCE.md)."""

    epochs: int = 50
    batch_size: int = 128
    lr: float = 1e-4
    weight_decay: float = 1e-5
    weight_decay_on: str = "all"  # "all": every parameter (Adam's L2, the reference); "matrices": >= 2-D only
    clip_norm: float = 0.0  # gradient norm clipping; 0: none (the reference)
    warmup_fraction: float = 0.3
    schedule: str = "torch-one-cycle"  # PyTorch's OneCycleLR (pct_start = warmup_fraction, div 25, final_div 0.1,
    # Adam beta1 cycled 0.95 -> 0.85 -> 0.95), as the reference; "one-cycle":
    # linear warm-up, cosine to 0; "constant": the learning rate throughout (plain Adam);
    # "wsd": warm-up, stable, then decay over the last cooldown_share of the steps
    decay_shape: str = "1-sqrt"  # wsd's decay: "1-sqrt" (1 - sqrt(k), Hägele et al. 2024) or "linear" (1 - k), to 0
    cooldown_share: float = 0.2  # wsd: the share of a run's (and each branch's) steps spent decaying
    cooldowns: tuple[float, ...] = ()  # wsd: annealed branches ending at these fractions of the planned steps; each
    # leaves the stable phase, decays, is recorded, and the run goes on from where it left
    popularity_smoothing: float = 1.0  # negatives drawn from training count + this
    negatives_per: str = "sequence"  # sampled softmax: one set per "sequence" (a window of `all` targets; a prefix
    # sample, with `last`), per "target", or per "window" (one-pass prefix samples:
    # a sequence's prefixes in one window share one set)
    prefix_batches: str = "one-pass"  # targets = "last": "one-pass" (all prefixes of a sequence in one causal
    # pass, batches of batch_size targets) or "padded" (each prefix its own window:
    # the same samples, the reference's batches, about 3x slower)
    length_pool: int = 0  # > 0: windows sorted by length within pools of this many batches (bucketing)
    early_stop_patience: int = 0  # > 0: stop after this many checkpoints without a better validation metric
    eval_protocol: str = ""  # "full", "full-masked" or "sampled-K"; "" = sampled-{eval_negatives} (or
    # full when eval_full_catalog), the 0.1 fields
    extra_eval_protocols: tuple[str, ...] = ()  # also recorded, as columns <metric>__<protocol>
    loss: str = "sampled_softmax"  # or "full_ce" (SASRec-CE), or "bce" (classic SASRec, uniform negatives)
    n_negatives: int = 1000  # sampled_softmax: per sequence, by popularity; bce: per target, uniform
    temperature: float = 1.0
    targets: str = "last"  # "last": every prefix predicts its last item; "all": every position
    eval_every: int = 1  # epochs between checkpoints (the last epoch is always one)
    eval_growth: float = 0.0  # > 0: the gap between checkpoints grows by 1 + this each time (at least eval_every):
    # often early, rarely late, about evenly spaced in log compute; early stopping's patience counts checkpoints
    eval_negatives: int = 10000  # uniformly sampled negatives per ranked positive, capped by the catalog
    eval_full_catalog: bool = False  # rank against every item instead
    eval_ks: tuple[int, ...] = (5, 10)
    eval_seed: int = 0  # seeds the evaluation candidates: keep it equal across a grid
    test_every_checkpoint: bool = False
    test_when_best: bool = False  # with test_every_checkpoint: rank the test set only at the checkpoints that improve
    # the validation metric (those best-on-validation can select) and the last; the same selected test numbers
    slice_passes: str = "every"  # the slices that need their own forward pass (noise_*, ahead_*): at "every"
    # checkpoint, or at the "final" one and each cooldown branch's (the points laws are fitted on)
    eval_slices: bool = True  # also rank the hard slices (data/slices.py): columns <metric>__<slice>
    precision: str = "fp32"  # or "bf16": autocast on CUDA (this CPU has no bf16 instructions)
    sgd_switch: bool = False  # LSRM: switch Adam -> SGD at the first checkpoint whose valid_loss does not improve
    sgd_lr: float = 0.01  # SGD's base learning rate after the switch (the one-cycle multiplier continues)
    sgd_momentum: float = 0.9

    def __post_init__(self) -> None:
        _check_finite(self)
        for name in ("epochs", "batch_size", "eval_every"):
            _check_min(self, name, 1)
        if self.loss not in ("sampled_softmax", "full_ce", "bce"):
            raise ScalerecError(f"train.loss must be 'sampled_softmax', 'full_ce' or 'bce', not {self.loss!r}")
        if self.loss != "full_ce":
            _check_min(self, "n_negatives", 1)
        if self.targets not in ("last", "all"):
            raise ScalerecError(f"train.targets must be 'last' or 'all', not {self.targets!r}")
        if self.lr <= 0 or self.temperature <= 0 or self.clip_norm < 0 or self.weight_decay < 0:
            raise ScalerecError("train.lr and temperature must be > 0, clip_norm and weight_decay >= 0")
        _check_choice(self, "weight_decay_on", ("matrices", "all"))
        _check_choice(self, "schedule", ("one-cycle", "torch-one-cycle", "constant", "wsd"))
        self._check_wsd()
        _check_choice(self, "negatives_per", ("sequence", "target", "window"))
        _check_choice(self, "prefix_batches", ("padded", "one-pass"))
        _check_choice(self, "slice_passes", ("every", "final"))
        if self.test_when_best and not self.test_every_checkpoint:
            raise ScalerecError("train.test_when_best narrows train.test_every_checkpoint: set that too")
        if self.targets == "all":  # prefix batches mean nothing there: one value, so one computation has one run id
            object.__setattr__(self, "prefix_batches", "padded")
        # "window" shares only one-pass prefix samples' sets: a window of `all` targets is the sequence's, a padded
        # prefix window holds one target, bce draws per target and full_ce draws none; one computation, one run id
        if self.negatives_per == "window" and (not self.batch_targets or self.loss != "sampled_softmax"):
            object.__setattr__(self, "negatives_per", "sequence")
        if min(self.popularity_smoothing, self.length_pool, self.early_stop_patience, self.eval_growth) < 0:
            raise ScalerecError(
                "train.popularity_smoothing, length_pool, early_stop_patience and eval_growth must be >= 0"
            )
        for protocol in (self.protocol, *self.extra_eval_protocols):
            parse_protocol(protocol)
        if self.sgd_switch and self.schedule != "one-cycle":
            raise ScalerecError(
                "train.sgd_switch continues the 'one-cycle' schedule; it does not combine with "
                f"schedule = {self.schedule!r}"
            )
        if not 0 <= self.warmup_fraction < 1:
            raise ScalerecError("train.warmup_fraction must be in [0, 1)")
        if not self.eval_ks or min(self.eval_ks) < 1:
            raise ScalerecError("train.eval_ks must be a non-empty list of positive integers")
        _check_min(self, "eval_negatives", 1)
        if self.precision not in ("fp32", "bf16"):
            raise ScalerecError(f"train.precision must be 'fp32' or 'bf16', not {self.precision!r}")
        if self.sgd_lr <= 0 or not 0 <= self.sgd_momentum < 1:
            raise ScalerecError("train.sgd_lr must be > 0 and train.sgd_momentum in [0, 1)")

    def _check_wsd(self) -> None:
        _check_choice(self, "decay_shape", ("1-sqrt", "linear"))
        if self.schedule != "wsd":
            wsd_fields = ("cooldowns", "decay_shape", "cooldown_share")
            if any(getattr(self, n) != type(self).__dataclass_fields__[n].default for n in wsd_fields):
                raise ScalerecError(
                    "train.cooldowns, decay_shape and cooldown_share belong to the warmup-stable-decay schedule: "
                    f"set train.schedule = 'wsd' (it is {self.schedule!r})"
                )
            return
        if not 0 < self.cooldown_share < 1:
            raise ScalerecError(f"train.cooldown_share must be in (0, 1), not {self.cooldown_share}")
        if any(not 0 < f <= 1 for f in self.cooldowns):
            raise ScalerecError(f"train.cooldowns must be fractions in (0, 1], not {list(self.cooldowns)}")
        if list(self.cooldowns) != sorted(set(self.cooldowns)):
            raise ScalerecError(f"train.cooldowns must be increasing without repeats, not {list(self.cooldowns)}")
        stable_from = self.warmup_fraction
        for end in (*self.cooldowns, 1.0):
            if end * (1 - self.cooldown_share) < stable_from:
                raise ScalerecError(
                    f"train.cooldowns: the cooldown ending at {end:g} of the run would begin at "
                    f"{end * (1 - self.cooldown_share):.3g}, before the warm-up ends ({stable_from:g}); "
                    "drop it, or lower train.warmup_fraction or cooldown_share"
                )

    @property
    def checkpoint_epochs(self) -> tuple[int, ...]:
        """The epochs that end with a checkpoint: every eval_every, or gaps growing by 1 + eval_growth; the last."""
        epochs, gap, epoch = [], float(self.eval_every), self.eval_every
        while epoch < self.epochs:
            epochs.append(epoch)
            gap = gap * (1 + self.eval_growth) if self.eval_growth else gap
            epoch = max(epoch + self.eval_every, round(epoch + gap))
        return (*epochs, self.epochs)

    @property
    def branches(self) -> tuple[float, ...]:
        """The cooldown fractions that branch off the run (a cooldown at 1 is the run's own end)."""
        return tuple(f for f in self.cooldowns if f < 1)

    @property
    def trained_epochs(self) -> float:
        """Passes over the data the run's optimizer takes, its cooldown branches' decays included (what it costs)."""
        return self.epochs * (1 + self.cooldown_share * sum(self.branches))

    @property
    def negatives(self) -> int:
        """Sampled negatives per target: 0 for full_ce, which scores the whole catalog."""
        return 0 if self.loss == "full_ce" else self.n_negatives

    @property
    def negatives_per_target(self) -> bool:
        """Every target draws its own negatives, or (False) a window's targets share one set: shared for sampled
        softmax over `all` targets (negatives_per 'sequence') and over one-pass prefix samples with negatives_per
        'window'; per target for any other `last` targets (a prefix sample is one target) and for bce (SASRec)."""
        if self.loss == "bce" or self.negatives_per == "target":
            return True
        return self.targets == "last" and self.negatives_per != "window"

    @property
    def protocol(self) -> str:
        """The evaluation protocol of the valid_*/test_* columns (and of model selection)."""
        return self.eval_protocol or ("full" if self.eval_full_catalog else f"sampled-{self.eval_negatives}")

    @property
    def batch_targets(self) -> bool:
        """Batches hold batch_size targets (one-pass prefix samples) rather than batch_size windows."""
        return self.prefix_batches == "one-pass"


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run's result; its hash is the run id."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.data.name == "synthetic" and self.train.negatives >= self.data.n_items:
            raise ScalerecError(
                f"train.n_negatives ({self.train.n_negatives}) must be smaller than the catalog "
                f"({self.data.n_items} items)"
            )

    @property
    def run_id(self) -> str:
        identity = self.to_dict()
        for (section, name), default in ADDED_FIELDS.items():  # stores made before a field existed keep their ids
            if identity[section].get(name) == default:
                del identity[section][name]
        return hashlib.sha256(canonical_json(identity).encode()).hexdigest()[:12]

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, mapping: dict[str, Any], where: str = "config") -> RunConfig:
        """From a mapping of [data], [model], [train], `seed` and an optional `recipe` (a name from
        recipe_names(), whose settings the mapping's own override)."""
        return _build(cls, with_recipe(mapping, where), where)

    @classmethod
    def from_stored(cls, mapping: dict[str, Any], where: str = "config") -> RunConfig:
        """A run's config as its store recorded it. A field the run predates takes the value it had then
        (ADDED_FIELDS), not today's default: a 0.1 run is rebuilt pre-LN even though the default is now post-LN."""
        filled = {section: dict(values) if isinstance(values, dict) else values for section, values in mapping.items()}
        for (section, name), then in ADDED_FIELDS.items():
            if isinstance(filled.get(section), dict):
                filled[section].setdefault(name, then)
        return cls.from_dict(filled, where)


def recipe_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("scalerec.recipes").iterdir() if p.name.endswith(".toml"))


def with_recipe(mapping: Any, where: str) -> Any:
    """The mapping with its `recipe` expanded: the recipe's sections first, the mapping's own values on top."""
    if not isinstance(mapping, dict) or "recipe" not in mapping:
        return mapping
    mapping = dict(mapping)
    name = mapping.pop("recipe")
    if name not in recipe_names():
        raise ScalerecError(f"{where}: unknown recipe {name!r} (known: {', '.join(recipe_names())})")
    with resources.as_file(resources.files("scalerec.recipes") / f"{name}.toml") as file:
        merged = load_toml(file)
    for section, values in mapping.items():
        if isinstance(values, dict) and isinstance(merged.get(section), dict):
            merged[section] = {**merged[section], **values}
        else:
            merged[section] = values
    return merged


# Fields added after the first release. Each enters the run id only when set to something other than the value it
# had before it existed (so adding a field never renames an existing store's runs), and a stored config without it
# is rebuilt with that value. The value is the one source of 0.1's behaviour, recipe "scalerec-0.1", where it sets
# the field, else the field's default.
_ADDED_AFTER_0_1: tuple[tuple[str, str], ...] = (
    ("train", "precision"),
    ("data", "transitions_seed"),
    ("model", "layer_dropout"),
    ("train", "sgd_switch"),
    ("train", "sgd_lr"),
    ("train", "sgd_momentum"),
    # 0.2: the reference recipe's details and the evaluation protocols
    *(("model", name) for name in ("block_norm", "layer_norm_eps", "init", "pooling", "token_tables", "tokenizer")),
    *(("model", name) for name in ("text_normalise", "title_tokens", "brand_tokens", "empty_brand")),
    *(("train", name) for name in ("weight_decay_on", "schedule", "popularity_smoothing", "negatives_per")),
    *(("train", name) for name in ("prefix_batches", "length_pool", "early_stop_patience", "eval_protocol")),
    ("train", "extra_eval_protocols"),
    ("train", "eval_slices"),  # evaluation only: slices add columns and change no other number of a run
    *(("model", name) for name in ("block", "hstu_attention_dim", "hstu_linear_dim")),
    *(("train", name) for name in ("decay_shape", "cooldown_share", "cooldowns", "test_when_best", "slice_passes")),
    ("train", "eval_growth"),
    ("model", "hstu_time_bias"),
)


def _value_before(section: str, name: str, legacy: dict[str, Any]) -> Any:
    if name in legacy.get(section, {}):
        return legacy[section][name]
    cls = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}[section]
    return json.loads(json.dumps(cls.__dataclass_fields__[name].default))  # the JSON form: () -> []


def _added_fields() -> dict[tuple[str, str], Any]:
    with resources.as_file(resources.files("scalerec.recipes") / "scalerec-0.1.toml") as file:
        legacy = load_toml(file)
    return {(section, name): _value_before(section, name, legacy) for section, name in _ADDED_AFTER_0_1}


def parse_protocol(name: str) -> tuple[str, int]:
    """'full' -> ('full', 0); 'full-masked' -> ('full-masked', 0); 'sampled-K' -> ('sampled', K)."""
    if name in ("full", "full-masked"):
        return name, 0
    kind, _, k = name.partition("-")
    if kind == "sampled" and k.isdigit() and int(k) >= 1:
        return "sampled", int(k)
    raise ScalerecError(f"unknown evaluation protocol {name!r} (known: full, full-masked, sampled-K with K >= 1)")


def protocol_suffix(name: str) -> str:
    """The column suffix of a protocol's metrics: valid_ndcg_at_5__full, test_hit_at_5__sampled_10000."""
    return "__" + name.replace("-", "_")


def canonical_json(obj: Any) -> str:
    """Sorted keys, no whitespace: the form the run id hashes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file, turning every failure into a one-line ScalerecError."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ScalerecError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ScalerecError(f"{path}: is a directory, expected a TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScalerecError(f"{path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ScalerecError(f"{path}: not a UTF-8 text file") from None


def load_run_config(path: str | Path) -> RunConfig:
    """A run config TOML: sections [data], [model], [train] and an optional top-level `seed`."""
    return RunConfig.from_dict(load_toml(path), where=str(path))


def _section(obj: Any) -> str:
    return {DataConfig: "data", ModelConfig: "model", TrainConfig: "train"}.get(type(obj), "")


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """A config class's field types, resolved once (every config built reads them)."""
    return typing.get_type_hints(cls)


def _check_finite(obj: Any) -> None:
    """No float setting may be NaN or infinite (TOML can write both; `lr = inf` would train garbage). A float
    field given an integer in Python (mean_length=8) holds it as a float, as TOML's reader makes it: the same
    config has one canonical JSON, so one run id, and its stored record hashes to that id."""
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if hints[f.name] is float and isinstance(value, int) and not isinstance(value, bool):
            object.__setattr__(obj, f.name, float(value))
        values = getattr(obj, f.name)
        for value in values if isinstance(values, tuple) else (values,):
            if isinstance(value, float) and not math.isfinite(value):
                raise ScalerecError(f"{_section(obj)}.{f.name} must be a finite number, got {value!r}")


def _check_min(obj: Any, name: str, low: int) -> None:
    value = getattr(obj, name)
    if value < low:
        raise ScalerecError(f"{_section(obj)}.{name} must be >= {low}, got {value}")


def _check_choice(obj: Any, name: str, choices: tuple[str, ...]) -> None:
    value = getattr(obj, name)
    if value not in choices:
        raise ScalerecError(
            f"{_section(obj)}.{name} must be one of {', '.join(repr(c) for c in choices)}, not {value!r}"
        )


def _build(cls: type, mapping: Any, where: str) -> Any:
    """Build a (nested) frozen dataclass from a plain mapping, rejecting unknown keys and wrong types."""
    if not isinstance(mapping, dict):
        raise ScalerecError(f"{where}: expected a table, got {type(mapping).__name__}")
    hints = _hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(mapping) - known)
    if unknown:
        raise ScalerecError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
    kwargs = {name: _coerce(hints[name], value, f"{where}: {name}") for name, value in mapping.items()}
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    if hint is bool:
        if not isinstance(value, bool):
            raise ScalerecError(f"{where} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ScalerecError(f"{where} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ScalerecError(f"{where} must be a number, got {value!r}")
        if not math.isfinite(value):  # TOML has nan and inf; no setting takes them
            raise ScalerecError(f"{where} must be a finite number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ScalerecError(f"{where} must be a string, got {value!r}")
        return value
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, (list, tuple)):
            raise ScalerecError(f"{where} must be a list, got {value!r}")
        (item_type, _) = typing.get_args(hint)
        return tuple(_coerce(item_type, item, where) for item in value)
    raise TypeError(f"unsupported config type {hint!r}")  # a programming error, not the user's


ADDED_FIELDS: dict[tuple[str, str], Any] = _added_fields()
