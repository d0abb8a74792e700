"""Checks shared by the package's command lines (``chainer_va.train``, ``tfp_flows.ugan``, ``rl.train`` and
``reproduce/``). Each returns or raises a one-line message naming the problem and the fix; every command
line turns it into its own one-line error (:mod:`va_core.errors`)."""
from __future__ import annotations

import argparse
import contextlib
import os
from pathlib import Path
from typing import Iterator, Optional

from va_core import runinfo, schedules
from va_core.errors import UsageError, exit_with

__all__ = ["OneLineParser", "out_folder_problem", "check_out_folder", "output_folder", "make_schedule", "positive_sizes",
           "given_options"]


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose command-line errors are one line, ``prog: error: <problem> (see prog --help)``,
    without argparse's usage block; the exit status stays 2 (:mod:`va_core.errors`)."""

    def error(self, message: str):  # noqa: D102  (argparse API)
        exit_with(UsageError("{} (see {} --help)".format(message, self.prog)), self.prog)


def out_folder_problem(out: str | os.PathLike, flag: str = "--out") -> Optional[str]:
    """Why ``out`` cannot be an output folder (it, or a folder above it, is a file; or it cannot be created
    for want of permission), or None if it can."""
    path = Path(out).absolute()
    if path.is_dir():
        return None
    if path.exists():
        return "{} {} is a file, not a folder; choose another {}".format(flag, out, flag)
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return "{} {}: {} is a file, so the folder cannot be created; choose another {}".format(flag, out, parent, flag)
    if not os.access(parent, os.W_OK | os.X_OK):
        return "{} {}: cannot create it in {} (no write permission); choose another {}".format(flag, out, parent, flag)
    return None


def check_out_folder(out: str | os.PathLike, flag: str = "--out") -> None:
    """Raise :class:`va_core.errors.UsageError` (:func:`out_folder_problem`'s message) unless ``out`` can be an
    output folder."""
    problem = out_folder_problem(out, flag)
    if problem:
        raise UsageError(problem)


@contextlib.contextmanager
def output_folder(out: str | os.PathLike, flag: str = "--out") -> Iterator[Path]:
    """A command's output folder for the block: checked (:func:`check_out_folder`), created and locked, one
    job per folder (a second job is a :class:`va_core.runinfo.RunLockedError`, exit status 2)."""
    check_out_folder(out, flag)
    with runinfo.exclusive_run_lock(out):
        yield Path(out)


def make_schedule(name: str, lambda0: float, steps: int, options: Optional[dict] = None,
                  steps_flag: str = "--steps") -> schedules.Schedule:
    """``va_core.schedules.make`` for a command line: options left at None are not passed; an option of
    another schedule, or lgan's default knot interval on a run shorter than it, is a ValueError naming the
    flag to drop or pass (``steps_flag`` names the run length)."""
    options = {k: v for k, v in (options or {}).items() if v is not None}
    misplaced = schedules.misplaced_option(name, options)
    if misplaced:
        raise ValueError(misplaced)
    if name in schedules.names():
        default = schedules.option_defaults(name).get("knot_interval")
        if default is not None and "knot_interval" not in options and steps < default:
            raise ValueError("{}'s default knot interval {} needs {} >= {}; pass --knot-interval (at most {})".format(
                name, default, steps_flag, default, steps))
    return schedules.make(name, lambda0, steps, **options)


def positive_sizes(text: str) -> list:
    """argparse ``type`` of a layer-size list such as ``64,64``: positive integers, else an argparse error
    that names the flag."""
    try:
        sizes = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        sizes = None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("layer sizes must be positive integers separated by commas, such as "
                                         "64,64; got {!r}".format(text))
    return sizes


def given_options(parser: argparse.ArgumentParser, argv) -> set:
    """The ``dest`` of every option given on the command line ``argv`` (the rest are at their defaults)."""
    defaults = [(action, action.default) for action in parser._actions]
    try:  # an option whose default is SUPPRESS appears in the result only when given
        for action, _ in defaults:
            action.default = argparse.SUPPRESS
        return set(vars(parser.parse_args(argv)))
    finally:
        for action, default in defaults:
            action.default = default
