"""Trainer extensions of the GAN runs: a grid of samples from fixed latents, written atomically as PNG;
plots and printed rows that resume exactly; progress as plain lines where output is not a terminal."""
from __future__ import annotations

import io
import os
import re
import sys
import time
from pathlib import Path
from typing import Callable, Optional, TextIO

import numpy

from chainer_va import compat  # noqa: F401  (must precede chainer)

import chainer
from chainer.training import extension
from chainer.training import extensions as E

from va_core.runinfo import atomic_write_bytes

__all__ = ["tile_images", "save_image_grid", "SampleGrid", "ResumablePlotReport", "ResumablePrintReport",
           "PlainText", "LineProgress"]


class ResumablePlotReport(E.PlotReport):
    """Chainer's PlotReport whose snapshot also holds its trigger and the running mean since its last point.

    ``PlotReport.serialize`` saves only the plotted points (chainer/training/extensions/plot_report.py),
    so after ``--resume`` its fresh trigger fired at the first iteration and the next point averaged only
    the iterations after the resume; with both saved, a resumed run plots the uninterrupted run's points.

    ``key_prefix``: also plot every observed key that starts with it (a plugin objective's ``loss_*``
    terms). ``may_be_missing``: a snapshot written before this plot existed loads; the plot starts there.
    """

    def __init__(self, y_keys, x_key: str = "iteration", trigger=(1, "epoch"), key_prefix: Optional[str] = None,
                 may_be_missing: bool = False, **kwargs):
        super().__init__(list(y_keys), x_key, trigger, **kwargs)
        self.key_prefix = key_prefix
        self.may_be_missing = may_be_missing

    @property
    def default_name(self) -> str:
        return "PlotReport"  # Chainer's name: snapshots keep their keys (extensions/PlotReport/...)

    def _add_observed_keys(self, observation) -> None:
        """Append the observed keys with ``key_prefix`` that are not plotted yet (their points, restored
        from a snapshot, are kept)."""
        if self.key_prefix is None:
            return
        for key in sorted(observation):
            if key.startswith(self.key_prefix) and key not in self._y_keys:
                self._y_keys.append(key)
                self._data.setdefault(key, [])

    def __call__(self, trainer) -> None:
        """Chainer's plot, written atomically: ``PlotReport.__call__`` (plot_report.py:187) saves straight
        onto ``out/<file_name>``, so a kill during ``savefig`` left a torn PNG; here the figure goes to
        ``<stem>.partial<ext>`` (savefig picks the format from the extension) and replaces the plot in one
        rename. ``_file_name`` is swapped only during the call (``serialize`` keys on it)."""
        self._add_observed_keys(trainer.observation)
        final = self._file_name
        stem, ext = os.path.splitext(final)
        self._file_name = stem + ".partial" + ext
        try:
            super().__call__(trainer)
        finally:
            self._file_name = final
        partial = os.path.join(trainer.out, stem + ".partial" + ext)
        if os.path.exists(partial):
            os.replace(partial, os.path.join(trainer.out, final))

    def serialize(self, serializer):
        try:
            super().serialize(serializer)
        except KeyError:
            if not (self.may_be_missing and isinstance(serializer, chainer.serializer.Deserializer)):
                raise
            return  # a snapshot written before this plot existed: it starts at the resumed iteration
        if hasattr(self._trigger, "serialize"):  # a stateless trigger (a function of the iteration) has none
            self._trigger.serialize(serializer["_trigger"])
        self._summary.serialize(serializer["_summary"])


class ResumablePrintReport(E.PrintReport):
    """Chainer's PrintReport that remembers how many log rows it printed, so a resumed run prints only
    the new ones (``PrintReport.serialize`` saves no count and reprints the whole log after a resume)."""

    @property
    def default_name(self) -> str:
        return "PrintReport"  # Chainer's name, as above

    def serialize(self, serializer):
        super().serialize(serializer)
        try:
            self._log_len = int(serializer("_log_len", self._log_len))
        except KeyError:  # a snapshot written before this count was saved
            pass


#: Least seconds between two :class:`LineProgress` lines.
LINE_PROGRESS_SECONDS = 30.0


class PlainText:
    """A text stream that drops ANSI cursor and erase sequences (Chainer's PrintReport writes ``\\033[J``
    before each row, chainer/training/extensions/print_report.py:68), for output to a log file."""

    _ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

    def __init__(self, stream: TextIO):
        self.stream = stream

    def write(self, text: str) -> int:
        plain = self._ESCAPE.sub("", text)
        if plain:
            self.stream.write(plain)
        return len(text)  # what the caller handed over, as a stream's write reports

    def flush(self) -> None:
        self.stream.flush()


