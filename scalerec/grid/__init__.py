"""Grids: a TOML spec (or a preset) expanded into run configs, and executors that run them."""
