"""The grid's cost estimate (FLOPs against a trained run's own count) and the budget selection."""

import math

import pytest
from helpers import scalerec
from test_cli import TINY_GRID

from scalerec.grid.cost import RunCost, estimate_costs, select_within_budget
from scalerec.grid.spec import expand, load_spec
from scalerec.store import RunStore, read_checkpoints
from scalerec.train.trainer import train_run


def test_estimated_flops_match_what_training_counts(tmp_path):
    (tmp_path / "grid.toml").write_text(TINY_GRID)
    configs = expand(*load_spec(str(tmp_path / "grid.toml")))
    costs = estimate_costs(configs, progress=False)
    store = RunStore(tmp_path / "runs")
    for cfg in configs:
        train_run(cfg, store, progress=False)
    final = read_checkpoints(tmp_path / "runs").query("is_final").set_index("run_id")
    for cost in costs:
        run = final.loc[cost.run_id]
        assert cost.train_flops == pytest.approx(run.train_flops, rel=0.01)
        assert cost.dataset_interactions == run.dataset_interactions
        assert cost.non_embedding_params == run.non_embedding_params and cost.hours > 0
        assert 0 < cost.probe_cpu_share <= 1.05  # the probe's main-thread CPU time over its wall time


def test_a_dry_run_probed_on_a_busy_machine_says_its_hours_are_too_high(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from scalerec.cli import main
    from scalerec.grid import cost as cost_module

    (tmp_path / "grid.toml").write_text(TINY_GRID)
    for share, warned in ((0.3, True), (0.97, False)):
        probe = cost_module._Probe(
            macs_per_unit=1.0,
            seconds_per_unit=1e-3,
            seconds_per_eval_user=1e-3,
            units_per_interaction=1.0,
            interactions_per_user=10.0,
            non_embedding_params=1,
            cpu_share=share,
        )
        monkeypatch.setattr(cost_module, "_probe", lambda _cfg, probe=probe: probe)
        result = CliRunner().invoke(
            main, ["grid", str(tmp_path / "grid.toml"), "--runs", str(tmp_path / "runs"), "--dry-run"]
        )
        assert result.exit_code == 0, result.output
        assert ("got 30% of a core" in result.output) == warned


@pytest.mark.parametrize("test_every_checkpoint", [False, True])
def test_hours_count_every_evaluation_the_trainer_makes(tmp_path, monkeypatch, test_every_checkpoint):
    """Valid at each of the epochs/eval_every checkpoints; test at each too, or once at the end (an
    estimate that counted only the valid ones fell short on Beauty, where test is evaluated at every checkpoint)."""
    import dataclasses

    from scalerec.grid import cost as cost_module

    (tmp_path / "grid.toml").write_text(TINY_GRID)
    cfg = expand(*load_spec(str(tmp_path / "grid.toml")))[0]
    cfg = dataclasses.replace(
        cfg, train=dataclasses.replace(cfg.train, epochs=6, eval_every=2, test_every_checkpoint=test_every_checkpoint)
    )
    probe = cost_module._Probe(
        macs_per_unit=1.0,
        seconds_per_unit=0.0,
        seconds_per_eval_user=1.0,
        units_per_interaction=1.0,
        interactions_per_user=10.0,
        non_embedding_params=1,
        cpu_share=1.0,
    )
    monkeypatch.setattr(cost_module, "_probe", lambda _cfg: probe)
    [estimate] = estimate_costs([cfg], progress=False)
    evaluations = 3 + (3 if test_every_checkpoint else 1)
    assert estimate.hours * 3600 == pytest.approx(cfg.data.n_users * evaluations)


def _cost(run_id, n, d, flops, hours, epochs=10):
    return RunCost(run_id, 1, 1, 8, n, d, epochs, flops, hours)


def test_budget_selection_spreads_over_compute_and_stays_within_budget():
    costs = [_cost(f"n{n}d{d}", n, d, n * d * 60.0, n * d / 1e9) for n in (1e4, 1e5, 1e6) for d in (1e4, 1e5, 1e6)]
    total = sum(c.hours for c in costs)
    for budget in (total / 20, total / 4, total / 2):
        chosen = [c for c in costs if c.run_id in select_within_budget(costs, budget)]
        assert chosen and sum(c.hours for c in chosen) <= budget
        assert len({c.non_embedding_params for c in chosen}) >= 2  # several model sizes, not one
    everything = select_within_budget(costs, total)
    assert len(everything) == len(costs)  # with the whole budget, each run adds cells: all are chosen
    flops = sorted(math.log10(c.train_flops) for c in costs if c.run_id in select_within_budget(costs, total / 4))
    assert flops[-1] - flops[0] >= 2  # covers a range of compute, not a cluster of cheap runs
    assert select_within_budget(costs, 1e-12) == []


@pytest.mark.slow
def test_budget_that_fits_no_run_is_an_error(tmp_path):
    (tmp_path / "grid.toml").write_text(TINY_GRID)
    result = scalerec(
        "grid", tmp_path / "grid.toml", "--runs", tmp_path / "runs", "--budget-hours", "1e-9", "--dry-run", ok=False
    )
    assert result.returncode == 1 and "no run fits in 1e-09 h" in result.stderr, result.stderr


def test_beauty_ladder_preset_is_the_reference_recipe_on_a_ladder_with_shapes_over_15x_in_n(tmp_path):
    from scalerec.config import DataConfig
    from scalerec.data.prepare import write_dataset
    from scalerec.data.subsample import write_ladder
    from scalerec.data.synthetic import generate
    from scalerec.grid.spec import with_data
    from scalerec.shapes import non_embedding_params

    spec, where = load_spec(preset="beauty-ladder")
    rungs = [p.rsplit("/", 1)[1] for p in spec["grid"]["vary"]["data.path"]]
    assert rungs == ["25000", "50000", "100000", "all"]  # what `data subsample ... 25K,50K,100K,all` writes
    tables = generate(DataConfig(n_users=150, n_items=60, mean_length=8))
    write_dataset(tmp_path / "ds", "ds", tables.interactions, tables.items, {})
    write_ladder(tmp_path / "ds", [300, 600, "all"], tmp_path / "ladder")
    configs = expand(with_data(spec, str(tmp_path / "ladder")), where)
    assert len(configs) == 12 and {c.model.block_norm for c in configs} == {"post"}  # the reference recipe
    assert {c.train.prefix_batches for c in configs} == {"one-pass"}
    sizes = {non_embedding_params(c.model.n_layers, c.model.hidden) for c in configs}
    assert len(sizes) == 4 and max(sizes) / min(sizes) >= 15


def test_a_grid_starts_its_largest_runs_first_by_model_and_data_size(tmp_path):
    """The order uses each prepared dataset's own size (it once read the config's synthetic defaults, so every rung
    of a ladder looked alike) and each shape's N."""
    import dataclasses

    from scalerec.config import DataConfig
    from scalerec.data.prepare import dataset_info, write_dataset
    from scalerec.data.subsample import write_ladder
    from scalerec.data.synthetic import generate
    from scalerec.grid.cost import nominal_flops
    from scalerec.grid.spec import with_data

    tables = generate(DataConfig(n_users=150, n_items=60, mean_length=8))
    write_dataset(tmp_path / "ds", "ds", tables.interactions, tables.items, {})
    write_ladder(tmp_path / "ds", [300, "all"], tmp_path / "ladder")
    spec, where = load_spec(preset="beauty-ladder")
    configs = expand(with_data(spec, str(tmp_path / "ladder")), where)
    by_data = {}
    for cfg in configs:
        by_data.setdefault((cfg.model.n_layers, cfg.model.hidden), {})[cfg.data.path] = nominal_flops(cfg)
    small, full = str(tmp_path / "ladder" / "300"), str(tmp_path / "ladder" / "all")
    trained = {
        path: dataset_info(path)["stats"]["interactions"] - 2 * dataset_info(path)["stats"]["users"]
        for path in (small, full)
    }  # leave-one-out holds two per user out of training
    ratio = trained[full] / trained[small]
    for flops in by_data.values():
        assert flops[full] / flops[small] == pytest.approx(ratio)
    assert by_data[(2, 128)][full] > by_data[(2, 64)][full] > by_data[(1, 32)][full]
    longer = dataclasses.replace(configs[0], train=dataclasses.replace(configs[0].train, epochs=60))
    assert nominal_flops(longer) == pytest.approx(2 * nominal_flops(configs[0]))


def test_threads_are_shared_out_from_the_cores_this_process_may_use(monkeypatch):
    """The affinity (a container's or taskset's limit), not the host's core count, which may be far larger."""
    import os

    from scalerec import machine

    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(8)), raising=False)
    assert machine.available_cores() == 8
    assert [machine.threads_per_worker(w) for w in (1, 2, 3, 16)] == [8, 4, 2, 1]


