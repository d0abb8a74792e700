"""The training CLI: resume after a kill, NaN stop, corrupted snapshots, --config rules, plugins, outputs."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy
import pytest
import threadpoolctl

import chainer

from chainer_va import annealing, train
from va_core import runinfo
from chainer_va.snapshots import SnapshotError, latest_snapshot, list_snapshots

REPO = Path(__file__).resolve().parents[1]
QUIET = ["--progress-interval", "1000", "--sample-interval", "1000", "--plot-interval", "1000"]


pytestmark = pytest.mark.usefixtures("one_blas_thread")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "images.npy"
    numpy.save(path, numpy.random.RandomState(0).uniform(-1, 1, (16, 1, 32, 32)).astype(numpy.float32))
    return str(path)


def tiny(images, out, *flags):
    return ["--dataset", images, "--channels", "1", "--width", "0.0625", "--batchsize", "4",
            "--out", str(out)] + QUIET + list(flags)


def read_log(out):
    with open(Path(out) / "log") as f:
        return json.load(f)


LOSS_KEYS = ("loss_gen", "loss_dis", "loss_dfm", "loss_anneal", "loss_denoiser_data", "loss_denoiser_fake")


# jsd + entropy annealing: two denoisers, the noise source, the latent sampler; 16 images in batches of
# 4: reshuffles after iterations 4 and 8, one before and one after the resume points, so the shuffling
# RandomState must come back from the snapshot
RESUME_FLAGS = ["--objective", "jsd", "--anneal", "ent", "--lambda0", "0.5", "--iterations", "10",
                "--log-interval", "1"]


@pytest.fixture(scope="module")
def uninterrupted(images, tmp_path_factory):
    full = tmp_path_factory.mktemp("full") / "run"
    with threadpoolctl.threadpool_limits(1):
        record = train.main(tiny(images, full, *RESUME_FLAGS, "--snapshot-interval", "6"))
    assert record["completed"] and record["iterations"] == 10 and record["seconds"] > 0
    return full


def assert_same_run(full, part):
    log_full, log_part = read_log(full), read_log(part)
    assert [e["iteration"] for e in log_part] == list(range(1, 11))
    for a, b in zip(log_full, log_part):
        for key in LOSS_KEYS:
            assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-7), (a["iteration"], key)
    gen_full, _ = train.load_generator(full)
    gen_part, config = train.load_generator(part)
    assert config["anneal"] == "ent" and config["channels"] == 1 and config["image_size"] == 32
    for (name, p), (_, q) in zip(sorted(gen_full.namedparams()), sorted(gen_part.namedparams())):
        numpy.testing.assert_allclose(p.array, q.array, rtol=1e-6, atol=1e-7, err_msg=name)


def test_resume_after_stop_equals_uninterrupted_run(images, tmp_path, uninterrupted):
    part = tmp_path / "part"
    stopped = train.main(tiny(images, part, *RESUME_FLAGS, "--snapshot-interval", "6", "--stop-at", "6"))
    assert not stopped["completed"] and not (part / train.GEN_FINAL).exists()
    assert [i for i, _ in list_snapshots(part)] == [6]
    resumed = train.main(["--out", str(part), "--resume"] + QUIET)  # saved configuration is reused
    assert resumed["completed"] and resumed["iterations"] == 10
    assert_same_run(uninterrupted, part)


def test_resume_may_switch_the_speed_ups_off_and_gets_the_same_run(images, tmp_path, uninterrupted):
    # --layers, --losses and --adam change how, not what, a step computes: a snapshot of the fused run
    # resumes with Chainer's own layers, losses and Adam and continues the same run
    part = tmp_path / "switched"
    train.main(tiny(images, part, *RESUME_FLAGS, "--snapshot-interval", "6", "--stop-at", "6"))
    resumed = train.main(["--out", str(part), "--resume", "--layers", "chainer", "--losses", "chainer", "--adam",
                          "chainer"] + QUIET)
    assert resumed["completed"]
    resume_config = json.loads((part / "config_resume_00000006.json").read_text())["config"]
    assert (resume_config["layers"], resume_config["losses"], resume_config["adam"]) == ("chainer",) * 3
    assert_same_run(uninterrupted, part)


def signal_training(images, part, snapshot_interval: str, ready, sig) -> tuple:
    """Start the training CLI into ``part``, send ``sig`` once ``ready()`` holds, return (status, stderr)."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "chainer_va.train"]
                            + tiny(images, part, *RESUME_FLAGS, "--snapshot-interval", snapshot_interval),
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=str(REPO))
    try:
        deadline = time.time() + 120
        while not ready() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, err.decode()


