"""Shared pytest setup: quiet TensorFlow, the --runslow and --run-multiprocess flags,
../shared data."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402

from tests.helpers import SHARED, require_shared  # noqa: E402

# Marker -> the flag that runs its tests (selecting the marker with -m does too).
OPT_IN_MARKERS = {"slow": "--runslow", "multiprocess": "--run-multiprocess"}


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run slow tests")
    parser.addoption("--run-multiprocess", action="store_true", default=False,
                     help="run tests that start a local cluster of worker processes")


def pytest_collection_modifyitems(config, items):
    selected = config.getoption("-m") or ""
    for marker, flag in OPT_IN_MARKERS.items():
        if config.getoption(flag) or marker in selected:
            continue
        skip = pytest.mark.skip(reason=f"{marker}: run with {flag}")
        for item in items:
            if marker in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_dir():
    return require_shared(SHARED)


@pytest.fixture(scope="session")
def pixel1_table_path(shared_dir):
    return str(shared_dir / "data" / "pixel1_runtime_model.json")
