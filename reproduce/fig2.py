"""Main-text Fig. 2 / supplement G: Langevin sampling of the banana with a DAE-score vs a DAE-residual
score estimate, measured against exact samples (energy distance, MMD^2).

    python reproduce/fig2.py --out results/fig2                  # a few minutes on 2 CPU cores
    python reproduce/fig2.py --out results/fig2 --resume         # reuse the trained denoiser in --out
    python reproduce/fig2.py --out results/fig2 --publish-docs   # default settings only: also copy the
                                                                 # figure and table into docs/images/

Writes, all under ``--out``: ``fig2.png`` (exact | exact-score Langevin | DAE-score | DAE-residual),
``table.md``, ``metrics.json``, ``config.json`` and the trained denoiser ``dae.npz`` with the settings and
training data's SHA-256 it was trained with (``--resume`` reuses it only when those are the ones asked for).
User errors print one line and exit with status 2.
"""
from __future__ import annotations

import hashlib
import io
import json
import time
import zipfile
from pathlib import Path

import numpy as np

from chainer_va import compat  # noqa: F401  (before chainer)
from chainer_va import score_toy
from va_core import errors, runinfo, sample_distance
from va_core.errors import RunError, UsageError
from va_core.seeding import seed_everything
from va_core import cli_checks

#: Offsets from --seed of fig2's random streams (the data sample uses --seed itself). Changing them
#: changes the recorded table.
DAE_INIT_SEED_OFFSET = 1  # the denoiser's initial weights (its training noise: + 1 more, in score_toy)
DAE_TRAINING_SEED_OFFSET = 2  # minibatch order of the denoiser's training
REFERENCE_SEED_OFFSET = 100  # exact samples every sampler is compared with
FLOOR_SEED_OFFSET = 200  # a second exact sample: the noise floor
LANGEVIN_SEED_OFFSET = 10  # + k for the k-th sampler's Langevin noise (k < 3)

DAE_FILE = "dae.npz"
#: the array in dae.npz that holds the denoiser's training settings (JSON text)
SETTINGS_KEY = "_fig2_dae_settings"
#: docs/images of this repository (only ``--publish-docs`` writes there)
DOCS_IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"
#: (file in --out, name in docs/images) copied by --publish-docs
PUBLISHED = (("fig2.png", "fig2.png"), ("table.md", "fig2_table.md"))
#: settings that may differ from the defaults in a --publish-docs run
PUBLISH_MAY_CHANGE = ("out", "resume", "publish_docs")


class Fig2Error(UsageError):
    """A user error (bad settings, a denoiser file that cannot be reused); the message names the fix."""


def parse_args(argv=None):
    """The command line (``--help`` lists every option)."""
    p = cli_checks.OneLineParser(
        prog="reproduce/fig2.sh", description=" ".join(__doc__.split("\n\n")[0].split()))  # first paragraph
    p.add_argument("--out", default="results/fig2")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sigma", type=float, default=score_toy.SIGMA, help="DAE noise level (supplement G: 0.2)")
    p.add_argument("--n-data", type=int, default=20000, help="exact banana samples the DAE is trained on")
    p.add_argument("--hidden", type=lambda text: tuple(cli_checks.positive_sizes(text)), default=(64, 64, 64),
                   help="DAE hidden sizes [inferred]")
    p.add_argument("--dae-steps", type=int, default=2000)
    p.add_argument("--dae-batch", type=int, default=256)
    p.add_argument("--dae-lr", type=float, default=score_toy.DEFAULT_LR)
    p.add_argument("--chains", type=int, default=1000, help="Langevin chains = samples per sampler")
    p.add_argument("--langevin-steps", type=int, default=1500)
    p.add_argument("--step-size", type=float, default=0.02, help="Langevin eta (eta * steps = 30 time units)")
    p.add_argument("--residual-scale", type=float, default=None,
                   help="c in s_r = -c grad||r(x)-x||^2 (default 1/(2 sigma^4); see chainer_va/score_toy.py)")
    p.add_argument("--resume", action="store_true",
                   help="reuse out/dae.npz if present (refused if it was trained with other settings)")
    p.add_argument("--publish-docs", action="store_true",
                   help="also copy fig2.png and table.md (as fig2_table.md) into docs/images/; only at the "
                        "default settings (--out and --resume aside)")
    return p.parse_args(argv)


def dae_settings(args, data: np.ndarray) -> dict:
    """What the trained denoiser depends on: its settings and a fingerprint of its training data."""
    return {"seed": int(args.seed), "sigma": float(args.sigma), "n_data": int(args.n_data),
            "hidden": [int(h) for h in args.hidden], "dae_steps": int(args.dae_steps),
            "dae_batch": int(args.dae_batch), "dae_lr": float(args.dae_lr),
            "data_sha256": hashlib.sha256(np.ascontiguousarray(data, np.float32).tobytes()).hexdigest()}


