"""Checkpoint folders that survive a kill at any instant, for any framework (the U-GAN's and the RL agent's).

``out/checkpoints/step_<N>/`` holds one checkpoint, whatever its writer puts there. It is written under a
temporary name, fsynced, renamed into place, and only then named by ``latest.json``. The newest ``keep``
are kept; on load a damaged one is skipped, with a warning, for the one before it.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Callable, List, Optional, Tuple, TypeVar

from va_core import runinfo
from va_core.errors import RunFailedError
from va_core.runinfo import one_line

CHECKPOINT_DIR = "checkpoints"
LATEST = "latest.json"
KEEP = 2  # the newest checkpoint and the one before it (the fallback if the newest is damaged)
_STEP_DIR = re.compile(r"^step_(\d{9,})$")
T = TypeVar("T")


class CheckpointError(RunFailedError, RuntimeError):
    """None of a run's checkpoints can be read (the command exits with 1)."""


def _name(step: int) -> str:
    return "step_{:09d}".format(step)


def step_of(folder: Path) -> int:
    """The step a checkpoint folder ``step_<N>`` holds, read from its name."""
    return int(_STEP_DIR.match(Path(folder).name).group(1))


def _step_dirs(out: Path) -> List[Tuple[int, Path]]:
    """(step, folder) of every renamed-into-place checkpoint folder, newest first."""
    root = out / CHECKPOINT_DIR
    if not root.is_dir():
        return []
    found = [(step_of(p), p) for p in root.iterdir() if _STEP_DIR.match(p.name) and p.is_dir()]
    return sorted(found, key=lambda sp: sp[0], reverse=True)


def _read_pointer(out: Path) -> Tuple[Optional[str], Optional[str]]:
    """(folder name in latest.json, problem): (None, None) without a pointer, (None, why) if it is damaged."""
    pointer = out / CHECKPOINT_DIR / LATEST
    if not pointer.exists():
        return None, None
    try:
        name = json.loads(pointer.read_text())["dir"]
        if not isinstance(name, str) or not _STEP_DIR.match(name):
            raise ValueError("no checkpoint folder name in it")
        return name, None
    except (OSError, ValueError, KeyError, TypeError) as e:
        return None, "{} is damaged ({})".format(pointer, one_line(e))


def has_checkpoint(out: str | os.PathLike) -> bool:
    """Whether ``out`` holds a checkpoint folder (readable or not) or a checkpoint pointer."""
    out = Path(out)
    return bool(_step_dirs(out)) or (out / CHECKPOINT_DIR / LATEST).exists()


def latest_step(out: str | os.PathLike) -> Optional[int]:
    """Step of the checkpoint a resume of the run in ``out`` tries first (None without any); does not load it.

    That is the one latest.json names, or the newest folder if the pointer is missing or damaged.
    """
    out = Path(out)
    name, _ = _read_pointer(out)
    if name is not None and (out / CHECKPOINT_DIR / name).is_dir():
        return step_of(name)
    dirs = _step_dirs(out)
    return dirs[0][0] if dirs else None


def _candidates(out: Path) -> Tuple[List[Path], List[str]]:
    """Checkpoint folders to try, in order (the pointer's first, then newest first), and problems found."""
    name, problem = _read_pointer(out)
    problems = [problem] if problem else []
    order = [p for _, p in _step_dirs(out)]
    if name is not None:
        target = out / CHECKPOINT_DIR / name
        if target.is_dir():
            order = [target] + [p for p in order if p != target]
        else:
            problems.append("{} names {}, which does not exist".format(out / CHECKPOINT_DIR / LATEST, target))
    return order, problems


def _fsync_tree(folder: Path) -> None:
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def save(out: Path, step: int, write: Callable[[Path], None], keep: int = KEEP) -> Path:
    """Checkpoint ``step``: ``write(folder)`` fills a temporary folder, which is fsynced and renamed into
    place; then the pointer flips atomically and all but the ``keep`` newest checkpoints up to ``step`` go
    (newer ones are from a discarded continuation)."""
    root = out / CHECKPOINT_DIR
    root.mkdir(parents=True, exist_ok=True)
    name = _name(step)
    tmp = root / (".tmp_" + name)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    write(tmp)
    _fsync_tree(tmp)
    final = root / name
    stale = None
    if final.exists():  # left by a process that stopped before flipping the pointer, or a damaged one
        stale = root / (".old_" + name)
        if stale.exists():
            shutil.rmtree(stale)
        os.replace(final, stale)
    os.replace(tmp, final)
    _fsync_dir(root)
    runinfo.atomic_write_json(root / LATEST, {"dir": name, "step": step})
    if stale is not None:
        shutil.rmtree(stale)
    older = [p for s, p in _step_dirs(out) if s < step][:keep - 1]
    for s, p in _step_dirs(out):
        if p != final and p not in older:
            shutil.rmtree(p)
    for p in root.iterdir():  # leftovers of a save that was killed half-way
        if p.is_dir() and (p.name.startswith(".tmp_") or p.name.startswith(".old_")):
            shutil.rmtree(p)
    return final


def load(out: Path, read: Callable[[Path], T]) -> Tuple[Path, T, List[str]]:
    """``(folder, read(folder), warnings)`` for the newest checkpoint of ``out`` that ``read`` accepts.

    ``read`` restores from a folder and raises on anything damaged or inconsistent; that checkpoint is then
    skipped with a warning naming it, and the previous one is tried. Nothing is written. Raises :class:`CheckpointError` naming
    every folder tried if none loads.
    """
    order, notes = _candidates(out)
    for folder in order:
        try:
            value = read(folder)
        except Exception as e:  # noqa: BLE001 - any failure to read a checkpoint means: try the previous one
            notes.append("checkpoint {} is damaged ({})".format(folder, one_line(e)))
            continue
        # writes nothing: the next save flips the pointer and removes the damaged newer checkpoints
        return folder, value, ["{}; resuming from {} instead".format(n, folder) for n in notes]
    raise CheckpointError("no readable checkpoint in {} ({}); the run cannot be resumed: start it again in "
                          "another out folder (or move this folder away)".format(
                              out / CHECKPOINT_DIR, "; ".join(notes) if notes else "none found"))
