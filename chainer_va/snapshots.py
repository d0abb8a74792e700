"""Atomic trainer snapshots: write through a temporary file + rename; unreadable snapshots are a clear error.

A snapshot holds the whole trainer (:meth:`chainer.training.Trainer.serialize`): every model (BN
statistics included), every optimizer's state, the data iterator (position, order and its shuffling
RandomState), the latent and noise RandomStates of the updater, and the extensions' state (the log).
So ``--resume`` continues exactly where the snapshot was taken.
"""
from __future__ import annotations

import io
import os
import re
import zipfile
from pathlib import Path
from typing import Optional

import numpy

from chainer_va import compat  # noqa: F401  (must precede chainer)

from chainer import serializers
from chainer.training import extension

from va_core.errors import RunFailedError
from va_core.runinfo import atomic_write_bytes, one_line

__all__ = ["SnapshotError", "SNAPSHOT_PREFIX", "snapshot_path", "list_snapshots", "latest_snapshot",
           "save_npz_atomic", "load_npz_checked", "AtomicSnapshot"]

SNAPSHOT_PREFIX = "snapshot_iter_"
_SNAPSHOT_RE = re.compile(r"^" + SNAPSHOT_PREFIX + r"(\d+)\.npz$")


class SnapshotError(RunFailedError, RuntimeError):
    """A snapshot (or saved model) cannot be read or does not fit the run it is loaded into."""


def snapshot_path(out: str | os.PathLike, iteration: int) -> Path:
    """``out/snapshot_iter_<iteration>.npz``."""
    return Path(out) / "{}{:08d}.npz".format(SNAPSHOT_PREFIX, iteration)


def list_snapshots(out: str | os.PathLike) -> list:
    """(iteration, path) of every snapshot in ``out``, oldest first."""
    out = Path(out)
    if not out.is_dir():
        return []
    found = []
    for path in out.iterdir():
        match = _SNAPSHOT_RE.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_snapshot(out: str | os.PathLike) -> Optional[Path]:
    """The newest snapshot in ``out``, or None."""
    found = list_snapshots(out)
    return found[-1][1] if found else None


def save_npz_atomic(path: str | os.PathLike, target) -> Path:
    """``chainer.serializers.save_npz`` of ``target``, written atomically (temp file + rename)."""
    serializer = serializers.DictionarySerializer()
    serializer.save(target)
    buffer = io.BytesIO()
    numpy.savez(buffer, **serializer.target)
    return atomic_write_bytes(path, buffer.getvalue())


def load_npz_checked(path: str | os.PathLike, target, path_in_file: str = "", what: str = "snapshot") -> None:
    """Load ``path`` into ``target``; any unreadable, corrupted or mismatching file raises :class:`SnapshotError`."""
    path = Path(path)
    if not path.is_file():
        raise SnapshotError("{} {} does not exist".format(what, path))
    try:
        with numpy.load(str(path), allow_pickle=False) as npz:
            serializers.NpzDeserializer(npz, path=path_in_file, strict=True).load(target)
    except KeyError as e:
        raise SnapshotError(
            "{} {} does not match this run ({} is missing): it was written by a run with another "
            "objective, annealing term or network size; resume with the configuration that wrote it".format(
                what, path, e)) from e
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, TypeError, zipfile.LargeZipFile) as e:
        if isinstance(e, ValueError) and ("broadcast" in str(e) or "shape" in str(e)):
            raise SnapshotError(
                "{} {} does not match this run (an array has another shape: {}): it was written by a run with "
                "another network size or image size; load it with the configuration that wrote it".format(
                    what, path, e)) from e
        raise SnapshotError(
            "{} {} is corrupted or unreadable ({}); delete it to fall back on the previous snapshot "
            "(if any), or start a new run in a fresh --out".format(what, path, one_line(e))) from e


class NonFiniteParametersError(FloatingPointError):
    """A network's parameters hold NaN or infinity (at a snapshot, so none was written)."""


def check_finite_parameters(updater, iteration: int) -> None:
    """Raise :class:`NonFiniteParametersError` naming the first parameter of any optimizer's link that is
    not finite."""
    for name, optimizer in sorted(updater.get_all_optimizers().items()):
        for path, param in optimizer.target.namedparams():
            if param.array is not None and not bool(param.xp.isfinite(param.array).all()):
                raise NonFiniteParametersError(
                    "parameter {}{} of {!r} is not finite after iteration {} (an update overflowed); no "
                    "snapshot was written for it".format(name, path, name, iteration))


class AtomicSnapshot(extension.Extension):
    """Write ``out/snapshot_iter_<N>.npz`` atomically every ``interval`` iterations, at ``stop_iteration`` and
    after the iteration in which a stop signal arrived (``stop_request``, a
    :class:`va_core.interrupt.GracefulStop`); keep the newest ``keep`` snapshots (None keeps all)."""

    priority = -100  # after the log and the plots, so the snapshot holds this iteration's log
    trigger = (1, "iteration")

    def __init__(self, out: str | os.PathLike, interval: int, stop_iteration: int, keep: Optional[int] = 2,
                 stop_request=None):
        if interval <= 0:
            raise ValueError("snapshot interval must be positive, got {}".format(interval))
        if keep is not None and keep < 1:
            raise ValueError("keep must be >= 1 (or None for all), got {}".format(keep))
        self.out = Path(out)
        self.interval = int(interval)
        self.stop_iteration = int(stop_iteration)
        self.keep = keep
        self.stop_request = stop_request  # a GracefulStop: a stop signal also writes this iteration's snapshot
        # a run killed while writing a snapshot leaves its full-size temporary file (runinfo.atomic_write_bytes)
        for stale in self.out.glob(".snapshot_iter_*.tmp"):
            stale.unlink()

    def __call__(self, trainer):
        iteration = trainer.updater.iteration
        stopping = self.stop_request is not None and self.stop_request.requested is not None
        if iteration % self.interval and iteration < self.stop_iteration and not stopping:
            return
        # an update can overflow although its loss was finite: such weights are never written as a
        # snapshot (nor do they push an older, good snapshot out of the kept ones)
        check_finite_parameters(trainer.updater, iteration)
        save_npz_atomic(snapshot_path(self.out, iteration), trainer)
        if self.keep is not None:
            for _, old in list_snapshots(self.out)[:-self.keep]:
                old.unlink()
