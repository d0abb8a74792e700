"""A U-GAN run folder: the run's record, its checkpoints, its log and its snapshots, and the rules that let a
killed run resume exactly (what :mod:`tfp_flows.ugan` trains stays there).

``out/config.json`` is the run's record (``va_core.runinfo``; a resumed run adds ``config_resume_<step>.json``),
``out/checkpoints/step_<N>/`` the TensorFlow checkpoints (:mod:`va_core.checkpoints`: the newest two, a damaged
one skipped for the one before it), ``out/log.jsonl`` one row per logged step
(appended as logged, cut back to the checkpoint on resume), ``out/snapshots/step_<t>.npy`` samples at chosen
steps, ``out/samples.npy`` the final samples. A damaged file is a :class:`DamagedFileError` naming the fix.
"""
from __future__ import annotations

import dataclasses
import io
import json
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import tensorflow as tf

from va_core import checkpoints, runinfo
from va_core.errors import RunError, RunFailedError, UsageError
from va_core.runinfo import one_line


class UganError(RunError):
    """An error of a U-GAN run; the message names the problem and the fix. The CLI prints it as one line and
    exits with status 2 (settings, run folder: :class:`va_core.errors.UsageError`) or 1 (a damaged file, a
    diverged run: :class:`va_core.errors.RunFailedError`)."""


class RunExistsError(UganError, UsageError, FileExistsError):
    """``out`` already holds a run and ``resume`` was not asked for (nothing was written)."""


class ResumeMismatchError(UganError, UsageError, ValueError):
    """``resume=True`` with settings that differ from the run recorded in ``out/config.json``."""


class DamagedFileError(UganError, RunFailedError, RuntimeError):
    """A file of a run folder (checkpoint, snapshot, log, config record) cannot be read back."""


#: Keys of the recorded configuration that a resumed run may change: they decide only when rows are
#: logged and checkpoints written, not the training itself (steps run in the same order whatever the
#: chunking). Everything else, ``extra_config`` (the CLI's ``target``) included, must be equal.
RESUME_MAY_CHANGE = ("log_every", "checkpoint_every")
LOG_FILE = "log.jsonl"


def read_log(path: Path, upto_step: int) -> List[dict]:
    """The rows of ``log.jsonl`` with ``step <= upto_step``. Rows are appended as they are logged, so a
    killed run may leave rows past its last checkpoint (dropped here: the resumed run logs them again)
    and a torn last line (ignored: it was being written when the run was killed, past the checkpoint)."""
    if not path.exists():
        return []
    lines = path.read_bytes().decode("utf-8", errors="replace").split("\n")
    rows = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            step = int(row["step"])
        except (ValueError, KeyError, TypeError) as e:
            if i == len(lines) - 1:
                continue
            raise DamagedFileError("{} line {} is damaged ({}); delete that line, or the whole file (it is the "
                                   "run's record only: the checkpoints hold the training state), and resume "
                                   "again".format(path, i + 1, one_line(e))) from None
        if step <= upto_step:
            rows.append(row)
    return rows


def load_snapshot(path: Path, shape: tuple) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
        if array.shape != shape:
            raise ValueError("shape {} instead of {}".format(array.shape, shape))
        return array
    except (OSError, ValueError, EOFError) as e:
        raise DamagedFileError("snapshot {} is damaged ({}); a checkpoint cannot rebuild it: delete it to "
                               "resume without that snapshot, or start again in another out folder".format(
                                   path, one_line(e))) from None


def recorded_config(out_path: Path) -> dict:
    try:
        return runinfo.read_run_config(out_path)["config"]
    except FileNotFoundError:
        raise DamagedFileError("{} holds checkpoints but no {}, so the run's settings cannot be checked; put "
                               "the run's {} back, or start again in another out folder".format(
                                   out_path, runinfo.CONFIG_FILENAME, runinfo.CONFIG_FILENAME)) from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DamagedFileError("{} is damaged ({}), so the run's settings cannot be checked; put the run's "
                               "record back, or start again in another out folder".format(
                                   out_path / runinfo.CONFIG_FILENAME, one_line(e))) from None


