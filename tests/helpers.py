"""Paths shared by the tests (import as ``from tests.helpers import REPO``).

Kept apart from conftest.py: pytest loads conftest itself, test modules import
this module (nothing here imports Keras or TensorFlow).
"""

from __future__ import annotations

import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]  # the repository root
SPNAS = REPO / "spnas"  # the package's sources
SHARED = REPO.parent / "shared"  # the shared test data, beside the checkout

ALLOW_NO_SHARED = "SPNAS_ALLOW_NO_SHARED"  # =1: tests needing ../shared skip instead of failing


def require_shared(path: pathlib.Path = SHARED) -> pathlib.Path:
    """``path`` if it exists; else fails the test loudly (skips with ``SPNAS_ALLOW_NO_SHARED=1``)."""
    if path.exists():
        return path
    message = (f"{path} (the shared test data: tables, CIFAR-10 JPEGs) is missing; check it "
               f"out beside the repository, or set {ALLOW_NO_SHARED}=1 to skip the tests "
               "that need it")
    if os.environ.get(ALLOW_NO_SHARED) == "1":
        pytest.skip(message)
    pytest.fail(message, pytrace=False)
