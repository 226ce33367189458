"""The math core (superkernel, block, supernet) passes the same tests under JAX.

Keras fixes its backend at import, so the backend-neutral test files are run
again in a subprocess with KERAS_BACKEND=jax.
"""

import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

CORE_TESTS = ("test_superkernel.py", "test_block.py", "test_supernet.py")


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax not installed")
def test_core_under_jax_backend():
    here = pathlib.Path(__file__).parent
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         *[str(here / t) for t in CORE_TESTS]],
        env=env, capture_output=True, text=True, timeout=1200,
    )
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]
    assert " passed" in r.stdout and "failed" not in r.stdout
