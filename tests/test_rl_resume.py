"""rl.train runs that stop and resume: exact continuation, two checkpoints with fallback, logs cut back
to the checkpoint, settings checked on resume, one-line errors; reproduce/rl.py's settings check,
preset folders and sample std.

Every run is a tiny Swimmer-v5 run of the MAF agent (100 steps, 20-step episodes, 2x8 networks, about
5 s)."""
import csv
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import rl  # noqa: F401  (compat layer, TF_USE_LEGACY_KERAS)

tf = pytest.importorskip("tensorflow")
pytest.importorskip("mujoco")

from rl import train as rl_train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# Checkpoints at 30, 60, 90 and 100; episodes end at 20, 40, ...: 60 is on an episode boundary, 90 is
# 10 steps into an episode. Training starts at step 30.
TINY = ["--env", "Swimmer-v5", "--steps", "100", "--max-episode-steps", "20", "--start-steps", "30",
        "--batch-size", "8", "--hidden", "8", "--maf-hidden", "8", "--maf-blocks", "2", "--particles", "4",
        "--value-samples", "4", "--eval-every", "50", "--eval-episodes", "1", "--checkpoint-every", "30",
        "--progress-every", "10", "--target-update", "5", "--seed", "3"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run."""
    out = tmp_path_factory.mktemp("reference") / "run"
    assert rl_train.cli(TINY + ["--out", str(out)]) == 0
    return out


def _copy(run: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(run, dst)
    return dst


def _eval_rows(run: Path):
    with open(run / "eval.csv") as f:
        return [{k: v for k, v in r.items() if k != "wall_seconds"} for r in csv.DictReader(f)]


def _final_checkpoint(run: Path) -> Path:
    return run / "checkpoints" / "step_{:09d}".format(rl_train.latest_step(run))


def assert_same_run(a: Path, b: Path) -> None:
    """Same training episodes, evaluations (but wall times), final network/optimiser/RNG variables, replay buffer."""
    assert (a / "episodes.csv").read_text() == (b / "episodes.csv").read_text()
    assert _eval_rows(a) == _eval_rows(b)
    ca, cb = _final_checkpoint(a), _final_checkpoint(b)
    assert ca.name == cb.name == "step_000000100"
    names = [n for n, _ in tf.train.list_variables(str(ca / "agent")) if n != "_CHECKPOINTABLE_OBJECT_GRAPH"]
    ra, rb = tf.train.load_checkpoint(str(ca / "agent")), tf.train.load_checkpoint(str(cb / "agent"))
    assert len(names) > 50
    for n in names:
        assert np.array_equal(ra.get_tensor(n), rb.get_tensor(n)), n
    with np.load(ca / "replay.npz") as fa, np.load(cb / "replay.npz") as fb:
        for k in fa.files:
            np.testing.assert_array_equal(fa[k], fb[k], err_msg=k)
    sa, sb = (json.loads((c / "state.json").read_text()) for c in (ca, cb))
    for key in ("numpy_rng", "episode", "episodes", "obs", "ep_return", "episode_actions"):
        assert sa[key] == sb[key], key


def _progress_steps(run: Path):
    return [line.split()[1] for line in (run / "log.txt").read_text().splitlines() if line.startswith("step ")]


def test_reference_run_keeps_two_checkpoints_and_resets_episodes_from_their_seeds(reference):
    assert sorted(p.name for p in (reference / "checkpoints").iterdir()) == [
        "latest.json", "step_000000090", "step_000000100"]
    episodes = [r for r in csv.DictReader(open(reference / "episodes.csv"))]
    assert [int(r["step"]) for r in episodes] == [20, 40, 60, 80, 100]
    assert len({r["return"] for r in episodes}) == 5  # distinct episodes, not one seed replayed
    assert [r["step"] for r in _eval_rows(reference)] == ["0", "50", "100"]
    assert rl_train.episode_seed(3, 1) == rl_train.episode_seed(3, 1) != rl_train.episode_seed(3, 2)
    assert rl_train.episode_seed(3, 1) != rl_train.episode_seed(4, 1)


def test_run_stopped_at_checkpoints_and_resumed_equals_the_uninterrupted_run(reference, tmp_path, capsys):
    """Stopped at 60 (episode boundary), resumed and stopped at 90 (10 steps into an episode), resumed to the end."""
    out = tmp_path / "run"
    assert rl_train.cli(TINY + ["--out", str(out), "--stop-at", "60"]) == 0
    assert rl_train.latest_step(out) == 60 and _progress_steps(out)[-1] == "60/100"
    assert rl_train.cli(["--out", str(out), "--resume", "--stop-at", "90"]) == 0  # recorded settings
    assert rl_train.cli(TINY + ["--out", str(out), "--resume"]) == 0  # the same flags again
    assert "resumed from {} at step 90 (episode 4, 10 steps into it)".format(
        out / "checkpoints" / "step_000000090") in capsys.readouterr().out
    assert_same_run(reference, out)
    assert _progress_steps(out) == ["{}/100".format(s) for s in range(10, 101, 10)]  # each step logged once


def test_resume_after_a_kill_cuts_the_logs_back_to_the_checkpoint(reference, tmp_path):
    """As if SIGKILLed after the step-90 checkpoint: log.txt, episodes.csv and eval.csv already hold step 100."""
    out = _copy(reference, tmp_path)
    shutil.rmtree(out / "checkpoints" / "step_000000100")
    (out / "checkpoints" / "latest.json").write_text(json.dumps({"dir": "step_000000090", "step": 90}))
    assert _progress_steps(out)[-1] == "100/100"
    assert rl_train.cli(["--out", str(out), "--resume"]) == 0
    assert_same_run(reference, out)
    assert _progress_steps(out) == ["{}/100".format(s) for s in range(10, 101, 10)]
    log = (out / "log.txt").read_text()
    assert log.count("eval step 100:") == 1 and log.count("done: 100 steps") == 1
    cut = (out / "log_discarded.txt").read_text()  # the killed process's lines are kept, not lost
    assert "resumed from step_000000090" in cut and "step 100/100" in cut and "done: 100 steps" in cut


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(reference, tmp_path, capsys):
    out = _copy(reference, tmp_path)
    _truncate(out / "checkpoints" / "step_000000100" / "replay.npz")
    assert rl_train.cli(["--out", str(out), "--resume"]) == 0
    err = capsys.readouterr().err
    assert "step_000000100 is damaged (BadZipFile" in err and "resuming from" in err and "step_000000090" in err
    assert_same_run(reference, out)  # continued from step 90, and step 100 written again
    assert "warning: checkpoint" in (out / "log.txt").read_text()


def test_damaged_pointer_falls_back_to_the_newest_folder(reference, tmp_path, capsys):
    out = _copy(reference, tmp_path)
    (out / "checkpoints" / "latest.json").write_text('{"dir": "step_0000')
    assert rl_train.latest_step(out) == 100
    assert rl_train.cli(["--out", str(out), "--resume"]) == 0  # finished: nothing to train
    assert "latest.json is damaged (JSONDecodeError" in capsys.readouterr().err
    assert_same_run(reference, out)


def test_no_readable_checkpoint_is_a_one_line_error(reference, tmp_path, capsys):
    out = _copy(reference, tmp_path)
    _truncate(out / "checkpoints" / "step_000000100" / "replay.npz")
    (out / "checkpoints" / "step_000000090" / "state.json").write_text("{")
    assert rl_train.cli(["--out", str(out), "--resume"]) == 1
    # (in one process with other TensorFlow tests, a note that --threads cannot be applied any more may come first)
    err = "\n".join(line for line in capsys.readouterr().err.strip().splitlines()
                    if not line.startswith("warning: TensorFlow is already running"))
    assert "\n" not in err and err.startswith("error: no readable checkpoint in")
    assert "step_000000100 is damaged (BadZipFile" in err and "step_000000090 is damaged (JSONDecodeError" in err
    assert "another out folder" in err


def test_resume_with_other_settings_is_an_error(reference, tmp_path, capsys):
    out = _copy(reference, tmp_path)
    before = (out / "log.txt").read_text()
    rc = rl_train.cli(TINY + ["--out", str(out), "--resume", "--steps", "120", "--lr", "0.001"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err
    assert "(recorded -> now): lr: 0.0004 -> 0.001, steps: 100 -> 120" in err
    assert "choose another --out" in err
    assert (out / "log.txt").read_text() == before
    # a changed setting is named as such, even where the new value alone would also be refused
    for flags, named in ((["--anneal", "none"], "anneal: 'ent' -> 'none'"),
                         (["--steps", "20"], "steps: 100 -> 20")):
        assert rl_train.cli(["--out", str(out), "--resume"] + flags) == 2
        err = capsys.readouterr().err.strip()
        assert "cannot resume {}: these settings differ".format(out) in err and named in err, err
    # --progress-every and --threads may change; a finished run then has nothing left to do
    assert rl_train.cli(["--out", str(out), "--resume", "--progress-every", "7"]) == 0
    assert rl_train.cli(["--out", str(out)]) == 2  # an existing run without --resume
    assert "already holds a run; pass --resume" in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [
    (["--env", "Foo-v9"], "error: --env Foo-v9: cannot make gymnasium environment 'Foo-v9'"),
    (["--env", "CartPole-v1"], "needs a flat (vector) Box action space"),
    (["--steps", "0"], "error: --steps must be >= 1, got 0"),
    (["--seed", "-1"], "error: --seed must be an integer in [0, 2**31)"),
    (["--agent", "svgd", "--particles", "1"], "--agent svgd needs --particles >= 2"),
    (["--env", "InvertedPendulum-v5"], "--agent maf needs an action space of 2 or more dimensions; "
                                       "InvertedPendulum-v5 has 1"),
    (["--stop-at", "200", "--steps", "100", "--start-steps", "10"], "--stop-at must be in [1, --steps=100], got 200"),
    (["--steps", "ten"], "argument --steps: invalid int value: 'ten'"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
def test_bad_flags_are_one_line_errors_and_create_no_folder(tmp_path, capsys, flags, message):
    out = tmp_path / "new"
    assert rl_train.cli(["--out", str(out)] + flags) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err and err.startswith("error: ")
    assert not out.exists()


def test_module_entry_point_prints_no_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "rl.train", "--steps", "0", "--out", str(tmp_path / "x")],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip() == "error: --steps must be >= 1, got 0"
    assert not (tmp_path / "x").exists()


# --------------------------------------------------------------------------------- reproduce/rl.py
def _sweep_module():
    spec = importlib.util.spec_from_file_location("reproduce_rl_resume", ROOT / "reproduce" / "rl.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fake_run(module, out, name, seed, p, final_return, extra=()):
    """A finished run folder as rl.train leaves it (config.json, eval.csv, checkpoint folder and pointer)."""
    from va_core import runinfo

    run = out / name / "seed{}".format(seed)
    cfg = module.expected_config(module.train_flags(name, seed, p, "Swimmer-v5", list(extra)))
    runinfo.write_run_config(run, cfg)
    (run / "checkpoints" / "step_{:09d}".format(cfg["steps"])).mkdir(parents=True)
    (run / "checkpoints" / "latest.json").write_text(json.dumps({"dir": "step_{:09d}".format(cfg["steps"]),
                                                                 "step": cfg["steps"]}))
    rows = [[0, -16.0, 0.0, 1.0, ""], [cfg["steps"], final_return, 0.0, 10.0, ""]]
    (run / "eval.csv").write_text("step,mean_return,std_return,wall_seconds,returns\n" + "".join(
        ",".join(str(v) for v in r) + "\n" for r in rows))
    return run


def test_presets_have_their_own_default_output_folders():
    m = _sweep_module()
    outs = {tuple(a): m.parse_args(a)[4] for a in (["--quick"], ["--preset", "quick"], [], ["--preset", "paper"])}
    assert outs[("--quick",)] == outs[("--preset", "quick")] == Path("runs/rl_quick")
    assert outs[()] == Path("runs/rl_local") and outs[("--preset", "paper")] == Path("runs/rl_paper")
    assert m.parse_args(["--quick", "--out", "elsewhere"])[4] == Path("elsewhere")
    with pytest.raises(SystemExit):
        m.parse_args(["--quick", "--preset", "paper"])


def test_sweep_refuses_to_reuse_or_tabulate_runs_made_with_other_settings(tmp_path, monkeypatch, capsys):
    """A quick sweep at 600 steps, then one asking for 700: stopped before training, folder and difference named."""
    m = _sweep_module()
    out = tmp_path / "sweep"
    p600 = dict(m.PRESETS["quick"], steps=600)
    _fake_run(m, out, "svgd", 0, p600, 40.0)
    launched = []
    monkeypatch.setattr(m, "run_one", lambda run_dir, flags: launched.append(run_dir))
    messages = []
    for argv in (["--quick", "--steps", "700", "--agents", "svgd"],
                 ["--quick", "--steps", "700", "--agents", "svgd", "--aggregate-only"],
                 ["--quick", "--steps", "600", "--agents", "svgd", "--reward-scale", "100"],
                 ["--preset", "local", "--seeds", "1", "--agents", "svgd"]):
        assert m.main(argv + ["--out", str(out)]) == 2
        msg = capsys.readouterr().err.strip()
        assert msg.startswith("error: {} holds a run made with other settings".format(out / "svgd" / "seed0"))
        assert "move it away, or choose another --out" in msg and "\n" not in msg
        messages.append(msg)
    assert "(there -> requested: steps: 600 -> 700)" in messages[0] and "steps: 600 -> 700" in messages[1]
    assert "reward_scale: 30.0 -> 100.0" in messages[2]
    assert "steps: 600 -> 6000" in messages[3]  # not relabelled as the local preset
    assert launched == [] and not (out / "summary.json").exists()
    # the same settings: kept as finished, tabulated
    monkeypatch.setattr(m, "random_baseline", lambda env, episodes, extra=(): [0.0, 2.0])
    assert m.main(["--quick", "--steps", "600", "--agents", "svgd", "--out", str(out)]) == 0
    assert launched == [] and json.loads((out / "summary.json").read_text())["settings"]["steps"] == 600
    assert "finished earlier (same settings), kept" in capsys.readouterr().out


def test_summary_reports_the_sample_std_over_seeds(tmp_path, monkeypatch):
    m = _sweep_module()
    out = tmp_path / "sweep"
    p = dict(m.PRESETS["quick"], seeds=3)
    finals = [40.0, 44.0, 51.0]
    for seed, r in enumerate(finals):
        _fake_run(m, out, "svgd", seed, p, r)
    monkeypatch.setattr(m, "run_one", lambda run_dir, flags: pytest.fail("a finished run was trained again"))
    monkeypatch.setattr(m, "random_baseline", lambda env, episodes, extra=(): [1.0, -3.0, 5.0])
    assert m.main(["--quick", "--seeds", "3", "--agents", "svgd", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    agent = summary["agents"]["svgd"]
    assert agent["final_std"] == pytest.approx(np.std(finals, ddof=1))  # 5.5678, not the population 4.5461
    assert agent["final_std"] == pytest.approx(5.567764, rel=1e-6)
    assert summary["random_policy"]["std"] == pytest.approx(4.0)
    table = (out / "summary.md").read_text()
    assert "sample std over seeds, ddof=1" in table and "45.00 ± 5.57" in table and "1.00 ± 4.00" in table


def test_sweep_trains_runs_side_by_side_and_stops_starting_after_a_failure(monkeypatch):
    """--jobs 2: two runs are in training at once (a barrier both must reach); after one fails, no queued run
    starts, and the failure is raised once the running ones end."""
    import threading

    m = _sweep_module()
    both_running, started, stop_flags = threading.Barrier(2, timeout=60), [], []

    class RecordedEvent(threading.Event):  # train_runs' stop flag, so that run a can wait for it
        def __init__(self):
            super().__init__()
            stop_flags.append(self)

    def fake_run_one(run_dir, flags, quiet=False):
        started.append(run_dir)
        assert quiet
        if run_dir in ("a", "b"):
            both_running.wait()  # raises BrokenBarrierError unless a and b overlap
        if run_dir == "a":  # end only once b's failure is recorded, however busy the machine (no race for d)
            assert stop_flags[0].wait(60)
        if run_dir == "b":
            raise m.SweepRunFailed("b failed")

    monkeypatch.setattr(m.threading, "Event", RecordedEvent)
    monkeypatch.setattr(m, "run_one", fake_run_one)
    with pytest.raises(m.SweepRunFailed, match="b failed"):
        m.train_runs([("a", []), ("b", []), ("c", []), ("d", [])], jobs=2)
    assert sorted(started[:2]) == ["a", "b"] and "d" not in started  # (c may start in a's slot before b fails)
    with pytest.raises(SystemExit):
        m.parse_args(["--jobs", "0"])