def test_resume_after_sigkill_equals_uninterrupted_run(images, tmp_path, uninterrupted):
    """A real kill: SIGKILL the CLI process once its first snapshot exists, then --resume."""
    part = tmp_path / "killed"
    status, err = signal_training(images, part, "2", lambda: latest_snapshot(part) is not None, signal.SIGKILL)
    assert status == -signal.SIGKILL, err[-2000:]  # it was killed, not finished
    killed_at = list_snapshots(part)[-1][0]
    assert killed_at < 10 and not (part / train.GEN_FINAL).exists()
    resumed = train.main(["--out", str(part), "--resume"] + QUIET)
    assert resumed["completed"] and resumed["iterations"] == 10
    assert_same_run(uninterrupted, part)


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_writes_a_snapshot_of_the_last_iteration_and_resume_continues(images, tmp_path, uninterrupted,
                                                                                    stop_signal):
    """Ctrl-C / SIGTERM: the iteration in progress ends, its snapshot is written (not only the periodic
    ones: none is due before iteration 10 here), exit status 128 + the signal, and --resume gives the same run."""
    part = tmp_path / "signalled"
    # the log appears after iteration 1
    status, err = signal_training(images, part, "100", lambda: (part / "log").is_file(), stop_signal)
    assert status == 128 + stop_signal, err[-2000:]
    stopped_at = list_snapshots(part)[-1][0]
    assert 1 <= stopped_at < 10 and "stopped: {} at iteration {}".format(stop_signal.name, stopped_at) in err
    result = json.loads((part / "result.json").read_text())
    assert result["completed"] is False and result["stopped_at"] == stopped_at
    resumed = train.main(["--out", str(part), "--resume"] + QUIET)
    assert resumed["completed"] and resumed["iterations"] == 10
    assert_same_run(uninterrupted, part)


def test_outputs_and_load_generator(images, tmp_path):
    out = tmp_path / "run"
    train.main(tiny(images, out, "--objective", "rkl", "--anneal", "lik", "--lambda0", "1", "--iterations", "2",
                    "--log-interval", "100", "--sample-interval", "2", "--plot-interval", "100", "--seed", "3"))
    for name in ("config.json", "log", "loss.png", "lambda.png", "samples.png", "samples/iter_00000002.png",
                 "gen_final.npz", "result.json"):
        assert (out / name).is_file(), name
    assert [row["iteration"] for row in read_log(out)] == [2]  # a run shorter than --log-interval logs its end
    recorded = runinfo.read_run_config(out)
    assert recorded["seed"] == 3 and recorded["config"]["objective"] == "rkl"
    result = json.loads((out / "result.json").read_text())
    assert result["completed"] is True and result["iterations"] == 2
    gen, _ = train.load_generator(out)
    snap_gen, _ = train.load_generator(out, snapshot="latest")  # final snapshot = final generator
    z = numpy.random.RandomState(0).uniform(-1, 1, (3, 128)).astype(numpy.float32)
    with chainer.using_config("train", False):
        x, y = gen(z).array, snap_gen(z).array
    assert x.shape == (3, 1, 32, 32) and numpy.isfinite(x).all()
    numpy.testing.assert_array_equal(x, y)
    with pytest.raises(train.ConfigError, match="already holds a run .*snapshot_iter_00000002.npz"):
        train.main(tiny(images, out, "--iterations", "2"))
    for _, snapshot in list_snapshots(out):  # snapshots deleted to save space: the results still count
        snapshot.unlink()
    before = (out / "gen_final.npz").read_bytes()
    with pytest.raises(train.ConfigError, match=r"already holds a run \(result.json, gen_final.npz\).*nothing was "
                                                r"overwritten"):
        train.main(tiny(images, out, "--iterations", "2", "--seed", "7"))
    assert (out / "gen_final.npz").read_bytes() == before and runinfo.read_run_config(out)["seed"] == 3


def test_a_runs_config_json_repeats_it_with_config(images, tmp_path):
    first = tmp_path / "first"
    train.main(tiny(images, first, "--iterations", "2", "--seed", "5", "--anneal", "lik", "--lambda0", "0.5",
                    "--stop-at", "1"))
    record = runinfo.read_run_config(first)
    assert isinstance(record["environment"]["git_modified"], (bool, type(None)))
    again = train.resolve_config(["--config", str(first / "config.json"), "--out", str(tmp_path / "again")])
    assert again["out"] == str(tmp_path / "again") and again["stop_at"] is None and not again["resume"]
    assert {k: v for k, v in again.items() if k not in train.RESUME_RESET} == \
        {k: v for k, v in record["config"].items() if k not in train.RESUME_RESET}


