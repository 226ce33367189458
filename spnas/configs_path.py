"""Where the bundled config files (``configs/`` at the repository root) live.

spnas is installed from its repository (``pip install -e .``), so the configs
are read from there.
"""

from __future__ import annotations

import os

_REPO_CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def default_config_path(name: str) -> str:
    """Path of ``configs/<name>``."""
    return os.path.join(_REPO_CONFIGS, name)


def load_config(name: str, arg=None):
    """Loads ``configs/<name>`` and returns its ``get_config(arg)``.

    Lets a variant config start from another one (``smoke.py`` from ``default.py``).
    """
    import importlib.util

    path = default_config_path(name)
    spec = importlib.util.spec_from_file_location(f"spnas_config_{name.replace('.', '_')}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)
