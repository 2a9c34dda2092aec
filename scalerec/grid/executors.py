"""Run a list of run configs against a run store: finished runs are skipped, interrupted ones resumed.

Local execution uses worker processes (spawned, one thread budget each so K workers share the cores). A worker
dies with its parent (PR_SET_PDEATHSIG on Linux), and each run holds a lock, so a killed and restarted grid never
has two processes writing one run.

Dask execution submits one task per run to a Dask cluster (or a LocalCluster started for the call). The semantics
are the local executor's, because they live in the trainer and the store, not here: a task whose worker dies is
rescheduled by Dask and resumes from the run's state.pt; rows beyond it are dropped and redone.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from ..config import RunConfig
from ..errors import ScalerecError
from ..machine import die_with_parent, threads_per_worker
from ..store.provenance import TRAINING_SEMANTICS, stale_message
from ..store.runstore import RunStore
from .cost import nominal_flops


@dataclass
class GridReport:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def run_local(
    configs: list[RunConfig],
    store: RunStore,
    *,
    workers: int = 1,
    device: str = "auto",
    threads_per_run: int | None = None,
    progress: bool = True,
    stale: str = "refuse",
) -> GridReport:
    """Run every config not yet DONE, `workers` at a time with `threads_per_run` torch threads each (default: the
    cores shared among the workers); failures are collected, not raised.
    `stale`: what to do with runs that code of other training semantics made (see `_plan`)."""
    report, todo = _plan(configs, store, stale)
    accept = stale == "accept"
    threads = threads_per_run or threads_per_worker(workers)
    with tqdm(
        total=len(configs),
        initial=len(report.skipped),
        desc="grid",
        unit="run",
        disable=not progress,
        dynamic_ncols=True,
    ) as bar:  # closed before any error is printed
        if workers <= 1:
            for cfg in todo:
                _record(report, cfg.run_id, _run_one, cfg, str(store.root), device, threads, progress, accept)
                bar.update(1)
        else:
            context = multiprocessing.get_context("spawn")
            with cf.ProcessPoolExecutor(workers, mp_context=context, initializer=die_with_parent) as pool:
                futures = {
                    pool.submit(_run_one, cfg, str(store.root), device, threads, False, accept): cfg.run_id
                    for cfg in todo
                }
                for future in cf.as_completed(futures):
                    _record(report, futures[future], future.result)
                    bar.update(1)
    return report


STALE_POLICIES = ("refuse", "accept", "retrain")


def apply_stale_policy(configs: list[RunConfig], store: RunStore, stale: str) -> None:
    """Deal with runs started by code of other training semantics (store/provenance.py) before anything trains:
    `refuse` stops with one line naming them, `accept` keeps them (done ones skipped, others resumed by this code),
    `retrain` moves their folders under <store>/.stale/ so that they train anew."""
    if stale not in STALE_POLICIES:
        raise ValueError(f"stale policy {stale!r}")
    stale_runs = [
        (c.run_id, s) for c in configs if (s := store.semantics(c.run_id)) is not None and s != TRAINING_SEMANTICS
    ]
    if stale_runs and stale == "refuse":
        raise ScalerecError(stale_message(*stale_runs[0], more=len(stale_runs) - 1))
    if stale == "retrain":
        for run_id, _ in stale_runs:
            with store.lock(run_id):  # not while another process trains it
                store.move_aside(run_id)


def _start_order(cfg: RunConfig) -> float:
    """Largest runs first, to pack the workers; a run whose data cannot be read goes last and fails on its own."""
    try:
        return nominal_flops(cfg)
    except ScalerecError:
        return 0.0


def _plan(configs: list[RunConfig], store: RunStore, stale: str = "refuse") -> tuple[GridReport, list[RunConfig]]:
    """A report with the finished runs already skipped, and the others, biggest first (better packing)."""
    for cfg in configs:  # an altered run is neither skipped as done nor resumed
        store.require_intact(cfg.run_id)
    apply_stale_policy(configs, store, stale)
    report = GridReport(skipped=[c.run_id for c in configs if store.status(c.run_id) == "done"])
    todo = sorted((c for c in configs if c.run_id not in report.skipped), key=_start_order, reverse=True)
    return report, todo


def _record(report: GridReport, run_id: str, call, *args) -> None:
    try:
        status = call(*args)
    except ScalerecError as exc:
        report.failed[run_id] = str(exc)
    except Exception as exc:  # one broken run must not stop the grid; its error is reported
        report.failed[run_id] = f"{type(exc).__name__}: {exc}"
    else:
        (report.skipped if status == "skipped" else report.done).append(run_id)


def run_dask(
    configs: list[RunConfig],
    store: RunStore,
    *,
    scheduler: str | None = None,
    workers: int = 1,
    device: str = "auto",
    threads_per_run: int | None = None,
    progress: bool = True,
    connect_timeout: float = 5.0,
    stale: str = "refuse",
) -> GridReport:
    """Run every config not yet DONE as one Dask task each, on the cluster at `scheduler` (a LocalCluster of
    `workers` single-slot processes when None). Runs use `threads_per_run` torch threads (default: the host's cores
    divided by the task slots Dask has on it). Exceptions other than a bad config are retried twice."""
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise ScalerecError("--executor dask needs Dask: pip install 'scalerec[dask]'") from None
    report, todo = _plan(configs, store, stale)
    accept = stale == "accept"
    cluster = None
    try:
        if scheduler is None:
            cluster = LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
            )
            threads_per_run = threads_per_run or threads_per_worker(workers)
        try:
            client = Client(cluster or scheduler, timeout=f"{connect_timeout}s")
        except (OSError, TimeoutError) as exc:
            raise ScalerecError(
                f"cannot reach the Dask scheduler at {scheduler} within {connect_timeout:g} s ({type(exc).__name__})"
            ) from None
        with client:
            _check_workers_can_write(client, store)
            resources = _task_resources(client, device)
            futures = {
                client.submit(
                    _dask_task,
                    cfg,
                    str(store.root.resolve()),
                    device,
                    threads_per_run,
                    accept,
                    key=f"scalerec-run-{cfg.run_id}",
                    retries=2,
                    pure=False,
                    resources=resources,
                ): cfg.run_id
                for cfg in todo
            }
            with tqdm(
                total=len(configs),
                initial=len(report.skipped),
                desc="grid (dask)",
                unit="run",
                disable=not progress,
                dynamic_ncols=True,
            ) as bar:
                for future in as_completed(futures):
                    _record(report, futures[future], _unwrap, future)
                    bar.update(1)
    finally:
        if cluster is not None:
            cluster.close()
    return report


def _dask_task(
    cfg: RunConfig, root: str, device: str, threads: int | None, accept_stale: bool = False
) -> tuple[str, str | None]:
    """One run on a Dask worker: (status, None), or ("failed", why) for a bad config, which is returned rather than
    raised so that Dask does not retry it (Dask retries raised exceptions)."""
    if threads is None:
        from distributed import get_worker

        threads = threads_per_worker(get_worker().state.nthreads)
    try:
        return _run_one(cfg, root, device, threads, False, accept_stale), None
    except ScalerecError as exc:
        return "failed", str(exc)


def _unwrap(future) -> str:
    status, error = future.result()
    if error is not None:
        raise ScalerecError(error)
    return status


def _check_workers_can_write(client, store: RunStore) -> None:
    """Fail early, naming the worker, when a worker cannot create files in the run store."""
    try:
        client.wait_for_workers(1, timeout=30)
    except TimeoutError:
        raise ScalerecError("the Dask cluster has no workers (none joined within 30 s)") from None
    problems = {
        address: message for address, message in client.run(_can_write, str(store.root.resolve())).items() if message
    }
    if problems:
        address, message = next(iter(problems.items()))
        raise ScalerecError(
            f"Dask worker {address} cannot write the run store: {message} "
            "(the run store must be on a filesystem every worker sees and can write)"
        )


def _can_write(root: str) -> str:
    import tempfile

    try:
        os.makedirs(root, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, prefix=".write-probe-"):
            return ""
    except OSError as exc:
        return f"{root}: {exc.strerror or exc}"


def _task_resources(client, device: str) -> dict[str, float] | None:
    """Ask for a GPU slot when the run uses CUDA and the workers advertise GPUs (dask worker --resources GPU=1)."""
    advertised = {name for info in client.scheduler_info()["workers"].values() for name in info.get("resources", {})}
    return {"GPU": 1} if device != "cpu" and "GPU" in advertised else None


def _run_one(cfg: RunConfig, root: str, device: str, threads: int, progress: bool, accept_stale: bool = False) -> str:
    from ..train.trainer import train_run  # torch is imported in the worker, not by `scalerec grid --dry-run`

    return train_run(cfg, RunStore(root), device=device, threads=threads, progress=progress, accept_stale=accept_stale)
