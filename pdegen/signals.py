"""SIGTERM, what SLURM and ``scancel`` send, as a clean stop with exit code 143 (128 + 15).

Outside a fitting Trainer the signal raises ``SystemExit(143)`` where the program is, so ``finally``
blocks run: writers remove their temporary files and locks, and no report of an interrupted evaluation
is written. While a Trainer fits, Lightning's own handler (which calls this one) only notes the signal;
the training loop stops at the end of the current batch, :class:`~pdegen.callbacks.RunCheckpoint` writes
a final ``last.ckpt`` and :func:`sigterm_stops` turns Lightning's ``SIGTERMException`` (an exit with status
0) into 143.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

EXIT_CODE = 128 + signal.SIGTERM
_fitting = False


def _terminate(signum: int, frame) -> None:
    if _fitting and signal.getsignal(signal.SIGTERM) is not _terminate:
        return  # called by a fitting Trainer's handler: it stops at the end of the batch and checkpoints
    raise SystemExit(EXIT_CODE)


def fitting(active: bool) -> None:
    """Tell the handler whether a Trainer is fitting (``PdegenCLI`` calls it before ``fit``)."""
    global _fitting
    _fitting = active


def _from_lightning(stop: SystemExit) -> bool:
    if "lightning.pytorch" not in sys.modules:  # not imported: cannot be its exception (and stays unimported)
        return False
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    return isinstance(stop, SIGTERMException)


@contextmanager
def sigterm_stops() -> Iterator[None]:
    """Run the block with SIGTERM as a clean stop (a no-op outside the main thread, where signals cannot
    be handled); an interrupted fit exits with :data:`EXIT_CODE` too."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    except SystemExit as stop:
        if not _from_lightning(stop):
            raise
        print(f"{sys.argv[0]}: stopped by SIGTERM; the last checkpoint holds the steps completed "
              "(resume with --ckpt_path last)", file=sys.stderr)
        raise SystemExit(EXIT_CODE) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
        fitting(False)
