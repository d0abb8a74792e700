"""reproduce/figS1.py and reproduce/fig2.py at toy sizes (seconds): --resume checks every recorded setting
before writing anything, damaged files are named with their fix, and the scripts (.py and .sh) write
nothing outside their output folder unless --publish-docs is given (default settings only)."""
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")

REPO = Path(__file__).resolve().parents[1]
REPRODUCE = REPO / "reproduce"
FIGS1_FLAGS = ["--steps", "8", "--targets", "banana", "--no-direct", "--flow-blocks", "1", "--hidden-units", "8",
               "--generator-hidden", "8", "--batch-size", "16", "--eval-samples", "50"]
FIG2_FLAGS = ["--n-data", "300", "--dae-steps", "5", "--chains", "20", "--langevin-steps", "5"]


def _load(name):
    spec = importlib.util.spec_from_file_location("{}_script".format(name), REPRODUCE / "{}.py".format(name))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def figS1():
    return _load("figS1")


@pytest.fixture(scope="module")
def fig2():
    return _load("fig2")


def _tree(root):
    """Every file under ``root`` with its bytes."""
    root = Path(root)
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _one_error_line(capsys):
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_figS1_resume_checks_every_setting_before_writing_anything(figS1, tmp_path, capsys):
    out = tmp_path / "figS1"
    flags = ["--out", str(out)] + FIGS1_FLAGS
    assert figS1.main(flags) == 0
    table = (out / "table.md").read_text()
    assert "| banana | ugan | lik linear lambda0=-0.5 |" in table
    assert "| gap to exact (SE) |" in table
    quality = json.loads((out / "quality.json").read_text())
    for q in quality.values():  # each sampler's gap is its mean log u minus the exact sample's
        if "exact_mean_log_u" in q:
            assert q["log_u_gap"] == pytest.approx(q["mean_log_u"] - q["exact_mean_log_u"], abs=1e-12)
        # 8 training steps: a sampler's samples are still spread (SE about 1); two exact samples' gap is tight
        assert 0 < q["log_u_gap_se"] < (0.5 if q["method"] == "exact vs exact" else 10)
    before = _tree(out)
    for extra, expected in [(["--resume", "--lr", "0.002"], "lr: 0.001 -> 0.002"),
                            (["--resume", "--flow-blocks", "2"], "flow_blocks: 1 -> 2"),
                            (["--resume", "--steps", "12"], "steps: 8 -> 12"),  # was FileNotFoundError
                            (["--lambda0", "-0.3"], "already holds a figS1 run")]:  # was FileExistsError
        capsys.readouterr()
        assert figS1.main(flags + extra) == 2
        line = _one_error_line(capsys)
        assert expected in line and str(out) in line
        assert _tree(out) == before, extra  # config.json included: nothing was written
    # each run folder's own record is checked as well (here with the folder's record moved away)
    (out / "config.json").rename(tmp_path / "config.json")
    assert figS1.main(flags + ["--resume", "--lr", "0.002"]) == 2
    line = _one_error_line(capsys)
    assert "banana_ugan_lik" in line and "lr: 0.001 -> 0.002" in line
    assert not (out / "config.json").exists()
    (tmp_path / "config.json").rename(out / "config.json")
    # the same settings: finished runs are reused, the first record stays, the resume writes its own
    assert figS1.main(flags + ["--resume", "--threads", "2"]) == 0
    assert (out / "table.md").read_text() == table
    assert (out / "config.json").read_bytes() == before["config.json"]
    assert json.loads((out / "config_resume_1.json").read_text())["config"]["threads"] == 2


def test_log_u_gap_against_a_gaussian_target(figS1):
    class StandardNormal2D:  # log u = -|x|^2 / 2: -chi2_2 / 2 under the target, mean -1, variance 1
        @staticmethod
        def log_density_np(x):
            return -0.5 * np.sum(x ** 2, axis=1)

    rng = np.random.default_rng(0)
    n = 40000
    exact, other = rng.standard_normal((n, 2)), rng.standard_normal((n, 2))
    same = figS1.log_u_gap(StandardNormal2D, other, exact)
    assert same["log_u_gap_se"] == pytest.approx(math.sqrt(2.0 / n), rel=0.03)
    assert abs(same["log_u_gap"]) < 4 * same["log_u_gap_se"]
    # twice the standard deviation: mean log u = -4 (variance 16), so the gap is -3, SE sqrt(17 / n)
    wide = figS1.log_u_gap(StandardNormal2D, 2.0 * other, exact)
    assert wide["log_u_gap_se"] == pytest.approx(math.sqrt(17.0 / n), rel=0.03)
    assert wide["log_u_gap"] == pytest.approx(-3.0, abs=4 * wide["log_u_gap_se"])


def test_figS1_damaged_final_samples_name_the_fix_that_recomputes_them(figS1, tmp_path, capsys):
    out = tmp_path / "figS1"
    flags = ["--out", str(out), "--resume"] + FIGS1_FLAGS
    assert figS1.main(flags) == 0
    run = out / "banana_ugan_none"
    quality = json.loads((run / "quality.json").read_text())
    final = run / "final_samples.npy"
    final.write_bytes(final.read_bytes()[:100])
    before = _tree(out)
    capsys.readouterr()
    assert figS1.main(flags) == 2
    line = _one_error_line(capsys)
    assert str(run) in line and "delete {}".format(run / "quality.json") in line
    assert _tree(out) == before
    (run / "quality.json").unlink()  # the fix: recomputed from the run's final checkpoint
    assert figS1.main(flags) == 0
    again = json.loads((run / "quality.json").read_text())
    assert again["energy_distance"] == pytest.approx(quality["energy_distance"], rel=1e-6)
    assert again["mmd2"] == pytest.approx(quality["mmd2"], rel=1e-6, abs=1e-9)


