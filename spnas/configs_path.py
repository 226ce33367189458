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
