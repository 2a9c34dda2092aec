"""What a run does, resolved: a run config file or a stored run as the TOML `scalerec train` would run, with its run
id and every value the file left to a default, a recipe or a documented normalisation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import tomli_w

from .config import RunConfig, load_toml, with_recipe
from .errors import ScalerecError


def resolve_target(target: str, runs: str | Path) -> tuple[RunConfig, dict[str, Any], str]:
    """(resolved config, what was written, where) for a run config TOML, a run folder or a run id in `runs`.
    A file's prepared data is resolved (its fingerprint pinned) as `train` does, so the id is the one it trains."""
    path = Path(target)
    if path.is_file():
        mapping = load_toml(path)
        if "grid" in mapping:
            raise ScalerecError(f"{path}: a grid spec; `scalerec grid {path} --dry-run` lists its runs")
        from .data.datasets import resolve_data

        return resolve_data(RunConfig.from_dict(mapping, str(path))), with_recipe(mapping, str(path)), str(path)
    run_dir = path if (path / "config.json").is_file() else Path(runs) / target
    if not (run_dir / "config.json").is_file():
        raise ScalerecError(f"{target}: no such config file, run folder, or run id in {runs}")
    try:
        stored = json.loads((run_dir / "config.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ScalerecError(f"{run_dir / 'config.json'}: not a readable run config ({exc})") from None
    if "imported_from" in stored:
        raise ScalerecError(f"{run_dir}: an imported run ({stored['imported_from'].get('kind')}); it has no run config")
    if "finetune" in stored or "config" not in stored:
        raise ScalerecError(f"{run_dir}: a fine-tuning run; its config.json holds the fine-tuning settings")
    return RunConfig.from_stored(stored["config"], str(run_dir)), stored["config"], str(run_dir)


def differences(cfg: RunConfig, base: RunConfig | None = None) -> dict[str, Any]:
    """The sections and fields of `cfg` that differ from `base` (the defaults)."""
    mine, other = cfg.to_dict(), (base or RunConfig()).to_dict()
    out: dict[str, Any] = {}
    for section, values in mine.items():
        if isinstance(values, dict):
            changed = {k: v for k, v in values.items() if other[section].get(k) != v}
            if changed:
                out[section] = changed
        elif values != other[section]:
            out[section] = values
    return out


def normalised(cfg: RunConfig, written: dict[str, Any]) -> list[str]:
    """`section.field: written -> resolved` for each value the config rewrote (a documented normalisation)."""
    resolved = cfg.to_dict()
    notes = []
    for section, values in written.items():
        if not isinstance(values, dict):
            continue
        for name, value in values.items():
            now = resolved.get(section, {}).get(name)
            if json.loads(json.dumps(value)) != now and not (section == "data" and name == "fingerprint"):
                notes.append(f"{section}.{name}: {value!r} -> {now!r}")
    return notes


def config_toml(cfg: RunConfig, only_changed: bool = False) -> str:
    """The config as TOML (every field, or only those that differ from the defaults); `seed` first."""
    body = differences(cfg) if only_changed else cfg.to_dict()
    ordered = {"seed": body.pop("seed")} if "seed" in body else {}
    return tomli_w.dumps(ordered | body)
