"""Atomic file writes and the configuration record every run writes next to its results."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, TypeVar

from va_core.errors import UsageError

T = TypeVar("T")

CONFIG_FILENAME = "config.json"
#: The lock file a running job holds in its output folder (:func:`exclusive_run_lock`).
LOCK_FILENAME = ".run.lock"


class RunLockedError(UsageError, RuntimeError):
    """Another process is writing into the same output folder."""


@contextmanager
def exclusive_run_lock(out: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``out/.run.lock`` while a job writes into ``out``.

    Two jobs started on one folder would otherwise both run and leave one's results under the other's
    configuration. The lock dies with its process (a killed run leaves no stale lock); where ``fcntl``
    does not exist (Windows) no lock is taken. ``out`` is created if needed; if the job then writes
    nothing into it (it stopped on a bad setting), the folder is removed again.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    folder = Path(out)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILENAME
    try:
        with _locked(path, fcntl, out):
            yield
    finally:
        if created and [p.name for p in folder.iterdir()] == [LOCK_FILENAME]:
            path.unlink(missing_ok=True)
            folder.rmdir()


@contextmanager
def _locked(path: Path, fcntl, out) -> Iterator[None]:
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise RunLockedError("{} is in use by another running job (pid {}); wait for it to finish or choose "
                                 "another output folder".format(out, holder)) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: The process's umask, read once at import (reading it means setting it, which is not thread-safe).
_UMASK = _current_umask()


def publish(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Rename the finished temporary file ``tmp`` onto ``path`` atomically, with the permissions a plain
    ``open(path, "w")`` would give (``tempfile.mkstemp`` makes files private to their owner, which a
    shared data cache or results folder must not be)."""
    os.chmod(tmp, 0o666 & ~_UMASK)
    os.replace(tmp, path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and an atomic rename.

    A reader (or a killed writer) never sees a half-written file: either the old file or the new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        publish(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """:func:`atomic_write_bytes` for a JSON document (indented, keys sorted)."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def environment() -> dict:
    """Versions of Python and the numerical libraries that are imported, and the package's git commit with
    whether tracked files differed from it (for reproducibility records; None outside a git checkout)."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    info = {"python": sys.version.split()[0], "platform": platform.platform(),
            "git_commit": _git("rev-parse", "HEAD") or None,
            "git_modified": None if status is None else bool(status)}
    for name in ("numpy", "chainer", "cupy", "tensorflow", "tensorflow_probability", "gymnasium", "mujoco"):
        module = sys.modules.get(name)
        if module is not None:
            info[name] = getattr(module, "__version__", "?")
    return info


def write_run_config(out: str | os.PathLike, config: Mapping[str, Any], seed: int | None = None,
                     filename: str = CONFIG_FILENAME) -> Path:
    """Record a run's full resolved configuration, its seed, the command line and library versions.

    Written atomically to ``out/config.json``; returns the path.
    """
    record = {
        "config": dict(config),
        "seed": seed if seed is not None else config.get("seed"),
        "command": [sys.executable] + sys.argv,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "environment": environment(),
    }
    return atomic_write_json(Path(out) / filename, record)


def read_run_config(out: str | os.PathLike, filename: str = CONFIG_FILENAME) -> dict:
    """Read back what :func:`write_run_config` wrote."""
    with open(Path(out) / filename) as f:
        return json.load(f)


def read_cache_npz(path: str | os.PathLike, read: Callable[[Any], T]) -> Optional[T]:
    """``read(numpy.load(path))`` for a cache file that can be rebuilt; None when there is none.

    A damaged cache (truncated or overwritten file, missing array) is not an error: it is removed with a
    warning naming it, and None tells the caller to recompute it.
    """
    import warnings
    import zipfile

    import numpy

    path = Path(path)
    if not path.is_file():
        return None
    try:
        with numpy.load(str(path), allow_pickle=False) as stored:
            return read(stored)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as e:
        warnings.warn("cache file {} is damaged ({}: {}); removing it and recomputing".format(
            path, type(e).__name__, e), stacklevel=2)
        path.unlink(missing_ok=True)
        return None


def copy_files(src_dir: str | os.PathLike, dst_dir: str | os.PathLike, names) -> list:
    """Copy ``src_dir/src`` to ``dst_dir/dst`` for each ``(src, dst)`` of ``names``, each atomically, and
    return the written paths; if any source is missing, FileNotFoundError naming them all, before
    anything is copied (e.g. refreshing the figures in docs/images from a finished run)."""
    src_dir, dst_dir = Path(src_dir), Path(dst_dir)
    missing = [str(src_dir / src) for src, _ in names if not (src_dir / src).is_file()]
    if missing:
        raise FileNotFoundError("{} missing; nothing was copied".format(", ".join(missing)))
    return [atomic_write_bytes(dst_dir / dst, (src_dir / src).read_bytes()) for src, dst in names]


def settings_differences(recorded: Mapping[str, Any], wanted: Mapping[str, Any], may_change=(),
                         keys=None, absent: Any = "(absent)") -> dict:
    """``{key: (recorded value, wanted value)}`` where a run's recorded settings and the wanted ones differ:
    the one settings-difference finder of every entry point (its resume check and its reuse check).

    Values are compared as they read back from a record (JSON: tuples become lists, numpy scalars
    numbers). Compared: ``keys`` (default: every key of either side) but those in ``may_change``; a key
    one side lacks reads as ``absent``. Sorted by key."""
    recorded, wanted = json.loads(json.dumps(recorded, default=str)), json.loads(json.dumps(wanted, default=str))
    keys = set(recorded) | set(wanted) if keys is None else keys
    diffs = {}
    for key in sorted(keys):
        old, new = recorded.get(key, absent), wanted.get(key, absent)
        if key not in may_change and old != new:
            diffs[key] = (old, new)
    return diffs


def one_line(error: BaseException, limit: int = 300) -> str:
    """``Type: message`` of ``error`` on one line, at most ``limit`` characters: how every entry point
    names an exception inside its own one-line error message."""
    text = " ".join("{}: {}".format(type(error).__name__, error).split())
    return text if len(text) <= limit else text[:limit] + "..."


def format_differences(diff: Mapping[str, tuple]) -> str:
    """``"key: old -> new, ..."`` for :func:`settings_differences`' result."""
    return ", ".join("{}: {!r} -> {!r}".format(k, old, new) for k, (old, new) in diff.items())


def resume_problem(recorded: Mapping[str, Any], wanted: Mapping[str, Any], may_change: Sequence[str],
                   out: str | os.PathLike, keys=None) -> Optional[str]:
    """Why the run recorded in ``out`` cannot be resumed with the ``wanted`` settings, or None: one line
    naming every difference (recorded -> now, :func:`settings_differences` over ``keys`` but ``may_change``)
    and the fix. Every entry point's resume check; ``may_change`` is its own list."""
    diff = settings_differences(recorded, wanted, may_change, keys=keys)
    if not diff:
        return None
    return ("cannot resume {}: these settings differ from its record {} (recorded -> now): {}; resume with the "
            "recorded settings, or choose another --out for the new ones (only {} may change on resume; nothing "
            "was written)".format(out, Path(out) / CONFIG_FILENAME, format_differences(diff), ", ".join(may_change)))
