"""What this machine offers a run: the cores this process may use, and how to share them among workers."""

from __future__ import annotations

import os
import signal
import sys


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity (a container's or `taskset`'s limit) where the OS reports
    one, else the host's count."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def threads_per_worker(workers: int) -> int:
    """Torch threads for each of `workers` concurrent runs, so that together they do not oversubscribe the cores."""
    return max(1, available_cores() // max(1, workers))


def die_with_parent() -> None:
    """Linux: the kernel kills this worker process when its parent dies, so a kill -9 of a command leaves no
    orphaned workers (a ProcessPoolExecutor initializer)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
