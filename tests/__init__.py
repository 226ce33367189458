"""The spnas test suite, a package: helpers are imported as ``tests.<module>``.

pytest (``rootdir``-relative, ``prepend`` import mode) puts the repository root
on ``sys.path`` because this folder is a package, so ``python -m pytest`` and
plain ``pytest``, from the repository root or elsewhere, import the helpers the
same way.
"""