class LineProgress(extension.Extension):
    """Progress as one plain line (iteration, share done, speed, time left), for output that is not a
    terminal, where Chainer's ProgressBar redraws its bar with cursor sequences. Printed at the first
    multiple of ``interval`` this process reaches, then at most every ``min_seconds`` (at multiples of
    ``interval``), and at the last iteration."""

    trigger = (1, "iteration")
    priority = extension.PRIORITY_READER

    def __init__(self, total: int, interval: int = 10, min_seconds: float = LINE_PROGRESS_SECONDS,
                 out: Optional[TextIO] = None, clock: Callable[[], float] = time.monotonic):
        self.total, self.interval, self.min_seconds = int(total), int(interval), float(min_seconds)
        self.out, self.clock = out, clock
        self._start = None  # (clock, iteration) when this process began training
        self._last = None

    @property
    def default_name(self) -> str:
        return "LineProgress"

    def __call__(self, trainer) -> None:
        iteration, now = trainer.updater.iteration, self.clock()
        if self._start is None:  # the speed is measured from this process's first iteration on
            self._start = (now, iteration)
        due = iteration % self.interval == 0 and iteration > self._start[1] \
            and (self._last is None or now - self._last >= self.min_seconds)
        if not (due or iteration >= self.total):
            return
        rate = (iteration - self._start[1]) / max(now - self._start[0], 1e-9)
        left = (self.total - iteration) / rate if rate > 0 else float("inf")
        out = self.out or sys.stdout  # today's stdout, not import time's
        out.write("iteration {}/{} ({:.1f}%), {:.3g} it/s, about {} left\n".format(
            iteration, self.total, 100.0 * iteration / self.total, rate, _duration(left)))
        out.flush()
        self._last = now


def _duration(seconds: float) -> str:
    """``1:02:03`` for a finite number of seconds, ``?`` otherwise."""
    if not seconds < float("inf"):
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    return "{}:{:02d}:{:02d}".format(minutes // 60, minutes % 60, secs)


def tile_images(images: numpy.ndarray, rows: int, cols: int) -> numpy.ndarray:
    """(N, C, H, W) floats in [-1, 1] -> one uint8 (rows*H, cols*W[, C]) image (N <= rows * cols)."""
    n, c, h, w = images.shape
    if n > rows * cols:
        raise ValueError("{} images do not fit a {}x{} grid".format(n, rows, cols))
    pixels = numpy.clip((numpy.asarray(images, numpy.float32) + 1.0) * 127.5 + 0.5, 0, 255).astype(numpy.uint8)
    grid = numpy.zeros((rows * h, cols * w, c), numpy.uint8)
    for i in range(n):
        r, k = divmod(i, cols)
        grid[r * h:(r + 1) * h, k * w:(k + 1) * w] = pixels[i].transpose(1, 2, 0)
    return grid[:, :, 0] if c == 1 else grid


def save_image_grid(path: str | os.PathLike, images: numpy.ndarray, rows: int, cols: int) -> Path:
    """Tile ``images`` (in [-1, 1]) and write them as a PNG, atomically."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(tile_images(images, rows, cols)).save(buffer, format="PNG")
    return atomic_write_bytes(path, buffer.getvalue())


class SampleGrid(extension.Extension):
    """Every trigger, G (inference mode) on fixed latents -> ``out/samples/iter_<N>.png`` and ``out/samples.png``.

    The latents come from their own RandomState (``seed``), so writing samples never changes the
    training run's random numbers.
    """

    priority = extension.PRIORITY_READER

    def __init__(self, generator: chainer.Link, latent_dim: int, out: str | os.PathLike, seed: int,
                 rows: int = 8, cols: int = 8, low: float = -1.0, high: float = 1.0):
        self.generator = generator
        self.out = Path(out)
        self.rows = rows
        self.cols = cols
        self.z = numpy.random.RandomState(seed).uniform(low, high, (rows * cols, latent_dim)).astype(numpy.float32)

    def __call__(self, trainer):
        images = self.sample()
        iteration = trainer.updater.iteration
        save_image_grid(self.out / "samples" / "iter_{:08d}.png".format(iteration), images, self.rows, self.cols)
        save_image_grid(self.out / "samples.png", images, self.rows, self.cols)

    def sample(self) -> numpy.ndarray:
        """G(z_fixed) as a numpy array (inference mode: BN running statistics)."""
        device = self.generator.device
        with chainer.using_config("train", False), chainer.no_backprop_mode():
            x = self.generator(device.send(self.z))
        return chainer.backend.CpuDevice().send(x.array)
