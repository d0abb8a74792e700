"""Train an annealed GAN: ``python -m chainer_va.train --objective jsd --anneal lik --schedule linear ...``.

Objectives (``--objective``) and annealing terms (``--anneal``) come from the registries in
:mod:`chainer_va.updaters` and :mod:`chainer_va.annealing`; ``--plugin FILE_OR_MODULE`` imports user
code that registers more (docs/extending.md). ``--config FILE`` (YAML or JSON) holds the same keys as
the flags; flags given explicitly override it. The outputs in ``--out``, ``--resume``, signals, exit
statuses and the refusals that protect a run folder are described in docs/status/gan.md.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import math
import os
import signal
import sys
import time
import traceback
import warnings
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy

from chainer_va import compat  # noqa: F401  (must precede chainer)

import chainer
from chainer import training
from chainer.training import extensions as E

from chainer_va import annealing, nets, updaters
from chainer_va.speedups import FLAGS as SPEEDUP_FLAGS, Speedups, add_flags as add_speedup_flags
from va_core import cli_checks, errors, runinfo, schedules, tempering
from va_core.errors import RunError, RunFailedError, UsageError
from chainer_va.device import DeviceError, add_device_argument, get_device, parse_device_spec
from va_core.interrupt import GracefulStop
from chainer_va.extensions import (LINE_PROGRESS_SECONDS, LineProgress, PlainText, ResumablePlotReport,
                                   ResumablePrintReport, SampleGrid)
from chainer_va.latent import LatentSampler, NoiseSource, SeededSerialIterator
from va_core.seeding import seed_everything
from chainer_va.snapshots import (AtomicSnapshot, NonFiniteParametersError, SnapshotError, check_finite_parameters,
                                  latest_snapshot, load_npz_checked, save_npz_atomic, snapshot_path)

__all__ = ["ConfigError", "UntemperedScheduleError", "TrainingError", "build_parser", "resolve_config", "load_plugin", "load_dataset",
           "make_generator", "make_discriminator", "make_denoiser", "build_updater", "main", "load_generator", "cli",
           "GEN_FINAL", "RESULT_FILE"]

GEN_FINAL = "gen_final.npz"
RESULT_FILE = "result.json"
GREY_DATASETS = ("mnist", "mnist5k", "fashion-mnist")
# keys a resumed run may change; everything else must equal the run's saved configuration
RESUME_MUTABLE = ("device", "out", "resume", "config", "plugin", "data_dir", "snapshot_interval", "sample_interval",
                  "log_interval", "keep_snapshots", "stop_at", "progress_interval", "plot_interval") + tuple(
                      flag[2:] for flag in SPEEDUP_FLAGS)
# keys a resumed run does not take from the saved configuration (the others default to the saved values)
RESUME_RESET = ("out", "resume", "config", "stop_at")
SCHEDULE_OPTIONS = ("end_fraction", "cycles", "final_ratio", "knot_interval")


class ConfigError(UsageError, ValueError):
    """A bad flag, configuration file or combination of settings; the message says the fix."""


class UntemperedScheduleError(ConfigError):
    """lambda_t leaves the likelihood/entropy form without a tempered target (:func:`tempering.check_tempered`)."""


class TrainingError(RunFailedError, RuntimeError):
    """The run stopped on an error (non-finite loss); the message names the last good snapshot."""


class Interrupted(RuntimeError):
    """The run stopped on SIGINT/SIGTERM after writing a snapshot of its last iteration."""

    def __init__(self, message: str, signal_name: str = "SIGINT"):
        super().__init__(message)
        self.signal = int(getattr(signal, signal_name, signal.SIGINT))


# -- command line and configuration ------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = cli_checks.OneLineParser(prog="python -m chainer_va.train", description=__doc__.split("\n\n")[0])
    for title, add_flags in (("objective and annealing", _objective_flags), ("optimisation", _optimisation_flags),
                             ("data and networks", _data_flags), ("run", _run_flags)):
        add_flags(parser.add_argument_group(title))
    return parser


def _objective_flags(group: argparse._ArgumentGroup) -> None:
    add = group.add_argument
    add("--objective", default="jsd", help="GAN objective: jsd (= DFM), rkl, wgan (WGAN-GP), or a plugin's")
    add("--anneal", default="none", help="annealing term: none, lik, ent, lgan, or a plugin's")
    add("--schedule", default="linear", help="lambda_t schedule: one of " + ", ".join(schedules.names()))
    add("--lambda0", default=0.0, type=float, help="initial annealing weight lambda_0 (default 0)")
    add("--end-fraction", type=float, help="linear/sinusoidal/stepwise: T_max = end_fraction * T")
    add("--cycles", type=int, help="sinusoidal/stepwise: number of cycles (default 5)")
    add("--final-ratio", type=float, help="exponential: |lambda_T| / |lambda_0| (default 1e-3)")
    add("--knot-interval", type=int, help="lgan triangle schedule: iterations between knots (default 10000)")
    add("--anneal-weight", default=annealing.ANNEAL_WEIGHT, type=float,
        help="c of the lik/ent terms (default 0.03 = DFM's weight) [inferred]")
    add("--anneal-scale", default="faithful",
        help="faithful: c = --anneal-weight over the mean of the B x D feature elements, as released (the term's "
             "feature gradient is 2 c sigma^2 lambda / D times the score); calibrated: c = D / (2 sigma^2), so it is "
             "lambda times the score, the tempered target of Corollary 2.2 (lik, ent; not lgan) (faithful)")
    add("--sigma", default=annealing.DENOISER_SIGMA, type=float, help="denoiser noise std on features (1.0)")
    add("--dfm-weight", default=updaters.DFM_WEIGHT, type=float, help="jsd: DFM feature term weight (0.03)")
    add("--gp-weight", default=updaters.GP_WEIGHT, type=float, help="wgan: gradient penalty weight (10)")
    add("--n-critic", default=updaters.N_CRITIC, type=int, help="wgan: critic steps per generator step (5)")


def _optimisation_flags(group: argparse._ArgumentGroup) -> None:
    add = group.add_argument
    add("--iterations", default=150000, type=int, help="generator iterations T (paper: 150000)")
    add("--batchsize", default=64, type=int, help="batch size (64)")
    add("--lr", default=updaters.LR, type=float, help="Adam learning rate (1e-4)")
    add("--beta1", default=updaters.BETA1, type=float, help="Adam beta1 (0.5)")
    add("--beta2", default=updaters.BETA2, type=float, help="Adam beta2 (0.9)")
    add_speedup_flags(add)
    add("--seed", default=0, type=int, help="seed of every random number generator of the run (0)")


def _data_flags(group: argparse._ArgumentGroup) -> None:
    add = group.add_argument
    add("--dataset", default="mnist5k",
        help="cifar10, celeba, mnist, fashion-mnist, mnist5k (bundled), or a .npy file of (N, C, H, W) in [-1, 1]")
    add("--data-dir", help="folder with the data set's files (default: the download cache)")
    add("--channels", type=int, help="image channels 1 or 3 (default: 1 for MNIST-like, 3 otherwise)")
    add("--image-size", type=int, help="32 or 128 (default: 128 for celeba, 32 otherwise)")
    add("--width", default=1.0, type=float, help="channel-count multiplier of every network (1.0 = paper)")
    add("--arch", default="dcgan", choices=sorted(nets.ARCHS), help="dcgan: the paper's networks (Tables S1/S2); "
        "mlp: small fully connected ones, not in the paper (the CPU study's; chainer_va/nets.py)")
    add("--latent-dim", default=nets.LATENT_DIM, type=int, help="dimension of z (128)")
    add("--limit", type=int, help="use only LIMIT training images: the first LIMIT in file order (mnist5k, stored "
        "sorted by digit: LIMIT/10 of each digit)")


def _run_flags(group: argparse._ArgumentGroup) -> None:
    add = group.add_argument
    add_device_argument(group)
    add("--out", default="result", help="output folder (default: result)")
    add("--resume", action="store_true", default=False, help="continue from the newest snapshot in --out")
    add("--config", help="YAML or JSON file with defaults for these flags (flags override it)")
    add("--plugin", action="append", help="Python file or module to import first (registers objectives, "
        "annealing terms or schedules); repeatable")
    add("--snapshot-interval", default=5000, type=int, help="iterations between snapshots (5000)")
    add("--keep-snapshots", default=2, type=int, help="number of newest snapshots kept (2)")
    add("--sample-interval", default=5000, type=int, help="iterations between sample grids (5000)")
    add("--log-interval", default=100, type=int, help="iterations between log lines and plots (100)")
    add("--plot-interval", type=int, help="iterations between loss/lambda plot points (default: --log-interval)")
    add("--progress-interval", default=10, type=int, help="iterations between progress-bar updates (10); where "
        "stdout is not a terminal, a plain progress line at most every {:g} s".format(LINE_PROGRESS_SECONDS))
    add("--stop-at", type=int, help="end this process after iteration STOP_AT, as if interrupted (the "
        "schedule still spans --iterations); continue later with --resume")


def _actions(parser: argparse.ArgumentParser) -> Dict[str, argparse.Action]:
    return {a.dest: a for a in parser._actions if a.dest != "help"}


def read_config_file(path: str | os.PathLike) -> Dict[str, Any]:
    """Read a YAML (.yaml/.yml) or JSON configuration file into a dict with flag names as keys.

    A run's recorded ``config.json`` is accepted too: ``--config RUN/config.json --out NEW`` repeats
    that run (its settings, without its ``out``, ``resume`` and ``stop_at``).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError("--config {}: no such file".format(path))
    text = path.read_text()
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as e:  # yaml.YAMLError, json.JSONDecodeError
        raise ConfigError("--config {}: cannot parse it ({})".format(path, runinfo.one_line(e))) from e
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("--config {}: expected a mapping of flag names to values, got {}".format(
            path, type(data).__name__))
    if isinstance(data.get("config"), dict) and "environment" in data:
        # a run's own record (RUN/config.json): its settings, without where and how far that run went
        return {k: v for k, v in data["config"].items() if k not in RESUME_RESET}
    return data


