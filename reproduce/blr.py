"""Bayesian logistic regression on Table S3's data sets: U-GAN samplers vs SVGD, direct MAF VI and NUTS.

For every data set x split seed: a NUTS reference posterior (non-centred by default, R-hat/ESS recorded),
then each sampler on the same split; metrics are the posterior predictive's test accuracy and test
log-likelihood, and the distance of each sampler to the NUTS reference (predictive probabilities, mean
and std of w). Writes OUT/blr.csv (one row per data set, seed, sampler), OUT/blr.md (mean ± std over
seeds, paired comparisons of U-GAN with SVGD and direct VI and of annealed U-GAN with plain U-GAN),
OUT/blr.png and OUT/config.json, and appends everything it prints to OUT/run.log. OUT is results/blr, or
results/blr_quick with --quick (--out wins).

Every finished (data set, seed, sampler) is cached under OUT/cache/, so a killed run resumes. A cache
file is identified by *every* setting that determines that sampler's result (see
:func:`sampler_settings`): its name carries a hash of them and the file stores them in full; a file
whose stored settings differ from the run's, or that cannot be read, is recomputed, never reused.

    python reproduce/blr.py --quick            # minutes: 2 seeds, short runs, into results/blr_quick
    python reproduce/blr.py                    # the committed run (see docs/blr_results.md)
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np

import tfp_flows  # noqa: F401  (TF_USE_LEGACY_KERAS before TF)
from va_core import cli_checks, errors, paired_stats, runinfo
from va_core.errors import UsageError
from va_core.runinfo import atomic_write_bytes, atomic_write_text, write_run_config
import tensorflow as tf  # noqa: E402  (after tfp_flows set up the environment)
from tfp_flows import blr, reference, svgd, uci
try:
    import blr_cache  # reproduce/blr_cache.py: this script's folder is on sys.path when it runs as a script
except ImportError:  # imported as reproduce.blr
    from reproduce import blr_cache

SAMPLERS = ("nuts", "svgd", "svgd_collapsed", "direct_vi", "ugan", "ugan_linear", "ugan_sinusoidal")
#: U-GAN variants: (annealing form, schedule). "ugan" is the un-annealed sampler (lambda = 0).
UGAN_VARIANTS = {"ugan": ("none", "static"), "ugan_linear": (None, "linear"),
                 "ugan_sinusoidal": (None, "sinusoidal")}
LABELS = {"nuts": "NUTS (reference)", "svgd": "SVGD", "svgd_collapsed": "SVGD on w (alpha integrated out)", "direct_vi": "direct MAF VI", "ugan": "U-GAN",
          "ugan_linear": "U-GAN VA linear", "ugan_sinusoidal": "U-GAN VA sinusoidal"}

QUICK = dict(seeds=2, nuts_chains=4, nuts_burnin=300, nuts_draws=300, svgd_particles=100, svgd_steps=300,
             ugan_steps=300, vi_steps=300, n_samples=500, nuts_retries=0)
FULL = dict(seeds=5, nuts_chains=8, nuts_burnin=1000, nuts_draws=1500, svgd_particles=100, svgd_steps=1000,
            ugan_steps=800, vi_steps=800, n_samples=1000, nuts_retries=2)
#: Default output folders: the full run's, and --quick's own (a smoke test must not overwrite the results).
DEFAULT_OUT = "results/blr"
DEFAULT_QUICK_OUT = "results/blr_quick"
#: Log file (in the output folder) that a run appends everything it prints to.
LOG_FILENAME = "run.log"
#: Flow/generator settings for both U-GAN and direct VI (small: 2 CPU cores shared by six people).
#: U-GAN lr 1e-4: at 1e-3 (the module default) its samples blew up on Sonar (split seed 99, not an
#: evaluation seed; w std 7-23x the NUTS value); direct VI was fine at its default 1e-3.
DEFAULT_FLOW_OPTIONS = {"hidden_units": [64, 64], "flow_blocks": 2}
DEFAULT_UGAN_LR = 1e-4
DEFAULT_VI_LR = 1e-3

#: Options that must be >= 1, >= 0 and > 0 (checked by parse_args, so a bad value fails before any run).
_POSITIVE_INTS = ("seeds", "n_samples", "nuts_chains", "nuts_burnin", "nuts_draws", "svgd_particles", "svgd_steps",
                  "ugan_steps", "vi_steps", "ugan_batch")
_NON_NEGATIVE_INTS = ("first_seed", "svgd_batch", "nuts_retries")
_POSITIVE_FLOATS = ("svgd_step_size", "ugan_lr", "vi_lr")


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


class BlrError(UsageError):
    """A user error found before anything runs (bad settings, data or output folder); the message names the
    problem and the fix. :func:`main` prints it as one line and returns 2."""


#: Settings that --report-only may take from the command line rather than from OUT/config.json.
REPORT_MAY_CHANGE = ("out", "report_only", "data_dir")


def build_parser() -> argparse.ArgumentParser:
    """The command line, before :func:`parse_args` fills in the defaults of --quick or the full run."""
    p = cli_checks.OneLineParser(
        prog="reproduce/blr.sh", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=None, help="output folder (default {}; {} with --quick)".format(
        DEFAULT_OUT, DEFAULT_QUICK_OUT))
    p.add_argument("--quick", action="store_true", help="minutes-long version: 2 seeds, short runs")
    p.add_argument("--datasets", nargs="+", default=list(uci.DATASETS), choices=uci.DATASETS)
    p.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=SAMPLERS)
    p.add_argument("--seeds", type=int, default=None, help="number of split seeds (0..seeds-1); quick 2, full 5")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--german-encoding", default="codes", choices=uci.GERMAN_ENCODINGS)
    p.add_argument("--data-dir", default=None,
                   help="folder holding the UCI files (default: the repository's datasets/uci); each file is "
                        "checked against its sha256 before anything runs")
    p.add_argument("--n-samples", type=int, default=None, help="posterior draws per sampler used for the metrics")
    p.add_argument("--nuts-chains", type=int, default=None)
    p.add_argument("--nuts-burnin", type=int, default=None)
    p.add_argument("--nuts-draws", type=int, default=None, help="kept NUTS draws per chain")
    p.add_argument("--svgd-particles", type=int, default=None)
    p.add_argument("--svgd-steps", type=int, default=None)
    p.add_argument("--svgd-start", default="liu_wang", choices=blr.SVGD_STARTS,
                   help="SVGD's initial particles: liu_wang (default; their script's alpha ~ numpy gamma(1, 0.01), "
                        "0.01 a scale) or prior (this model's prior, 0.01 a rate)")
    p.add_argument("--svgd-step-size", type=float, default=0.05,
                   help="AdaGrad base step (Liu & Wang's BLR experiments used 0.05)")
    p.add_argument("--svgd-batch", type=int, default=0,
                   help="likelihood minibatch for SVGD; 0 (default) = all training points, the exact posterior "
                        "every sampler here uses (Liu & Wang used 100 on their larger data)")
    p.add_argument("--ugan-steps", type=int, default=None)
    p.add_argument("--ugan-batch", type=int, default=64, help="U-GAN generator batch size")
    p.add_argument("--ugan-anneal", default="ent", choices=("lik", "ent"),
                   help="annealing form of the annealed U-GANs (ent with lambda0 > 0 starts from p^(1/(1+lambda0)))")
    p.add_argument("--ugan-lambda0", type=float, default=0.5, help="initial lambda of the annealed U-GANs")
    p.add_argument("--ugan-lr", type=float, default=DEFAULT_UGAN_LR)
    p.add_argument("--vi-lr", type=float, default=DEFAULT_VI_LR)
    p.add_argument("--ugan-options", default=json.dumps(DEFAULT_FLOW_OPTIONS),
                   help="JSON dict of extra keyword arguments for tfp_flows.ugan.train_sampler and "
                        "train_direct_flow (default {})".format(json.dumps(DEFAULT_FLOW_OPTIONS)))
    p.add_argument("--vi-steps", type=int, default=None, help="direct MAF VI steps (quick 300, full 800)")
    p.add_argument("--rhat-target", type=float, default=reference.RHAT_THRESHOLD,
                   help="NUTS is re-run with doubled burn-in and draws while its max split R-hat is not below this")
    p.add_argument("--nuts-retries", type=int, default=None, help="quick 0, full 2")
    p.add_argument("--report-only", action="store_true",
                   help="rebuild blr.md/csv/png from the cached results in OUT/cache without running anything, "
                        "for the settings OUT/config.json records (flags given must equal them)")
    p.add_argument("--nuts-parametrisation", default="noncentred", choices=("noncentred", "collapsed", "centred"))
    p.add_argument("--nuts-dtype", default="float64", choices=("float64", "float32"),
                   help="precision of the NUTS reference (float64; in float32 the leapfrog steps on cancer "
                        "diverged and chains stuck more often)")
    p.add_argument("--nuts-target-accept", type=float, default=reference.BLR_TARGET_ACCEPT,
                   help="NUTS dual-averaging target acceptance ({}; 0.8 left divergent, stuck chains on "
                        "cancer and sonar)".format(reference.BLR_TARGET_ACCEPT))
    return p


def parse_args(argv=None) -> argparse.Namespace:
    """Parse the command line, filling in --quick's or the full run's defaults and --out, NUTS first among the
    samplers; a bad value ends the program with an argparse error naming the option and what it needs."""
    p = build_parser()
    args = p.parse_args(argv)
    base = QUICK if args.quick else FULL
    for key, value in base.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.out is None:
        args.out = DEFAULT_QUICK_OUT if args.quick else DEFAULT_OUT
    for key in _POSITIVE_INTS:
        if getattr(args, key) < 1:
            p.error("{} must be at least 1, got {}".format(_flag(key), getattr(args, key)))
    for key in _NON_NEGATIVE_INTS:
        if getattr(args, key) < 0:
            p.error("{} must be 0 or more, got {}".format(_flag(key), getattr(args, key)))
    for key in _POSITIVE_FLOATS:
        if not getattr(args, key) > 0:
            p.error("{} must be a positive number, got {}".format(_flag(key), getattr(args, key)))
    if not 0 < args.nuts_target_accept < 1:
        p.error("--nuts-target-accept must lie strictly between 0 and 1, got {}".format(args.nuts_target_accept))
    if not args.rhat_target > 1:
        p.error("--rhat-target must be above 1 (R-hat is >= 1), got {}".format(args.rhat_target))
    try:
        args.ugan_options = json.loads(args.ugan_options)
    except json.JSONDecodeError as exc:
        p.error("--ugan-options must be a JSON object: {}".format(exc))
    if not isinstance(args.ugan_options, dict):
        p.error("--ugan-options must be a JSON object such as {}, got {}".format(
            json.dumps(DEFAULT_FLOW_OPTIONS), json.dumps(args.ugan_options)))
    # the reference first (every other sampler is compared with it), each sampler once
    args.samplers = ["nuts"] + [s for s in dict.fromkeys(args.samplers) if s != "nuts"]
    args.datasets = list(dict.fromkeys(args.datasets))
    return args


def log(msg: str) -> None:
    """Print one time-stamped progress line."""
    print("[{}] {}".format(time.strftime("%H:%M:%S"), msg), flush=True)


class _Tee:
    """A text stream that writes to ``stream`` and appends to the open file ``file``."""

    def __init__(self, stream, file):
        self._stream, self._file = stream, file

    def write(self, text: str) -> int:
        self._stream.write(text)
        self._file.write(text)
        self._file.flush()
        return len(text)

    def flush(self) -> None:
        self._stream.flush()
        self._file.flush()

    def __getattr__(self, name):
        return getattr(self._stream, name)


@contextlib.contextmanager
def log_to_file(path: Path):
    """Inside the block, append everything the program prints (Python's stdout and stderr, warnings, and the
    traceback of an exception that ends the block) to ``path`` as well as printing it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = _Tee(saved[0], f), _Tee(saved[1], f)
        try:
            yield
        except BaseException:
            f.write(traceback.format_exc())
            f.flush()
            raise
        finally:
            sys.stdout, sys.stderr = saved


