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


def secondary_rank_overrides() -> list[str]:
    """Hydra overrides for ranks other than 0 of a ``torchrun`` launch: no run dir, no ``.hydra`` folder and no
    log file of their own (rank 0 picks the run dir and writes everything; the others log to the console)."""
    from nerfexp.runtime.distributed import launch_environment

    if launch_environment().rank == 0:
        return []
    return ["hydra.output_subdir=null", "hydra/job_logging=stdout", "hydra.run.dir=."]