def test_a_damaged_final_generator_is_rewritten_by_resume(images, tmp_path):
    out = tmp_path / "run"
    train.main(tiny(images, out, "--iterations", "2", "--snapshot-interval", "2"))
    good = (out / train.GEN_FINAL).read_bytes()
    (out / train.GEN_FINAL).write_bytes(good[:100])
    with pytest.raises(SnapshotError, match="corrupted or unreadable.*rewrite it from the run's last snapshot with "
                                            "`python -m chainer_va.train --out .* --resume`"):
        train.load_generator(out)
    assert train.main(["--out", str(out), "--resume"] + QUIET)["completed"]
    gen, _ = train.load_generator(out)
    snap, _ = train.load_generator(out, snapshot="latest")
    for (name, p), (_, q) in zip(sorted(gen.namedparams()), sorted(snap.namedparams())):
        numpy.testing.assert_array_equal(p.array, q.array, err_msg=name)


def test_a_second_job_on_the_same_folder_is_refused(images, tmp_path, capsys):
    out = tmp_path / "busy"
    out.mkdir()
    with runinfo.exclusive_run_lock(out):  # another job holds the folder
        assert train.cli(tiny(images, out, "--iterations", "2")) == 2
        assert "is in use by another running job (pid {})".format(os.getpid()) in capsys.readouterr().err
        assert not (out / "config.json").exists()
    assert train.main(tiny(images, out, "--iterations", "1"))["completed"]  # free again once released


def test_plots_and_printed_rows_of_a_resumed_run_are_the_uninterrupted_runs(images, tmp_path, capsys):
    # PlotReport's trigger and running mean come back from the snapshot: the resumed run plots the same
    # points (means over the same iterations), and PrintReport prints only rows it had not printed
    flags = ["--iterations", "10", "--log-interval", "1", "--snapshot-interval", "5"]
    runs = {}
    for name, stop in (("full", None), ("part", "5")):
        out = tmp_path / name
        train.main(tiny(images, out, *flags, "--plot-interval", "4") + (["--stop-at", stop] if stop else []))
        runs[name] = out
    capsys.readouterr()
    train.main(["--out", str(runs["part"]), "--resume", "--plot-interval", "4"])
    printed = [line.split()[0] for line in capsys.readouterr().out.replace("\x1b[J", "").splitlines()
               if line.strip() and line.split()[0].isdigit()]
    assert printed == [str(i) for i in range(6, 11)]

    def plotted(out):
        with numpy.load(str(latest_snapshot(out))) as npz:
            return {key: json.loads(str(npz[key])) for key in npz.files if "_plot_" in key}
    full, part = plotted(runs["full"]), plotted(runs["part"])
    assert sorted(full) == sorted(part) == ["extensions/PlotReport/_plot_loss.png",
                                            "extensions/PlotReport_1/_plot_lambda.png",  # Chainer's keys
                                            "extensions/PlotReport_beta/_plot_beta.png",
                                            "extensions/PlotReport_grad_ratio/_plot_grad_ratio.png"]
    assert full["extensions/PlotReport/_plot_loss.png"]["loss_gen"]
    for key in full:
        for series in full[key]:
            if not full[key][series]:  # a loss this objective does not have
                continue
            assert [x for x, _ in full[key][series]] == [x for x, _ in part[key][series]] == [4, 8, 10], (key, series)
            numpy.testing.assert_allclose([y for _, y in part[key][series]], [y for _, y in full[key][series]],
                                          rtol=1e-6, err_msg=series)


NAN_PLUGIN = '''
import chainer.functions as F
from chainer_va import updaters


@updaters.register("rkl_nan_at_3")
class NaNAtThree(updaters.RKLUpdater):
    """RKL whose generator loss turns NaN at iteration 3 (a stand-in for a diverging run)."""

    def generator_adversarial_loss(self, y_fake):
        loss = F.mean(-y_fake)
        return loss * float("nan") if self.iteration >= 3 else loss
'''