def save_dae(path, link, settings: dict) -> None:
    """The denoiser's parameters (Chainer npz layout) plus ``settings``, written atomically."""
    import chainer

    serializer = chainer.serializers.DictionarySerializer()
    serializer.save(link)
    arrays = dict(serializer.target)
    arrays[SETTINGS_KEY] = np.array(json.dumps(settings, sort_keys=True))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    runinfo.atomic_write_bytes(path, buffer.getvalue())


def load_dae(path, link, settings: dict) -> None:
    """Load ``path`` into ``link`` if it records exactly ``settings``; otherwise a :class:`Fig2Error`
    naming the differences (or the damage) and the fix."""
    import chainer

    path = Path(path)
    retrain = "drop --resume to retrain it (overwrites {}), or choose another --out".format(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            if SETTINGS_KEY not in npz.files:
                raise Fig2Error("{} records no training settings (written by an older fig2.py), so it cannot be "
                                "checked against this run; {}".format(path, retrain))
            recorded = json.loads(str(npz[SETTINGS_KEY]))
            diff = {k: (recorded.get(k, "(absent)"), v) for k, v in settings.items()
                    if recorded.get(k, "(absent)") != v}
            if diff:
                raise Fig2Error("{} was trained with other settings (recorded -> now): {}; pass the recorded flags, "
                                "or {}".format(path, runinfo.format_differences(diff), retrain))
            chainer.serializers.NpzDeserializer(npz, strict=True).load(link)
    except Fig2Error:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, KeyError, EOFError, TypeError) as e:
        raise Fig2Error("{} is damaged ({}); {}".format(path, runinfo.one_line(e), retrain)) from None


def publish_docs(out, docs_dir=None) -> list:
    """Copy ``out``'s fig2.png and table.md into ``docs_dir`` (default: this repository's docs/images)
    under the names the README links, each atomically; returns the written paths."""
    try:
        return runinfo.copy_files(out, DOCS_IMAGES if docs_dir is None else docs_dir, PUBLISHED)
    except FileNotFoundError as e:
        raise Fig2Error("--publish-docs: {}".format(e)) from None


def _check_args(args) -> None:
    for flag, value, least in (("--n-data", args.n_data, 1), ("--dae-steps", args.dae_steps, 1),
                               ("--dae-batch", args.dae_batch, 1), ("--langevin-steps", args.langevin_steps, 1),
                               ("--chains", args.chains, 2)):
        if value < least:
            raise Fig2Error("{} must be >= {}, got {}".format(flag, least, value))
    for flag, value in (("--sigma", args.sigma), ("--step-size", args.step_size), ("--dae-lr", args.dae_lr)):
        if not value > 0:
            raise Fig2Error("{} must be positive, got {}".format(flag, value))
    if args.publish_docs:
        defaults = vars(parse_args([]))
        diff = {k: (defaults[k], v) for k, v in vars(args).items() if k not in PUBLISH_MAY_CHANGE and v != defaults[k]}
        if diff:
            raise Fig2Error("--publish-docs copies the figure into docs/images/, which shows the documented default "
                            "settings; these differ (default -> given): {}; drop --publish-docs (the results stay "
                            "in {})".format(runinfo.format_differences(diff), args.out))


def main(argv=None) -> int:
    """Train (or reuse) the denoiser, run the Langevin samplers, write the table and figure under
    ``--out``; 0 on success, 2 after a one-line error."""
    args = parse_args(argv)
    try:
        with cli_checks.output_folder(args.out):
            return _main(args)
    except RunError as e:
        return errors.report(e)


