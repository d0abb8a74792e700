"""Fingerprint of two tiny RL runs, each stopped at step 60 and resumed: python tools/fingerprint_rl.py OUT.

The MAF and SVGD agents; episodes.csv and eval.csv without wall times. Used by tools/same_numbers.sh."""
import csv, hashlib, shutil, sys
from pathlib import Path
from rl import train as rl_train
TINY = ["--env", "Swimmer-v5", "--steps", "100", "--max-episode-steps", "20", "--start-steps", "30",
        "--batch-size", "8", "--hidden", "8", "--maf-hidden", "8", "--maf-blocks", "2", "--particles", "4",
        "--value-samples", "4", "--eval-every", "50", "--eval-episodes", "1", "--checkpoint-every", "30",
        "--progress-every", "10", "--target-update", "5", "--seed", "3"]
root = Path(sys.argv[1]); shutil.rmtree(root, ignore_errors=True)
h = hashlib.sha256()
for name, extra in (("a", []), ("b", ["--agent", "svgd"])):
    out = root / name
    assert rl_train.cli(TINY + extra + ["--out", str(out), "--stop-at", "60"]) == 0
    assert rl_train.cli(TINY + extra + ["--out", str(out), "--resume"]) == 0
    h.update((out / "episodes.csv").read_bytes())
    with open(out / "eval.csv") as f:
        for r in csv.DictReader(f):
            r.pop("wall_seconds", None); h.update(repr(sorted(r.items())).encode())
print("fingerprint", h.hexdigest())