def test_nan_loss_stops_with_named_loss_and_keeps_last_snapshot(images, tmp_path):
    plugin = tmp_path / "nan_plugin.py"
    plugin.write_text(NAN_PLUGIN)
    out = tmp_path / "nan"
    with pytest.raises(train.TrainingError) as info:
        train.main(tiny(images, out, "--plugin", str(plugin), "--objective", "rkl_nan_at_3", "--iterations", "6",
                        "--snapshot-interval", "2", "--log-interval", "1"))
    message = str(info.value)
    assert "loss 'loss_gen' is nan at iteration 3" in message
    assert "snapshot_iter_00000002.npz" in message
    assert latest_snapshot(out).name == "snapshot_iter_00000002.npz"
    gen, _ = train.load_generator(out, snapshot="latest")  # the kept snapshot is intact
    assert all(numpy.isfinite(p.array).all() for p in gen.params())
    result = json.loads((out / "result.json").read_text())
    assert result["completed"] is False and "iteration 3" in result["error"]
    assert result["diverged"] is True and result["iterations"] == 3  # machine-readable for the Table 1 study
    assert train.cli(["--out", str(out), "--resume"] + QUIET) == 1  # diverges again: clear error, exit 1


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupted_snapshot_is_a_clear_error(images, tmp_path, damage):
    out = tmp_path / "run"
    train.main(tiny(images, out, "--iterations", "4", "--stop-at", "2", "--snapshot-interval", "2"))
    snapshot = latest_snapshot(out)
    data = snapshot.read_bytes()
    snapshot.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"not a zip file" * 10)
    with pytest.raises(SnapshotError, match="corrupted or unreadable"):
        train.main(["--out", str(out), "--resume"] + QUIET)


