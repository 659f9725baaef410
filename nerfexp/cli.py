"""What the entry points share: expected user errors end the program with one clear line, not a traceback."""
from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from nerfexp.config import ConfigError
from nerfexp.data.blender import DatasetError

log = logging.getLogger("nerfexp")
USER_ERRORS = (ConfigError, DatasetError, FileNotFoundError)


def run_or_exit(fn: Callable, *args):
    """Call ``fn(*args)``; a user error (bad config value, bad dataset file, missing path) prints one line and
    exits with status 2."""
    try:
        return fn(*args)
    except USER_ERRORS as exc:
        log.error("%s", exc)
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
