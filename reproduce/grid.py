"""The Table 1 grid of runs and its runners: in-process, a local process pool over GPUs, or submitit.

A *run* is one training (``python -m chainer_va.train``) followed by one evaluation
(:func:`chainer_va.evaluate.evaluate_run`). :func:`run_one` is resumable and idempotent: a run folder made
with other settings is an error, a completed run is not trained again, an unfinished one resumes from its
snapshots, and metrics with the same evaluation settings are not recomputed. Runners: :func:`run_local`
(``--gpus 0,1 --jobs-per-gpu N``: each run in a subprocess on its own device) and :func:`run_submitit`.
"""
from __future__ import annotations

import concurrent.futures
import itertools
import json
import queue
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from chainer_va.device import cpu_thread_env, parse_device_spec

#: The paper's objectives (Table 1 rows) and annealing variants (columns).
OBJECTIVES = ("jsd", "rkl", "wgan")
#: variant -> (anneal term, schedule). "none" is the baseline without VA (lambda_t = 0).
VARIANTS = {"none": ("none", "static"), "lik": ("lik", "linear"), "ent": ("ent", "linear"),
            "lgan": ("lgan", "lgan")}
#: Variants at the calibrated annealing scale (``--anneal-scale calibrated``: the term's feature gradient is
#: lambda_t times the DAE score, the tempered target of Corollary 2.2); not in the paper's grid, run by the
#: CPU study (``table1.sh --study``) and on request (``--variants lik-cal``).
CALIBRATED = {"lik-cal": ("lik", "linear"), "ent-cal": ("ent", "linear")}
#: Every variant a grid can hold, and the train flags a variant adds to its runs.
ALL_VARIANTS = {**VARIANTS, **CALIBRATED}
VARIANT_ARGS = {name: ["--anneal-scale", "calibrated"] for name in CALIBRATED}
#: The paper's lambda0 search grid (SPEC section 3).
LAMBDA0_GRID = (0.1, 1.0, 10.0)
#: lambda0 of VA runs without --lambda0-search [inferred: the paper reports only the best of the grid].
DEFAULT_LAMBDA0 = 1.0


@dataclass
class RunSpec:
    """One training run of the grid and how to score it."""

    objective: str
    variant: str
    anneal: str
    schedule: str
    lambda0: float
    seed: int
    run_dir: str
    train_args: List[str] = field(default_factory=list)
    eval_kwargs: Dict = field(default_factory=dict)

    @property
    def cell(self) -> str:
        """Table cell key: objective/variant[/schedule]."""
        base_schedule = ALL_VARIANTS.get(self.variant, (None, None))[1]
        suffix = "" if self.schedule == base_schedule else "/" + self.schedule
        return "{}/{}{}".format(self.objective, self.variant, suffix)


def build_grid(out_root: str, objectives: Sequence[str] = OBJECTIVES, variants: Sequence[str] = tuple(VARIANTS),
               seeds: Sequence[int] = (0, 1, 2), schedules: Sequence[str] = ("linear",),
               lambda0s: Sequence[float] = (DEFAULT_LAMBDA0,), common_args: Sequence[str] = (),
               eval_kwargs: Optional[dict] = None) -> List[RunSpec]:
    """All runs of the grid. ``schedules`` applies to the lik/ent variants (the baseline and LGAN keep theirs)."""
    unknown = [o for o in objectives if o not in OBJECTIVES]
    if unknown:
        raise ValueError("unknown objective(s) {}; choose from {}".format(unknown, OBJECTIVES))
    specs = []
    for objective, variant in itertools.product(objectives, variants):
        if variant not in ALL_VARIANTS:
            raise ValueError("unknown variant {!r}; choose from {}".format(variant, tuple(ALL_VARIANTS)))
        anneal, base_schedule = ALL_VARIANTS[variant]
        variant_schedules = schedules if anneal in ("lik", "ent") else (base_schedule,)
        variant_lambdas = (0.0,) if variant == "none" else lambda0s
        for schedule, lam, seed in itertools.product(variant_schedules, variant_lambdas, seeds):
            name = "{}-{}-{}-l{:g}".format(objective, variant, schedule, lam)
            run_dir = str(Path(out_root) / name / "seed{}".format(seed))
            args = ["--objective", objective, "--anneal", anneal, "--schedule", schedule, "--lambda0", repr(lam),
                    "--seed", str(seed), "--out", run_dir] + VARIANT_ARGS.get(variant, []) + list(common_args)
            specs.append(RunSpec(objective, variant, anneal, schedule, lam, seed, run_dir, train_args=args,
                                 eval_kwargs=dict(eval_kwargs or {})))
    return specs


def run_state(run_dir) -> str:
    """"done" (result.json completed), "partial" (snapshots to resume from) or "new"."""
    run_dir = Path(run_dir)
    result = run_dir / "result.json"
    if result.is_file():
        try:
            if json.loads(result.read_text()).get("completed"):
                return "done"
        except ValueError as e:  # a torn or damaged record: the run is redone, and says so
            print("warning: {} is unreadable ({}); the run counts as unfinished and resumes from its "
                  "snapshots".format(result, e), file=sys.stderr)
    if any(run_dir.glob("snapshot_iter_*.npz")):
        return "partial"
    return "new"


def settings_mismatch(spec: RunSpec) -> Optional[str]:
    """Why the run already in ``spec.run_dir`` (finished or not) cannot count as this spec's run, or None.

    The folder name holds only the cell and seed, so the run's saved ``config.json`` is compared with the
    spec's command line (:func:`chainer_va.train.config_differences`)."""
    from chainer_va import train
    from va_core import runinfo

    if not (Path(spec.run_dir) / runinfo.CONFIG_FILENAME).is_file():
        return None
    differences = train.config_differences(runinfo.read_run_config(spec.run_dir)["config"], spec.train_args)
    if not differences:
        return None
    return "{} holds a run made with other settings ({}); move it away or choose another --runs-dir".format(
        spec.run_dir, ", ".join("{} {!r} there, {!r} now".format(key, old, new)
                                for key, (old, new) in sorted(differences.items())))


