"""Packages of spnas; everything else is in pyproject.toml.

The root ``configs/`` folder is installed as the package ``spnas.configs`` (read
through ``importlib.resources``, see spnas/configs_path.py), which the
declarative ``packages.find`` of pyproject.toml cannot express.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["spnas", "spnas.*"]) + ["spnas.configs"],
    package_dir={"spnas.configs": "configs"},
)
