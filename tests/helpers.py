"""Shared by the end-to-end tests."""

import os
import subprocess
import sys


def scalerec(*args, cwd=None, ok=True):
    """Run the real `scalerec` command (python -m scalerec) and return the CompletedProcess."""
    env = os.environ | {"TQDM_DISABLE": "1"}
    result = subprocess.run([sys.executable, "-m", "scalerec", *map(str, args)], capture_output=True, text=True,
                            cwd=cwd, env=env, timeout=600)
    if ok:
        assert result.returncode == 0, result.stderr
    return result
