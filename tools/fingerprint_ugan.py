"""Fingerprint of small U-GAN and direct-flow runs (samples, logs without times): python tools/fingerprint_ugan.py OUT.

Used by tools/same_numbers.sh to show that a change leaves the numbers alone."""
import hashlib, json, sys, shutil
from pathlib import Path
import numpy as np
from tfp_flows import targets, ugan
out = Path(sys.argv[1]); shutil.rmtree(out, ignore_errors=True)
small = dict(hidden_units=(16, 16), flow_blocks=2, batch_size=64, snapshot_size=200, log_every=10, checkpoint_every=20)
ld = targets.gaussian(np.array([1.0, -1.0]), 1.5).log_density
h = hashlib.sha256()
r = ugan.train_sampler(ld, 2, anneal="ent", schedule="linear", lambda0=0.5, steps=50, seed=3, out=out / "a",
                       generator_hidden=(16, 16), snapshot_steps=(0, 30), lr_final_fraction=0.5, **small)
direct = dict(steps=40, seed=4, out=out / "b", anneal="lik", schedule="static", lambda0=-0.3, **small)


def stop_at_30(row):
    if row["step"] == 30:
        raise KeyboardInterrupt


try:  # stopped after logging step 30 (checkpoint at 20), then resumed
    ugan.train_direct_flow(ld, 2, callback=stop_at_30, **direct)
except KeyboardInterrupt:
    pass
r2 = ugan.train_direct_flow(ld, 2, resume=True, **direct)
for p in sorted(out.rglob("*.npy")):
    h.update(p.read_bytes())
for p in sorted(out.rglob("log.jsonl")):
    for line in p.read_text().splitlines():
        row = json.loads(line); row.pop("time_s", None); h.update(json.dumps(row, sort_keys=True).encode())
for res in (r, r2):
    h.update(res.sample(100, seed=1).tobytes())
    for row in res.history:
        row = dict(row); row.pop("time_s", None); h.update(json.dumps(row, sort_keys=True).encode())
print("fingerprint", h.hexdigest())
