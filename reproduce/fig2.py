"""Main-text Fig. 2 / supplement G: Langevin sampling of the banana with a DAE-score vs a DAE-residual
score estimate, measured against exact samples (energy distance, MMD^2).

    python reproduce/fig2.py --out results/fig2            # a few minutes on 2 CPU cores

Writes ``fig2.png`` (exact | exact-score Langevin | DAE-score | DAE-residual), ``table.md``,
``metrics.json``, ``config.json`` and the trained denoiser ``dae.npz`` (reused by ``--resume``).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from chainer_va import compat  # noqa: F401  (before chainer)
from chainer_va import runinfo, sample_distance, score_toy
from chainer_va.seeding import seed_everything


def _ints(text):
    return tuple(int(v) for v in text.split(",") if v.strip())


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="results/fig2")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sigma", type=float, default=score_toy.SIGMA, help="DAE noise level (supplement G: 0.2)")
    p.add_argument("--n-data", type=int, default=20000, help="exact banana samples the DAE is trained on")
    p.add_argument("--hidden", type=_ints, default=(64, 64, 64), help="DAE hidden sizes [inferred]")
    p.add_argument("--dae-steps", type=int, default=2000)
    p.add_argument("--dae-batch", type=int, default=256)
    p.add_argument("--dae-lr", type=float, default=score_toy.DEFAULT_LR)
    p.add_argument("--chains", type=int, default=1000, help="Langevin chains = samples per sampler")
    p.add_argument("--langevin-steps", type=int, default=1500)
    p.add_argument("--step-size", type=float, default=0.02, help="Langevin eta (eta * steps = 30 time units)")
    p.add_argument("--residual-scale", type=float, default=None,
                   help="c in s_r = -c grad||r(x)-x||^2 (default 1/(2 sigma^4); see chainer_va/score_toy.py)")
    p.add_argument("--resume", action="store_true", help="reuse out/dae.npz if present")
    return p.parse_args(argv)


def main(argv=None) -> int:
    import chainer
    import threadpoolctl

    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(args.seed)
    runinfo.write_run_config(out, vars(args), seed=args.seed)
    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    with threadpoolctl.threadpool_limits(1):  # small matrices: BLAS threads only contend
        data = score_toy.sample_banana(args.n_data, rng)
        den = score_toy.make_denoiser(hidden=args.hidden, sigma=args.sigma, lr=args.dae_lr, seed=args.seed + 1)
        dae_file = out / "dae.npz"
        if args.resume and dae_file.exists():
            chainer.serializers.load_npz(str(dae_file), den.link)
            print("loaded", dae_file)
        else:
            def report(i, loss):
                if (i + 1) % 500 == 0:
                    print("DAE step {}/{} loss {:.5f} ({:.0f} s)".format(i + 1, args.dae_steps, loss,
                                                                       time.time() - t0), flush=True)
            score_toy.train_denoiser(den, data, steps=args.dae_steps, batch_size=args.dae_batch,
                                     seed=args.seed + 2, callback=report)
            tmp = out / ".dae.npz.tmp"
            chainer.serializers.save_npz(str(tmp), den.link)
            tmp.replace(dae_file)
        t_train = time.time() - t0

        x0 = rng.standard_normal((args.chains, 2)).astype(np.float32)  # chains start at N(0, I)
        samplers = {
            "exact score": score_toy.banana_score,
            "DAE-score": lambda x: score_toy.dae_score(den, x),
            "DAE-residual": lambda x: score_toy.dae_residual_score(den, x, args.residual_scale),
        }
        reference = score_toy.sample_banana(args.chains, np.random.default_rng(args.seed + 100))
        results = {"exact samples (noise floor)": {"samples": score_toy.sample_banana(
            args.chains, np.random.default_rng(args.seed + 200)), "diverged": 0.0, "seconds": 0.0}}
        for k, (name, fn) in enumerate(samplers.items()):
            t = time.time()
            res = score_toy.langevin(fn, x0, args.step_size, args.langevin_steps,
                                     np.random.default_rng(args.seed + 10 + k))
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
    print("wrote", out / "fig2.png", "in {:.0f} s".format(time.time() - t0))
    return 0


def _plot(results, metrics, path):
    import io

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
