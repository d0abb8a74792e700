"""reproduce/blr.py's result cache and output folders.

A cached result is served only to a run whose settings for that sampler are exactly those it was made
with; any change (steps, particle/chain/draw counts, --quick, learning rates, flow options, ...) recomputes
it. Damaged cache files are recomputed with a warning; old-format files are adopted only for the settings
the folder's config.json records. --quick has its own default folder and the log follows the output
folder. Most tests replace the samplers by a stub that records its calls (the caching logic is what is
tested); one runs the real NUTS and SVGD at toy sizes.
"""
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bs():
    spec = importlib.util.spec_from_file_location("blr_reproduce_under_test", ROOT / "reproduce" / "blr.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class StubSamplers:
    """Stands in for run_sampler: records every call; samples of the right shape drawn from a generator
    seeded by the settings' hash (so different settings give different numbers); NUTS reports an R-hat
    of ``rhat(settings)`` (default 1.0)."""

    def __init__(self, bs, rhat=None):
        self.bs = bs
        self.calls = []
        self.rhat = rhat or (lambda settings: 1.0)

    def __call__(self, settings, split):
        self.calls.append(settings)
        dim = split.x_train.shape[1] + 1
        rng = np.random.default_rng(int(self.bs.blr_cache.settings_digest(settings), 16))
        samples = 0.3 * rng.normal(size=self.bs.blr_cache.expected_shape(settings, dim))
        info = {}
        if settings["sampler"] == "nuts":
            info = dict(max_rhat=self.rhat(settings), min_ess=100.0, accept=0.9, divergences=0,
                        rhat_w_max=1.0, rhat_log_alpha=1.0)
        return samples, info

    def take(self):
        """Names of the samplers run since the last take (sorted), and their settings."""
        calls, self.calls = self.calls, []
        return sorted(c["sampler"] for c in calls), calls


@pytest.fixture
def stub(bs, monkeypatch):
    s = StubSamplers(bs)
    monkeypatch.setattr(bs, "run_sampler", s)
    return s


def _flags(out, *extra):
    return ["--out", str(out), "--datasets", "heart", "--seeds", "1", "--samplers", "svgd", "ugan",
            "--nuts-chains", "2", "--nuts-burnin", "3", "--nuts-draws", "5", "--nuts-retries", "0",
            "--svgd-particles", "6", "--svgd-steps", "3", "--ugan-steps", "3", "--n-samples", "20", *extra]


def _csv(out):
    """sampler -> its metrics in blr.csv (accuracy, log-lik, distances to NUTS; not the run time)."""
    rows = (out / "blr.csv").read_text().splitlines()
    return {r.split(",")[2]: r.split(",")[3:9] for r in rows[1:]}


# ------------------------------------------------------------------------------------ output folders
def test_quick_has_its_own_default_folder_and_out_still_wins(bs):
    assert bs.parse_args([]).out == "results/blr"
    assert bs.parse_args(["--quick"]).out == "results/blr_quick"
    assert bs.parse_args(["--quick", "--out", "elsewhere"]).out == "elsewhere"
    assert bs.parse_args(["--out", "elsewhere"]).out == "elsewhere"


def test_quick_run_and_its_log_stay_out_of_the_full_runs_folder(bs, stub, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert bs.main(["--quick", "--datasets", "heart", "--seeds", "1", "--samplers", "svgd"]) == 0
    quick = tmp_path / "results" / "blr_quick"
    assert (quick / "blr.md").is_file() and (quick / "config.json").is_file()
    assert not (tmp_path / "results" / "blr").exists()
    log = (quick / "run.log").read_text()
    assert "heart seed 0 svgd" in log and "wrote results/blr_quick/blr.md" in log
    # a second run appends to the same log
    assert bs.main(["--quick", "--datasets", "heart", "--seeds", "1", "--samplers", "svgd"]) == 0
    assert (quick / "run.log").read_text().count("wrote results/blr_quick/blr.md") == 2


def test_blr_sh_hands_everything_to_blr_py_and_writes_no_log_of_its_own(tmp_path):
    record = tmp_path / "argv.txt"
    fake = tmp_path / "fake_python"
    marker = "output of the fake blr.py {}".format(os.getpid())
    fake.write_text("#!/usr/bin/env bash\nprintf '%s\\n' \"$@\" > {}\necho '{}'\n".format(record, marker))
    fake.chmod(0o755)
    shared_log = ROOT / "results" / "blr" / "run.log"
    before = shared_log.stat().st_mtime_ns if shared_log.exists() else None
    env = dict(os.environ, PYTHON=str(fake))
    done = subprocess.run(["bash", str(ROOT / "reproduce" / "blr.sh"), "--quick", "--out", str(tmp_path / "o")],
                          check=True, env=env, timeout=60, capture_output=True, text=True)
    assert marker in done.stdout
    assert record.read_text().split("\n")[:4] == ["reproduce/blr.py", "--quick", "--out", str(tmp_path / "o")]
    assert (shared_log.stat().st_mtime_ns if shared_log.exists() else None) == before
    assert not (tmp_path / "o").exists()       # the folder and its run.log are blr.py's business


# ------------------------------------------------------------------------------------ cache identity
#: flag and value -> the samplers whose result it changes (on heart; the German encoding only on german)
ALL = {"nuts", "svgd", "svgd_collapsed", "direct_vi", "ugan", "ugan_linear", "ugan_sinusoidal"}
UGANS = {"ugan", "ugan_linear", "ugan_sinusoidal"}
CHANGES = [
    (["--svgd-steps", "7"], {"svgd", "svgd_collapsed"}),
    (["--svgd-particles", "9"], {"svgd", "svgd_collapsed"}),
    (["--svgd-step-size", "0.01"], {"svgd", "svgd_collapsed"}),
    (["--svgd-start", "prior"], {"svgd"}),
    (["--svgd-batch", "16"], {"svgd"}),
    (["--ugan-steps", "7"], UGANS),
    (["--vi-steps", "7"], {"direct_vi"}),
    (["--ugan-lr", "0.001"], UGANS),
    (["--vi-lr", "0.01"], {"direct_vi"}),
    (["--ugan-batch", "32"], UGANS | {"direct_vi"}),
    (["--ugan-options", '{"hidden_units": [8], "flow_blocks": 1}'], UGANS | {"direct_vi"}),
    (["--ugan-anneal", "lik"], {"ugan_linear", "ugan_sinusoidal"}),
    (["--ugan-lambda0", "0.3"], {"ugan_linear", "ugan_sinusoidal"}),
    (["--n-samples", "77"], UGANS | {"direct_vi"}),
    (["--nuts-chains", "3"], {"nuts"}),
    (["--nuts-burnin", "7"], {"nuts"}),
    (["--nuts-draws", "7"], {"nuts"}),
    (["--nuts-dtype", "float32"], {"nuts"}),
    (["--nuts-target-accept", "0.9"], {"nuts"}),
    (["--nuts-parametrisation", "centred"], {"nuts"}),
    (["--quick"], ALL),
    # not part of any result: how many retries may follow, when a retry is taken, where and what is written
    (["--nuts-retries", "0"], set()),
    (["--rhat-target", "1.05"], set()),
    (["--first-seed", "3", "--seeds", "1"], set()),
    (["--out", "elsewhere", "--report-only"], set()),
    (["--german-encoding", "onehot"], set()),
]


@pytest.mark.parametrize("change,affected", CHANGES, ids=[" ".join(c[0]) for c in CHANGES])
def test_each_setting_changes_the_cache_identity_of_exactly_the_samplers_it_affects(bs, tmp_path, change, affected):
    base, changed = bs.parse_args([]), bs.parse_args(change)
    for name in sorted(ALL):
        a, b = bs.sampler_settings(name, base, "heart", 0), bs.sampler_settings(name, changed, "heart", 0)
        if name in affected:
            assert a != b and bs.blr_cache.cache_path(tmp_path, a) != bs.blr_cache.cache_path(tmp_path, b), name
        else:
            assert a == b and bs.blr_cache.cache_path(tmp_path, a) == bs.blr_cache.cache_path(tmp_path, b), name


def test_german_encoding_and_split_identify_the_data(bs):
    base, onehot = bs.parse_args([]), bs.parse_args(["--german-encoding", "onehot"])
    for name in sorted(ALL):
        assert bs.sampler_settings(name, base, "german", 0) != bs.sampler_settings(name, onehot, "german", 0)
        assert bs.sampler_settings(name, base, "german", 0) != bs.sampler_settings(name, base, "german", 1)
        assert bs.sampler_settings(name, base, "german", 0) != bs.sampler_settings(name, base, "heart", 0)


def test_nuts_retries_have_their_own_identity(bs):
    args = bs.parse_args([])
    first, retry = (bs.sampler_settings("nuts", args, "sonar", 2, attempt=k)["options"] for k in (0, 1))
    assert (retry["burnin"], retry["draws"], retry["seed"]) == (2 * first["burnin"], 2 * first["draws"], 1002)
    with pytest.raises(ValueError, match="only NUTS has retry attempts"):
        bs.sampler_settings("svgd", args, "sonar", 2, attempt=1)


# ---------------------------------------------------------------------------------------- the cache
def test_same_settings_are_served_from_the_cache_and_each_changed_setting_is_recomputed(bs, stub, tmp_path):
    out = tmp_path / "blr"
    assert bs.main(_flags(out)) == 0
    assert stub.take()[0] == ["nuts", "svgd", "ugan"]
    first_csv = _csv(out)
    assert bs.main(_flags(out)) == 0
    assert stub.take()[0] == []                                    # everything from the cache
    assert _csv(out) == first_csv
    for extra, rerun in [(["--svgd-steps", "4"], ["svgd"]), (["--svgd-particles", "7"], ["svgd"]),
                         (["--ugan-steps", "4"], ["ugan"]), (["--n-samples", "21"], ["ugan"]),
                         (["--ugan-lr", "0.002"], ["ugan"]), (["--ugan-options", '{"flow_blocks": 1}'], ["ugan"]),
                         (["--nuts-chains", "3"], ["nuts"]), (["--nuts-draws", "6"], ["nuts"]),
                         (["--nuts-burnin", "4"], ["nuts"])]:
        assert bs.main(_flags(out, *extra)) == 0
        names, calls = stub.take()
        assert names == rerun, extra
        # the table and config.json describe the samples that were computed with these settings
        recorded = json.loads((out / "config.json").read_text())["config"]
        key = extra[0][2:].replace("-", "_")
        assert recorded[key] == json.loads(extra[1]) if key == "ugan_options" else str(recorded[key]) == extra[1]
        if rerun == ["svgd"]:
            assert calls[0]["options"][{"--svgd-steps": "steps", "--svgd-particles": "particles"}[extra[0]]] == int(extra[1])
        assert _csv(out)[rerun[0]] != first_csv[rerun[0]]
    # the first settings' files are all still there: going back is served from the cache
    assert bs.main(_flags(out)) == 0
    assert stub.take()[0] == []
    assert _csv(out) == first_csv


def test_quick_is_not_served_from_the_full_runs_cache(bs, stub, tmp_path):
    out = tmp_path / "shared"
    flags = ["--out", str(out), "--datasets", "heart", "--seeds", "1", "--samplers", "svgd", "direct_vi"]
    assert bs.main(flags) == 0
    assert stub.take()[0] == ["direct_vi", "nuts", "svgd"]
    assert bs.main(flags + ["--quick"]) == 0
    names, calls = stub.take()
    assert names == ["direct_vi", "nuts", "svgd"]
    options = {c["sampler"]: c["options"] for c in calls}
    assert options["svgd"]["steps"] == 300 and options["direct_vi"]["steps"] == 300
    assert (options["nuts"]["chains"], options["nuts"]["draws"]) == (4, 300)
    assert bs.main(flags + ["--quick"]) == 0 and stub.take()[0] == []
    assert bs.main(flags) == 0 and stub.take()[0] == []               # the full run's results were kept


def test_cache_file_stores_its_settings_and_results_round_trip(bs, stub, tmp_path):
    out = tmp_path / "blr"
    assert bs.main(_flags(out)) == 0
    _, calls = stub.take()
    args = bs.parse_args(_flags(out))
    settings = bs.sampler_settings("svgd", args, "heart", 0)
    assert settings in calls
    path = bs.blr_cache.cache_path(out / "cache", settings)
    assert re.fullmatch(r"heart_s0_svgd_[0-9a-f]{12}\.npz", path.name)
    with np.load(path) as f:
        assert json.loads(str(f["settings"])) == settings
        stored = f["samples"]
    want, _ = StubSamplers(bs)(settings, bs.uci.load_split("heart", 0))
    np.testing.assert_array_equal(stored, want)


def test_damaged_cache_file_is_recomputed_with_a_warning_and_replaced(bs, stub, tmp_path):
    out = tmp_path / "blr"
    assert bs.main(_flags(out)) == 0
    stub.take()
    path = bs.blr_cache.cache_path(out / "cache", bs.sampler_settings("svgd", bs.parse_args(_flags(out)), "heart", 0))
    with np.load(path) as f:
        good = f["samples"]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])                        # a truncated zip
    with pytest.raises(Exception, match="File is not a zip file"):  # what reading it used to give
        np.load(path)
    with pytest.warns(bs.blr_cache.CacheWarning, match=re.escape("damaged cache file {}".format(path)) + ".*recomputing"):
        assert bs.main(_flags(out)) == 0
    assert stub.take()[0] == ["svgd"]
    with np.load(path) as f:                                        # replaced by the recomputed result
        np.testing.assert_array_equal(f["samples"], good)
        assert "settings" in f.files
    assert not [p for p in (out / "cache").iterdir() if p.name.endswith(".tmp")]
    assert bs.main(_flags(out)) == 0 and stub.take()[0] == []       # and served from the cache again


