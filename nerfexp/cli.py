"""What the entry points share: expected user errors end the program with one clear line, not a traceback."""
from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from nerfexp.config import user_error_message

log = logging.getLogger("nerfexp")


def run_or_exit(fn: Callable, *args):
    """Call ``fn(*args)``; a user error (bad config value, bad dataset file, missing path; also when raised
    inside a Hydra-instantiated constructor) prints one line and exits with status 2."""
    try:
        return fn(*args)
    except Exception as exc:
        message = user_error_message(exc)
        if message is None:
            raise
        log.error("%s", message)
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
