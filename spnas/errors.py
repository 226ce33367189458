"""The errors a command-line run reports as one clear line (no stack trace)."""

from __future__ import annotations


def _user_errors() -> tuple[type[BaseException], ...]:
    from spnas.latency.table import LatencyTableError
    from spnas.search.decode import ArchError
    from spnas.train.runner import TrainingDivergedError

    errors: list[type[BaseException]] = [
        LatencyTableError, ArchError, TrainingDivergedError, FileNotFoundError, PermissionError,
        ValueError,
    ]
    try:
        from spnas.data import DatasetError

        errors.append(DatasetError)
    except ImportError:
        pass
    return tuple(errors)


USER_ERRORS = _user_errors()
