"""Run a list of run configs against a run store: finished runs are skipped, interrupted ones resumed.

Local execution uses worker processes (spawned, one thread budget each so K workers share the cores). A worker
dies with its parent (PR_SET_PDEATHSIG on Linux), and each run holds a lock, so a killed and restarted grid never
has two processes writing one run.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import signal
import sys
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from ..config import RunConfig
from ..errors import ScalerecError
from ..store.runstore import RunStore


@dataclass
class GridReport:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def estimated_cost(cfg: RunConfig) -> float:
    """A relative cost to start the biggest runs first (better packing of the workers)."""
    m = cfg.model
    per_token = m.n_layers * (4 * m.hidden ** 2 + 2 * m.hidden * m.ffn_size) + cfg.train.n_negatives * m.hidden
    return per_token * cfg.data.n_users * cfg.data.mean_length * cfg.train.epochs


def run_local(configs: list[RunConfig], store: RunStore, *, workers: int = 1, device: str = "auto",
              progress: bool = True) -> GridReport:
    """Run every config not yet DONE, `workers` at a time; failures are collected, not raised."""
    report = GridReport()
    todo = []
    for cfg in configs:
        (report.skipped if store.status(cfg.run_id) == "done" else todo).append(cfg)
    report.skipped = [c.run_id for c in report.skipped]
    todo.sort(key=estimated_cost, reverse=True)
    threads = max(1, (os.cpu_count() or 1) // max(1, workers))
    bar = tqdm(total=len(configs), initial=len(report.skipped), desc="grid", unit="run", disable=not progress,
               dynamic_ncols=True)
    if workers <= 1:
        for cfg in todo:
            _record(report, cfg.run_id, _run_one, cfg, str(store.root), device, threads, progress)
            bar.update(1)
    else:
        context = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(workers, mp_context=context, initializer=_die_with_parent) as pool:
            futures = {pool.submit(_run_one, cfg, str(store.root), device, threads, False): cfg.run_id
                       for cfg in todo}
            for future in cf.as_completed(futures):
                _record(report, futures[future], future.result)
                bar.update(1)
    bar.close()
    return report


def _record(report: GridReport, run_id: str, call, *args) -> None:
    try:
        status = call(*args)
    except ScalerecError as exc:
        report.failed[run_id] = str(exc)
    except Exception as exc:  # one broken run must not stop the grid; its error is reported
        report.failed[run_id] = f"{type(exc).__name__}: {exc}"
    else:
        (report.skipped if status == "skipped" else report.done).append(run_id)


def _run_one(cfg: RunConfig, root: str, device: str, threads: int, progress: bool) -> str:
    from ..train.trainer import train_run  # torch is imported in the worker, not by `scalerec grid --dry-run`

    return train_run(cfg, RunStore(root), device=device, threads=threads, progress=progress)


def _die_with_parent() -> None:
    """Linux: the kernel kills this worker when the grid process dies (so a kill -9 leaves no orphan)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
