"""Paths shared by the tests (import as ``from tests.helpers import REPO``).

Kept apart from conftest.py: pytest loads conftest itself, test modules import
this module (nothing here imports Keras or TensorFlow).
"""

from __future__ import annotations

import pathlib

REPO = pathlib.Path(__file__).resolve().parents[1]  # the repository root
SPNAS = REPO / "spnas"  # the package's sources
SHARED = REPO.parent / "shared"  # the shared test data, beside the checkout