def check_folder(out_path: Optional[Path], config: dict, resume: bool) -> bool:
    """Whether the out folder holds a checkpoint, checked before anything is written: a run there needs
    ``resume``, and a resumed run its recorded settings."""
    if out_path is None:
        return False
    if any((out_path / checkpoints.CHECKPOINT_DIR).glob("ckpt-*.index")):
        raise RunExistsError("{} holds TensorFlow CheckpointManager files (ckpt-N) of an older tfp_flows, which "
                             "this one cannot resume; start again in another out folder".format(
                                 out_path / checkpoints.CHECKPOINT_DIR))
    has_checkpoint = checkpoints.has_checkpoint(out_path)
    has_record = (out_path / runinfo.CONFIG_FILENAME).exists()
    if (has_checkpoint or has_record) and not resume:
        held = ([runinfo.CONFIG_FILENAME] if has_record else []) + ([checkpoints.CHECKPOINT_DIR] if has_checkpoint
                                                                     else [])
        raise RunExistsError("{} already holds a run ({}); pass resume=True (--resume) to continue it with the "
                             "same settings, or choose a new out folder (nothing was written)".format(
                                 out_path, ", ".join(held)))
    if resume and (has_checkpoint or has_record):
        problem = runinfo.resume_problem(recorded_config(out_path), config, RESUME_MAY_CHANGE, out_path)
        if problem:
            raise ResumeMismatchError(problem)
    return has_checkpoint


@dataclasses.dataclass
class RunState:
    """What a (resumed) run starts from: its step, log rows and snapshots; how to checkpoint; its open log."""

    start: int = 0
    history: List[dict] = dataclasses.field(default_factory=list)
    snapshots: Dict[int, np.ndarray] = dataclasses.field(default_factory=dict)
    save: Optional[Callable[[int], object]] = None
    log_handle: Optional[object] = None


def restore_snapshots(out_path: Path, config: dict, start: int, shape: tuple, quiet: bool) -> Dict[int, np.ndarray]:
    snapshots = {}
    for t in config["snapshot_steps"]:
        f = out_path / "snapshots" / "step_{}.npy".format(t)
        if t <= start:
            if f.exists():
                snapshots[t] = load_snapshot(f, shape)
            elif not quiet:
                print("note: {} is missing; the resumed run has no snapshot at step {}".format(f, t), file=sys.stderr)
    return snapshots


def restore(out_path: Path, ckpt: tf.train.Checkpoint, step_var: tf.Variable, quiet: bool) -> int:
    """Restore the newest readable checkpoint of ``out_path`` into ``ckpt``; returns its step."""
    def read(folder: Path) -> int:
        ckpt.read(str(folder / "model")).assert_existing_objects_matched()
        step = int(step_var.numpy())
        if step != checkpoints.step_of(folder):
            raise ValueError("it holds step {}".format(step))
        return step

    _, start, warnings = checkpoints.load(out_path, read)
    for w in [] if quiet else warnings:
        print("warning: " + w, file=sys.stderr)
    return start


def open_folder(out_path: Path, ckpt: tf.train.Checkpoint, step_var: tf.Variable, config: dict,
                has_checkpoint: bool, check_only: bool) -> Optional[RunState]:
    """Restore the newest checkpoint, snapshots and log of ``out_path``; unless ``check_only`` (None then),
    write the run's record and reopen its log for appending."""
    state = RunState()
    if has_checkpoint:
        state.start = restore(out_path, ckpt, step_var, check_only)
        state.snapshots = restore_snapshots(out_path, config, state.start,
                                             (int(config["snapshot_size"]), int(config["dim"])), check_only)
        state.history = read_log(out_path / LOG_FILE, state.start)
    if check_only:
        return None
    # every check passed: from here on the folder is written
    state.save = lambda step: checkpoints.save(out_path, step, lambda folder: ckpt.write(str(folder / "model")))
    if (out_path / runinfo.CONFIG_FILENAME).exists():  # the original record stays; each resume adds its own
        name = "config_resume_{:08d}.json".format(state.start)
        k = 2
        while (out_path / name).exists():
            name = "config_resume_{:08d}_{}.json".format(state.start, k)
            k += 1
        runinfo.write_run_config(out_path, config, seed=config["seed"], filename=name)
    else:
        runinfo.write_run_config(out_path, config, seed=config["seed"])
    runinfo.atomic_write_text(out_path / LOG_FILE, "".join(json.dumps(r) + "\n" for r in state.history))
    state.log_handle = open(out_path / LOG_FILE, "a")
    return state


def npy_bytes(array: np.ndarray) -> bytes:
    """``array`` as the bytes of a .npy file."""
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()
