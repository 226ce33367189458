"""``spnas-pipeline``: search -> train -> export -> measure on one work directory.

:mod:`spnas.pipeline.run` is the library, :mod:`spnas.pipeline.main` the command.
"""
