"""tfp_flows.ugan: the tempering theorem (Corollary 2.2) in code, annealing to beta = 1, the direct
baseline, checkpoint/resume and bad input.

Gaussian target N(m, s^2 I_2), m = (1, -1), s = 1.5. A sampler trained at static lambda must reach
N(m, s^2/beta I): likelihood form beta = 1 + lambda, entropy form beta = 1/(1 + lambda). Flipping
the sign of either annealing term changes the answer clearly: lik lambda=-0.5 would give variance
s^2/1.5 instead of s^2/0.5 (3x); ent lambda=-0.5 would give 1.5 s^2 instead of 0.5 s^2 (3x);
lambda=1 with a flipped sign has beta = 0 (no stationary density: the variance blows up).
"""
import json
import re

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
from va_core import checkpoints, schedules, tempering  # noqa: E402
from tfp_flows import targets, ugan  # noqa: E402

MEAN = np.array([1.0, -1.0])
STD = 1.5
SMALL = dict(hidden_units=(32, 32), flow_blocks=2, generator_hidden=(32, 32), batch_size=256, lr=1e-3,
             flow_steps=2, lr_final_fraction=0.1, log_every=250)
STEPS = 1500
N_EVAL = 200_000  # sampler draws for mean/variance: MC error on the variance ~ 0.3%


def _check_moments(result, var_expected):
    x = result.sample(N_EVAL, seed=1).astype(np.float64)
    np.testing.assert_allclose(x.mean(0), MEAN, atol=0.1 * STD)
    np.testing.assert_allclose(x.var(0), var_expected, rtol=0.10)


@pytest.mark.slow
@pytest.mark.parametrize("anneal,lam,beta", [("lik", 1.0, 2.0), ("lik", -0.5, 0.5),
                                             ("ent", 1.0, 0.5), ("ent", -0.5, 2.0)])
def test_static_annealing_targets_tempered_gaussian(anneal, lam, beta):
    assert tempering.implied_beta(anneal, lam) == pytest.approx(beta)
    target = targets.gaussian(MEAN, STD)
    res = ugan.train_sampler(target.log_density, 2, anneal=anneal, schedule="static", lambda0=lam,
                             steps=STEPS, seed=0, **SMALL)
    assert [row["beta"] for row in res.history[:1]] == [pytest.approx(beta)]
    _check_moments(res, STD ** 2 / beta)