def _main(args) -> int:
    import threadpoolctl

    _check_args(args)
    out = Path(args.out)
    seed_everything(args.seed)
    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    with threadpoolctl.threadpool_limits(1):  # small matrices: BLAS threads only contend
        data = score_toy.sample_banana(args.n_data, rng)
        settings = dae_settings(args, data)
        den = score_toy.make_denoiser(hidden=args.hidden, sigma=args.sigma, lr=args.dae_lr, seed=args.seed + DAE_INIT_SEED_OFFSET)
        dae_file = out / DAE_FILE
        reuse = args.resume and dae_file.exists()
        if reuse:
            load_dae(dae_file, den.link, settings)  # checked before anything is written
        out.mkdir(parents=True, exist_ok=True)
        runinfo.write_run_config(out, vars(args), seed=args.seed)
        if reuse:
            print("loaded", dae_file)
        else:
            def report(i, loss):
                if (i + 1) % 500 == 0:
                    print("DAE step {}/{} loss {:.5f} ({:.0f} s)".format(i + 1, args.dae_steps, loss,
                                                                       time.time() - t0), flush=True)
            score_toy.train_denoiser(den, data, steps=args.dae_steps, batch_size=args.dae_batch,
                                     seed=args.seed + DAE_TRAINING_SEED_OFFSET, callback=report)
            save_dae(dae_file, den.link, settings)
        t_train = time.time() - t0

        x0 = rng.standard_normal((args.chains, 2)).astype(np.float32)  # chains start at N(0, I)
        samplers = {
            "exact score": score_toy.banana_score,
            "DAE-score": lambda x: score_toy.dae_score(den, x),
            "DAE-residual": lambda x: score_toy.dae_residual_score(den, x, args.residual_scale),
        }
        reference = score_toy.sample_banana(args.chains, np.random.default_rng(args.seed + REFERENCE_SEED_OFFSET))
        results = {"exact samples (noise floor)": {"samples": score_toy.sample_banana(
            args.chains, np.random.default_rng(args.seed + FLOOR_SEED_OFFSET)), "diverged": 0.0, "seconds": 0.0}}
        for k, (name, fn) in enumerate(samplers.items()):
            t = time.time()
            res = score_toy.langevin(fn, x0, args.step_size, args.langevin_steps,
                                     np.random.default_rng(args.seed + LANGEVIN_SEED_OFFSET + k))
            res["seconds"] = time.time() - t
            results[name] = res
            print("{}: {:.0f} s".format(name, res["seconds"]), flush=True)

    metrics = {}
    for name, res in results.items():
        x = res["samples"]
        finite = x[np.all(np.isfinite(x), 1)]
        metrics[name] = {
            "energy_distance": sample_distance.energy_distance(finite, reference),
            "mmd2": sample_distance.mmd2(finite, reference),
            "mean_log_u": float(score_toy.banana_log_density(finite).mean()),
            "std_x1": float(finite[:, 0].std()), "std_x2": float(finite[:, 1].std()),
            "diverged_fraction": res["diverged"], "seconds": round(res["seconds"], 1),
        }
    metrics["_meta"] = {"dae_train_seconds": round(t_train, 1), "reference_samples": args.chains,
                        "dae_reused": bool(reuse), "dae_settings": settings,
                        "exact_mean_log_u": float(score_toy.banana_log_density(reference).mean())}
    runinfo.atomic_write_json(out / "metrics.json", metrics)
    lines = ["| sampler (banana, sigma = {}) | energy distance | MMD^2 | mean log u | std x1 | std x2 |".format(
        args.sigma), "|---|---|---|---|---|---|"]
    for name in results:
        m = metrics[name]
        lines.append("| {} | {:.4f} | {:.5f} | {:.3f} | {:.2f} | {:.2f} |".format(
            name, m["energy_distance"], m["mmd2"], m["mean_log_u"], m["std_x1"], m["std_x2"]))
    table = "\n".join(lines) + "\n"
    runinfo.atomic_write_text(out / "table.md", table)
    print(table)
    _plot(results, metrics, out / "fig2.png")
    print("wrote", out / "fig2.png", "and", out / "table.md", "in {:.0f} s".format(time.time() - t0))
    if args.publish_docs:
        for path in publish_docs(out):
            print("published", path)
    return 0


def _plot(results, metrics, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g1, g2 = np.meshgrid(np.linspace(-3, 9, 200), np.linspace(-6, 6, 200))
    logu = score_toy.banana_log_density(np.stack([g1.ravel(), g2.ravel()], 1)).reshape(g1.shape)
    fig, axes = plt.subplots(1, len(results), figsize=(3.2 * len(results), 3.3), sharex=True, sharey=True)
    for ax, (name, res) in zip(axes, results.items()):
        ax.contour(g1, g2, logu, levels=[-8, -4.5, -2, -0.5], colors="0.6", linewidths=0.7)
        x = res["samples"]
        ax.scatter(x[:, 0], x[:, 1], s=2, alpha=0.5, color="C0" if "DAE" not in name else
                   ("C2" if name == "DAE-score" else "C3"))
        ax.set_title("{}\nED {:.3f}".format(name.replace(" (noise floor)", ""),
                                           metrics[name]["energy_distance"]), fontsize=9)
        ax.set_xlim(-3, 9)
        ax.set_ylim(-6, 6)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    runinfo.atomic_write_bytes(path, buf.getvalue())


if __name__ == "__main__":
    raise SystemExit(main())
