"""Stop signals (Ctrl-C's SIGINT, and SIGTERM from `kill`, SLURM or Kubernetes) that never lose work.

While a run starts up, nothing has been trained, so a signal stops it at once (`Interrupted` is
raised where the program is) and the launcher removes the run folder it was making. Once training
runs, the handler only sets a flag: the loop reads it between steps, saves a checkpoint and stops,
so the checkpoint always holds a whole step and a resumed run continues the same curve bit for bit.
A second signal while the loop is finishing its step stops at once; the last checkpoint is intact.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(Exception):
    """A stop signal arrived where stopping at once is safe; `signum` says which."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by a signal: 130 for SIGINT, 143 for SIGTERM."""
        return 128 + self.signum


class StopSignals:
    """Catches SIGINT and SIGTERM while active (a context manager); a no-op outside the main thread."""

    def __init__(self):
        self.signum: int | None = None
        self.deferring = False
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame) -> None:
        first = self.signum is None
        self.signum = signum
        if not (self.deferring and first):
            raise Interrupted(signum)

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    @contextmanager
    def deferred(self):
        """Inside the block a first signal only sets the flag (`requested`); the caller stops when it can."""
        outer, self.deferring = self.deferring, True
        try:
            yield self
        finally:
            self.deferring = outer
