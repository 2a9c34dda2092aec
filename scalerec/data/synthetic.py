"""The built-in dataset: a deterministic generator of a beauty-shop-like catalog and user sequences.

What a model can learn from it, roughly from easiest to hardest:
- long-tail popularity (a Zipf law over items);
- category transitions (shampoo -> conditioner), visible in the titles' nouns, so the text encoder generalises;
- item-to-item complements (each item has two favourite successors): item identity, which needs capacity;
- user taste (favourite brands and a favourite style word) that an attention layer must gather from the history.
User u's sequence depends only on (seed, u) and the catalog, so a smaller n_users is a subset of a larger one:
data sizes nest, as the paper's user-sampled ladder does.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..config import DataConfig
from .tables import Tables, make_tables

NOUNS = (
    "shampoo",
    "conditioner",
    "hair mask",
    "hair oil",
    "hair spray",
    "dry shampoo",
    "hair dye",
    "comb",
    "lipstick",
    "lip gloss",
    "lip balm",
    "lip liner",
    "mascara",
    "eyeliner",
    "eyeshadow palette",
    "brow pencil",
    "foundation",
    "concealer",
    "blush",
    "bronzer",
    "highlighter",
    "primer",
    "setting spray",
    "makeup remover",
    "serum",
    "moisturizer",
    "cleanser",
    "toner",
    "sunscreen",
    "face mask",
    "eye cream",
    "exfoliator",
    "body lotion",
    "body wash",
    "hand cream",
    "foot cream",
    "bath salt",
    "deodorant",
    "perfume",
    "nail polish",
    "cuticle oil",
    "nail file",
    "razor",
    "shaving cream",
    "aftershave",
    "beard oil",
    "makeup brush",
    "sponge",
)
STYLES = (
    "hydrating",
    "matte",
    "glossy",
    "volumizing",
    "organic",
    "vegan",
    "sensitive",
    "waterproof",
    "long lasting",
    "sheer",
    "radiant",
    "soothing",
    "firming",
    "brightening",
    "nourishing",
    "lightweight",
    "intense",
    "gentle",
    "repairing",
    "mineral",
    "fragrance free",
    "tinted",
    "cooling",
    "silky",
)
SCENTS = (
    "rose",
    "vanilla",
    "coconut",
    "lavender",
    "citrus",
    "mint",
    "almond",
    "jasmine",
    "green tea",
    "argan",
    "shea",
    "aloe",
    "honey",
    "charcoal",
    "cucumber",
    "unscented",
)
SIZES = (
    "0.5 oz",
    "1 oz",
    "1.7 oz",
    "2 oz",
    "3.4 oz",
    "4 oz",
    "6.8 oz",
    "8 oz",
    "12 oz",
    "16 oz",
    "mini",
    "travel size",
)
SYLLABLES = (
    "la",
    "ve",
    "ro",
    "mi",
    "sa",
    "no",
    "ka",
    "lu",
    "be",
    "ti",
    "ora",
    "el",
    "ly",
    "zen",
    "ma",
    "ri",
    "co",
    "da",
    "fi",
    "na",
)


def generate(cfg: DataConfig) -> Tables:
    """The canonical tables of the synthetic dataset described by `cfg` (deterministic in cfg)."""
    catalog = _Catalog(cfg.n_items, cfg.seed, cfg.transitions_seed)
    rows_user, rows_item, rows_time = [], [], []
    for user in range(cfg.n_users):
        sequence = catalog.user_sequence(np.random.default_rng([cfg.seed, 1, user]), cfg.mean_length)
        rows_user.extend([f"u{user:07d}"] * len(sequence))
        rows_item.extend(catalog.item_ids[sequence])
        rows_time.extend(range(len(sequence)))
    interactions = pd.DataFrame({"user_id": rows_user, "item_id": rows_item, "timestamp": rows_time})
    items = pd.DataFrame({"item_id": catalog.item_ids, "title": catalog.titles, "brand": catalog.brands})
    transitions = "" if cfg.transitions_seed < 0 else f",transitions={cfg.transitions_seed}"
    return make_tables(
        f"synthetic(users={cfg.n_users},items={cfg.n_items},seed={cfg.seed}{transitions})", interactions, items
    )


class _Catalog:
    """Items with text and the hidden structure that drives user behaviour."""

    P_COMPLEMENT, P_CATEGORY, P_TASTE_BOOST = 0.45, 0.40, 6.0  # the rest of the mass is popularity noise

    def __init__(self, n_items: int, seed: int, transitions_seed: int = -1) -> None:
        rng = np.random.default_rng([seed, 0])
        n_cat = len(NOUNS)
        n_brands = max(6, n_items // 25)
        brand_names = _brand_names(rng, n_brands)
        self.category = rng.integers(0, n_cat, n_items)
        # Brands specialise: each brand sells in a handful of categories.
        brand_cats = [rng.choice(n_cat, size=6, replace=False) for _ in range(n_brands)]
        cat_brands = [
            [b for b in range(n_brands) if c in brand_cats[b]] or [int(rng.integers(n_brands))] for c in range(n_cat)
        ]
        self.brand = np.array([rng.choice(cat_brands[c]) for c in self.category])
        self.style = rng.integers(0, len(STYLES), n_items)
        scent = rng.integers(0, len(SCENTS), n_items)
        size = rng.integers(0, len(SIZES), n_items)
        self.titles = [
            f"{brand_names[b].title()} {STYLES[s]} {SCENTS[sc]} {NOUNS[c]}, {SIZES[z]}"
            for b, s, sc, c, z in zip(self.brand, self.style, scent, self.category, size)
        ]
        # A quarter of the items have no brand, as in real metadata.
        known = rng.random(n_items) < 0.75
        self.brands = [brand_names[b].title() if k else "" for b, k in zip(self.brand, known)]
        self.item_ids = np.array([f"i{i:06d}" for i in range(n_items)])
        # Long-tail popularity, independent of the item's position in the catalog.
        self.popularity = 1.0 / np.arange(1, n_items + 1) ** 1.05
        rng.shuffle(self.popularity)
        self.popularity /= self.popularity.sum()
        # Category transitions: three likely successors per category.
        self.next_category = [rng.choice(n_cat, size=3, replace=False) for _ in range(n_cat)]
        if transitions_seed >= 0:  # another domain's transitions (drawn after, so the rest of the catalog is unchanged)
            shared = np.random.default_rng([transitions_seed, 2])
            self.next_category = [shared.choice(n_cat, size=3, replace=False) for _ in range(n_cat)]
        self.items_of = [np.flatnonzero(self.category == c) for c in range(n_cat)]
        # Item complements: two items in successor categories, chosen by popularity.
        self.complements = np.array(
            [
                [self._pick_in(rng, int(rng.choice(self.next_category[self.category[i]]))) for _ in range(2)]
                for i in range(n_items)
            ]
        )

    def _pick_in(self, rng: np.random.Generator, category: int, weight: np.ndarray | None = None) -> int:
        """An item of `category` drawn by popularity (times `weight`, a user's taste, when given)."""
        members = self.items_of[category]
        if len(members) == 0:
            return _draw(rng, self.popularity)
        return int(members[_draw(rng, self.popularity[members] * (1.0 if weight is None else weight[members]))])

    def user_sequence(self, rng: np.random.Generator, mean_length: float) -> np.ndarray:
        n_brands = int(self.brand.max()) + 1
        taste = np.ones(len(self.popularity))
        taste[np.isin(self.brand, rng.choice(n_brands, size=2, replace=False))] *= self.P_TASTE_BOOST
        taste[self.style == rng.integers(len(STYLES))] *= self.P_TASTE_BOOST
        liked = self.popularity * taste
        length = min(5 + int(rng.geometric(1.0 / (mean_length - 4))), 200)
        sequence = [self._pick_in(rng, int(rng.integers(len(NOUNS))), taste)]
        while len(sequence) < length:
            last, u = sequence[-1], rng.random()
            if u < self.P_COMPLEMENT:
                nxt = int(self.complements[last, rng.integers(2)])
            elif u < self.P_COMPLEMENT + self.P_CATEGORY:
                nxt = self._pick_in(rng, int(rng.choice(self.next_category[self.category[last]])), taste)
            else:
                nxt = _draw(rng, liked)
            if nxt not in sequence[-3:]:  # no immediate repeats, like 5-core review data
                sequence.append(nxt)
        return np.array(sequence)


def _draw(rng: np.random.Generator, weights: np.ndarray) -> int:
    """Index drawn with probability ∝ weights (faster than rng.choice with p for small arrays)."""
    cdf = np.cumsum(weights)
    return min(int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right")), len(weights) - 1)


def _brand_names(rng: np.random.Generator, n: int) -> list[str]:
    names: set[str] = set()
    while len(names) < n:
        names.add("".join(rng.choice(SYLLABLES, size=int(rng.integers(2, 4)))))
    return sorted(names)
