"""The errors every command reports in one line, and the exit statuses they all share.

Every command (``python -m chainer_va.train``, ``chainer_va.evaluate``, ``tfp_flows.ugan``, ``rl.train``,
``reproduce/*.py``) ends with

* 0: done;
* 1: the run failed (:class:`RunFailedError`): it diverged, or a file it must read back is damaged;
* 2: it was asked for something it cannot do (:class:`UsageError`): a bad flag, value or configuration file,
  data it cannot read or download, an ``--out`` it cannot use (a file, a folder holding another run, a folder
  another job holds), ``--resume`` with other settings or where there is no run. argparse ends a bad
  command line with 2 as well;
* 128 + N: stopped by signal N after saving what resumes it (130 for SIGINT, 143 for SIGTERM).

The message (``error: <message>`` on stderr, :func:`report`) names the problem and the fix. Each package keeps
its own error classes (``ConfigError``, ``UganError``, ...); they subclass these two, which fixes their status.
"""
from __future__ import annotations

import sys
from typing import NoReturn, Optional

__all__ = ["EXIT_FAILED", "EXIT_USAGE", "RunError", "UsageError", "RunFailedError", "report", "exit_with"]

EXIT_FAILED = 1
EXIT_USAGE = 2


class RunError(Exception):
    """An error a command reports in one line; ``exit_status`` is the command's status."""

    exit_status = EXIT_FAILED


class UsageError(RunError):
    """Settings, data or an output folder the command cannot use (exit status 2)."""

    exit_status = EXIT_USAGE


class RunFailedError(RunError):
    """A run that cannot go on: it diverged, or a file it must read back is damaged (exit status 1)."""

    exit_status = EXIT_FAILED


def report(error: RunError, prog: Optional[str] = None) -> int:
    """Print ``[prog: ]error: <message>`` on stderr; return the exit status of ``error``'s kind."""
    print("{}error: {}".format(prog + ": " if prog else "", error), file=sys.stderr)
    return error.exit_status


def exit_with(error: RunError, prog: Optional[str] = None) -> NoReturn:
    """:func:`report` ``error`` and end the process with its status (where a function cannot return one)."""
    raise SystemExit(report(error, prog))