def test_a_local_grid_trains_with_the_threads_asked_for(tmp_path, monkeypatch):
    """--threads-per-run holds for the local executor too (it was read only by the Dask one: two grids sharing a
    machine each took every core)."""
    from scalerec.grid import executors

    (tmp_path / "grid.toml").write_text(TINY_GRID)
    configs = expand(*load_spec(str(tmp_path / "grid.toml")))
    seen = []
    monkeypatch.setattr(executors, "_run_one", lambda cfg, root, device, threads, *rest: seen.append(threads))
    executors.run_local(configs, RunStore(tmp_path / "runs"), threads_per_run=1, progress=False)
    assert seen == [1] * len(configs)


def test_the_id_ladder_preset_is_the_text_ladder_with_item_ids(tmp_path):
    """beauty-ladder-id differs from beauty-ladder only in the item encoder and in a subset of its shapes."""
    import dataclasses

    from scalerec.config import DataConfig
    from scalerec.data.prepare import write_dataset
    from scalerec.data.subsample import write_ladder
    from scalerec.data.synthetic import generate
    from scalerec.grid.spec import with_data

    tables = generate(DataConfig(n_users=150, n_items=60, mean_length=8))
    write_dataset(tmp_path / "ds", "ds", tables.interactions, tables.items, {})
    write_ladder(tmp_path / "ds", [300, "all"], tmp_path / "ladder")
    text_spec, text_where = load_spec(preset="beauty-ladder")
    id_spec, id_where = load_spec(preset="beauty-ladder-id")
    assert id_spec["grid"]["vary"] == text_spec["grid"]["vary"]
    assert set(map(tuple, id_spec["grid"]["shapes"])) < set(map(tuple, text_spec["grid"]["shapes"]))
    text = {
        (c.model.n_layers, c.model.n_heads, c.model.hidden, c.data.path): c
        for c in expand(with_data(text_spec, str(tmp_path / "ladder")), text_where)
    }
    ids = expand(with_data(id_spec, str(tmp_path / "ladder")), id_where)
    assert len(ids) == 3 * 2 and {c.model.item_encoder for c in ids} == {"id"}
    for cfg in ids:
        twin = text[(cfg.model.n_layers, cfg.model.n_heads, cfg.model.hidden, cfg.data.path)]
        assert cfg.train == twin.train and cfg.model == dataclasses.replace(twin.model, item_encoder="id")
