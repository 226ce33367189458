"""The config files that ship with spnas, read through ``importlib.resources``.

The repository's root ``configs/`` folder is installed as the package
``spnas.configs`` (``pyproject.toml`` maps it), so an editable install, a
plain ``pip install .`` and a wheel all find the same files. Loading a config
imports neither Keras nor TensorFlow.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import os

CONFIG_PACKAGE = "spnas.configs"


def default_config_path(name: str) -> str:
    """Filesystem path of the shipped config ``name`` (e.g. ``"default.py"``).

    Raises:
      FileNotFoundError: naming the shipped configs when there is no such file.
    """
    root = importlib.resources.files(CONFIG_PACKAGE)
    resource = root / name
    if not resource.is_file():
        shipped = sorted(p.name for p in root.iterdir() if p.name.endswith(".py") and p.name[0] != "_")
        raise FileNotFoundError(f"No shipped config {name!r}; shipped: {', '.join(shipped)}.")
    return os.fspath(resource)  # installed as plain files (not zipped): a real path


def load_config(name: str, arg=None):
    """Loads the shipped config ``name`` and returns its ``get_config(arg)``.

    Lets a variant config start from another one (``smoke.py`` from ``default.py``).
    """
    path = default_config_path(name)
    spec = importlib.util.spec_from_file_location(f"spnas_config_{name.replace('.', '_')}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)
