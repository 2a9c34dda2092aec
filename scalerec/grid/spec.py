"""Grid specs: a base run config plus the axes to vary, in TOML (or a built-in preset).

    seed = 0
    [data]   ...   [model]   ...   [train]   ...     # the base RunConfig, as in `scalerec train CONFIG.toml`
    [grid]
    shapes = [[2, 2, 64], [4, 2, 128]]               # [n_layers, n_heads, hidden] (optional)
    [grid.vary]
    "data.n_users" = [500, 1500, 4500]               # any config field, as section.field = [values]
    seed = [0, 1]                                    # replicates

Runs are the product of the shapes and every `vary` axis, in that order.
"""

from __future__ import annotations

import copy
import itertools
from importlib import resources
from typing import Any

from ..config import RunConfig, load_toml
from ..data.datasets import resolve_data
from ..errors import ScalerecError

SECTIONS = ("data", "model", "train")


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("scalerec.grid.presets").iterdir() if p.name.endswith(".toml"))


def load_spec(path: str | None = None, preset: str | None = None) -> tuple[dict[str, Any], str]:
    """The spec mapping and a name for messages, from a TOML file or a built-in preset."""
    if (path is None) == (preset is None):
        raise ScalerecError("give a grid spec file or --preset NAME (one of them)")
    if preset is not None:
        if preset not in preset_names():
            raise ScalerecError(f"unknown preset {preset!r} (known: {', '.join(preset_names())})")
        resource = resources.files("scalerec.grid.presets") / f"{preset}.toml"
        with resources.as_file(resource) as file:
            return load_toml(file), f"preset {preset}"
    return load_toml(path), str(path)


def expand(spec: dict[str, Any], where: str = "spec") -> list[RunConfig]:
    """The run configs of a grid spec, in grid order, without duplicates."""
    unknown = sorted(set(spec) - {*SECTIONS, "seed", "grid", "recipe"})
    if unknown:
        raise ScalerecError(f"{where}: unknown key {unknown[0]!r} (known: data, model, train, seed, recipe, grid)")
    base = {key: spec[key] for key in (*SECTIONS, "seed", "recipe") if key in spec}
    grid = spec.get("grid", {})
    if not isinstance(grid, dict) or set(grid) - {"shapes", "vary"}:
        raise ScalerecError(f"{where}: [grid] takes only 'shapes' and a [grid.vary] table")
    axes: list[list[dict[str, Any]]] = []
    if "shapes" in grid:
        axes.append([_shape(s, where) for s in _nonempty_list(grid["shapes"], f"{where}: grid.shapes")])
    vary = grid.get("vary", {})
    if not isinstance(vary, dict):
        raise ScalerecError(f"{where}: grid.vary must be a table of 'section.field' = [values]")
    for key, values in vary.items():
        values = _nonempty_list(values, f"{where}: grid.vary.{key}")
        if key == "seed":
            axes.append([{"seed": v} for v in values])
            continue
        section, _, name = key.partition(".")
        if section not in SECTIONS or not name:
            raise ScalerecError(
                f"{where}: grid.vary key {key!r} must look like 'model.hidden' or 'data.n_users' (or be 'seed')"
            )
        axes.append([{section: {name: v}} for v in values])
    configs, seen = [], set()
    for combination in itertools.product(*axes):
        merged = copy.deepcopy(base)
        for override in combination:
            for key, value in override.items():  # a section's fields, or a top-level value (seed)
                if isinstance(value, dict):
                    merged.setdefault(key, {}).update(value)
                else:
                    merged[key] = value
        config = resolve_data(RunConfig.from_dict(merged, where))
        if config.run_id not in seen:
            seen.add(config.run_id)
            configs.append(config)
    return configs


def with_data(spec: dict[str, Any], directory: str) -> dict[str, Any]:
    """The spec trained on prepared data instead: DIR itself (a prepared dataset) or every prepared dataset in it
    (a ladder from `scalerec data subsample`), replacing the spec's data and any data.* axis."""
    from pathlib import Path

    root = Path(directory)
    if (root / "dataset.json").is_file():
        paths = [root]
    else:
        paths = sorted(p for p in root.iterdir() if (p / "dataset.json").is_file()) if root.is_dir() else []
    if not paths:
        raise ScalerecError(
            f"--data {directory}: neither a prepared dataset nor a directory of them "
            "(see `scalerec data prepare` and `scalerec data subsample`)"
        )
    spec = copy.deepcopy(spec)
    spec["data"] = {"name": "prepared", "path": str(paths[0])}
    grid = spec.setdefault("grid", {})
    vary = {k: v for k, v in grid.get("vary", {}).items() if not k.startswith("data.")}
    if len(paths) > 1:
        vary = {"data.path": [str(p) for p in paths], **vary}
    grid["vary"] = vary
    return spec


def _nonempty_list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise ScalerecError(f"{where} must be a non-empty list")
    return value


def _shape(value: Any, where: str) -> dict[str, Any]:
    if not (isinstance(value, list) and len(value) == 3 and all(isinstance(v, int) for v in value)):
        raise ScalerecError(f"{where}: each grid.shapes entry must be [n_layers, n_heads, hidden], got {value!r}")
    return {"model": dict(zip(("n_layers", "n_heads", "hidden"), value))}