def test_cache_file_with_other_settings_inside_is_recomputed(bs, stub, tmp_path):
    out = tmp_path / "blr"
    assert bs.main(_flags(out)) == 0
    stub.take()
    args = bs.parse_args(_flags(out))
    svgd_file = bs.blr_cache.cache_path(out / "cache", bs.sampler_settings("svgd", args, "heart", 0))
    other = bs.blr_cache.cache_path(out / "cache", bs.sampler_settings("ugan", args, "heart", 0))
    svgd_file.write_bytes(other.read_bytes())                       # e.g. a file copied by hand
    with pytest.warns(bs.blr_cache.CacheWarning, match=re.escape(str(svgd_file)) + " holds a result for other settings"):
        assert bs.main(_flags(out)) == 0
    assert stub.take()[0] == ["svgd"]


def test_report_only_warns_about_a_damaged_file_and_leaves_it_out(bs, stub, tmp_path):
    out = tmp_path / "blr"
    assert bs.main(_flags(out)) == 0
    stub.take()
    path = bs.blr_cache.cache_path(out / "cache", bs.sampler_settings("ugan", bs.parse_args(_flags(out)), "heart", 0))
    path.write_bytes(b"not a zip file")
    with pytest.warns(bs.blr_cache.CacheWarning, match=re.escape(str(path)) + ".*run without --report-only"):
        assert bs.main(_flags(out, "--report-only")) == 0
    assert stub.take()[0] == []
    assert sorted(_csv(out)) == ["nuts", "svgd"]
    # other settings in --report-only: refused, naming them (it reports the run config.json records)
    before = {name: (out / name).read_bytes() for name in ("blr.md", "blr.csv", "blr.png")}
    assert bs.main(_flags(out, "--report-only", "--svgd-steps", "9")) == 2
    assert stub.take()[0] == []
    assert {name: (out / name).read_bytes() for name in before} == before


