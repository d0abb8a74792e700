"""Ctrl-C (SIGINT) and SIGTERM (a cluster's pre-emption) end a training run at the next iteration boundary,
with a snapshot of that iteration, instead of losing everything since the last periodic snapshot."""
from __future__ import annotations

import signal
import sys
import threading
from typing import Callable, Optional

#: Signals that ask a run to stop after its current iteration (a second one stops it at once).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class GracefulStop:
    """A Chainer stop trigger: ``inner``'s decision, or True once a stop signal has arrived.

    Used as ``with GracefulStop(inner) as stop: Trainer(updater, stop)``. Inside the ``with`` block the
    first SIGINT/SIGTERM only sets :attr:`requested` (the iteration in progress finishes, the snapshot
    extension sees the request and writes a snapshot, the trainer stops); a second one raises
    KeyboardInterrupt as usual. Handlers are installed only in the main thread and restored on exit.
    """

    def __init__(self, inner: Callable, out=None):
        self.inner = inner
        self.requested: Optional[str] = None
        self._out = out or sys.stderr
        self._previous = {}

    def __call__(self, trainer) -> bool:
        return self.requested is not None or bool(self.inner(trainer))

    def get_training_length(self):
        """The inner trigger's length (Chainer's ProgressBar asks the stop trigger for it)."""
        return self.inner.get_training_length()

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.requested is not None:
            raise KeyboardInterrupt("second {} while stopping".format(name))
        self.requested = name
        self._out.write("\n{}: finishing this iteration and writing a snapshot (send it again to stop at once)\n"
                        .format(name))
        self._out.flush()

    def __enter__(self) -> "GracefulStop":
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