# ------------------------------------------------------------------------------------- cache identities
def split_identity(dataset: str, split_seed: int, args) -> dict:
    """The data a sampler sees: data set, split seed and (German only) the feature encoding."""
    data = {"dataset": dataset, "split_seed": int(split_seed)}
    if dataset == "german":
        data["german_encoding"] = args.german_encoding
    return data


def sampler_settings(name: str, args, dataset: str, split_seed: int, attempt: int = 0) -> dict:
    """Every setting that determines the result of sampler ``name`` on one split: its cache identity.

    :func:`run_sampler` reads its settings from this dict and nothing else, so no setting can change a
    result without changing its identity. Settings a sampler does not use are left out (a changed
    --ugan-steps does not re-run SVGD). For NUTS, ``attempt`` k is the k-th R-hat retry: burn-in and draws
    times 2^k and chain seed split_seed + 1000 k. The rest of the pipeline (the code of the samplers) is
    not part of it: after a change there, bump :data:`blr_cache.CACHE_FORMAT` or use a new --out."""
    seed = int(split_seed)
    if name == "nuts":
        options = dict(chains=int(args.nuts_chains), burnin=int(args.nuts_burnin) * 2 ** attempt,
                       draws=int(args.nuts_draws) * 2 ** attempt, seed=seed + 1000 * attempt,
                       parametrisation=args.nuts_parametrisation, target_accept=float(args.nuts_target_accept),
                       dtype=args.nuts_dtype)
    elif attempt:
        raise ValueError("only NUTS has retry attempts, not {!r}".format(name))
    elif name in ("svgd", "svgd_collapsed"):
        options = dict(particles=int(args.svgd_particles), steps=int(args.svgd_steps),
                       step_size=float(args.svgd_step_size), seed=seed)
        if name == "svgd":  # the collapsed sampler has its own start and uses every training point
            options.update(start=args.svgd_start, batch=int(args.svgd_batch))
    elif name == "direct_vi":
        options = dict(steps=int(args.vi_steps), lr=float(args.vi_lr), batch=int(args.ugan_batch),
                       flow_options=args.ugan_options, n_samples=int(args.n_samples), seed=seed)
    elif name in UGAN_VARIANTS:
        anneal, schedule = UGAN_VARIANTS[name]
        anneal = args.ugan_anneal if anneal is None else anneal
        lambda0 = 0.0 if anneal == "none" else float(args.ugan_lambda0)
        options = dict(anneal=anneal, schedule=schedule, lambda0=lambda0, steps=int(args.ugan_steps),
                       lr=float(args.ugan_lr), batch=int(args.ugan_batch), flow_options=args.ugan_options,
                       n_samples=int(args.n_samples), seed=seed)
    else:
        raise ValueError("unknown sampler {!r}; use one of {}".format(name, SAMPLERS))
    # round trip through JSON: what is compared on load is exactly what a cache file can store
    return json.loads(blr_cache.canonical_json({"cache_format": blr_cache.CACHE_FORMAT, "sampler": name,
                                      "data": split_identity(dataset, seed, args), "options": options}))