# ------------------------------------------------------------------------------------- --report-only
def test_report_only_takes_the_settings_config_json_records(bs, stub, tmp_path, capsys):
    """A run with non-default flags, then --report-only with no flags but --out: the same table, nothing run."""
    out = tmp_path / "blr"
    assert bs.main(_flags(out)) == 0
    stub.take()
    table = (out / "blr.md").read_text()
    (out / "blr.md").unlink()
    assert bs.main(["--out", str(out), "--report-only"]) == 0
    assert stub.take()[0] == [] and (out / "blr.md").read_text() == table
    assert sorted(_csv(out)) == ["nuts", "svgd", "ugan"]
    # flags equal to the record may be given; others are refused, naming them, before anything is written
    assert bs.main(["--out", str(out), "--report-only", "--nuts-chains", "2", "--samplers", "svgd", "ugan"]) == 0
    capsys.readouterr()
    assert bs.main(["--out", str(out), "--report-only", "--nuts-chains", "4", "--svgd-steps", "9"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: --report-only reports the run that {} records".format(
        out / "config.json"))
    assert "--nuts-chains 2 -> 4, --svgd-steps 3 -> 9" in err and "run without --report-only" in err
    assert (out / "blr.md").read_text() == table


def test_report_only_without_matching_results_writes_nothing(bs, stub, tmp_path, capsys):
    out = tmp_path / "blr"
    assert bs.main(_flags(out)) == 0
    for f in (out / "cache").iterdir():
        f.unlink()
    before = {name: (out / name).read_bytes() for name in ("blr.md", "blr.csv", "blr.png")}
    capsys.readouterr()
    assert bs.main(["--out", str(out), "--report-only"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert err == ["error: {}: no result is cached for these settings, so blr.md, blr.csv and blr.png were left as "
                   "they were; run without --report-only to compute them".format(out / "cache")]
    assert {name: (out / name).read_bytes() for name in before} == before
    assert bs.main(["--out", str(tmp_path / "none"), "--report-only"]) == 2  # no run there at all
    assert "config.json does not exist" in capsys.readouterr().err and not (tmp_path / "none").exists()


def test_single_seed_tables_show_no_std(bs, stub, tmp_path):
    out = tmp_path / "blr"
    assert bs.main(_flags(out, "--samplers", "svgd", "ugan", "direct_vi")) == 0
    table = (out / "blr.md").read_text()
    assert "| heart | SVGD | " in table and "± n/a" in table and "± 0.000" not in table


# ----------------------------------------------------------------------- checks before anything runs
@pytest.mark.parametrize("extra,message", [
    (["--samplers", "ugan_linear", "--ugan-anneal", "ent", "--ugan-lambda0", "-1"],
     "error: --samplers ugan_linear (--ugan-anneal ent, --ugan-lambda0 -1.0): the linear schedule with lambda0=-1 "
     "reaches lambda=-1"),
    (["--samplers", "ugan", "--ugan-options", '{"hiden_units": [8]}'],
     "error: --ugan-options 'hiden_units' is not an option of tfp_flows.ugan.train_sampler (sampler ugan); use some "
     "of: "),
    (["--samplers", "direct_vi", "--ugan-options", '{"generator_hidden": [8]}'],
     "error: --ugan-options 'generator_hidden' is not an option of tfp_flows.ugan.train_direct_flow"),
    (["--samplers", "ugan", "--ugan-options", '{"hidden_units": [0]}'],
     "error: --samplers ugan: hidden_units must be a non-empty list of positive sizes"),
])
def test_flow_sampler_settings_are_checked_before_any_sampler_runs(bs, stub, tmp_path, capsys, extra, message):
    out = tmp_path / "blr"
    assert bs.main(_flags(out) + extra) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(message), err
    assert stub.take()[0] == [] and not out.exists()   # NUTS did not run first


def test_data_errors_are_one_line_before_the_folder_is_made(bs, stub, tmp_path, capsys):
    data = tmp_path / "uci"
    data.mkdir()
    for name in bs.uci.SHA256:
        (data / name).write_bytes((bs.uci.default_data_dir() / name).read_bytes())
    out = tmp_path / "blr"
    assert bs.main(_flags(out, "--data-dir", str(data))) == 0     # a good copy is used
    assert json.loads((out / "config.json").read_text())["config"]["data_dir"] == str(data)
    stub.take()
    heart = data / "heart.csv"
    heart.write_bytes(heart.read_bytes()[:2000])                  # truncated
    for data_dir, problem in ((data, "heart.csv is corrupted or was edited"), (tmp_path / "nowhere", "not found")):
        capsys.readouterr()
        assert bs.main(_flags(tmp_path / "new", "--data-dir", str(data_dir))) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: data set heart: UCI data file") and problem in err
        assert not (tmp_path / "new").exists() and stub.take()[0] == []
    assert "--data-dir" in err


def test_nuts_retry_is_cached_on_its_own_and_served_again(bs, monkeypatch, tmp_path):
    stub = StubSamplers(bs, rhat=lambda s: 1.2 if s["options"]["seed"] < 1000 else 1.001)
    monkeypatch.setattr(bs, "run_sampler", stub)
    out = tmp_path / "blr"
    flags = _flags(out, "--nuts-retries", "2", "--samplers", "svgd")
    assert bs.main(flags) == 0
    _, calls = stub.take()
    nuts = [c["options"] for c in calls if c["sampler"] == "nuts"]
    assert [(o["burnin"], o["draws"], o["seed"]) for o in nuts] == [(3, 5, 0), (6, 10, 1000)]
    assert "| heart | 0 | 1.0010 | 100 | 0 | 1.2000, 1.0010 |" in (out / "blr.md").read_text()
    assert bs.main(flags) == 0 and stub.take()[0] == []
    assert bs.main(flags + ["--nuts-draws", "6"]) == 0
    assert stub.take()[0] == ["nuts", "nuts"]


# ------------------------------------------------------------------------------------------- input
@pytest.mark.parametrize("argv,message", [
    (["--svgd-steps", "0"], "--svgd-steps must be at least 1, got 0"),
    (["--nuts-chains", "-2"], "--nuts-chains must be at least 1, got -2"),
    (["--nuts-retries", "-1"], "--nuts-retries must be 0 or more"),
    (["--ugan-lr", "0"], "--ugan-lr must be a positive number"),
    (["--nuts-target-accept", "1.5"], "--nuts-target-accept must lie strictly between 0 and 1"),
    (["--ugan-options", "[64, 64]"], "--ugan-options must be a JSON object such as"),
    (["--ugan-options", "{hidden"], "--ugan-options must be a JSON object"),
])
def test_bad_options_are_rejected_naming_the_option(bs, capsys, argv, message):
    with pytest.raises(SystemExit):
        bs.parse_args(argv)
    assert message in capsys.readouterr().err


def test_nuts_is_put_first_whatever_the_order_given(bs):
    assert bs.parse_args(["--samplers", "svgd", "nuts", "svgd"]).samplers == ["nuts", "svgd"]


# ----------------------------------------------------------------------------------- real samplers
def test_real_svgd_is_deterministic_in_its_settings_and_changes_with_them(bs):
    split = bs.uci.load_split("heart", 0)
    args = bs.parse_args(["--svgd-particles", "8", "--svgd-steps", "2"])
    a, _ = bs.run_sampler(bs.sampler_settings("svgd", args, "heart", 0), split)
    b, _ = bs.run_sampler(bs.sampler_settings("svgd", args, "heart", 0), split)
    c, _ = bs.run_sampler(bs.sampler_settings("svgd", bs.parse_args(["--svgd-particles", "8", "--svgd-steps", "3"]),
                                              "heart", 0), split)
    assert a.shape == (8, 15)
    np.testing.assert_array_equal(a, b)        # same settings, same result: what makes reuse sound
    assert np.max(np.abs(a - c)) > 1e-4        # one more step, another result


def test_end_to_end_with_real_nuts_and_svgd(bs, tmp_path):
    out = tmp_path / "blr"
    flags = ["--out", str(out), "--datasets", "heart", "--seeds", "1", "--samplers", "nuts", "svgd",
             "--nuts-chains", "2", "--nuts-burnin", "30", "--nuts-draws", "30", "--nuts-retries", "0",
             "--svgd-particles", "10", "--svgd-steps", "5"]
    assert bs.main(flags) == 0
    table = (out / "blr.md").read_text()
    assert "| heart | NUTS (reference) |" in table and "| heart | SVGD |" in table
    args = bs.parse_args(flags)
    files = [bs.blr_cache.cache_path(out / "cache", bs.sampler_settings(n, args, "heart", 0)) for n in ("nuts", "svgd")]
    stamps = [p.stat().st_mtime_ns for p in files]
    assert bs.main(flags) == 0                                      # all cached: nothing re-run
    assert [p.stat().st_mtime_ns for p in files] == stamps
    with np.load(files[0]) as f:
        assert f["samples"].shape == (2 * 30, 15) and np.all(np.isfinite(f["samples"]))


def test_ugan_comparisons_are_paired_intervals_with_holm_over_each_metric(bs):
    """U-GAN minus baseline per seed: a 95% t interval, the t-test's p Holm-corrected over the table's
    comparisons of that metric, and "no detectable difference" where the interval covers 0."""
    from scipy import stats

    accuracy = {"svgd": np.array([0.80, 0.81, 0.79, 0.82, 0.80]),
                "direct_vi": np.array([0.85, 0.84, 0.86, 0.85, 0.83])}
    accuracy["ugan"] = accuracy["direct_vi"] + np.array([0.001, -0.002, 0.0, 0.002, -0.001])
    rows = [dict(dataset="heart", seed=seed, sampler=name, test_accuracy=a, test_loglik=-0.4, prob_mae_vs_nuts=0.02)
            for name, values in accuracy.items() for seed, a in enumerate(values)]
    lines = bs._comparison(rows, ["heart"], [("ugan", "svgd"), ("ugan", "direct_vi")])
    assert len(lines) == 2 and all("(5 seeds)" in line for line in lines)
    p, interval = {}, {}
    for name in ("svgd", "direct_vi"):
        d = accuracy["ugan"] - accuracy[name]
        se = d.std(ddof=1) / np.sqrt(5)
        half = stats.t.ppf(0.975, 4) * se
        p[name], interval[name] = 2 * stats.t.sf(abs(d.mean() / se), 4), (d.mean() - half, d.mean() + half)
    small, large = sorted(p, key=p.get)
    holm = {small: min(1.0, 2 * p[small])}
    holm[large] = max(holm[small], min(1.0, p[large]))
    svgd, direct = (line.split(" | ") for line in lines)
    assert svgd[2] == "accuracy +0.042 [{:+.3f}, {:+.3f}], p {:.3f}: better".format(*interval["svgd"], holm["svgd"])
    assert direct[2] == "accuracy +0.000 [{:+.3f}, {:+.3f}], p {:.3f}: no detectable difference".format(
        *interval["direct_vi"], holm["direct_vi"])
    # the same test LL on every seed: a zero difference, no detectable difference
    assert svgd[3] == "test LL +0.000 [+0.000, +0.000], p 1.000: no detectable difference"


def test_annealing_is_its_own_family_of_paired_comparisons(bs):
    """Each annealed U-GAN against the plain one (Holm over that family only); the baselines' family unchanged."""
    families = list(bs.contrasts(bs.SAMPLERS).values())
    assert families[0] == [(u, b) for u in ("ugan", "ugan_linear", "ugan_sinusoidal")
                           for b in ("svgd", "svgd_collapsed", "direct_vi")]
    assert families[1] == [("ugan_linear", "ugan"), ("ugan_sinusoidal", "ugan")]
    assert list(bs.contrasts(("nuts", "svgd", "ugan_linear")).values()) == [[("ugan_linear", "svgd")], []]