def _normalise_file_config(data: Dict[str, Any], parser: argparse.ArgumentParser, source: str) -> Dict[str, Any]:
    """Check the keys of a configuration mapping against the flags and convert values with the flags' types."""
    actions = _actions(parser)
    out = {}
    for key, value in data.items():
        dest = str(key).replace("-", "_")
        if dest not in actions or dest in ("config", "resume"):
            known = sorted(d for d in actions if d not in ("config", "resume"))
            raise ConfigError("{}: unknown key {!r}; known keys: {}".format(source, key, ", ".join(known)))
        action = actions[dest]
        if value is not None:
            if isinstance(action, argparse._StoreTrueAction):
                if not isinstance(value, bool):
                    raise ConfigError("{}: {!r} must be true or false, got {!r}".format(source, key, value))
            elif isinstance(action, argparse._AppendAction):
                value = [value] if isinstance(value, str) else list(value)
            elif action.type is not None:
                try:
                    if isinstance(value, bool) or (action.type is int and isinstance(value, float)
                                                   and not value.is_integer()):
                        raise ValueError("not a {}".format(action.type.__name__))
                    value = action.type(value)
                except (TypeError, ValueError) as e:
                    raise ConfigError("{}: {!r} must be a {}, got {!r}".format(
                        source, key, action.type.__name__, value)) from e
            else:
                value = str(value)
        out[dest] = value
    return out