def run_one(spec: RunSpec | dict, device: str = "-1", evaluate: bool = True,
            runner: Callable[[List[str]], int] = None, concurrent_cpu_runs: int = 1) -> dict:
    """Train (skipping finished runs, resuming unfinished ones) and score one run. Returns a summary.

    ``runner`` executes a command line and returns its exit status (default: a subprocess logging to
    ``run_dir/train.out``, with its share of the cores' BLAS threads when ``concurrent_cpu_runs`` > 1)."""
    if isinstance(spec, dict):
        spec = RunSpec(**spec)
    state = run_state(spec.run_dir)
    summary = {"run_dir": spec.run_dir, "cell": spec.cell, "seed": spec.seed, "state_before": state}
    mismatch = settings_mismatch(spec)
    if mismatch:
        summary["error"] = mismatch
        return summary
    if state != "done":
        cmd = [sys.executable, "-m", "chainer_va.train"] + list(spec.train_args) + ["--device", str(device)]
        cmd += ["--resume"] if state == "partial" else []
        Path(spec.run_dir).mkdir(parents=True, exist_ok=True)
        status = (runner or _subprocess_runner(Path(spec.run_dir) / "train.out", concurrent_cpu_runs))(cmd)
        if status != 0 or run_state(spec.run_dir) != "done":
            summary["error"] = "training failed (exit status {}){}; see {}/train.out".format(
                status, _last_line(Path(spec.run_dir) / "train.out"), spec.run_dir)
            return summary
    if evaluate:
        from chainer_va.evaluate import evaluate_run

        metrics = evaluate_run(spec.run_dir, device=device, **spec.eval_kwargs)
        summary.update({k: metrics[k] for k in ("IS", "IS_std", "FID")})
    return summary


def _last_line(log_path: Path) -> str:
    """': <the log's last non-empty line>' (where a failed run says why), or '' without a log."""
    try:
        lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return ": " + lines[-1][:500] if lines else ""


def _subprocess_runner(log_path: Path, concurrent_cpu_runs: int = 1) -> Callable[[List[str]], int]:
    env = cpu_thread_env(concurrent_cpu_runs)

    def run(cmd: List[str]) -> int:
        with open(log_path, "a") as log:
            log.write("$ {}\n".format(" ".join(cmd)))
            log.flush()
            return subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    return run


def report_failures(summaries: Sequence[dict]) -> List[dict]:
    """The summaries of the runs that failed, each named on stderr."""
    failed = [s for s in summaries if "error" in s]
    for s in failed:
        print("FAILED {} seed {}: {}".format(s["cell"], s["seed"], s["error"]), file=sys.stderr)
    return failed


def run_local(specs: Sequence[RunSpec], gpus: Sequence[str] = ("-1",), jobs_per_gpu: int = 1,
              evaluate: bool = True, log: Callable[[str], None] = print,
              on_done: Optional[Callable[[RunSpec, dict], None]] = None) -> List[dict]:
    """Run the grid with ``jobs_per_gpu`` concurrent runs on each device of ``gpus`` ("-1" = CPU).

    Concurrent CPU runs share the cores' BLAS threads. ``on_done(spec, summary)`` is called as each run ends
    (a study's ledger records it then, so that an interrupted grid keeps every finished run)."""
    if jobs_per_gpu < 1:
        raise ValueError("--jobs-per-gpu must be >= 1, got {}".format(jobs_per_gpu))
    slots: "queue.Queue[str]" = queue.Queue()
    for device in gpus:
        for _ in range(jobs_per_gpu):
            slots.put(str(device))
    cpu_runs = sum(jobs_per_gpu for device in gpus if parse_device_spec(device) == "@numpy")

    def work(spec: RunSpec) -> dict:
        device = slots.get()
        try:
            log("[{}] {} seed {} on device {}".format(run_state(spec.run_dir), spec.cell, spec.seed, device))
            on_cpu = parse_device_spec(device) == "@numpy"
            summary = run_one(spec, device, evaluate, concurrent_cpu_runs=cpu_runs if on_cpu else 1)
            if on_done is not None:
                on_done(spec, summary)
            return summary
        finally:
            slots.put(device)

    with concurrent.futures.ThreadPoolExecutor(max_workers=slots.qsize()) as pool:
        return list(pool.map(work, specs))


def run_submitit(specs: Sequence[RunSpec], cluster: str, folder: str, device: str = "0", evaluate: bool = True,
                 timeout_min: int = 60 * 24, slurm_partition: Optional[str] = None) -> List[dict]:
    """Submit every run as one submitit job (``cluster`` "slurm" or "local") and wait for the results."""
    import cloudpickle
    import submitit

    # reproduce/ is not a package: ship this module's functions by value to the workers.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    if cluster == "local":
        executor = submitit.LocalExecutor(folder=folder)
        executor.update_parameters(timeout_min=timeout_min)
    elif cluster == "slurm":
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
        params = dict(timeout_min=timeout_min, gpus_per_node=1, tasks_per_node=1, cpus_per_task=4)
        if slurm_partition:
            params["slurm_partition"] = slurm_partition
        executor.update_parameters(**params)
    else:
        raise ValueError("--submitit must be slurm or local, got {!r}".format(cluster))
    jobs = [executor.submit(run_one, asdict(spec), device, evaluate) for spec in specs]
    return [job.result() for job in jobs]
