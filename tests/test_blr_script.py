"""reproduce/blr.py end to end at toy sizes: tables written, results cached, NUTS and SVGD caches keyed by their settings."""
import importlib.util
import sys
from pathlib import Path

import pytest

REPRODUCE = Path(__file__).resolve().parents[1] / "reproduce"


@pytest.fixture(scope="module")
def blr_script():
    spec = importlib.util.spec_from_file_location("blr_script", REPRODUCE / "blr.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_blr_script_writes_tables_caches_runs_and_keys_nuts_by_its_settings(blr_script, tmp_path):
    out = tmp_path / "blr"
    flags = ["--out", str(out), "--datasets", "heart", "--seeds", "1", "--samplers", "nuts", "svgd",
             "--nuts-chains", "2", "--nuts-burnin", "30", "--nuts-draws", "30", "--nuts-retries", "0",
             "--svgd-particles", "10", "--svgd-steps", "5", "--n-samples", "40"]
    assert blr_script.main(flags) == 0
    table = (out / "blr.md").read_text()
    assert "| heart | NUTS (reference) |" in table and "| heart | SVGD |" in table
    csv_rows = (out / "blr.csv").read_text().splitlines()
    assert len(csv_rows) == 1 + 2 and csv_rows[0].startswith("dataset,seed,sampler,test_accuracy")
    nuts_file = out / "cache" / "heart_s0_nuts_noncentred_ta0.95_float64.npz"
    svgd_file = out / "cache" / "heart_s0_svgd_liu_wang.npz"
    assert nuts_file.is_file() and svgd_file.is_file()
    stamps = {p: p.stat().st_mtime_ns for p in (nuts_file, svgd_file)}
    assert blr_script.main(flags) == 0                     # everything cached: nothing re-run
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert blr_script.main(flags + ["--nuts-dtype", "float32", "--nuts-target-accept", "0.9"]) == 0
    assert (out / "cache" / "heart_s0_nuts_noncentred_ta0.9.npz").is_file()   # other settings, other file
    assert svgd_file.stat().st_mtime_ns == stamps[svgd_file]
    assert blr_script.main(flags + ["--svgd-start", "prior"]) == 0
    assert (out / "cache" / "heart_s0_svgd_prior.npz").is_file()                # SVGD's start keys its file