def load_plugin(spec: str, source: str = "--plugin") -> None:
    """Import a plugin given as a path to a .py file or as a module name (it registers things on import).

    ``source`` names where ``spec`` came from in error messages (a flag, or a run's saved configuration).
    """
    path = Path(spec)
    label = "--plugin {}".format(spec) if source == "--plugin" else "plugin {} (named by {})".format(spec, source)
    if spec.endswith(".py") or path.is_file():
        if not path.is_file():
            where = "" if path.is_absolute() else " (relative to the current folder {})".format(Path.cwd())
            raise ConfigError("{}: no such file{}".format(label, where))
        name = "chainer_va_plugin_" + path.stem + "_{:x}".format(abs(hash(str(path.resolve()))))
        if name in sys.modules:
            return
        module_spec = importlib.util.spec_from_file_location(name, str(path))
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as e:
            del sys.modules[name]
            raise ConfigError("{}: importing it failed with {}{}".format(
                label, runinfo.one_line(e), _where_in(e, path))) from e
    else:
        try:
            importlib.import_module(spec)
        except ImportError as e:
            raise ConfigError("{}: cannot import it ({}); give a .py file or an importable "
                              "module name".format(label, e)) from e


def _where_in(error: BaseException, path: Path) -> str:
    """`` (line N of PATH)``: the deepest line of ``path`` in ``error``'s traceback (or its SyntaxError
    location); empty when the error arose elsewhere."""
    if isinstance(error, SyntaxError) and error.lineno:
        return " (line {} of {})".format(error.lineno, path)
    line = None
    for frame in traceback.extract_tb(error.__traceback__):
        if Path(frame.filename).resolve() == path.resolve():
            line = frame.lineno
    return "" if line is None else " (line {} of {})".format(line, path)


def plugin_paths(plugins: Optional[List[str]]) -> Optional[List[str]]:
    """Plugins as a run records them: .py files by absolute path (so that the run can be resumed and its
    generator loaded from any folder), module names as given."""
    if not plugins:
        return plugins
    return [str(Path(spec).resolve()) if spec.endswith(".py") or Path(spec).is_file() else spec for spec in plugins]


def _given_settings(argv: List[str], parser: argparse.ArgumentParser) -> tuple:
    """(settings given as flags, settings of the --config file), each a dict of parsed values."""
    args = vars(parser.parse_args(argv))
    explicit = {k: args[k] for k in cli_checks.given_options(parser, argv)}
    file_config = {}
    if explicit.get("config"):
        file_config = _normalise_file_config(read_config_file(explicit["config"]), parser,
                                             "--config {}".format(explicit["config"]))
    return explicit, file_config


