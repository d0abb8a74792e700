"""One-line usage errors (exit status 2) of the tfp_flows / rl / reproduce command lines, checked before
anything is written or trained: an --out that is a file, bad layer sizes, lgan's knot interval, start
steps that leave no training, annealing flags that have no effect, U-GAN --resume, the RL sweep's
checks and tensorflow's log level. Runs are toy-sized (seconds) or stopped before training."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("tensorflow")

from va_core import cli_checks  # noqa: E402
from tfp_flows import ugan  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY_UGAN = ["--steps", "4", "--batch-size", "16", "--hidden-units", "8", "--flow-blocks", "1",
             "--generator-hidden", "8", "--eval-samples", "50"]


def _load(stem):
    spec = importlib.util.spec_from_file_location("cli_errors_{}".format(stem), ROOT / "reproduce" / (stem + ".py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _error(capsys):
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:") or ": error: " in line]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "taken"
    path.write_text("not a folder")
    return path


# ------------------------------------------------------------------------------------ --out is a file
def test_out_folder_problem_names_the_file_and_the_fix(a_file, tmp_path):
    assert cli_checks.out_folder_problem(tmp_path / "new" / "deeper") is None
    assert cli_checks.out_folder_problem(tmp_path) is None
    assert cli_checks.out_folder_problem(a_file) == "--out {} is a file, not a folder; choose another --out".format(a_file)
    assert cli_checks.out_folder_problem(a_file / "sub") == (
        "--out {}: {} is a file, so the folder cannot be created; choose another --out".format(a_file / "sub", a_file))
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if not os.access(locked, os.W_OK):  # (root may write anyway)
        assert cli_checks.out_folder_problem(locked / "run") == (
            "--out {}: cannot create it in {} (no write permission); choose another --out".format(locked / "run", locked))


def test_ugan_cli_out_that_is_a_file(a_file, capsys):
    assert ugan.main(["--out", str(a_file)] + TINY_UGAN) == 2
    assert _error(capsys) == "error: --out {} is a file, not a folder; choose another --out".format(a_file)
    assert ugan.main(["--out", str(a_file / "run")] + TINY_UGAN) == 2
    assert "is a file, so the folder cannot be created" in _error(capsys)
    assert a_file.read_text() == "not a folder"


def test_rl_train_out_that_is_a_file(a_file, capsys):
    from rl import train as rl_train

    assert rl_train.cli(["--out", str(a_file)]) == 2
    assert _error(capsys) == "error: --out {} is a file, not a folder; choose another --out".format(a_file)


def test_fig2_figS1_and_blr_out_that_is_a_file(a_file, capsys):
    for stem, argv in (("fig2", []), ("figS1", []), ("blr", ["--datasets", "heart", "--samplers", "svgd"])):
        assert _load(stem).main(["--out", str(a_file)] + argv) == 2, stem
        assert _error(capsys) == "error: --out {} is a file, not a folder; choose another --out".format(a_file), stem
    assert a_file.read_text() == "not a folder"


def test_fig2_sh_with_out_a_file_prints_one_line(a_file):
    env = dict(os.environ, OUT=str(a_file), PYTHON=sys.executable, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(["bash", str(ROOT / "reproduce" / "fig2.sh")], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "error: --out {} is a file, not a folder; choose another --out".format(a_file)


# --------------------------------------------------------------------------------------- layer sizes
@pytest.mark.parametrize("value", ["-4", "0", "8,0", "x"])
def test_ugan_cli_rejects_bad_generator_sizes_naming_the_flag(tmp_path, capsys, value):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        ugan.main(["--out", str(out), "--generator-hidden", value] + TINY_UGAN[:-4])
    assert e.value.code == 2
    assert "argument --generator-hidden: layer sizes must be positive integers" in _error(capsys)
    assert not out.exists()


def test_generator_rejects_non_positive_sizes():
    with pytest.raises(ValueError, match="generator_hidden must be a list of positive sizes"):
        ugan.Generator(2, 2, [0])
    with pytest.raises(ugan.SettingsError, match="generator_hidden must be a list of positive sizes"):
        ugan.train_sampler(lambda x: -0.5 * ugan.tf.reduce_sum(x * x, -1), 2, steps=2, generator_hidden=[-4],
                           check_only=True)


@pytest.mark.parametrize("stem,flag", [("figS1", "--generator-hidden"), ("figS1", "--hidden-units"),
                                       ("fig2", "--hidden")])
@pytest.mark.parametrize("value", ["-5", "0"])
def test_reproduce_scripts_reject_bad_layer_sizes(tmp_path, capsys, stem, flag, value):
    with pytest.raises(SystemExit) as e:
        _load(stem).main(["--out", str(tmp_path / "out"), flag, value])
    assert e.value.code == 2
    assert "argument {}: layer sizes must be positive integers".format(flag) in _error(capsys)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flags,message", [(["--chains", "1"], "error: --chains must be >= 2, got 1"),
                                           (["--dae-steps", "0"], "error: --dae-steps must be >= 1, got 0"),
                                           (["--sigma", "-0.1"], "error: --sigma must be positive, got -0.1")])
def test_fig2_range_errors_name_the_flag_and_value(tmp_path, capsys, flags, message):
    assert _load("fig2").main(["--out", str(tmp_path / "out")] + flags) == 2
    assert _error(capsys) == message
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------- lgan schedule
def test_ugan_cli_lgan_needs_a_knot_interval_below_10000_steps(tmp_path, capsys):
    flags = ["--anneal", "lik", "--lambda0", "0.5", "--schedule", "lgan"] + TINY_UGAN
    assert ugan.main(["--out", str(tmp_path / "a")] + flags) == 2
    assert _error(capsys) == ("error: lgan's default knot interval 10000 needs --steps >= 10000; pass "
                              "--knot-interval (at most 4)")
    assert not (tmp_path / "a").exists()
    assert ugan.main(["--out", str(tmp_path / "b"), "--knot-interval", "2"] + flags) == 0
    recorded = json.loads((tmp_path / "b" / "config.json").read_text())["config"]["schedule_config"]
    assert recorded["name"] == "lgan" and recorded["knot_interval"] == 2
    capsys.readouterr()
    assert ugan.main(["--out", str(tmp_path / "c"), "--knot-interval", "2", "--anneal", "lik", "--lambda0", "0.5",
                      "--schedule", "linear"] + TINY_UGAN) == 2
    assert _error(capsys) == "error: --knot-interval is an option of the lgan schedule, not of linear; drop it"


def test_figS1_lgan_needs_a_knot_interval(tmp_path, capsys):
    figS1 = _load("figS1")
    flags = ["--schedule", "lgan", "--steps", "8", "--targets", "banana", "--no-direct"]
    assert figS1.main(["--out", str(tmp_path / "a")] + flags) == 2
    assert "lgan's default knot interval 10000 needs --steps >= 10000; pass --knot-interval" in _error(capsys)
    assert not (tmp_path / "a").exists()
    tiny = ["--flow-blocks", "1", "--hidden-units", "8", "--generator-hidden", "8", "--batch-size", "16",
            "--eval-samples", "50"]
    assert figS1.main(["--out", str(tmp_path / "b"), "--knot-interval", "4"] + flags + tiny) == 0
    record = json.loads((tmp_path / "b" / "banana_ugan_lik" / "config.json").read_text())["config"]
    assert record["schedule_config"]["knot_interval"] == 4


# --------------------------------------------------------------------------------------- U-GAN resume
def test_ugan_resume_fills_in_the_recorded_settings(tmp_path, capsys):
    out = tmp_path / "run"
    assert ugan.main(["--out", str(out), "--target", "kidney"] + TINY_UGAN) == 0
    record = (out / "config.json").read_bytes()
    assert ugan.main(["--out", str(out), "--resume"]) == 0  # no flags: the recorded ones, not the defaults
    assert (out / "config.json").read_bytes() == record
    capsys.readouterr()
    assert ugan.main(["--out", str(out), "--resume", "--lr", "0.5"]) == 2  # a flag given still must match
    assert "lr: 0.001 -> 0.5" in _error(capsys)


def test_ugan_resume_on_a_folder_without_a_run_is_refused(tmp_path, capsys):
    out = tmp_path / "missing"
    assert ugan.main(["--out", str(out), "--resume"] + TINY_UGAN) == 2
    assert _error(capsys) == ("error: --resume: {} holds no run (no config.json); drop --resume to start one "
                              "there, or pass the folder of the run to continue".format(out))
    assert not out.exists()


# --------------------------------------------------------------------------------------------- rl.train
@pytest.mark.parametrize("flags,message", [
    (["--steps", "200", "--start-steps", "500"],
     "error: --start-steps 500 is not below --steps 200: the run would end before training starts"),
    (["--steps", "200", "--start-steps", "200"], "--start-steps 200 is not below --steps 200"),
    (["--anneal", "none", "--lambda0", "0.5"],
     "error: --lambda0 0.5 would have no effect with --anneal none; drop it, or pass --anneal ent or lik"),
    (["--agent", "svgd", "--anneal", "lik", "--lambda0", "0.5"],
     "error: --anneal lik, --lambda0 0.5 would have no effect with --agent svgd"),
    (["--agent", "svgd", "--schedule", "sinusoidal"], "--schedule sinusoidal would have no effect with --agent svgd"),
    (["--schedule", "lgan", "--steps", "2000"],
     "error: lgan's default knot interval 10000 needs --steps >= 10000; pass --knot-interval (at most 2000)"),
    (["--knot-interval", "100"], "error: --knot-interval is an option of the lgan schedule, not of linear; drop it"),
])
def test_rl_train_refuses_runs_that_would_not_train_or_not_anneal(tmp_path, capsys, flags, message):
    from rl import train as rl_train

    out = tmp_path / "new"
    assert rl_train.cli(["--out", str(out)] + flags) == 2
    assert message in _error(capsys)
    assert not out.exists()


def test_rl_runs_without_annealing_record_none():
    from rl import train as rl_train

    def resolved(*flags):
        cfg = rl_train.resolve_config(rl_train.build_parser().parse_args(list(flags) + ["--out", "-"]))
        return {k: cfg[k] for k in ("anneal", "schedule", "lambda0", "knot_interval")}

    none = {"anneal": "none", "schedule": "static", "lambda0": 0.0, "knot_interval": None}
    assert resolved("--agent", "svgd") == resolved("--agent", "svgd", "--anneal", "none") == none
    assert resolved("--anneal", "none") == none
    assert resolved() == {"anneal": "ent", "schedule": "linear", "lambda0": 1.0, "knot_interval": None}
    assert resolved("--schedule", "lgan", "--knot-interval", "1000")["knot_interval"] == 1000


# ------------------------------------------------------------------------------------------- the sweep
def test_sweep_lowers_the_start_steps_below_a_short_steps_override(capsys):
    m = _load("rl")
    p = m.parse_args(["--quick", "--steps", "300"])[3]
    assert p["start_steps"] == 75
    assert ("note: --steps 300 is not above the quick preset's start steps 500 (random actions, no training); "
            "using --start-steps 75") in capsys.readouterr().err
    assert m.expected_config(m.train_flags("svgd", 0, p, "Swimmer-v5", []))["start_steps"] == 75
    assert m.parse_args(["--quick"])[3]["start_steps"] == 500  # the preset itself is left alone


def test_sweep_refuses_an_explicit_start_steps_that_leaves_no_training(tmp_path, monkeypatch, capsys):
    m = _load("rl")
    monkeypatch.setattr(m, "run_one", lambda run_dir, flags: pytest.fail("a run was launched"))
    assert m.main(["--quick", "--steps", "300", "--start-steps", "400", "--out", str(tmp_path / "sweep")]) == 2
    assert "--start-steps 400 is not below --steps 300" in capsys.readouterr().err
    assert not (tmp_path / "sweep").exists()


def test_sweep_checks_every_agent_on_the_env_before_training_any(tmp_path, monkeypatch, capsys):
    pytest.importorskip("mujoco")
    m = _load("rl")
    monkeypatch.setattr(m, "run_one", lambda run_dir, flags: pytest.fail("a run was launched"))
    argv = ["--quick", "--steps", "300", "--env", "InvertedPendulum-v5", "--out", str(tmp_path / "sweep")]
    assert m.main(argv) == 2
    msg = capsys.readouterr().err.strip().splitlines()[-1]  # after the note on --start-steps
    assert msg.startswith("error: agent maf_anneal cannot run on InvertedPendulum-v5: --agent maf needs an action "
                          "space of 2 or more dimensions")
    assert not (tmp_path / "sweep").exists()


def test_sweep_runs_svgd_without_annealing_and_still_reuses_older_records(tmp_path, monkeypatch, capsys):
    from va_core import runinfo

    m = _load("rl")
    p = dict(m.PRESETS["quick"], steps=600)
    flags = m.train_flags("svgd", 0, p, "Swimmer-v5", [])
    assert flags[flags.index("--anneal") + 1] == "none"
    cfg = m.expected_config(flags)
    assert (cfg["anneal"], cfg["schedule"], cfg["lambda0"]) == ("none", "static", 0.0)
    # a finished SVGD run recorded by an older version: the (ignored) default annealing flags, no knot_interval
    run = tmp_path / "sweep" / "svgd" / "seed0"
    old = {k: v for k, v in cfg.items() if k != "knot_interval"}
    old.update(anneal="ent", schedule="linear", lambda0=1.0)
    runinfo.write_run_config(run, old)
    (run / "checkpoints" / "step_000000600").mkdir(parents=True)
    (run / "checkpoints" / "latest.json").write_text(json.dumps({"dir": "step_000000600", "step": 600}))
    (run / "eval.csv").write_text("step,mean_return,std_return,wall_seconds,returns\n0,-1,0,1,\n600,5,0,9,\n")
    monkeypatch.setattr(m, "run_one", lambda run_dir, flags: pytest.fail("a finished run was trained again"))
    monkeypatch.setattr(m, "random_baseline", lambda env, episodes, extra=(): [0.0, 2.0])
    assert m.main(["--quick", "--steps", "600", "--agents", "svgd", "--out", str(tmp_path / "sweep")]) == 0
    assert "finished earlier (same settings), kept" in capsys.readouterr().out


def test_sweep_aggregate_only_on_a_missing_folder_creates_nothing(tmp_path, capsys):
    pytest.importorskip("mujoco")
    m = _load("rl")
    out = tmp_path / "nothing_here"
    assert m.main(["--quick", "--agents", "svgd", "--aggregate-only", "--out", str(out)]) == 2
    assert "no finished runs under" in capsys.readouterr().err
    assert not out.exists()


# ------------------------------------------------------------------------------------ tensorflow noise
def test_importing_tfp_flows_sets_tensorflow_log_level_unless_set():
    code = "import os, tfp_flows; print(os.environ['TF_CPP_MIN_LOG_LEVEL'])"
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "2"
    out = subprocess.run([sys.executable, "-c", code], env=dict(env, TF_CPP_MIN_LOG_LEVEL="0"),
                         capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "0"


def test_the_sweep_runs_as_a_file_too(tmp_path):
    """``python reproduce/rl.py``: the script's own folder, first on the path, must not shadow the rl package."""
    proc = subprocess.run([sys.executable, str(ROOT / "reproduce" / "rl.py"), "--quick", "--steps", "300",
                           "--start-steps", "400", "--out", str(tmp_path / "sweep")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": "", "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith("error: the flags for python -m rl.train are invalid")


# ------------------------------------------------------------------- argparse's errors are one line too
@pytest.mark.parametrize("stem,argv,problem", [
    ("rl", ["--seeds", "two"], "argument --seeds: invalid int value: 'two'"),  # (rl.py hands unknown flags on)
    ("figS1", ["--preset", "bogus"], "argument --preset: invalid choice: 'bogus' (choose from 'kidney-coverage')"),
    ("fig2", ["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    ("blr", ["--no-such-flag"], "unrecognized arguments: --no-such-flag")])
def test_reproduce_scripts_report_a_bad_flag_in_one_line_without_the_usage_block(capsys, stem, argv, problem):
    with pytest.raises(SystemExit) as e:
        _load(stem).parse_args(argv)
    assert e.value.code == 2
    prog = "reproduce/{}.sh".format(stem)
    assert capsys.readouterr().err == "{}: error: {} (see {} --help)\n".format(prog, problem, prog)


def test_one_line_parser_names_the_bad_choice_and_keeps_help(capsys):
    p = cli_checks.OneLineParser(prog="tool")
    p.add_argument("--preset", choices=("a", "b"))
    with pytest.raises(SystemExit) as e:
        p.parse_args(["--preset", "c"])
    assert e.value.code == 2
    assert capsys.readouterr().err == ("tool: error: argument --preset: invalid choice: 'c' (choose from 'a', 'b') "
                                       "(see tool --help)\n")
    with pytest.raises(SystemExit) as e:
        p.parse_args(["--help"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("usage: tool [-h] [--preset {a,b}]")
