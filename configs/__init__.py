"""The shipped experiment configs (``ml_collections``), installed as ``spnas.configs``."""
