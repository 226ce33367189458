"""The error types of spnas.

Every error spnas raises on purpose derives from :class:`SpnasError`. A
:class:`UserError` is about the user's input (a file, a config value, a
dataset): the command-line tools print it as one line naming what is wrong and
exit with status 2 (:mod:`spnas.cli`), as they do for an ``OSError`` (a missing
or unreadable file). Anything else is a bug and keeps its traceback.

``UserError`` is also a ``ValueError``, so callers that caught ``ValueError``
from spnas before these types existed keep working.
"""

from __future__ import annotations


class SpnasError(Exception):
    """Base class of every error spnas raises on purpose."""


class UserError(SpnasError, ValueError):
    """Bad input: the message names the file, key or value and what is allowed."""


class Interrupted(SpnasError):
    """The run was stopped by SIGINT or SIGTERM; the message says where it can resume.

    The command-line tools print it as one line and exit with status 130.
    """