@pytest.mark.slow
@pytest.mark.parametrize("std", [0.1, 1.0, 10.0])
@pytest.mark.parametrize("dim", [2, 10])
@pytest.mark.parametrize("anneal,lam", [("lik", -0.5), ("lik", 1.0), ("ent", -0.5), ("ent", 1.0)])
def test_the_defaults_train_on_gaussians_of_any_scale(std, dim, anneal, lam):
    """Issue 20 item 0: N(0, std^2 I) tempered to beta; the variance within 10% of std^2 / beta, no divergence."""
    def log_density(x):
        return -0.5 * tf.reduce_sum(x ** 2, axis=-1) / std ** 2

    res = ugan.train_sampler(log_density, dim, anneal=anneal, schedule="static", lambda0=lam, steps=STEPS, seed=0,
                             **SMALL)
    assert res.scale == pytest.approx(std, rel=0.06)  # the grid's spacing is 12%
    var = res.sample(N_EVAL // 2, seed=1).astype(np.float64).var(0).mean()
    assert var == pytest.approx(std ** 2 / tempering.implied_beta(anneal, lam), rel=0.10)


def test_fit_scale_finds_the_reverse_kl_isotropic_gaussian():
    """sigma0 = argmax E[log u(sigma z)] + dim log sigma: sigma for N(0, sigma^2 I); for N(0, diag(1, 100))
    the reverse-KL isotropic fit is the harmonic mean of the variances, sqrt(2 / (1 + 1/100))."""
    for std in (0.01, 1.0, 30.0):
        assert ugan.fit_scale(lambda x: -0.5 * tf.reduce_sum(x ** 2, axis=-1) / std ** 2, 3) == pytest.approx(
            std, rel=0.06)
    aniso = ugan.fit_scale(lambda x: -0.5 * (x[:, 0] ** 2 + x[:, 1] ** 2 / 100.0), 2)
    assert aniso == pytest.approx(np.sqrt(2 / 1.01), rel=0.06)
    assert ugan.fit_scale(lambda x: tf.fill([tf.shape(x)[0]], np.float32(np.nan)), 2) == 1.0


def test_scale_is_a_change_of_variables_and_the_log_is_of_x():
    """With scale 4 the networks work in y = x / 4: samples are 4 G(z), nu's density of x is
    nu_y(x / 4) / 4^dim, and the logged entropy is that of x (it would be 2 log 4 = 2.77 lower in y)."""
    def log_density(x):
        return -0.5 * tf.reduce_sum(x ** 2, axis=-1)

    small = {k: v for k, v in SMALL.items() if k != "log_every"}
    four = ugan.train_sampler(log_density, 2, steps=20, seed=0, log_every=20, scale=4.0, **small)
    assert four.config["scale"] == 4.0 and four.config["generator"] == "residual"
    z = np.random.default_rng(5).standard_normal((100, 2)).astype(np.float32)
    np.testing.assert_allclose(four.sample(100, seed=5), 4.0 * four.generator(tf.constant(z)).numpy(), rtol=1e-6)
    x = four.sample(4000, seed=2)
    est = four.log_density_estimate(x)
    np.testing.assert_allclose(est, four.flow.log_prob(x / 4.0).numpy() - 2 * np.log(4.0), rtol=1e-5, atol=1e-5)
    assert four.history[-1]["entropy"] == pytest.approx(-est.mean(), abs=0.3)


@pytest.mark.slow
def test_schedule_ending_at_zero_reaches_the_target():
    target = targets.gaussian(MEAN, STD)
    res = ugan.train_sampler(target.log_density, 2, anneal="ent", schedule="linear", lambda0=1.0,
                             steps=2000, seed=3, **{**SMALL, "lr_final_fraction": 0.2})
    assert res.history[0]["beta"] < 0.6 and res.history[-1]["lambda"] == 0.0
    _check_moments(res, STD ** 2)


def test_objective_weights_and_bad_input(tmp_path):
    assert tempering.weights("lik", -0.5) == (1.0, 0.5)
    assert tempering.weights("ent", -0.5) == (0.5, 1.0)
    assert tempering.weights("none", 0.0) == (1.0, 1.0)
    with pytest.raises(ValueError, match="beta = 1 \\+ lambda <= 0"):
        tempering.weights("lik", -1.5)
    with pytest.raises(ValueError, match="beta = 1/\\(1 \\+ lambda\\) is not positive"):
        tempering.weights("ent", -1.0)
    with pytest.raises(ValueError, match="anneal must be one of none, lik, ent, got 'lgan'"):
        tempering.weights("lgan", 0.5)
    ld = targets.banana.log_density
    with pytest.raises(ValueError, match="lambda > -1"):  # the sinusoid reaches -1.5
        ugan.train_sampler(ld, 2, anneal="ent", schedule="sinusoidal", lambda0=1.5, steps=100)
    with pytest.raises(ValueError, match="shape \\(n,\\)"):
        ugan.train_sampler(lambda x: x, 2, steps=10)
    with pytest.raises(ValueError, match="anneal must be one of"):
        ugan.train_sampler(ld, 2, anneal="likelihood", steps=10)
    with pytest.raises(ValueError, match="no effect"):
        ugan.train_sampler(ld, 2, anneal="none", lambda0=1.0, steps=10)


def test_numpy_log_density_is_refused_before_training_with_the_fix():
    """The numpy twin passes an eager call but cannot run inside tf.function (the training loop): the probe
    traces it too and names the TF twin, instead of a NotImplementedError from deep inside the graph."""
    for np_twin in (targets.banana.log_density_np, targets.kidney_log_density_np):
        assert np.isfinite(np_twin(tf.zeros([4, 2]))).all()  # the eager probe alone lets it through
        for train in (ugan.train_sampler, ugan.train_direct_flow):
            with pytest.raises(ugan.SettingsError, match=r"log_density must be TensorFlow-traceable \(use "
                               r"targets\.X\.log_density, not log_density_np\)"):
                train(np_twin, 2, steps=10)
    ugan._check_log_density(targets.banana.log_density, 2)  # the TF twin passes


def test_learning_rates_decay_over_the_whole_run():
    """lr_final_fraction: both rates fall linearly to the fraction at the last step, nu's too although it
    takes flow_steps updates per generator step (its schedule counts its own updates)."""
    target = targets.gaussian(MEAN, STD)
    steps, fraction, lr, flow_lr = 20, 0.1, 1e-3, 2e-3
    res = ugan.train_sampler(target.log_density, 2, steps=steps, seed=0, batch_size=16, hidden_units=(4,),
                             flow_blocks=1, generator_hidden=(4,), lr=lr, flow_lr=flow_lr, flow_steps=2,
                             lr_final_fraction=fraction, log_every=5)

    def linear(base, update, horizon):  # the rate of update number `update` (0-based) of `horizon`
        return base * (1.0 - (1.0 - fraction) * min(update, horizon) / horizon)
    for row in res.history:  # after `step` generator steps: step and 2 * step updates, the last one used
        t = row["step"]
        assert row["lr"] == pytest.approx(linear(lr, t - 1, steps), rel=1e-5)
        assert row["flow_lr"] == pytest.approx(linear(flow_lr, 2 * t - 1, 2 * steps), rel=1e-5)
    assert res.history[1]["flow_lr"] > 0.5 * flow_lr  # half way: nu's rate is not at its floor yet
    direct = ugan.train_direct_flow(target.log_density, 2, steps=10, seed=0, batch_size=16, hidden_units=(4,),
                                    flow_blocks=1, lr=lr, lr_final_fraction=fraction, log_every=10)
    assert direct.history[-1]["flow_lr"] == pytest.approx(linear(lr, 9, 10), rel=1e-5)


def test_direct_flow_resumes_exactly_and_records_the_run(tmp_path):
    """A run stopped after its step-20 checkpoint and resumed equals the uninterrupted run."""
    target = targets.gaussian(MEAN, STD)
    kw = dict(steps=40, seed=5, batch_size=64, hidden_units=(8,), flow_blocks=1, lr=1e-2,
              log_every=10, checkpoint_every=20, snapshot_steps=(0, 20, 40), snapshot_size=100)
    full = ugan.train_direct_flow(target.log_density, 2, out=tmp_path / "full", **kw)

    class Stop(Exception):
        pass

    def stop_at_20(row):
        if row["step"] == 20:
            raise Stop
    with pytest.raises(Stop):
        ugan.train_direct_flow(target.log_density, 2, out=tmp_path / "cut", callback=stop_at_20, **kw)
    with pytest.raises(FileExistsError, match="resume=True"):
        ugan.train_direct_flow(target.log_density, 2, out=tmp_path / "cut", **kw)
    with pytest.raises(ValueError, match="differ"):
        ugan.train_direct_flow(target.log_density, 2, out=tmp_path / "cut", resume=True, **{**kw, "lr": 1e-3})
    log = tmp_path / "cut" / "log.jsonl"  # as if the first process had trained for 1000 s
    first = [json.loads(l) for l in log.read_text().splitlines()]
    first[-1]["time_s"] = 1000.0
    log.write_text("".join(json.dumps(r) + "\n" for r in first))
    resumed = ugan.train_direct_flow(target.log_density, 2, out=tmp_path / "cut", resume=True, **kw)
    assert [r["step"] for r in resumed.history] == [10, 20, 30, 40]
    np.testing.assert_allclose([r["loss"] for r in resumed.history], [r["loss"] for r in full.history],
                               rtol=1e-4)
    np.testing.assert_allclose(resumed.snapshots[40], full.snapshots[40], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(resumed.sample(50, seed=9), full.sample(50, seed=9), rtol=1e-4, atol=1e-5)
    rows = [json.loads(l) for l in (tmp_path / "cut" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [10, 20, 30, 40]
    # time_s counts both processes' training: it goes on from the step-20 row, not from zero
    times = [r["time_s"] for r in rows]
    assert times[1] == 1000.0 and 1000.0 < times[2] <= times[3] < 1000.0 + 60
    cfg = json.loads((tmp_path / "cut" / "config.json").read_text())
    assert cfg["seed"] == 5 and cfg["config"]["kind"] == "direct"
    assert np.load(tmp_path / "cut" / "snapshots" / "step_0.npy").shape == (100, 2)
    # the KL(nu || mu) loss went down (the flow learns), history carries the objective's numbers
    assert full.history[-1]["loss"] < full.history[0]["loss"]


def test_targets_tf_numpy_twins_and_exact_samplers():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(200, 2)) * 2.5).astype(np.float32)
    for t in (targets.banana, targets.kidney, targets.gaussian(MEAN, STD)):
        np.testing.assert_allclose(t.log_density(tf.constant(x)).numpy(), t.log_density_np(x), rtol=1e-4, atol=1e-4)
    # kidney: the log-density (not the printed energy): highest on the ring at the lobes x = (+-2, 0)
    lk = targets.kidney_log_density_np(np.array([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.0], [0.0, 0.0]]))
    assert lk[0] == pytest.approx(lk[1]) and lk[0] > lk[2] + 4.5 and lk[0] > lk[3] + 15
    # exact samplers vs the normalised density on a grid (histogram total variation)
    for t in (targets.kidney, targets.banana):
        s = t.sample(100_000, rng)
        (x0, x1), (y0, y1) = t.plot_limits
        edges = (np.linspace(x0, x1, 25), np.linspace(y0, y1, 25))
        hist, _, _ = np.histogram2d(s[:, 0], s[:, 1], bins=edges)
        hist = hist / len(s)
        cx = 0.5 * (edges[0][1:] + edges[0][:-1])
        cy = 0.5 * (edges[1][1:] + edges[1][:-1])
        fine = np.stack(np.meshgrid(np.linspace(x0, x1, 241), np.linspace(y0, y1, 241), indexing="ij"), -1)
        dens = np.exp(t.log_density_np(fine.reshape(-1, 2))).reshape(241, 241)
        # integrate the density over each histogram cell (10 x 10 fine points per cell)
        cells = dens[:240, :240].reshape(24, 10, 24, 10).sum((1, 3))
        cells = cells / cells.sum() * hist.sum()  # same mass inside the window
        assert 0.5 * np.abs(cells - hist).sum() < 0.03, (t.name, cx.size, cy.size)


# ---- run folders: resume checks, damaged files, the log, CLI errors (tiny runs, seconds) ----

TINY_DIRECT = dict(steps=40, seed=5, batch_size=16, hidden_units=(8,), flow_blocks=1, lr=1e-2, log_every=10,
                   checkpoint_every=10, snapshot_steps=(0, 20, 40), snapshot_size=50)
TINY_CLI = ["--steps", "4", "--batch-size", "16", "--hidden-units", "8", "--flow-blocks", "1",
            "--generator-hidden", "8", "--eval-samples", "50"]


class _Stop(Exception):
    pass


def _stop_at(step):
    def callback(row):
        if row["step"] == step:
            raise _Stop
    return callback


def _tree(root):
    """Every file under ``root`` with its bytes (what 'nothing was written' compares)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _log_steps(out):
    return [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]


def _cut_run(tmp_path, step, **overrides):
    """A direct-flow run killed (by its callback) right after logging ``step``; the uninterrupted run."""
    target = targets.gaussian(MEAN, STD)
    kw = {**TINY_DIRECT, **overrides}
    full = ugan.train_direct_flow(target.log_density, 2, out=tmp_path / "full", **kw)
    with pytest.raises(_Stop):
        ugan.train_direct_flow(target.log_density, 2, out=tmp_path / "cut", callback=_stop_at(step), **kw)
    return target, kw, full, tmp_path / "cut"


def test_damaged_checkpoint_is_skipped_for_the_previous_one_and_the_run_resumes_exactly(tmp_path, capsys):
    """A truncated checkpoint (TF's IndexError) is skipped with a warning naming it: the run resumes from the
    previous checkpoint and still reproduces the uninterrupted run. With every checkpoint damaged the resume
    is a one-line CheckpointError (exit status 1), and nothing is written."""
    target, kw, full, cut = _cut_run(tmp_path, 30)
    ckdir = cut / "checkpoints"
    assert sorted(p.name for p in ckdir.glob("step_*")) == ["step_000000020", "step_000000030"]
    for step in (30, 20):
        data, = (ckdir / "step_{:09d}".format(step)).glob("model.data-*")
        kept = data.read_bytes()
        data.write_bytes(kept[: len(kept) // 2])
    before = _tree(cut)
    with pytest.raises(checkpoints.CheckpointError, match=r"no readable checkpoint .*step_000000030 is damaged "
                       r".*step_000000020 is damaged") as err:
        ugan.train_direct_flow(target.log_density, 2, out=cut, resume=True, **kw)
    assert "\n" not in str(err.value) and err.value.exit_status == 1 and _tree(cut) == before
    data.write_bytes(kept)  # step 20 repaired, step 30 still damaged
    resumed = ugan.train_direct_flow(target.log_density, 2, out=cut, resume=True, **kw)
    assert re.search(r"warning: checkpoint \S*step_000000030 is damaged .*resuming from \S*step_000000020",
                     capsys.readouterr().err)
    np.testing.assert_allclose([r["loss"] for r in resumed.history], [r["loss"] for r in full.history], rtol=1e-4)
    np.testing.assert_allclose(resumed.sample(50, seed=9), full.sample(50, seed=9), rtol=1e-4, atol=1e-5)
    assert _log_steps(cut) == [10, 20, 30, 40]
    assert sorted(p.name for p in ckdir.glob("step_*")) == ["step_000000030", "step_000000040"]
    assert json.loads((ckdir / "latest.json").read_text()) == {"dir": "step_000000040", "step": 40}
    # the original record stays; the resume wrote its own
    assert json.loads((cut / "config.json").read_text())["config"] == json.loads(
        (cut / "config_resume_00000020.json").read_text())["config"]


def test_a_folder_of_the_older_checkpoint_format_is_refused(tmp_path):
    target = targets.gaussian(MEAN, STD)
    (tmp_path / "old" / "checkpoints").mkdir(parents=True)
    (tmp_path / "old" / "checkpoints" / "ckpt-20.index").write_bytes(b"")
    with pytest.raises(ugan.RunExistsError, match="older tfp_flows, which this one cannot resume; start again"):
        ugan.train_direct_flow(target.log_density, 2, out=tmp_path / "old", resume=True, **TINY_DIRECT)


def test_damaged_snapshot_is_named_and_deleting_it_resumes_without_it(tmp_path):
    target, kw, full, cut = _cut_run(tmp_path, 30)
    snap = cut / "snapshots" / "step_20.npy"
    snap.write_bytes(snap.read_bytes()[:100])
    before = _tree(cut)
    with pytest.raises(ugan.DamagedFileError, match=r"step_20\.npy is damaged .*delete it") as err:
        ugan.train_direct_flow(target.log_density, 2, out=cut, resume=True, **kw)
    assert "\n" not in str(err.value)
    assert _tree(cut) == before
    snap.unlink()
    resumed = ugan.train_direct_flow(target.log_density, 2, out=cut, resume=True, **kw)
    assert sorted(resumed.snapshots) == [0, 40]
    np.testing.assert_allclose(resumed.snapshots[40], full.snapshots[40], rtol=1e-4, atol=1e-5)


def test_log_rows_reach_the_disk_as_logged_and_resume_does_not_repeat_them(tmp_path):
    """Killed after logging step 30 (checkpoint at 20): the rows of steps 10-30 are on disk. A torn line
    from the kill is ignored; the resumed log has every step once and the uninterrupted run's numbers.
    A damaged line before the end is an error naming the line."""
    target, kw, full, cut = _cut_run(tmp_path, 30, checkpoint_every=20)
    assert _log_steps(cut) == [10, 20, 30]
    assert [p.name for p in (cut / "checkpoints").glob("step_*")] == ["step_000000020"]
    with open(cut / "log.jsonl", "a") as f:
        f.write('{"step": 40, "los')
    resumed = ugan.train_direct_flow(target.log_density, 2, out=cut, resume=True, **kw)
    rows = [json.loads(line) for line in (cut / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [10, 20, 30, 40]
    np.testing.assert_allclose([r["loss"] for r in rows], [r["loss"] for r in full.history], rtol=1e-4)
    assert [r["step"] for r in resumed.history] == [10, 20, 30, 40]
    lines = (cut / "log.jsonl").read_text().splitlines()
    (cut / "log.jsonl").write_text("\n".join([lines[0], "not json"] + lines[1:]) + "\n")
    with pytest.raises(ugan.DamagedFileError, match="log.jsonl line 2 is damaged"):
        ugan.train_direct_flow(target.log_density, 2, out=cut, resume=True, **kw)


def test_resume_compares_the_whole_record_and_refuses_a_folder_without_one(tmp_path):
    target = targets.gaussian(MEAN, STD)
    kw = {**TINY_DIRECT, "steps": 10, "snapshot_steps": ()}
    out = tmp_path / "run"
    ugan.train_direct_flow(target.log_density, 2, out=out, extra_config={"target": "a"}, **kw)
    before = _tree(out)
    with pytest.raises(ugan.ResumeMismatchError, match=r"target: 'a' -> 'b'") as err:
        ugan.train_direct_flow(target.log_density, 2, out=out, resume=True, extra_config={"target": "b"}, **kw)
    assert "lr" not in str(err.value).split("(recorded -> now):")[1].split(";")[0]
    with pytest.raises(ugan.ResumeMismatchError, match=r"log_density: '.*' -> 'other'"):
        def other(x):
            return target.log_density(x)
        ugan.train_direct_flow(other, 2, out=out, resume=True, extra_config={"target": "a"}, **kw)
    with pytest.raises(ugan.ResumeMismatchError, match=r"schedule_config: .*snapshot_steps: \[\] -> \[10\]"):
        ugan.train_direct_flow(target.log_density, 2, out=out, resume=True, extra_config={"target": "a"},
                               **{**kw, "anneal": "lik", "lambda0": -0.5, "schedule": "linear",
                                  "snapshot_steps": (10,)})
    assert _tree(out) == before
    # log_every / checkpoint_every may change (RESUME_MAY_CHANGE)
    ugan.train_direct_flow(target.log_density, 2, out=out, resume=True, extra_config={"target": "a"},
                           **{**kw, "log_every": 5, "checkpoint_every": 5})
    (out / "config.json").unlink()
    with pytest.raises(ugan.DamagedFileError, match="no config.json"):
        ugan.train_direct_flow(target.log_density, 2, out=out, resume=True, extra_config={"target": "a"}, **kw)


def test_cli_resume_refuses_another_target_and_keeps_the_original_record(tmp_path, capsys):
    out = tmp_path / "run"
    flags = ["--out", str(out)] + TINY_CLI
    assert ugan.main(flags) == 0
    before = _tree(out)
    capsys.readouterr()
    assert ugan.main(flags + ["--resume", "--target", "kidney"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: cannot resume {}".format(out))
    assert "target: 'banana' -> 'kidney'" in err and "log_density: '_banana_log_density_tf' -> '_kidney" in err
    assert _tree(out) == before  # neither config.json nor quality.json was touched
    assert ugan.main(flags) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already holds a run" in err and "--resume" in err
    assert ugan.main(flags + ["--resume"]) == 0
    assert (out / "config.json").read_bytes() == before["config.json"]
    resume_record = json.loads((out / "config_resume_00000004.json").read_text())
    assert resume_record["config"] == json.loads(before["config.json"])["config"]
    assert json.loads((out / "quality.json").read_text()) == json.loads(before["quality.json"])


def test_cli_schedule_and_divergence_errors_are_one_line_with_status_2_and_1(tmp_path, capsys, monkeypatch):
    assert ugan.main(["--out", str(tmp_path / "a"), "--anneal", "lik", "--lambda0", "-1.5"] + TINY_CLI) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "lambda" in err
    assert not (tmp_path / "a").exists()  # refused before anything was written
    # a log-density finite at the probe near the origin but NaN where the generator's samples land
    def nan_away_from_origin(x):
        far = tf.reduce_any(tf.abs(x) > 0.6, axis=1)
        return tf.where(far, tf.fill(tf.shape(x)[:1], np.float32(np.nan)), -0.5 * tf.reduce_sum(x * x, 1))
    gaussian = targets.get("gaussian")
    nan_target = targets.Target("gaussian", 2, nan_away_from_origin, gaussian.log_density_np, gaussian.sample,
                                gaussian.plot_limits)
    monkeypatch.setattr(targets, "get", lambda name: nan_target)
    out = tmp_path / "nan"
    # --scale 1: a fitted scale would keep the samples inside the finite region (fit_scale skips NaN)
    assert ugan.main(["--out", str(out), "--target", "gaussian", "--max-log-scale", "2", "--scale", "1"]
                     + TINY_CLI) == 1  # failed
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, repr(err)
    assert "diverged by step 4" in lines[0] and "--max-log-scale, now 2.0" in lines[0]
    assert "Traceback" not in err
    assert json.loads((out / "config.json").read_text())["config"]["max_log_scale"] == 2.0


def test_cli_refusal_prints_no_traceback(tmp_path):
    """The real entry point: an existing run folder without --resume exits 2 with one 'error:' line."""
    import os
    import subprocess
    import sys

    target = targets.gaussian(MEAN, STD)
    ugan.train_direct_flow(target.log_density, 2, out=tmp_path / "run", **{**TINY_DIRECT, "steps": 2,
                                                                           "snapshot_steps": ()})
    proc = subprocess.run([sys.executable, "-m", "tfp_flows.ugan", "--out", str(tmp_path / "run")] + TINY_CLI,
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", OPENBLAS_NUM_THREADS="1"))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: {} already holds a run".format(tmp_path / "run"))


def test_cli_refuses_a_folder_another_job_is_writing(tmp_path, capsys):
    from va_core import runinfo

    out = tmp_path / "busy"
    with runinfo.exclusive_run_lock(out):
        (out / "placeholder").write_text("")
        assert ugan.main(["--steps", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "is in use by another running job" in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == [runinfo.LOCK_FILENAME, "placeholder"]  # nothing written
