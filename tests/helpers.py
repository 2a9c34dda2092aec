"""Shared by the end-to-end tests."""

import contextlib
import io
import multiprocessing
import os
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor

from scalerec.machine import available_cores


def scalerec(*args, cwd=None, ok=True):
    """Run the real `scalerec` command (python -m scalerec) and return the CompletedProcess."""
    env = os.environ | {"TQDM_DISABLE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "scalerec", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=600,
    )
    if ok:
        assert result.returncode == 0, result.stderr
    return result


def scalerec_in_process(*args, cwd, ok=True):
    """The same command through the console entry point in this process: no interpreter start-up, so the quick loop
    can check many one-line errors; the end-to-end tests run the real process (`scalerec` above)."""
    from scalerec.cli import run

    out, err, here = io.StringIO(), io.StringIO(), os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                run([str(a) for a in args])
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        os.chdir(here)
    result = subprocess.CompletedProcess(["scalerec", *map(str, args)], code, out.getvalue(), err.getvalue())
    if ok:
        assert code == 0, result.stderr
    return result


def map_replicates(function, items):
    """[function(item) for item in items], in forked processes, one per core: the replicate studies are
    deterministic per item (fixed seeds), so the list is the serial one; `function` must be a module-level function."""
    workers = min(available_cores(), len(items))
    if workers < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return [function(item) for item in items]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        return list(pool.map(function, items))
