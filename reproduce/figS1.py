"""Supplement Fig. S1 / J.2: U-GAN samplers of unnormalised toy densities (banana, kidney), with and
without (negative) variational annealing, plus the direct MAF baseline; sample quality vs exact samples.

    python reproduce/figS1.py --out results/figS1            # CPU minutes (reduced flows, see --help)
    python reproduce/figS1.py --out results/figS1 --resume   # continue killed runs, skip finished ones

Writes ``figS1.png`` (banana samples over training under negative annealing: lambda_t rising from
lambda0 < 0 to 0, i.e. beta_t = 1 + lambda_t from beta < 1 (flatter) to 1), ``figS1_final.png`` (final
samples of every run beside exact samples), ``table.md`` / ``quality.json`` (energy distance and MMD^2 to
exact samples) and one run folder per sampler (config.json, log.jsonl, checkpoints, snapshots).
"""
from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

import numpy as np

import tfp_flows  # noqa: F401  (project package first: compat layer, TF_USE_LEGACY_KERAS)
from chainer_va import runinfo, sample_distance
from chainer_va.seeding import seed_everything


def _ints(text):
    return [int(v) for v in text.split(",") if v.strip()]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="results/figS1")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--targets", default="banana,kidney")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--lambda0", type=float, default=-0.5,
                   help="negative likelihood annealing: beta_0 = 1 + lambda0 (supplement J.2: 'negative annealing')")
    p.add_argument("--anneal", default="lik", choices=("lik", "ent"))
    p.add_argument("--schedule", default="linear")
    p.add_argument("--flow-blocks", type=int, default=4, help="paper: 8 (reduced for the CPU)")
    p.add_argument("--hidden-units", type=_ints, default=[64, 64], help="paper: 512,512 (reduced for the CPU)")
    p.add_argument("--generator-hidden", type=_ints, default=[64, 64])
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-final-fraction", type=float, default=0.1)
    p.add_argument("--no-direct", action="store_true", help="skip the direct KL(nu||mu) MAF baseline")
    p.add_argument("--eval-samples", type=int, default=2000)
    p.add_argument("--snapshots", type=_ints, default=None,
                   help="steps shown in figS1.png (default: 0 and 6 points over the run)")
    p.add_argument("--threads", type=int, default=1, help="TF/BLAS threads (the machine is shared)")
    p.add_argument("--resume", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> int:
    import tensorflow as tf
    import threadpoolctl

    from tfp_flows import targets, ugan

    args = parse_args(argv)
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    threadpoolctl.threadpool_limits(args.threads)
    seed_everything(args.seed, tensorflow=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runinfo.write_run_config(out, vars(args), seed=args.seed)
    snaps = args.snapshots or sorted({0} | {int(round(f * args.steps)) for f in (0.1, 0.25, 0.4, 0.6, 0.8, 1.0)})
    common = dict(steps=args.steps, seed=args.seed, batch_size=args.batch_size, hidden_units=args.hidden_units,
                  flow_blocks=args.flow_blocks, lr=args.lr, lr_final_fraction=args.lr_final_fraction,
                  snapshot_size=args.eval_samples, progress=True, resume=args.resume)
    runs = []
    for name in [t for t in args.targets.split(",") if t]:
        runs.append((name, "ugan", args.anneal, args.lambda0))
        runs.append((name, "ugan", "none", 0.0))
        if not args.no_direct:
            runs.append((name, "direct", "none", 0.0))

    quality = {}
    finals = {}
    annealed_snapshots = {}
    t_all = time.time()
    for name, method, anneal, lam in runs:
        target = targets.get(name)
        key = "{}_{}_{}".format(name, method, anneal)
        run_dir = out / key
        done_file = run_dir / "quality.json"
        if args.resume and done_file.exists():
            quality[key] = json.loads(done_file.read_text())
            finals[key] = np.load(run_dir / "final_samples.npy")
            if method == "ugan" and anneal != "none":
                annealed_snapshots[name] = {s: np.load(run_dir / "snapshots" / "step_{}.npy".format(s))
                                            for s in snaps}
                annealed_snapshots[name + "_log"] = [json.loads(l) for l in
                                                     (run_dir / "log.jsonl").read_text().splitlines()]
            print("skip finished", key)
            continue
        t = time.time()
        kw = dict(common, out=run_dir, anneal=anneal, schedule=args.schedule if anneal != "none" else "static",
                  lambda0=lam, snapshot_steps=snaps if (method == "ugan" and anneal != "none") else (),
                  extra_config={"target": name})
        if method == "ugan":
            res = ugan.train_sampler(target.log_density, target.dim, generator_hidden=args.generator_hidden, **kw)
        else:
            res = ugan.train_direct_flow(target.log_density, target.dim, **kw)
        model = res.sample(args.eval_samples, seed=args.seed + 1)
        exact = target.sample(args.eval_samples, np.random.default_rng(args.seed + 2))
        q = {"target": name, "method": method, "anneal": anneal, "lambda0": lam,
             "schedule": kw["schedule"], "steps": args.steps,
             "energy_distance": sample_distance.energy_distance(model, exact),
             "mmd2": sample_distance.mmd2(model, exact), "n": args.eval_samples,
             "mean_log_u": float(target.log_density_np(model).mean()),
             "exact_mean_log_u": float(target.log_density_np(exact).mean()),
             "seconds": round(time.time() - t, 1)}
        runinfo.atomic_write_bytes(run_dir / "final_samples.npy", _npy(model))
        runinfo.atomic_write_json(done_file, q)
        quality[key] = q
        finals[key] = model
        if method == "ugan" and anneal != "none":
            annealed_snapshots[name] = dict(res.snapshots)
            annealed_snapshots[name + "_log"] = res.history
        print(key, json.dumps({k: q[k] for k in ("energy_distance", "mmd2", "seconds")}), flush=True)

    # noise floor: two independent exact samples of the same size
    for name in {r[0] for r in runs}:
        target = targets.get(name)
        a = target.sample(args.eval_samples, np.random.default_rng(args.seed + 2))
        b = target.sample(args.eval_samples, np.random.default_rng(args.seed + 3))
        quality["{}_exact_floor".format(name)] = {
            "target": name, "method": "exact vs exact", "anneal": "-", "lambda0": 0.0, "schedule": "-",
            "energy_distance": sample_distance.energy_distance(a, b), "mmd2": sample_distance.mmd2(a, b),
            "mean_log_u": float(target.log_density_np(a).mean()), "seconds": 0.0}
    runinfo.atomic_write_json(out / "quality.json", quality)
    lines = ["| target | sampler | annealing | energy distance | MMD^2 | mean log u | seconds |",
             "|---|---|---|---|---|---|---|"]
    for key in sorted(quality):
        q = quality[key]
        ann = "{} {} lambda0={:g}".format(q["anneal"], q["schedule"], q["lambda0"]) if q["anneal"] not in (
            "none", "-") else q["anneal"]
        lines.append("| {} | {} | {} | {:.4f} | {:.5f} | {:.3f} | {} |".format(
            q["target"], q["method"], ann, q["energy_distance"], q["mmd2"], q["mean_log_u"], q["seconds"]))
    table = "\n".join(lines) + "\n"
    runinfo.atomic_write_text(out / "table.md", table)
    print(table)
    _plot_snapshots(annealed_snapshots, snaps, args, out / "figS1.png", targets)
    _plot_finals(finals, args, out / "figS1_final.png", targets)
    print("figS1 done in {:.0f} s".format(time.time() - t_all))
    return 0


def _npy(a):
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def _save(fig, path):
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    runinfo.atomic_write_bytes(path, buf.getvalue())


def _contour(ax, target):
    (x0, x1), (y0, y1) = target.plot_limits
    g1, g2 = np.meshgrid(np.linspace(x0, x1, 150), np.linspace(y0, y1, 150))
    lu = target.log_density_np(np.stack([g1.ravel(), g2.ravel()], 1)).reshape(g1.shape)
    ax.contour(g1, g2, lu - lu.max(), levels=[-8, -4.5, -2, -0.5], colors="0.6", linewidths=0.7)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)


def _plot_snapshots(annealed, snaps, args, path, targets):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in annealed if not n.endswith("_log")]
    if not names:
        return
    fig, axes = plt.subplots(len(names), len(snaps), figsize=(2.3 * len(snaps), 2.4 * len(names)), squeeze=False)
    for row, name in enumerate(names):
        target = targets.get(name)
        for col, s in enumerate(snaps):
            ax = axes[row, col]
            _contour(ax, target)
            x = annealed[name].get(s)
            if x is not None:
                ax.scatter(x[:1000, 0], x[:1000, 1], s=1.5, alpha=0.5, color="C3")
            lam = _lambda_at(args, s)
            ax.set_title("{} t={}\nlambda={:.2f} beta={:.2f}".format(name, s, lam, 1 + lam if args.anneal == "lik"
                                                                  else 1 / (1 + lam)), fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    _save(fig, path)


def _lambda_at(args, step):
    """The lambda of the last training step before the snapshot at ``step`` (as the run's log records
    it); lambda_0 for the snapshot before training."""
    from chainer_va import schedules

    return schedules.make(args.schedule, args.lambda0, args.steps)(max(min(step, args.steps) - 1, 0))


def _plot_finals(finals, args, path, targets):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted({k.split("_")[0] for k in finals})
    cols = ["exact"] + sorted({k.split("_", 1)[1] for k in finals}, key=lambda c: (c.startswith("direct"), c))
    fig, axes = plt.subplots(len(names), len(cols), figsize=(2.5 * len(cols), 2.5 * len(names)), squeeze=False)
    for row, name in enumerate(names):
        target = targets.get(name)
        for col, c in enumerate(cols):
            ax = axes[row, col]
            _contour(ax, target)
            x = target.sample(1000, np.random.default_rng(args.seed + 2)) if c == "exact" else finals.get(
                "{}_{}".format(name, c))
            if x is not None:
                ax.scatter(x[:1000, 0], x[:1000, 1], s=1.5, alpha=0.5, color="C0" if c == "exact" else "C3")
            ax.set_title("{}: {}".format(name, c.replace("_", " ")), fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    _save(fig, path)


if __name__ == "__main__":
    raise SystemExit(main())