# ----------------------------------------------------------------------------------------------- samplers
def run_sampler(settings: dict, split: uci.Split) -> tuple[np.ndarray, dict]:
    """Run the sampler that ``settings`` (from :func:`sampler_settings`) describes on one split.

    Reads every option from ``settings`` only. Returns (samples (n, D+1) of theta = (w, log alpha), info)."""
    name, o = settings["sampler"], settings["options"]
    seed = o["seed"]
    if name == "nuts":
        model = blr.BayesianLogisticRegression(split.x_train, split.y_train, dtype=tf.as_dtype(o["dtype"]))
        res = reference.blr_reference(model, chains=o["chains"], draws=o["draws"], burnin=o["burnin"], seed=seed,
                                      parametrisation=o["parametrisation"], target_accept=o["target_accept"])
        info = dict(max_rhat=res.max_rhat, min_ess=res.min_ess, accept=res.accept_rate,
                    divergences=res.divergences, rhat_w_max=float(np.max(res.rhat[:-1])),
                    rhat_log_alpha=float(res.rhat[-1]))
        return res.samples, info
    model = blr.BayesianLogisticRegression(split.x_train, split.y_train, seed=seed)
    if name == "svgd":
        if o["batch"]:
            model = blr.BayesianLogisticRegression(split.x_train, split.y_train, batch_size=o["batch"], seed=seed)
        init = model.initial_particles(o["particles"], seed=seed, start=o["start"])
        res = svgd.svgd_sample(model.log_density, init, steps=o["steps"], step_size=o["step_size"], seed=seed,
                               progress_every=max(1, o["steps"] // 4))
        return res.particles, {}
    if name == "svgd_collapsed":
        # SVGD on the marginal posterior of w (alpha integrated out), then exact log alpha | w draws:
        # a stronger SVGD on these sets, where joint (w, log alpha) particles fall into the funnel's neck.
        init = np.random.default_rng(seed).normal(size=(o["particles"], model.d)).astype(np.float32)
        res = svgd.svgd_sample(model.marginal_log_density, init, steps=o["steps"], step_size=o["step_size"],
                               seed=seed, progress_every=max(1, o["steps"] // 4))
        log_alpha = model.sample_log_alpha(res.particles, seed=seed)
        return np.concatenate([res.particles, log_alpha[:, None].astype(np.float32)], axis=1), {}
    if name not in FLOW_SAMPLERS:
        raise ValueError("unknown sampler {!r}; use one of {}".format(name, SAMPLERS))
    sampler = train_flow(name, o, model.log_density, model.dim)
    return np.asarray(sampler.sample(o["n_samples"])), {}


#: Samplers trained by tfp_flows.ugan: direct MAF VI and the U-GAN variants.
FLOW_SAMPLERS = ("direct_vi",) + tuple(UGAN_VARIANTS)
#: Arguments of the tfp_flows.ugan trainers that blr.py sets itself (so not --ugan-options keys).
_SET_HERE = ("log_density", "dim", "anneal", "schedule", "lambda0", "steps", "seed", "batch_size", "lr", "out",
             "resume", "callback", "check_only")


def train_flow(name: str, o: dict, log_density, dim: int, check_only: bool = False):
    """Train flow sampler ``name`` (direct VI or a U-GAN) with the options ``o`` of its settings; with
    ``check_only``, only check them (tfp_flows.ugan's ``check_only``: nothing is trained)."""
    from tfp_flows import ugan   # imported lazily so NUTS/SVGD run without the U-GAN module

    common = dict(steps=o["steps"], seed=o["seed"], batch_size=o["batch"], lr=o["lr"], check_only=check_only,
                  **o["flow_options"])
    if name == "direct_vi":
        return ugan.train_direct_flow(log_density, dim, **common)
    return ugan.train_sampler(log_density, dim, anneal=o["anneal"], schedule=o["schedule"], lambda0=o["lambda0"],
                              **common)


def check_flow_samplers(args: argparse.Namespace) -> None:
    """Check the settings of every direct-VI / U-GAN sampler asked for (--ugan-options keys against the
    trainer's signature, then the annealing form, schedule and lambda0 of each variant and the option values),
    before any sampler runs; raises :class:`BlrError`."""
    import inspect

    names = [n for n in args.samplers if n in FLOW_SAMPLERS]
    if not names:
        return
    from tfp_flows import ugan

    def standard_normal(x):  # a stand-in density: the check does not depend on the data
        return -0.5 * tf.reduce_sum(x * x, axis=-1)

    for name in names:
        fn = ugan.train_direct_flow if name == "direct_vi" else ugan.train_sampler
        allowed = sorted(k for k in inspect.signature(fn).parameters if k not in _SET_HERE)
        unknown = sorted(set(args.ugan_options) - set(allowed))
        if unknown:
            raise BlrError("--ugan-options {} {} not an option of tfp_flows.ugan.{} (sampler {}); use some of: "
                           "{}".format(", ".join(map(repr, unknown)), "is" if len(unknown) == 1 else "are",
                                       fn.__name__, name, ", ".join(allowed)))
        o = sampler_settings(name, args, args.datasets[0], args.first_seed)["options"]
        try:
            train_flow(name, o, standard_normal, 2, check_only=True)
        except (ugan.UganError, ValueError, TypeError) as exc:
            what = "" if name == "direct_vi" or o["anneal"] == "none" else \
                " (--ugan-anneal {}, --ugan-lambda0 {})".format(o["anneal"], o["lambda0"])
            raise BlrError("--samplers {}{}: {}; fix the flag or --ugan-options, or leave {} out".format(
                name, what, " ".join(str(exc).split()), name)) from None


def check_data(args: argparse.Namespace) -> None:
    """Read and verify (sha256) every data set asked for, before anything is written; raises :class:`BlrError`."""
    for ds in args.datasets:
        try:
            uci.load_raw(ds, args.data_dir, german_encoding=args.german_encoding)
        except (OSError, uci.DatasetChecksumError, ValueError) as exc:
            raise BlrError("data set {}: {}".format(ds, " ".join(str(exc).split()))) from None


def report_settings(args: argparse.Namespace, given: set) -> None:
    """--report-only: take every setting from OUT/config.json (the run whose results are reported); a flag
    given on the command line that differs from it is a :class:`BlrError` (but :data:`REPORT_MAY_CHANGE`)."""
    record = Path(args.out) / runinfo.CONFIG_FILENAME
    if not record.is_file():
        raise BlrError("--report-only: {} does not exist, so {} holds no run to report; run without --report-only "
                       "first, or pass the --out of a run".format(record, args.out))
    try:
        recorded = runinfo.read_run_config(args.out)["config"]
        if not isinstance(recorded, dict):
            raise ValueError("no configuration mapping")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BlrError("--report-only: {} is damaged ({}); run without --report-only to rebuild the "
                       "results".format(record, runinfo.one_line(exc))) from None
    current = vars(args)
    keys = [k for k in recorded if k in current and k not in REPORT_MAY_CHANGE]
    differ = [k for k in keys if k in given and json.dumps(recorded[k], sort_keys=True) != json.dumps(
        current[k], sort_keys=True)]
    if differ:
        raise BlrError("--report-only reports the run that {} records, and these flags differ from it (recorded -> "
                       "given): {}; drop them, or run without --report-only to compute results for them".format(
                           record, ", ".join("{} {} -> {}".format(_flag(k), json.dumps(recorded[k]),
                                                                  json.dumps(current[k])) for k in differ)))
    for k in keys:
        setattr(args, k, recorded[k])


def obtain(cache: Path, settings: dict, split: uci.Split, attempt: int = 0,
           report_only: bool = False) -> blr_cache.CachedResult | None:
    """The result for ``settings`` on ``split``: from its cache file when that holds exactly these settings,
    else computed (unless ``report_only``: then None) and written to the cache atomically."""
    dim = split.x_train.shape[1] + 1
    path = blr_cache.cache_path(cache, settings, attempt)
    hit = blr_cache.load_cached(path, settings, dim, report_only=report_only)
    if hit is not None or report_only:
        return hit
    start = time.time()
    samples, info = run_sampler(settings, split)
    result = blr_cache.CachedResult(np.asarray(samples), info, time.time() - start)
    want = blr_cache.expected_shape(settings, dim)
    if result.samples.shape != want:
        raise ValueError("{}: the sampler returned samples of shape {}, expected {}".format(
            settings["sampler"], result.samples.shape, want))
    blr_cache.store_result(path, settings, result)
    return result


def nuts_reference(cache: Path, split: uci.Split, args, seed: int) -> blr_cache.CachedResult | None:
    """NUTS on one split, re-run (burn-in and draws doubled, new chain seeds, up to --nuts-retries times) while
    its max split R-hat is not below --rhat-target; the attempt with the lowest R-hat is used, every attempt
    recorded in its info. None with --report-only when not even the first attempt is cached."""
    attempts = []
    for k in range(args.nuts_retries + 1):
        settings = sampler_settings("nuts", args, split.name, seed, attempt=k)
        result = obtain(cache, settings, split, attempt=k, report_only=args.report_only)
        if result is None:
            break
        attempts.append(result)
        rhat = result.info["max_rhat"]
        if rhat < args.rhat_target:
            break
        if k < args.nuts_retries:
            log("NUTS on {} seed {}: max R-hat {:.4f} >= {}; running again with {} burn-in / {} draws".format(
                split.name, seed, rhat, args.rhat_target, 2 * settings["options"]["burnin"],
                2 * settings["options"]["draws"]))
        else:
            log("NUTS on {} seed {}: max R-hat {:.4f} >= {} after {} attempts".format(
                split.name, seed, rhat, args.rhat_target, k + 1))
    if not attempts:
        return None
    best = min(attempts, key=lambda r: r.info["max_rhat"])
    info = dict(best.info)
    info["attempts"] = [dict(max_rhat=a.info["max_rhat"], min_ess=a.info["min_ess"], seconds=a.seconds)
                        for a in attempts]
    return blr_cache.CachedResult(best.samples, info, sum(a.seconds for a in attempts),
                        from_cache=all(a.from_cache for a in attempts))


# ------------------------------------------------------------------------------------------------ reports
FIELDS = ["dataset", "seed", "sampler", "test_accuracy", "test_loglik", "prob_mae_vs_nuts", "w_mean_err_vs_nuts",
          "w_std_err_vs_nuts", "w_std_ratio_vs_nuts", "seconds", "max_rhat", "min_ess", "divergences"]


def _ms(values) -> str:
    """``mean ± sample std`` of the finite ``values``; the std is "n/a" for a single value (as in the RL tables)."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if len(v) == 0:
        return "n/a"
    std = "{:.3f}".format(np.std(v, ddof=1)) if len(v) > 1 else "n/a"
    return "{:.3f} ± {}".format(np.mean(v), std)


#: (result key, label, higher is better) of the paired U-GAN comparisons
COMPARED = (("test_accuracy", "accuracy", True), ("test_loglik", "test LL", True),
            ("prob_mae_vs_nuts", "|p - p_NUTS|", False))


def contrasts(samplers) -> dict[str, list[tuple[str, str]]]:
    """The two families of paired comparisons, each Holm-corrected on its own: every U-GAN variant against the
    baselines (SVGD, SVGD on w, direct VI), and each annealed U-GAN against the U-GAN without annealing."""
    ugans = [s for s in samplers if s.startswith("ugan")]
    bases = [b for b in ("svgd", "svgd_collapsed", "direct_vi") if b in samplers]
    return {"U-GAN vs SVGD and direct VI (paired over seeds: U-GAN minus baseline)":
            [(u, b) for u in ugans for b in bases],
            "Annealing: U-GAN with VA vs without (paired over seeds: annealed minus not annealed)":
            [(u, "ugan") for u in ugans if u != "ugan"] if "ugan" in samplers else []}


def _comparison(rows, datasets, pairs) -> list[str]:
    """Table lines: per data set, each (variant, baseline) of ``pairs``, paired over the common seeds (variant
    minus baseline) per metric of :data:`COMPARED`, Holm-corrected over these comparisons of that metric
    (:mod:`va_core.paired_stats`). Pairs with fewer than 2 common seeds are left out."""
    found, kept = {key: [] for key, _, _ in COMPARED}, []
    for ds in datasets:
        by = {(r["sampler"], r["seed"]): r for r in rows if r["dataset"] == ds}
        for variant, base in pairs:
            seeds = sorted({s for (n, s) in by if n == variant} & {s for (n, s) in by if n == base})
            if len(seeds) < 2:
                continue
            kept.append((ds, variant, base))
            for key, _, higher in COMPARED:
                found[key].append(paired_stats.paired_difference(
                    [by[(base, s)][key] for s in seeds], [by[(variant, s)][key] for s in seeds],
                    higher_is_better=higher))
    adjusted = {key: paired_stats.adjust(found[key]) for key, _, _ in COMPARED}
    out = []
    for i, (ds, variant, base) in enumerate(kept):
        parts = ["{} {:+.3f} [{:+.3f}, {:+.3f}], p {:.3f}: {}".format(
            label, c.mean_diff, c.ci_low, c.ci_high, c.p_adjusted, c.verdict())
            for (key, label, _), c in ((m, adjusted[m[0]][i]) for m in COMPARED)]
        out.append("| {} | {} vs {} ({} seeds) | {} |".format(
            ds, LABELS[variant], LABELS[base], adjusted[COMPARED[0][0]][i].n, " | ".join(parts)))
    return out


def write_reports(out: Path, rows: list[dict], args) -> None:
    """Write OUT/blr.csv (one row per data set, seed, sampler), OUT/blr.md (mean ± std over seeds, NUTS
    convergence, the paired comparisons of :func:`contrasts`) and OUT/blr.png, each atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS)
    writer.writeheader()
    for r in rows:
        writer.writerow({k: r.get(k) for k in FIELDS})
    atomic_write_text(out / "blr.csv", buf.getvalue())

    seeds = sorted({r["seed"] for r in rows})
    lines = ["# Bayesian logistic regression: samplers vs a NUTS reference", "",
             "Data sets of Table S3, 50/50 splits, split seeds {} (mean ± std over seeds). Config: "
             "`{}/config.json`.".format(seeds, out), "",
             "| data set | sampler | test accuracy | test log-lik | mean abs p - p_NUTS | w mean err | w std err "
             "| w std ratio | seconds |", "|---|---|---|---|---|---|---|---|---|"]
    for ds in args.datasets:
        for s in args.samplers:
            rs = [r for r in rows if r["dataset"] == ds and r["sampler"] == s]
            if not rs:
                continue
            cells = [ds, LABELS[s]] + [_ms(r[key] for r in rs) for key in (
                "test_accuracy", "test_loglik", "prob_mae_vs_nuts", "w_mean_err_vs_nuts", "w_std_err_vs_nuts",
                "w_std_ratio_vs_nuts")] + ["{:.0f}".format(np.mean([r["seconds"] for r in rs]))]
            lines.append("| {} |".format(" | ".join(str(c) for c in cells)))
    nuts_rows = [r for r in rows if r["sampler"] == "nuts"]
    worst = max((r["max_rhat"] for r in nuts_rows), default=float("nan"))
    lines += ["", "## NUTS convergence (per split)", "",
              "Max split R-hat over all coordinates and splits: {:.4f} ({} the target {}). Attempts: NUTS "
              "runs made (each retry doubles burn-in and draws).".format(
                  worst, "below" if worst < args.rhat_target else "NOT below", args.rhat_target), "",
              "| data set | seed | max split R-hat | min ESS | divergences | attempts (R-hat each) |",
              "|---|---|---|---|---|---|"]
    for r in nuts_rows:
        att = r.get("attempts") or []
        lines.append("| {} | {} | {:.4f} | {:.0f} | {} | {} |".format(
            r["dataset"], r["seed"], r["max_rhat"], r["min_ess"], r["divergences"],
            ", ".join("{:.4f}".format(a["max_rhat"]) for a in att) or "1"))
    for title, pairs in contrasts(args.samplers).items():
        comp = _comparison(rows, args.datasets, pairs)
        if comp:
            lines += ["", "## " + title, "",
                      "Mean paired difference over seeds [95% t interval], paired t-test p Holm-corrected over this "
                      "table's comparisons of that metric; 'no detectable difference' where the interval covers 0 "
                      "(va_core.paired_stats).", "",
                      "| data set | comparison | accuracy | test LL | mean abs p - p_NUTS (lower is better) |",
                      "|---|---|---|---|---|"] + comp
    atomic_write_text(out / "blr.md", "\n".join(lines) + "\n")
    plot(out / "blr.png", rows, args)


def plot(path: Path, rows: list[dict], args) -> None:
    """Bar plot of test accuracy, test log-likelihood and mean |p - p_NUTS| per data set and sampler."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [("test_accuracy", "test accuracy"), ("test_loglik", "test log-likelihood"),
               ("prob_mae_vs_nuts", "mean |p - p_NUTS|")]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    width = 0.8 / max(1, len(args.samplers))
    for ax, (key, title) in zip(axes, metrics):
        for k, s in enumerate(args.samplers):
            means, stds = [], []
            for ds in args.datasets:
                v = [r[key] for r in rows if r["dataset"] == ds and r["sampler"] == s]
                means.append(np.mean(v) if v else np.nan)
                stds.append(np.std(v, ddof=1) if len(v) > 1 else 0.0)
            ax.bar(np.arange(len(args.datasets)) + k * width, means, width, yerr=stds, label=LABELS[s], capsize=2)
        ax.set_xticks(np.arange(len(args.datasets)) + 0.4 - width / 2)
        ax.set_xticklabels(args.datasets)
        ax.set_title(title)
        if key == "test_accuracy":
            ax.set_ylim(0.5, 1.0)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


# ---------------------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    """Run (or with --report-only, tabulate) the experiment; everything printed also goes to OUT/run.log.
    Settings, data and the output folder are checked first: a problem is one line on stderr and status 2."""
    args = parse_args(argv)
    out = Path(args.out)
    try:
        cli_checks.check_out_folder(out)
        if args.report_only:
            report_settings(args, cli_checks.given_options(build_parser(), argv))
        check_data(args)
        if not args.report_only:
            check_flow_samplers(args)
    except UsageError as exc:
        return errors.report(exc)
    (out / "cache").mkdir(parents=True, exist_ok=True)
    try:
        with runinfo.exclusive_run_lock(out), log_to_file(out / LOG_FILENAME):  # one job per folder
            return _run(args, out)
    except runinfo.RunLockedError as exc:
        return errors.report(exc)


def _run(args, out: Path) -> int:
    cache = out / "cache"
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    config = dict(vars(args))
    config["seed_list"] = seeds
    config["cache_format"] = blr_cache.CACHE_FORMAT
    if not args.report_only:
        write_run_config(out, config, seed=args.first_seed)
    rows: list[dict] = []
    total = len(args.datasets) * len(seeds) * len(args.samplers)
    done = 0
    t0 = time.time()
    for seed in seeds:            # seed-major: a run stopped early still has whole seeds for every set
        for ds in args.datasets:
            split = uci.load_split(ds, seed, data_dir=args.data_dir, german_encoding=args.german_encoding)
            ref_samples = None
            for name in args.samplers:           # NUTS first (parse_args): the others are compared with it
                done += 1
                if name != "nuts" and ref_samples is None:
                    continue                     # no reference on this split (--report-only, none cached)
                try:
                    if name == "nuts":
                        result = nuts_reference(cache, split, args, seed)
                    else:
                        result = obtain(cache, sampler_settings(name, args, ds, seed), split,
                                        report_only=args.report_only)
                except ImportError as exc:
                    log("SKIP {} on {} seed {}: {}".format(name, ds, seed, exc))
                    continue
                if result is None:               # --report-only and not cached
                    log("{} on {} seed {}: no cached result for these settings".format(name, ds, seed))
                    continue
                if name == "nuts":
                    ref_samples = result.samples
                info = result.info
                m = blr.predictive_metrics(result.samples, split.x_test, split.y_test)
                d = blr.compare_to_reference(result.samples, ref_samples, split.x_test)
                rows.append(dict(dataset=ds, seed=seed, sampler=name, test_accuracy=m.accuracy,
                                 test_loglik=m.log_likelihood, prob_mae_vs_nuts=d.prob_mae,
                                 w_mean_err_vs_nuts=d.mean_err, w_std_err_vs_nuts=d.std_err,
                                 w_std_ratio_vs_nuts=d.std_ratio, seconds=result.seconds,
                                 max_rhat=info.get("max_rhat"), min_ess=info.get("min_ess"),
                                 divergences=info.get("divergences"), attempts=info.get("attempts")))
                extra = " R-hat {:.4f} ESS {:.0f}".format(info["max_rhat"], info["min_ess"]) if name == "nuts" else ""
                which = "[{}/{}] {} seed {} {:<16}".format(done, total, ds, seed, name)
                log("{} acc {:.3f} LL {:.3f} |p-p_NUTS| {:.4f} ({:.0f} s{}; elapsed {:.0f} s){}".format(
                    which, m.accuracy, m.log_likelihood, d.prob_mae, result.seconds,
                    ", cached" if result.from_cache else "", time.time() - t0, extra))
            if rows:
                write_reports(out, rows, args)   # after every split, so partial results are always on disk
    if not rows:
        return errors.report(BlrError(
            "{}: no result {} for these settings, so blr.md, blr.csv and blr.png were left as they were; run "
            "without --report-only to compute them".format(cache, "is cached" if args.report_only else "was computed")))
    log("wrote {}/blr.md, blr.csv, blr.png".format(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
