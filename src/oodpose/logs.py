"""Where a job's messages go: every workflow script runs inside `rule_log`."""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path

from oodpose.errors import InputError

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextlib.contextmanager
def rule_log(path: str | Path):
    """Send the job's output, tracebacks and the library's `logging` messages (INFO and up) to its rule's log.

    Bad input (`InputError`) ends the job with one line on the console, where the user looks, and in
    the log, instead of a traceback buried in the log.
    """
    console = sys.stderr
    stream = open(path, "w", buffering=1)  # line-buffered: a killed job keeps its last lines
    sys.stdout = sys.stderr = stream
    logging.basicConfig(level=logging.INFO, format=FORMAT, stream=stream, force=True)
    try:
        yield
    except InputError as err:
        logging.getLogger(__name__).error("%s", err)
        print(f"error: {err} (log: {path})", file=console, flush=True)
        raise SystemExit(1) from None
