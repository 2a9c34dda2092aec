"""What a grid will cost before it is trained: FLOPs from the FLOP counter on one real batch, and wall time from a
short throughput probe on this machine (a few training steps and one evaluation per distinct model/training setup).

Data sizes are not generated or loaded in full: a probe dataset (the first PROBE_USERS users of a synthetic config,
or the smallest prepared dataset of the grid) gives batches and the windows per training interaction, and each run's
counts are scaled from it (synthetic users are i.i.d. given the seed; prepared sizes come from dataset.json).

A probe timed while other work holds the cores runs slow (on 2 busy cores, 8x: 27.6 run-hours for the Beauty ladder
against 3.5 idle): each cost carries the probe's main-thread CPU share, and `grid --dry-run` warns below BUSY.

`select_within_budget` then picks the runs that cover the compute range best within a number of hours.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm

from ..config import RunConfig
from ..machine import threads_per_worker
from ..shapes import non_embedding_params
from ..store.schema import train_flops

PROBE_USERS = 1000
PROBE_STEPS = 3


@dataclass(frozen=True)
class RunCost:
    run_id: str
    n_layers: int
    n_heads: int
    hidden: int
    non_embedding_params: int
    dataset_interactions: int
    epochs: int
    train_flops: float
    hours: float
    probe_cpu_share: float = 1.0  # the probe's main-thread CPU time / wall time: below BUSY, hours run high

    def as_row(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class _Probe:
    # a unit is what a batch holds batch_size of: a window, or a target (one-pass prefix samples)
    macs_per_unit: float  # nominal forward MACs per unit (constant for a setup: DESIGN §3)
    seconds_per_unit: float  # training time per unit on this machine
    seconds_per_eval_user: float  # time per user of one split's evaluation (valid; test costs the same)
    units_per_interaction: float
    interactions_per_user: float  # training interactions per user (synthetic scaling)
    non_embedding_params: int
    cpu_share: float  # main-thread CPU seconds per wall second over the timed steps


BUSY = 0.8  # a probe whose main thread ran less than this share of the time was sharing its cores


def estimate_costs(configs: list[RunConfig], *, workers: int = 1, progress: bool = True) -> list[RunCost]:
    """FLOPs and hours of every run, probing each distinct (model, training) setup once with cores/workers threads."""
    import torch

    torch.set_num_threads(threads_per_worker(workers))
    probes: dict[Any, _Probe] = {}
    smallest = _smallest_prepared(configs)
    costs = []
    with tqdm(configs, desc="cost probe", unit="run", disable=not progress, leave=False) as bar:
        for cfg in bar:
            probe_cfg = _probe_config(cfg, smallest)
            key = (probe_cfg.data, probe_cfg.model, dataclasses.replace(probe_cfg.train, epochs=1))
            if key not in probes:
                probes[key] = _probe(probe_cfg)
            probe = probes[key]
            users, interactions = _data_size(cfg, probe)
            units = probe.units_per_interaction * interactions
            checkpoints = len(cfg.train.checkpoint_epochs)
            # valid at every checkpoint; test at every one too (test_every_checkpoint), or once at the end; both at
            # the end of each cooldown branch
            evaluations = checkpoints + (checkpoints if cfg.train.test_every_checkpoint else 1)
            evaluations += 2 * len(cfg.train.branches)
            epochs = cfg.train.trained_epochs
            seconds = probe.seconds_per_unit * units * epochs + probe.seconds_per_eval_user * users * evaluations
            costs.append(
                RunCost(
                    cfg.run_id,
                    cfg.model.n_layers,
                    cfg.model.n_heads,
                    cfg.model.hidden,
                    probe.non_embedding_params,
                    int(interactions),
                    cfg.train.epochs,
                    train_flops(probe.macs_per_unit * units * epochs),
                    seconds / 3600,
                    probe.cpu_share,
                )
            )
    return costs


def nominal_flops(cfg: RunConfig) -> float:
    """6·N·D·epochs without a probe: the leading term of the FLOP count (DESIGN §3), enough to order runs by cost
    (the grid starts the largest first, to pack its workers)."""
    m = cfg.model
    n = non_embedding_params(m.n_layers, m.hidden, m.ffn_size, m.max_len, m.item_encoder, m.token_dim or None)
    return train_flops(n * training_interactions(cfg) * cfg.train.trained_epochs)


def training_interactions(cfg: RunConfig) -> float:
    """D of the run's dataset: expected for a synthetic config, from dataset.json for a prepared one."""
    if cfg.data.name == "synthetic":
        return cfg.data.n_users * cfg.data.mean_length
    return _data_size(cfg, None)[1]


def _smallest_prepared(configs: list[RunConfig]) -> str | None:
    from ..data.prepare import dataset_info

    paths = {c.data.path for c in configs if c.data.name == "prepared"}
    return min(paths, key=lambda p: dataset_info(p)["stats"]["interactions"]) if paths else None