def test_resume_refuses_changed_configuration_and_missing_snapshots(images, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(train.ConfigError, match="no snapshot_iter_.*npz snapshot"):
        train.main(tiny(images, out, "--resume"))
    train.main(tiny(images, out, "--iterations", "4", "--stop-at", "1", "--snapshot-interval", "1"))
    with pytest.raises(train.ConfigError, match=r"cannot resume .* \(recorded -> now\): width: 0.0625 -> 0.125"):
        train.resolve_config(["--out", str(out), "--resume", "--width", "0.125"])
    config = train.resolve_config(["--out", str(out), "--resume", "--log-interval", "7"])
    assert config["width"] == 0.0625 and config["log_interval"] == 7 and config["stop_at"] is None


def test_config_file_yaml_and_json_with_flag_override(tmp_path):
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("objective: wgan\nanneal: lik\nlambda0: -0.5\nschedule: sinusoidal\ncycles: 3\n"
                         "iterations: 300\ndata-dir: /somewhere\nwidth: 0.5\n")
    config = train.resolve_config(["--config", str(yaml_file), "--iterations", "600", "--lambda0", "1"])
    assert config["objective"] == "wgan" and config["anneal"] == "lik" and config["cycles"] == 3
    assert config["iterations"] == 600 and config["lambda0"] == 1.0  # explicit flags win
    assert config["data_dir"] == "/somewhere" and config["width"] == 0.5
    assert config["batchsize"] == 64  # default where neither says anything
    json_file = tmp_path / "run.json"
    json_file.write_text(json.dumps({"objective": "rkl", "batchsize": 16, "seed": 5}))
    config = train.resolve_config(["--config", str(json_file), "--seed", "6"])
    assert (config["objective"], config["batchsize"], config["seed"]) == ("rkl", 16, 6)
    # a value equal to the default given explicitly still overrides the file
    assert train.resolve_config(["--config", str(json_file), "--batchsize", "64"])["batchsize"] == 64


@pytest.mark.parametrize("content,match", [
    ("objective: jsd\nlearning_rate: 0.1\n", "unknown key 'learning_rate'"),
    ("iterations: many\n", "'iterations' must be a int"),
    ("- just\n- a list\n", "expected a mapping"),
    ("objective: [unclosed\n", "cannot parse it"),
])
def test_config_file_errors(tmp_path, content, match):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(train.ConfigError, match=match):
        train.resolve_config(["--config", str(path)])


@pytest.mark.parametrize("flags,match", [
    (["--objective", "nope"], r"unknown objective 'nope'; choose one of: ([\w]+, )*jsd, ([\w]+, )*rkl, ([\w]+, )*wgan"),
    (["--anneal", "nope"], r"unknown annealing term 'nope'; choose one of: ent, lgan, lik, (\w+, )*none"),
    (["--schedule", "nope"], r"unknown schedule 'nope'; choose one of: exponential, lgan, linear"),
    (["--anneal", "lik", "--lambda0", "1", "--schedule", "linear", "--cycles", "3"],
     r"--cycles is an option of the sinusoidal and stepwise schedules, not of linear; drop it"),
    (["--anneal", "lik", "--lambda0", "1", "--schedule", "linear", "--final-ratio", "0.1"],
     r"--final-ratio is an option of the exponential schedule, not of linear; drop it"),
    (["--anneal", "ent", "--schedule", "exponential"], r"--anneal ent with --lambda0 0 \(the default\) anneals "
                                                         r"nothing.*Pass --lambda0"),
    (["--anneal", "lik", "--lambda0", "0"], r"--anneal lik with --lambda0 0 anneals nothing"),
    (["--device", "foo"], r"--device: unknown device 'foo': use -1 or @numpy for the CPU"),
    (["--lambda0", "1"], r"no effect with --anneal none"),
    (["--anneal", "ent", "--lambda0", "-1"], r"reaches lambda=-1 at iteration 0, where the entropy form has no "
                                             r"tempered target .*keep lambda > -1"),
    # oscillating schedules swing to about -lambda0: every lambda_t is checked, not only lambda0
    (["--anneal", "ent", "--lambda0", "10", "--schedule", "sinusoidal", "--iterations", "1000"],
     r"the sinusoidal schedule with lambda0=10 reaches lambda=-9.006 at iteration 99, where the entropy form"),
    (["--anneal", "lik", "--lambda0", "1.5", "--schedule", "stepwise", "--iterations", "1000"],
     r"likelihood form has no tempered target \(beta = 1 \+ lambda <= 0\).*does not oscillate"),
    (["--anneal", "lik", "--lambda0", "1", "--schedule", "lgan", "--iterations", "400"],
     r"lgan's default knot interval 10000 needs --iterations >= 10000; pass --knot-interval \(at most 400\)"),
    (["--limit", "-5"], r"--limit must be a positive number of training images, got -5"),
    (["--lr", "-1"], r"--lr must be a positive number, got -1.0"),
    (["--sigma", "0"], r"--sigma must be a positive number"),
    (["--width", "0"], r"--width must be a positive number"),
    (["--beta2", "1"], r"--beta2 \(Adam\) must be in \[0, 1\)"),
    (["--channels", "2"], r"--channels must be 1 or 3, got 2"),
    (["--objective", "wgan", "--n-critic", "0"], r"--n-critic must be a positive integer, got 0"),
    (["--plugin", "no/such/file.py"], r"no such file"),
    (["--seed", "-1"], r"--seed must be an integer in \[0, 2\*\*32\), got -1"),
    (["--dataset", "nosuch"], r"--dataset: unknown data set 'nosuch'; choose one of: .*, or a .npy file of images"),
])
def test_bad_names_and_settings_are_clear_errors(flags, match, capsys):
    with pytest.raises(train.ConfigError, match=match):
        train.resolve_config(flags)
    assert train.cli(flags) == 2
    assert "error: " in capsys.readouterr().err


def test_schedules_that_stay_above_minus_one_are_accepted():
    config = train.resolve_config(["--anneal", "ent", "--lambda0", "0.9", "--schedule", "sinusoidal"])
    assert config["lambda0"] == 0.9
    # lgan's own form is not a tempering: its triangle may swing below -1
    train.resolve_config(["--anneal", "lgan", "--lambda0", "10", "--schedule", "lgan"])


def test_settings_without_effect_are_named(tmp_path, capsys):
    def notes(*flags):
        config = train.resolve_config(list(flags))
        given = [a[2:].replace("-", "_") for a in flags if a.startswith("--")]
        return train.unused_settings(config, given)
    assert notes("--objective", "rkl", "--dfm-weight", "0.5") == [
        "--dfm-weight has no effect with --objective rkl (it is an option of jsd)"]
    assert notes("--objective", "jsd", "--n-critic", "1", "--gp-weight", "0") == [
        "--gp-weight has no effect with --objective jsd (it is an option of wgan)",
        "--n-critic has no effect with --objective jsd (it is an option of wgan)"]
    assert notes("--anneal", "lgan", "--schedule", "lgan", "--lambda0", "1", "--anneal-weight", "5",
                 "--dfm-weight", "0.1") == [
        "--anneal-weight has no effect with --anneal lgan",
        "--dfm-weight has no effect with --anneal lgan (that term replaces DFM's feature term)"]
    assert notes("--objective", "wgan", "--sigma", "0.5") == [
        "--sigma has no effect: --objective wgan with --anneal none trains no denoiser"]
    # used settings are not named
    assert notes("--objective", "jsd", "--sigma", "0.5", "--dfm-weight", "0.1") == []
    assert notes("--objective", "wgan", "--anneal", "ent", "--lambda0", "0.5", "--sigma", "0.5",
                 "--n-critic", "2", "--anneal-weight", "0.1") == []


def test_unreadable_npy_and_a_gpu_without_cupy_are_one_line_errors(tmp_path, capsys):
    garbage = tmp_path / "x.npy"
    garbage.write_bytes(b"not an array" * 10)
    assert train.cli(["--dataset", str(garbage), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "not a readable .npy image array" in err and "numpy.save" in err and "Traceback" not in err
    try:
        import cupy  # noqa: F401
    except ImportError:
        assert train.cli(["--device", "0", "--out", str(tmp_path / "g")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: device '0' asks for a GPU but CuPy is not available") and "pip install" in err
        assert not (tmp_path / "g").exists()


def test_missing_data_is_one_clear_error_line(tmp_path, capsys):
    assert train.cli(["--dataset", "celeba", "--data-dir", str(tmp_path / "none"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: CelebA images not found in ") and "Traceback" not in err


def test_lsgan_plugin_example_trains_via_cli(images, tmp_path):
    out = tmp_path / "lsgan"
    record = train.main(tiny(images, out, "--plugin", str(REPO / "docs" / "examples" / "lsgan.py"),
                             "--objective", "lsgan", "--anneal", "lik", "--lambda0", "1", "--iterations", "3",
                             "--log-interval", "1"))
    assert record["completed"]
    log = read_log(out)
    assert len(log) == 3
    for entry in log:
        for key in ("loss_gen", "loss_dis", "loss_anneal", "loss_denoiser_data"):
            assert numpy.isfinite(entry[key])
        assert entry["loss_gen"] == pytest.approx(entry["loss_gen_adv"] + entry["loss_anneal"], rel=1e-5)
    assert log[0]["beta"] == pytest.approx(2.0)  # lik at lambda_0 = 1 targets p^2
    gen, config = train.load_generator(out)  # the plugin is re-imported from the saved config
    assert config["objective"] == "lsgan"


def test_snapshots_refuse_non_finite_weights_and_name_shape_mismatches(images, tmp_path):
    """An update can overflow although its loss was finite: such weights are not written as a snapshot
    (nor do they push a good one out). A valid file for another network size is a mismatch, not damage."""
    import types

    from chainer_va.snapshots import AtomicSnapshot, NonFiniteParametersError, load_npz_checked

    out = tmp_path / "run"
    train.main(tiny(images, out, "--iterations", "2", "--snapshot-interval", "2"))
    config = train.resolve_config(tiny(images, tmp_path / "other"))
    updater = train.build_updater(config, train.load_dataset(config), chainer.get_device("@numpy"))
    updater.gen.l0.W.array[0, 0] = numpy.inf
    snap = tmp_path / "snaps"
    snap.mkdir()
    (snap / ".snapshot_iter_00000004.npz.k2j.tmp").write_bytes(b"half a snapshot")  # from a killed write
    with pytest.raises(NonFiniteParametersError, match=r"parameter gen/l0/W of 'gen' is not finite after iter"):
        AtomicSnapshot(snap, 1, 10)(types.SimpleNamespace(updater=updater))
    assert list(snap.iterdir()) == []  # the stale temporary file went, and nothing was written
    wider = train.make_generator(dict(config, width=2 * config["width"]))
    with pytest.raises(SnapshotError, match="does not match this run \\(an array has another shape"):
        load_npz_checked(out / train.GEN_FINAL, wider, what="generator file")


def test_limit_reaches_the_loader(monkeypatch):
    """--limit is passed to the loader (CIFAR-10 and CelebA then stop reading early), not applied after
    loading every image."""
    from chainer_va import data

    calls = []

    def fake_load_images(name, **kwargs):
        calls.append(kwargs)
        return numpy.zeros((kwargs["limit"], 1, 32, 32), numpy.float32)
    monkeypatch.setattr(data, "load_images", fake_load_images)
    config = train.resolve_config(["--dataset", "mnist5k", "--limit", "64", "--batchsize", "8"])
    assert len(train.load_dataset(config)) == 64 and calls[0]["limit"] == 64


def test_a_plugin_file_is_recorded_by_absolute_path_so_the_run_works_from_any_folder(images, tmp_path, monkeypatch,
                                                                                     capsys):
    monkeypatch.chdir(REPO)
    out = tmp_path / "lsgan"
    train.main(tiny(images, out, "--plugin", "docs/examples/lsgan.py", "--objective", "lsgan", "--anneal", "lik",
                    "--lambda0", "1", "--iterations", "2", "--stop-at", "1", "--snapshot-interval", "1"))
    saved = runinfo.read_run_config(out)["config"]
    assert saved["plugin"] == [str(REPO / "docs" / "examples" / "lsgan.py")]
    monkeypatch.chdir(tmp_path)  # a cluster job starting elsewhere
    assert train.main(["--out", str(out), "--resume"] + QUIET)["completed"]
    assert train.load_generator(out)[1]["objective"] == "lsgan"
    # a run recorded with a relative path (before paths were made absolute): the error says where it came from
    record = json.loads((out / "config.json").read_text())
    record["config"]["plugin"] = ["docs/examples/lsgan.py"]
    (out / "config.json").write_text(json.dumps(record))
    with pytest.warns(UserWarning, match=r"plugin docs/examples/lsgan.py \(named by the run's .*config.json\): no such "
                                         r"file \(relative to the current folder .*loads without the plugin"):
        gen, _ = train.load_generator(out)  # the generator is the package's own: it loads without the plugin
    assert gen.latent_dim == 128
    with pytest.raises(train.ConfigError, match=r"plugin docs/examples/lsgan.py \(named by the run's .*config.json\): "
                                                r"no such file"):
        train.resolve_config(["--out", str(out), "--resume"])  # resuming needs the objective itself


@pytest.mark.parametrize("where", ["file", "below a file"])
def test_an_out_that_cannot_be_a_folder_is_one_clear_error_line(images, tmp_path, capsys, where):
    blocker = tmp_path / "taken"
    blocker.write_text("a file")
    out = blocker if where == "file" else blocker / "run"
    assert train.cli(tiny(images, out, "--iterations", "1")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out {}".format(out)) and "is a file" in err and "choose another --out" in err
    assert "Traceback" not in err and blocker.read_text() == "a file"


def test_resuming_a_finished_run_does_nothing(images, tmp_path, capsys):
    out = tmp_path / "done"
    record = train.main(tiny(images, out, "--iterations", "2"))
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert train.main(["--out", str(out), "--resume"] + QUIET) == record
    assert "holds a finished run (2 iterations" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_a_run_that_failed_before_its_first_snapshot_says_to_start_elsewhere(images, tmp_path, capsys):
    plugin = tmp_path / "nan_plugin_again.py"
    plugin.write_text(NAN_PLUGIN.replace("rkl_nan_at_3", "rkl_nan_at_3_again"))
    out = tmp_path / "nan"
    with pytest.raises(train.TrainingError, match="none \\(no snapshot was written before\\)"):
        train.main(tiny(images, out, "--plugin", str(plugin), "--objective", "rkl_nan_at_3_again", "--iterations",
                        "6", "--snapshot-interval", "5"))
    assert json.loads((out / "result.json").read_text())["last_snapshot"] is None  # JSON null, not "None"
    for resume in (["--resume"], []):  # neither way round is a dead end
        flags = ["--out", str(out)] + resume + QUIET if resume else tiny(images, out, "--iterations", "6")
        assert train.cli(flags) == 2
        err = capsys.readouterr().err
        assert "stopped at iteration 3 and left no snapshot to continue from" in err, err
        assert "start it again with another --out, or delete" in err


def test_a_runs_config_json_as_config_file_gives_no_notes_for_its_defaults(images, tmp_path, capsys):
    first = tmp_path / "first"
    train.main(tiny(images, first, "--iterations", "1"))
    capsys.readouterr()
    train.main(["--config", str(first / "config.json"), "--out", str(tmp_path / "again")])
    assert "note:" not in capsys.readouterr().err
    # a setting the file changes, that the objective does not use, is still named
    changed = json.loads((first / "config.json").read_text())
    changed["config"]["gp_weight"] = 5.0
    (tmp_path / "changed.json").write_text(json.dumps(changed))
    train.main(["--config", str(tmp_path / "changed.json"), "--out", str(tmp_path / "third")])
    assert "note: --gp-weight has no effect with --objective jsd" in capsys.readouterr().err


@pytest.mark.parametrize("code, match", [
    ("x = 1\ndef broken(:\n", r"importing it failed with SyntaxError: .*\(line 2 of .*bad_plugin.py\)"),
    ("import math\n\nmath.no_such_function()\n",
     r"importing it failed with AttributeError: .*no_such_function.*\(line 3 of .*bad_plugin.py\)"),
])
def test_a_plugin_that_fails_to_import_is_one_line_naming_the_line(tmp_path, capsys, code, match):
    plugin = tmp_path / "bad_plugin.py"
    plugin.write_text(code)
    with pytest.raises(train.ConfigError, match=match):
        train.resolve_config(["--plugin", str(plugin)])
    assert train.cli(["--plugin", str(plugin), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --plugin {}: importing it failed".format(plugin)) and "Traceback" not in err


def test_output_to_a_file_has_plain_progress_lines_and_rows_without_cursor_sequences(images, tmp_path, capsys):
    train.main(tiny(images, tmp_path / "run", "--iterations", "3", "--log-interval", "1"))
    out = capsys.readouterr().out  # captured: not a terminal
    assert "\x1b" not in out
    assert "iteration 3/3 (100.0%)" in out and out.count("\n3 ") + out.startswith("3 ") <= 1
    rows = [line.split() for line in out.splitlines() if line[:1].isdigit()]
    assert [row[0] for row in rows] == ["1", "2", "3"]  # PrintReport's rows, one per log interval


def test_lambda0_zero_is_refused_for_new_runs_only_and_not_for_lgan(images, tmp_path):
    # lgan replaces DFM's term: at lambda0 = 0 it is a GAN without a feature term, not the baseline
    assert train.resolve_config(["--anneal", "lgan", "--lambda0", "0"])["lambda0"] == 0.0
    # a run recorded before the check (lambda0 0 with lik) still resumes
    out = tmp_path / "old"
    train.main(tiny(images, out, "--anneal", "lik", "--lambda0", "0.5", "--iterations", "2", "--stop-at", "1",
                    "--snapshot-interval", "1"))
    record = json.loads((out / "config.json").read_text())
    record["config"]["lambda0"] = 0.0
    (out / "config.json").write_text(json.dumps(record))
    assert train.resolve_config(["--out", str(out), "--resume"])["lambda0"] == 0.0


SUBCLASS_PLUGIN = '''
from chainer_va import annealing, updaters


@annealing.register("lik_tuned_{tag}")
class LikTuned(annealing.LikelihoodAnnealing):
    """The likelihood term under another name: it keeps the likelihood form's beta and checks."""


@updaters.register("rkl_soft_gp_{tag}")
class SoftGP(updaters.RKLUpdater):
    """An objective whose own constant shares its name with WGAN-GP's flag but not its default."""

    def __init__(self, *args, gp_weight=1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.gp_weight = gp_weight
'''


def test_plugin_subclasses_keep_the_tempering_form_and_their_own_option_defaults(images, tmp_path, monkeypatch):
    plugin = tmp_path / "subclass_plugin.py"
    plugin.write_text(SUBCLASS_PLUGIN.replace("{tag}", "a"))
    base = ["--plugin", str(plugin), "--anneal", "lik_tuned_a"]
    # the likelihood form's check: a sinusoidal schedule swinging below -1 has no tempered target
    with pytest.raises(train.UntemperedScheduleError, match="likelihood form has no tempered target"):
        train.resolve_config(base + ["--lambda0", "5", "--schedule", "sinusoidal"])
    config = train.resolve_config(base + ["--lambda0", "0.875", "--objective", "rkl_soft_gp_a"])
    assert annealing.get("lik_tuned_a").tempering_form() == "lik"
    # the objective's own default (1.0), not the --gp-weight flag's (10.0); a flag given still wins
    assert config["gp_weight"] == 1.0
    assert train.resolve_config(base + ["--lambda0", "1", "--objective", "rkl_soft_gp_a", "--gp-weight", "10"]
                                )["gp_weight"] == 10.0
    updater = train.build_updater({**config, "channels": 1, "image_size": 32, "dataset": images, "batchsize": 4,
                                   "width": 0.0625}, numpy.load(images), chainer.get_device("@numpy"))
    assert updater.gp_weight == 1.0
    assert updater.annealing.implied_beta(0.875) == 1.875  # beta = 1 + lambda, as lik's (logged as such)
    # a call from a notebook does not read the kernel's own command line
    monkeypatch.setattr(sys, "argv", ["ipykernel_launcher.py", "-f", "/tmp/kernel.json"])
    assert train.resolve_config()["objective"] == "jsd"


def test_a_snapshot_from_before_the_beta_and_gradient_ratio_plots_still_resumes(images, tmp_path):
    """Runs recorded before beta.png/grad_ratio.png existed resume; those plots start at the resumed iteration."""
    out = tmp_path / "old"
    train.main(tiny(images, out, "--iterations", "4", "--stop-at", "2", "--snapshot-interval", "2",
                    "--log-interval", "1"))
    snapshot = latest_snapshot(out)
    with numpy.load(str(snapshot)) as npz:
        kept = {k: npz[k] for k in npz.files if "PlotReport_beta" not in k and "PlotReport_grad_ratio" not in k}
        assert len(kept) < len(npz.files)
    numpy.savez(str(snapshot), **kept)
    train.main(["--out", str(out), "--resume"] + QUIET)
    assert json.loads((out / "result.json").read_text())["completed"] is True
    with numpy.load(str(latest_snapshot(out))) as npz:
        ratio = json.loads(str(npz["extensions/PlotReport_grad_ratio/_plot_grad_ratio.png"]))
    points = [x for x, _ in ratio["grad_ratio_dfm"]]
    assert points and min(points) > 2 and points[-1] == 4