def test_figS1_publish_docs_only_at_the_default_settings(figS1, tmp_path, capsys):
    out = tmp_path / "never"
    assert figS1.main(["--out", str(out), "--publish-docs"] + FIGS1_FLAGS) == 2
    line = _one_error_line(capsys)
    assert "--publish-docs" in line and "steps: 3000 -> 8" in line
    assert not out.exists()
    figS1._check_publish(figS1.parse_args(["--out", "x", "--resume", "--threads", "2", "--publish-docs"]))
    src = tmp_path / "src"
    src.mkdir()
    for name, content in (("figS1.png", b"png"), ("figS1_final.png", b"final"), ("table.md", b"| t |")):
        (src / name).write_bytes(content)
    docs = tmp_path / "docs"
    figS1.publish_docs(src, docs)
    assert _tree(docs) == {"figS1.png": b"png", "figS1_final.png": b"final", "figS1_table.md": b"| t |"}


def test_fig2_resume_reuses_the_denoiser_only_with_its_settings(fig2, tmp_path, capsys):
    out = tmp_path / "fig2"
    flags = ["--out", str(out)] + FIG2_FLAGS
    assert fig2.main(flags) == 0
    table = (out / "table.md").read_text()
    for extra, expected in [(["--sigma", "0.3"], "sigma: 0.2 -> 0.3"), (["--dae-steps", "6"], "dae_steps: 5 -> 6"),
                            (["--hidden", "8"], "hidden: [64, 64, 64] -> [8]"),
                            (["--n-data", "301"], "n_data: 300 -> 301"),
                            (["--seed", "1"], "data_sha256: ")]:  # other training data
        before = _tree(out)
        capsys.readouterr()
        assert fig2.main(flags + ["--resume"] + extra) == 2
        line = _one_error_line(capsys)
        assert expected in line and "drop --resume to retrain it" in line
        assert _tree(out) == before, extra
    assert fig2.main(flags + ["--resume"]) == 0
    assert json.loads((out / "metrics.json").read_text())["_meta"]["dae_reused"] is True
    assert (out / "table.md").read_text() == table  # the reused denoiser gives the same numbers
    dae = out / "dae.npz"
    dae.write_bytes(dae.read_bytes()[:300])
    capsys.readouterr()
    assert fig2.main(flags + ["--resume"]) == 2
    assert "{} is damaged".format(dae) in _one_error_line(capsys)
    assert fig2.main(flags) == 0  # without --resume: retrained (same seed, same denoiser)
    assert (out / "table.md").read_text() == table
    assert fig2.main(flags + ["--publish-docs"]) == 2
    assert "n_data: 20000 -> 300" in _one_error_line(capsys)


def _script_copy(tmp_path, stem):
    """reproduce/<stem>.{sh,py} in a scratch repository with a docs/images/ holding placeholders."""
    root = tmp_path / "repo"
    (root / "reproduce").mkdir(parents=True)
    for suffix in (".sh", ".py"):
        shutil.copy(REPRODUCE / (stem + suffix), root / "reproduce" / (stem + suffix))
    (root / "docs" / "images").mkdir(parents=True)
    for name in ("fig2.png", "fig2_table.md", "figS1.png", "figS1_final.png", "figS1_table.md"):
        (root / "docs" / "images" / name).write_bytes(b"committed")
    return root


@pytest.mark.parametrize("stem,flags", [("fig2", FIG2_FLAGS), ("figS1", FIGS1_FLAGS)])
def test_shell_scripts_write_only_under_their_output_folder(tmp_path, stem, flags):
    root = _script_copy(tmp_path, stem)
    before = _tree(root)
    real_docs = _tree(REPO / "docs" / "images")
    env = dict(os.environ, PYTHON=sys.executable, OUT=str(root / "out"), TF_CPP_MIN_LOG_LEVEL="3",
               OPENBLAS_NUM_THREADS="1")
    proc = subprocess.run(["bash", str(root / "reproduce" / (stem + ".sh"))] + flags, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    after = _tree(root)
    assert {k: v for k, v in after.items() if not k.startswith("out/")} == before
    assert "out/table.md" in after and "out/{}.png".format(stem) in after
    assert _tree(REPO / "docs" / "images") == real_docs
    if stem == "fig2":  # the opt-in away from the defaults: refused, nothing written anywhere
        proc = subprocess.run(["bash", str(root / "reproduce" / "fig2.sh")] + flags + ["--publish-docs"],
                              env=dict(env, OUT=str(root / "out2")), capture_output=True, text=True, timeout=600)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert proc.stderr.strip().splitlines()[-1].startswith("error: --publish-docs")
        assert _tree(root) == after


def test_figS1_seconds_include_a_resumed_runs_earlier_training(figS1, tmp_path, monkeypatch):
    """The table's seconds are the sampler's whole training time as its log records it (time_s, which goes
    on across --resume), plus the evaluation: a resumed run does not count only its last process."""
    from tfp_flows import ugan

    real = ugan.train_sampler

    def trained_for_1000_s_before(*args, **kwargs):
        result = real(*args, **kwargs)
        if not kwargs.get("check_only"):
            result.history[-1]["time_s"] += 1000.0  # as if earlier processes had trained that long
        return result
    monkeypatch.setattr(ugan, "train_sampler", trained_for_1000_s_before)  # figS1 looks it up at each call
    out = tmp_path / "s1"
    assert figS1.main(["--out", str(out)] + FIGS1_FLAGS) == 0
    seconds = [json.loads(p.read_text())["seconds"] for p in out.glob("*_ugan_*/quality.json")]
    assert seconds and all(1000.0 <= s < 1000.0 + 120 for s in seconds)