def _probe_config(cfg: RunConfig, smallest_prepared: str | None) -> RunConfig:
    from ..data.datasets import resolve_data

    if cfg.data.name == "synthetic":
        data = dataclasses.replace(cfg.data, n_users=min(cfg.data.n_users, PROBE_USERS))
    else:
        data = dataclasses.replace(cfg.data, path=smallest_prepared, fingerprint="")
    return resolve_data(dataclasses.replace(cfg, data=data))


def _data_size(cfg: RunConfig, probe: _Probe | None) -> tuple[int, float]:
    """(users, training interactions D) of the run's dataset."""
    if cfg.data.name == "synthetic":
        return cfg.data.n_users, probe.interactions_per_user * cfg.data.n_users
    from ..data.prepare import dataset_info

    stats = dataset_info(cfg.data.path)["stats"]
    return stats["users"], stats["interactions"] - 2 * stats["users"]  # leave-one-out holds out two per user


def _probe(cfg: RunConfig) -> _Probe:
    """Count one batch's MACs and time a few training steps and one evaluation of this setup."""
    import tempfile

    import torch

    from ..store.runstore import RunStore
    from ..train.trainer import Trainer, resolve_device

    with tempfile.TemporaryDirectory() as tmp:  # the trainer writes nothing before run(); the store stays empty
        trainer = Trainer(cfg, RunStore(tmp), resolve_device(), progress=False)
    generator = torch.Generator().manual_seed(cfg.seed)
    batches = trainer.epoch_batches(generator)
    by_targets = cfg.train.batch_targets
    timings, wall_seconds, cpu_seconds = [], 0.0, 0.0
    for i in range(PROBE_STEPS + 1):  # the first step warms up and is not timed
        batch = next(batches, None)
        if batch is None:  # a tiny dataset: start the epoch again
            batches = trainer.epoch_batches(generator)
            batch = next(batches)
        units = batch.n_targets if by_targets else len(batch.seq)
        macs_before = trainer.counters.macs
        started, cpu_started = time.perf_counter(), time.thread_time()
        trainer.step(batch, generator)  # the real step: sampling, clipping, scheduler included
        if i:
            elapsed = time.perf_counter() - started
            timings.append(elapsed / units)
            # torch's main thread computes (or waits spinning) throughout a step: it gets less CPU than wall time
            # only when other work takes its core, which makes every timing here too long
            wall_seconds += elapsed
            cpu_seconds += time.thread_time() - cpu_started
        macs = (trainer.counters.macs - macs_before) / units
    split = trainer.data.split
    started = time.perf_counter()
    trainer.evaluator.evaluate(trainer.model, "valid", trainer.device)
    eval_seconds = time.perf_counter() - started
    units_per_epoch = trainer.windows.targets_per_epoch if by_targets else len(trainer.windows)
    return _Probe(
        macs_per_unit=macs,
        seconds_per_unit=sum(timings) / len(timings),
        seconds_per_eval_user=eval_seconds / split.n_users,
        units_per_interaction=units_per_epoch / split.n_train_interactions,
        interactions_per_user=split.n_train_interactions / split.n_users,
        non_embedding_params=trainer.model.param_counts()["non_embedding_params"],
        cpu_share=cpu_seconds / max(wall_seconds, 1e-9),
    )


def select_within_budget(costs: list[RunCost], hours: float) -> list[str]:
    """Run ids that cover the compute range best within `hours` of (summed) training time.

    Coverage counts cells (quarter-decade of FLOPs, model size) and (quarter-decade of FLOPs, data size) that the
    runs' trajectories pass through (a run passes through every compute from 1/epochs of its final FLOPs up), so
    the chosen runs spread over the compute range with several N and several D at each compute level: what the
    envelope and the N,T law need. Greedy on new cells per hour, which is within (1 - 1/e) of the best cover.
    """

    def cells(cost: RunCost) -> set[tuple]:
        high = math.log10(cost.train_flops)
        low = high - math.log10(max(cost.epochs, 1))
        bins = range(math.floor(low * 4), math.floor(high * 4) + 1)
        return {("N", b, cost.non_embedding_params) for b in bins} | {("D", b, cost.dataset_interactions) for b in bins}

    cover = {c.run_id: cells(c) for c in costs}
    remaining = {c.run_id: c for c in costs}
    chosen, covered, spent = [], set(), 0.0
    while True:
        gains = {
            run_id: len(cover[run_id] - covered) / max(c.hours, 1e-9)
            for run_id, c in remaining.items()
            if spent + c.hours <= hours and cover[run_id] - covered
        }
        if not gains:
            return chosen
        best = max(gains, key=gains.get)
        chosen.append(best)
        covered |= cover[best]
        spent += remaining.pop(best).hours
