"""Shared pytest setup: quiet TensorFlow, the --runslow flag, ../shared data."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402

from tests.helpers import SHARED, require_shared  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run slow tests")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow") or "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_dir():
    return require_shared(SHARED)


@pytest.fixture(scope="session")
def pixel1_table_path(shared_dir):
    return str(shared_dir / "data" / "pixel1_runtime_model.json")