def resolve_config(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    """Defaults < --config file < (with --resume) the run's saved config.json < explicit flags.

    ``argv``: command-line flags as a list (None: none, the defaults; :func:`main` passes ``sys.argv``'s,
    so that a call from a notebook never reads the kernel's own arguments). Imports ``--plugin`` modules
    and checks names, so that the result is a complete, valid configuration.
    """
    return _resolve(argv)[0]


def _resolve(argv: Optional[List[str]]) -> Tuple[Dict[str, Any], List[str]]:
    """:func:`resolve_config` and the keys the user set (by flag, or by a ``--config`` file where its value is
    not the default: a run's config.json holds every setting), read once."""
    argv = list(argv or [])
    parser = build_parser()
    explicit, file_config = _given_settings(argv, parser)
    defaults = vars(parser.parse_args([]))
    config = dict(defaults)
    saved = None
    out = explicit.get("out", file_config.get("out", defaults["out"]))
    resume = explicit.get("resume", False)
    if resume:
        config_path = Path(out) / runinfo.CONFIG_FILENAME
        if config_path.is_file():
            saved = runinfo.read_run_config(out)["config"]
            config.update({k: v for k, v in saved.items() if k in defaults and k not in RESUME_RESET})
    config.update(file_config)
    config.update(explicit)
    if saved is not None:
        given = {**file_config, **explicit}
        problem = runinfo.resume_problem(saved, given, RESUME_MUTABLE, out,
                                         keys=[k for k in defaults if k in saved and k in given])
        if problem:
            raise ConfigError(problem)
    from_saved = saved is not None and "plugin" not in explicit and "plugin" not in file_config
    source = "the run's {}".format(Path(out) / runinfo.CONFIG_FILENAME) if from_saved else "--plugin"
    for plugin in config.get("plugin") or []:
        load_plugin(plugin, source)
    config["plugin"] = plugin_paths(config.get("plugin"))
    _validate(config)
    # an objective's own constant that nobody set takes the objective's default (a plugin's may differ
    # from the flag of the same name, which the shipped objectives define)
    set_somewhere = set(explicit) | set(file_config) | (set(saved) if saved is not None else set())
    for key, default in updaters.option_defaults(config["objective"]).items():
        if key in config and key not in set_somewhere:
            config[key] = default
    if saved is None:  # a new run (a recorded one keeps its settings)
        _check_annealing_weight(config, "lambda0" in explicit or "lambda0" in file_config)
    given = set(explicit) | {k for k, v in file_config.items() if v != defaults.get(k)}
    return config, sorted(given)


def _check_annealing_weight(config: Dict[str, Any], given: bool) -> None:
    """A term that only adds to the baseline's loss (it keeps DFM's term) anneals nothing at lambda0 = 0:
    such a run is the baseline with an idle denoiser, which a new run should not be by accident."""
    term = annealing.get(config["anneal"])
    if config["anneal"] != "none" and term.keeps_dfm_term and config["lambda0"] == 0.0:
        raise ConfigError("--anneal {} with --lambda0 0{} anneals nothing: lambda_t = 0 throughout. Pass --lambda0 "
                          "(the paper searched |lambda0| in 0.1, 1, 10), or use --anneal none for the baseline".format(
                              config["anneal"], "" if given else " (the default)"))


def unused_settings(config: Dict[str, Any], given: List[str]) -> List[str]:
    """Notes on settings in ``given`` (keys set by flag or --config file) that this run does not use.

    Not errors: one Table 1 grid passes the same extra flags to every objective.
    """
    objective, term = config["objective"], annealing.get(config["anneal"])
    own = set(updaters.options(objective))
    notes = []
    for name in updaters.names():
        for key in updaters.options(name):
            if key in given and key not in own and key in config:
                notes.append("--{} has no effect with --objective {} (it is an option of {})".format(
                    key.replace("_", "-"), objective, name))
    if "dfm_weight" in given and "dfm_weight" in own and not term.keeps_dfm_term:
        notes.append("--dfm-weight has no effect with --anneal {} (that term replaces DFM's feature term)".format(
            config["anneal"]))
    if "anneal_weight" in given and not term.uses_weight:
        notes.append("--anneal-weight has no effect with --anneal {}".format(config["anneal"]))
    elif "anneal_weight" in given and config.get("anneal_scale") == "calibrated":
        notes.append("--anneal-weight has no effect with --anneal-scale calibrated (c = D / (2 sigma^2))")
    if "anneal_scale" in given and not term.sources:
        notes.append("--anneal-scale has no effect with --anneal {}".format(config["anneal"]))
    dfm_term = "dfm_weight" in own and term.keeps_dfm_term and config.get("dfm_weight") != 0.0
    if "sigma" in given and not term.sources and not dfm_term:
        notes.append("--sigma has no effect: --objective {} with --anneal {} trains no denoiser".format(
            objective, config["anneal"]))
    return sorted(set(notes))


def config_differences(saved: Dict[str, Any], argv: List[str]) -> Dict[str, tuple]:
    """The settings of a new run with command line ``argv`` that differ from a run's saved configuration.

    ``{key: (saved value, value argv gives)}``, ``argv`` resolved as a fresh run (``--resume`` ignored);
    what a resumed run may change, keys the saved configuration lacks and values filled in from the data
    (``None``) are not compared. Used by the Table 1 grid before it reuses a finished run.
    """
    wanted = resolve_config([arg for arg in argv if arg != "--resume"])
    compared = [key for key, value in wanted.items() if key in saved and value is not None]
    return runinfo.settings_differences(saved, wanted, RESUME_MUTABLE, keys=compared)


def _validate(config: Dict[str, Any]) -> None:
    try:
        arch = config.get("arch", "dcgan")
        if arch not in nets.ARCHS:
            raise ValueError("unknown --arch {!r}; choose one of: {}".format(arch, ", ".join(sorted(nets.ARCHS))))
        nets.discriminator_class(arch, updaters.get(config["objective"]).discriminator_class)
        annealing.get(config["anneal"])
        if config["schedule"] not in schedules.names():
            raise ValueError("unknown schedule {!r}; choose one of: {}".format(
                config["schedule"], ", ".join(schedules.names())))
    except ValueError as e:
        raise ConfigError(str(e)) from e
    _check_dataset_name(config["dataset"])
    if config["plot_interval"] is None:
        config["plot_interval"] = config["log_interval"]
    for key in ("iterations", "batchsize", "snapshot_interval", "sample_interval", "log_interval",
                "progress_interval", "plot_interval", "latent_dim", "keep_snapshots"):
        if not isinstance(config[key], int) or config[key] <= 0:
            raise ConfigError("--{} must be a positive integer, got {!r}".format(key.replace("_", "-"), config[key]))
    for key in ("lr", "sigma", "width", "anneal_weight"):
        if not (isinstance(config[key], (int, float)) and math.isfinite(config[key]) and config[key] > 0):
            raise ConfigError("--{} must be a positive number, got {!r}".format(key.replace("_", "-"), config[key]))
    for key in ("beta1", "beta2"):
        if not 0.0 <= config[key] < 1.0:
            raise ConfigError("--{} (Adam) must be in [0, 1), got {!r}".format(key, config[key]))
    if config["limit"] is not None and (not isinstance(config["limit"], int) or config["limit"] <= 0):
        raise ConfigError("--limit must be a positive number of training images, got {!r} (drop it to use "
                          "them all)".format(config["limit"]))
    if config["channels"] is not None and config["channels"] not in (1, 3):
        raise ConfigError("--channels must be 1 or 3, got {!r}".format(config["channels"]))
    if not isinstance(config["seed"], int) or not 0 <= config["seed"] < 2 ** 32:
        raise ConfigError("--seed must be an integer in [0, 2**32), got {!r}".format(config["seed"]))
    if not isinstance(config["n_critic"], int) or config["n_critic"] < 1:
        raise ConfigError("--n-critic must be a positive integer, got {!r}".format(config["n_critic"]))
    if config["stop_at"] is not None and not (0 < config["stop_at"] <= config["iterations"]):
        raise ConfigError("--stop-at must be in [1, --iterations={}], got {}".format(
            config["iterations"], config["stop_at"]))
    try:
        parse_device_spec(config["device"])
    except ValueError as e:
        raise ConfigError("--device: {}".format(e)) from e
    try:
        annealing.get(config["anneal"]).check_scale(config.get("anneal_scale", "faithful"))
    except ValueError as e:
        raise ConfigError(str(e)) from e
    idle = tempering.idle_lambda0(config["anneal"], config["lambda0"], terms=("lik", "ent", "lgan"))
    if idle:
        raise ConfigError(idle)
    schedule = make_schedule(config)  # schedule options are checked by the schedule itself
    try:
        tempering.check_tempered(annealing.get(config["anneal"]).tempering_form(), schedule)
    except ValueError as e:
        raise UntemperedScheduleError("--anneal {}: {}".format(config["anneal"], e)) from e


def _check_dataset_name(name: str) -> None:
    """A ``--dataset`` is a .npy file of images or one of :data:`chainer_va.data.DATASETS`."""
    from chainer_va import data

    if not str(name).endswith(".npy"):
        try:
            data.check_name(name)
        except ValueError as e:
            raise ConfigError("--dataset: {}, or a .npy file of images".format(e)) from e


def make_schedule(config: Dict[str, Any]) -> schedules.Schedule:
    """The lambda_t schedule of a configuration."""
    options = {k: config[k] for k in SCHEDULE_OPTIONS if config.get(k) is not None}
    try:
        return cli_checks.make_schedule(config["schedule"], config["lambda0"], config["iterations"], options,
                                        steps_flag="--iterations")
    except ValueError as e:
        # an option the user never set fails with its default (e.g. lgan's knot interval on a short run)
        defaults = schedules.option_defaults(config["schedule"]) if config["schedule"] in schedules.names() else {}
        hints = ["--{0} was not given, so the {1} schedule's default {2!r} applies; pass --{0}".format(
                 key.replace("_", "-"), config["schedule"], default)
                 for key, default in defaults.items() if key not in options and key in str(e)]
        raise ConfigError("schedule: {}{}".format(e, "".join("; " + h for h in hints))) from e


# -- building a run ----------------------------------------------------------------------------------
def load_dataset(config: Dict[str, Any]) -> numpy.ndarray:
    """The training images (N, C, S, S) float32 in [-1, 1]; fills in ``channels`` and ``image_size``."""
    name = config["dataset"]
    if config.get("channels") is None:
        config["channels"] = 1 if name in GREY_DATASETS else 3
    if config.get("image_size") is None:
        config["image_size"] = 128 if name == "celeba" else 32
    channels, size = config["channels"], config["image_size"]
    if size not in nets.SUPPORTED_SIZES:
        raise ConfigError("--image-size {} is not supported; use one of {}".format(size, nets.SUPPORTED_SIZES))
    if name.endswith(".npy"):
        if not Path(name).is_file():
            raise ConfigError("--dataset {}: no such file".format(name))
        try:
            images = numpy.asarray(numpy.load(name), dtype=numpy.float32)
        except (ValueError, OSError, TypeError) as e:
            raise ConfigError("--dataset {}: not a readable .npy image array ({}); write one with numpy.save(path, "
                              "x) for a float array x of shape (N, C, H, W) in [-1, 1]".format(name, e)) from e
        if images.ndim != 4 or images.shape[1:] != (channels, size, size):
            raise ConfigError("--dataset {}: expected an array of shape (N, {}, {}, {}), got {}; set "
                              "--channels/--image-size to match".format(name, channels, size, size, images.shape))
        if images.size and (images.min() < -1.0 or images.max() > 1.0 or not numpy.isfinite(images).all()):
            raise ConfigError("--dataset {}: pixel values must lie in [-1, 1]".format(name))
    else:
        from chainer_va import data

        images = data.load_images(name, data_dir=config.get("data_dir"), size=size, channels=channels,
                                  limit=config.get("limit"))  # CIFAR-10 and CelebA stop reading early
    if config.get("limit"):
        images = images[:config["limit"]]
    if len(images) < config["batchsize"]:
        raise ConfigError("the data set has {} images, fewer than --batchsize {}".format(len(images), config["batchsize"]))
    return images


def make_generator(config: Dict[str, Any], rng: Optional[numpy.random.RandomState] = None) -> chainer.Link:
    """The generator of a (resolved) configuration; initial weights from ``rng`` (:func:`nets.init_rng`)."""
    cls = nets.generator_class(config.get("arch", "dcgan"))
    return cls(latent_dim=config["latent_dim"], out_channels=config["channels"], width=config["width"],
               size=config["image_size"], rng=rng)


def make_discriminator(config: Dict[str, Any], rng: Optional[numpy.random.RandomState] = None) -> chainer.Link:
    """The discriminator/critic the objective asks for (its ``discriminator_class``); weights from ``rng``."""
    cls = nets.discriminator_class(config.get("arch", "dcgan"), updaters.get(config["objective"]).discriminator_class)
    return cls(in_channels=config["channels"], width=config["width"], size=config["image_size"],
               rng=rng)


def make_denoiser(config: Dict[str, Any], feature_shape,
                  rng: Optional[numpy.random.RandomState] = None) -> chainer.Link:
    """A DFM denoiser for discriminator features of ``feature_shape``; weights from ``rng``."""
    return nets.Denoiser(feature_shape, width=config["width"], rng=rng)


#: A run's random streams, each seeded by child ``index`` of ``SeedSequence(--seed)``; their order is
#: part of every recorded run (a new stream takes the next index).
SEED_STREAMS = ("latent", "noise", "order", "sample_grid")


def stream_seed(seed: int, stream: str) -> int:
    """The seed of random stream ``stream`` (one of :data:`SEED_STREAMS`) of a run with ``--seed`` ``seed``."""
    index = SEED_STREAMS.index(stream)
    return int(numpy.random.SeedSequence(seed).spawn(index + 1)[index].generate_state(1)[0])


def build_updater(config: Dict[str, Any], images: numpy.ndarray, device) -> updaters.GANUpdater:
    """Networks, optimizers, denoisers, annealing term, random sources and the updater of a run."""
    seed_everything(config["seed"])  # for third-party code only: nothing below draws from a global RNG
    latent_seed, noise_seed, order_seed = (stream_seed(config["seed"], name) for name in ("latent", "noise", "order"))
    # One state for every network's initial weights, drawn from in order G, D, denoisers; seeded as
    # numpy.random.seed(seed) seeds the global state, so runs recorded when Chainer's initialisers drew
    # from that global state get the same weights.
    init_rng = numpy.random.RandomState(config["seed"] % 2**32)
    speedups = Speedups.from_config(config)
    gen = make_generator(config, init_rng)
    dis = make_discriminator(config, init_rng)
    gen.to_device(device)
    dis.to_device(device)

    def optimizer(link):
        return updaters.make_adam(link, config["lr"], config["beta1"], config["beta2"], fused=speedups.adam)

    noise = NoiseSource(noise_seed, prefetch=speedups.noise_prefetch)
    pool = annealing.DenoiserPool(lambda: make_denoiser(config, dis.feature_shape, init_rng),
                                  optimizer, noise, sigma=config["sigma"], device=device)
    term_cls = annealing.get(config["anneal"])
    term = term_cls(pool, weight=config["anneal_weight"], scale=config.get("anneal_scale", "faithful"))
    updater_cls = updaters.get(config["objective"])
    objective_options = {k: config[k] for k in updaters.options(config["objective"]) if k in config}
    iterator = SeededSerialIterator(images, config["batchsize"], seed=order_seed)
    updater = updater_cls(iterator, gen, dis, optimizer(gen), optimizer(dis), term, make_schedule(config),
                          LatentSampler(config["latent_dim"], latent_seed), noise=noise, denoisers=pool, device=device,
                          **objective_options)
    updater.speedups = speedups
    updater.diagnostics_every = config["log_interval"]  # the annealing term's gradient ratio, once per log line
    return updater


def _every_and_at(interval: int, last: int):
    """A trigger firing every ``interval`` iterations and at iteration ``last``."""
    def trigger(trainer) -> bool:
        iteration = trainer.updater.iteration
        return iteration % interval == 0 or iteration == last
    return trigger


def _build_trainer(config: Dict[str, Any], updater: updaters.GANUpdater, out: Path,
                   stop_request: Optional[GracefulStop] = None) -> training.Trainer:
    stop = config["stop_at"] or config["iterations"]
    stop_trigger = chainer.training.triggers.IntervalTrigger(stop, "iteration")
    if stop_request is not None:
        stop_request.inner = stop_trigger
        stop_trigger = stop_request
    trainer = training.Trainer(updater, stop_trigger, out=str(out))
    # every interval and at the run's last iteration, so a run shorter than an interval still logs and
    # plots (the full run's last iteration, not --stop-at's: a resumed run logs what an uninterrupted one does)
    log_trigger = _every_and_at(config["log_interval"], config["iterations"])
    trainer.extend(E.LogReport(trigger=log_trigger, filename="log"))
    losses = ["loss_gen", "loss_dis", "loss_gen_adv", "loss_dfm", "loss_anneal", "loss_gp",
              "loss_denoiser_data", "loss_denoiser_fake"]
    plot_trigger = _every_and_at(config["plot_interval"], config["iterations"])
    trainer.extend(ResumablePlotReport(losses, "iteration", trigger=plot_trigger, filename="loss.png",
                                       key_prefix="loss_"))  # and a plugin objective's own loss_* terms
    trainer.extend(ResumablePlotReport(["lambda"], "iteration", trigger=plot_trigger, filename="lambda.png"))
    # nominal and effective tempering exponent; the annealing (and DFM) term's gradient over the adversarial one
    trainer.extend(ResumablePlotReport(["beta", "beta_effective"], "iteration", trigger=plot_trigger,
                                       filename="beta.png", may_be_missing=True), name="PlotReport_beta")
    trainer.extend(ResumablePlotReport(["grad_ratio_anneal", "grad_ratio_dfm"], "iteration", trigger=plot_trigger,
                                       filename="grad_ratio.png", may_be_missing=True),
                   name="PlotReport_grad_ratio")
    # a terminal gets Chainer's progress bar; a log file plain lines, without cursor sequences
    terminal = sys.stdout.isatty()
    trainer.extend(ResumablePrintReport(["iteration", "elapsed_time", "loss_gen", "loss_dis", "lambda", "beta", "beta_effective"],
                                        out=sys.stdout if terminal else PlainText(sys.stdout)),
                   trigger=log_trigger)  # today's stdout, not import time's
    if terminal:
        trainer.extend(E.ProgressBar(training_length=(config["iterations"], "iteration"),
                                     update_interval=config["progress_interval"]))
    else:
        trainer.extend(LineProgress(config["iterations"], config["progress_interval"]))
    trainer.extend(SampleGrid(updater.gen, config["latent_dim"], out, seed=stream_seed(config["seed"], "sample_grid")),
                   trigger=_every_and_at(config["sample_interval"], stop))
    trainer.extend(AtomicSnapshot(out, config["snapshot_interval"], stop, keep=config["keep_snapshots"],
                                  stop_request=stop_request), name="snapshot")
    return trainer


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    """Run training with command-line ``argv`` (None: ``sys.argv[1:]``); returns the result record."""
    import matplotlib

    matplotlib.use("Agg")
    argv = list(sys.argv[1:] if argv is None else argv)
    config, given = _resolve(argv)
    for note in unused_settings(config, given):
        print("note: " + note, file=sys.stderr)
    out = Path(config["out"])
    cli_checks.check_out_folder(out)
    snapshot = latest_snapshot(out)
    record = _read_result(out)
    if config["resume"] and record is not None and record.get("completed") \
            and record.get("iterations") == config["iterations"] and _intact_zip(out / GEN_FINAL):
        print("{} holds a finished run ({} iterations, {}); nothing to resume".format(out, config["iterations"], GEN_FINAL),
              file=sys.stderr)
        return record
    if snapshot is None and record is not None and not record.get("completed"):
        raise ConfigError("{} holds a run that stopped at iteration {} and left no snapshot to continue from ({}); "
                          "start it again with another --out, or delete {}".format(
                              out, record.get("iterations"), RESULT_FILE, out))
    if config["resume"] and snapshot is None:
        raise ConfigError("--resume: no {}*.npz snapshot in {}; drop --resume to start a new run".format(
            "snapshot_iter_", out))
    if not config["resume"]:
        held = [p.name for p in ([snapshot] if snapshot else []) + [out / RESULT_FILE, out / GEN_FINAL] if p.is_file()]
        if held:
            raise ConfigError("{} already holds a run ({}); pass --resume to continue it, or choose another --out "
                              "(nothing was overwritten)".format(out, ", ".join(held)))
    try:
        device = get_device(config["device"])
    except DeviceError as e:
        raise ConfigError(str(e)) from e
    images = load_dataset(config)
    with runinfo.exclusive_run_lock(out), GracefulStop(None) as stop_request:  # the lock creates out
        return _run_trainer(config, out, snapshot, build_updater(config, images, device), stop_request)


def _intact_zip(path: Path) -> bool:
    """Whether ``path`` is an .npz whose every member passes its CRC check (a damaged final generator is
    rewritten by ``--resume`` from the last snapshot)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except (OSError, zipfile.BadZipFile):
        return False


def _read_result(out: Path) -> Optional[Dict[str, Any]]:
    """The run's ``result.json`` record, or None when there is none (or it is unreadable)."""
    try:
        record = json.loads((out / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _run_trainer(config: Dict[str, Any], out: Path, snapshot: Optional[Path], updater: updaters.GANUpdater,
                 stop_request: GracefulStop) -> Dict[str, Any]:
    trainer = _build_trainer(config, updater, out, stop_request)
    if snapshot is not None:
        load_npz_checked(snapshot, trainer)
        print("resumed from {} (iteration {})".format(snapshot, updater.iteration), flush=True)
        runinfo.write_run_config(out, config, config["seed"],
                                 filename="config_resume_{:08d}.json".format(updater.iteration))
    else:
        runinfo.write_run_config(out, config, config["seed"])
    start = time.time()
    try:
        trainer.run(show_loop_exception_msg=False)
    except (updaters.NonFiniteLossError, NonFiniteParametersError) as e:
        last = latest_snapshot(out)
        message = "{}; the last good snapshot is {}. --resume continues with the same settings and will likely " \
                  "diverge again (different random numbers need another --seed); start a new run with another " \
                  "--out and the settings changed, e.g. a smaller --lr or |--lambda0|".format(
                      e, last if last is not None else "none (no snapshot was written before)")
        runinfo.atomic_write_json(out / RESULT_FILE, {"completed": False, "iterations": int(updater.iteration),
                                                      "diverged": True, "error": message,
                                                      "last_snapshot": None if last is None else str(last)})
        raise TrainingError(message) from e
    iteration = int(updater.iteration)
    if stop_request.requested and latest_snapshot(out) != snapshot_path(out, iteration) and iteration > 0:
        # the signal came after this iteration's snapshot extension had run: the iteration is complete
        check_finite_parameters(updater, iteration)
        save_npz_atomic(snapshot_path(out, iteration), trainer)
    completed = iteration >= config["iterations"]
    # seconds: training time over all processes of the run (the trainer's clock survives --resume)
    record = {"completed": completed, "iterations": iteration, "seconds": float(trainer.elapsed_time),
              "seconds_this_process": time.time() - start}
    if completed:
        save_npz_atomic(out / GEN_FINAL, updater.gen)
    else:
        record["stopped_at"] = iteration
        record["note"] = "stopped by {}; continue with --resume".format(
            stop_request.requested or "--stop-at")
    runinfo.atomic_write_json(out / RESULT_FILE, record)
    if stop_request.requested and not completed:
        raise Interrupted("{} at iteration {}: snapshot {} written; continue with `python -m chainer_va.train --out "
                          "{} --resume`".format(stop_request.requested, iteration, latest_snapshot(out), out),
                          stop_request.requested)
    return record


def load_generator(run_dir: str | os.PathLike, snapshot: Optional[str] = None) -> Tuple[chainer.Link, Dict[str, Any]]:
    """Rebuild a run's generator from ``run_dir/config.json`` and load ``gen_final.npz``.

    ``snapshot="latest"`` loads the newest snapshot's generator instead; any other string is a
    snapshot path. Returns ``(generator on the CPU, configuration dict)``.
    """
    run_dir = Path(run_dir)
    if not (run_dir / runinfo.CONFIG_FILENAME).is_file():
        raise ConfigError("{} has no {}: not a training run folder; pass the --out folder of a chainer_va.train "
                          "run".format(run_dir, runinfo.CONFIG_FILENAME))
    config = runinfo.read_run_config(run_dir)["config"]
    for plugin in config.get("plugin") or []:
        try:
            load_plugin(plugin, "the run's {}".format(run_dir / runinfo.CONFIG_FILENAME))
        except ConfigError as e:  # plugins register objectives and terms; the generator is always nets.Generator
            warnings.warn("{}; the generator is the package's own network, so it loads without the plugin".format(e))
    gen = make_generator(config)
    if snapshot is None:
        path = run_dir / GEN_FINAL
        if not path.is_file():
            raise SnapshotError("{} has no {} (the run did not finish): continue it with `python -m "
                                "chainer_va.train --out {} --resume`, or load its newest snapshot with "
                                "load_generator(run_dir, snapshot='latest')".format(run_dir, GEN_FINAL, run_dir))
        try:
            load_npz_checked(path, gen, what="generator file")
        except SnapshotError as e:  # the advice for a snapshot (delete it) is not the fix for this file
            raise SnapshotError("{}; rewrite it from the run's last snapshot with `python -m chainer_va.train "
                                "--out {} --resume`".format(str(e).split("; delete it")[0], run_dir)) from e
    else:
        path = latest_snapshot(run_dir) if snapshot == "latest" else Path(snapshot)
        if path is None:
            raise ConfigError("{} holds no snapshot; load its gen_final.npz (no snapshot argument) or pass a "
                              "snapshot file".format(run_dir))
        load_npz_checked(path, gen, path_in_file="updater/model:gen/")
    return gen, config


def cli(argv: Optional[List[str]] = None) -> int:
    """Entry point: errors print one line; exit status 2 for settings, data or a folder it cannot use, 1 for a
    failed run (:mod:`va_core.errors`)."""
    try:
        main(argv)
    except Interrupted as e:
        print("stopped: {}".format(e), file=sys.stderr)
        return 128 + e.signal  # the shell's status for a run ended by that signal (130 SIGINT, 143 SIGTERM)
    except RunError as e:
        return errors.report(e)
    return 0


if __name__ == "__main__":
    sys.exit(cli())
