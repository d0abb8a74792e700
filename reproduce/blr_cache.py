"""reproduce/blr.py's result cache: one .npz per sampler result, named and checked by the full settings that
made it (a changed setting is a new file, never a stale hit), written atomically.
"""
from __future__ import annotations

import hashlib
import io
import json
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from va_core.runinfo import atomic_write_bytes, one_line

#: Version of the cache files' identity (format-1 files, named without a settings hash, are not read).
CACHE_FORMAT = 2


class CacheWarning(UserWarning):
    """A cache file could not be used (damaged, or made with other settings) and is recomputed."""


def canonical_json(obj) -> str:
    """JSON text with sorted keys and no spaces: equal settings give equal text (and equal hashes)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def settings_digest(settings: dict) -> str:
    """Short (12 hex digits) SHA-256 of the canonical JSON of ``settings``."""
    return hashlib.sha256(canonical_json(settings).encode("utf-8")).hexdigest()[:12]


def cache_path(cache: Path, settings: dict, attempt: int = 0) -> Path:
    """File of one cached result: ``<set>_s<seed>_<sampler>[_retry<k>]_<digest>.npz`` in ``cache``."""
    data = settings["data"]
    return Path(cache) / "{}_s{}_{}{}_{}.npz".format(data["dataset"], data["split_seed"], settings["sampler"],
                                                     "_retry{}".format(attempt) if attempt else "",
                                                     settings_digest(settings))


def expected_shape(settings: dict, dim: int) -> tuple[int, int]:
    """Shape of the samples a sampler with these settings returns, for a posterior of dimension ``dim``."""
    o = settings["options"]
    name = settings["sampler"]
    if name == "nuts":
        return o["chains"] * o["draws"], dim
    if name in ("svgd", "svgd_collapsed"):
        return o["particles"], dim
    return o["n_samples"], dim


@dataclass
class CachedResult:
    """One sampler's result on one split: samples (n, D+1), info dict, run time; from_cache if loaded."""

    samples: np.ndarray
    info: dict
    seconds: float
    from_cache: bool = False


def _read_npz(path: Path) -> tuple[np.ndarray, dict, float, dict | None]:
    with np.load(path, allow_pickle=False) as f:
        stored = json.loads(str(f["settings"])) if "settings" in f.files else None
        return np.array(f["samples"]), json.loads(str(f["info"])), float(f["seconds"]), stored


#: What reading a damaged .npz can raise (truncated zip, bad member, unparsable JSON, missing array).
_DAMAGED = (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError)


def load_cached(path: Path, settings: dict, dim: int, report_only: bool = False) -> CachedResult | None:
    """The result cached in ``path`` if it holds exactly ``settings`` with samples of the expected shape, else
    None; a file that is damaged or holds anything else also gives a :class:`CacheWarning` naming it."""
    if not path.exists():
        return None
    action = ("not used (run without --report-only to recompute it)" if report_only
              else "recomputing it; the file will be replaced")
    try:
        samples, info, seconds, stored = _read_npz(path)
    except _DAMAGED as exc:
        warnings.warn(CacheWarning("damaged cache file {} ({}): {}".format(path, one_line(exc), action)),
                      stacklevel=2)
        return None
    if stored != settings:
        warnings.warn(CacheWarning("cache file {} holds a result for other settings ({}; this run: {}): {}".format(
            path, canonical_json(stored) if stored is not None else "none recorded", canonical_json(settings),
            action)), stacklevel=2)
        return None
    want = expected_shape(settings, dim)
    if samples.shape != want:
        warnings.warn(CacheWarning("cache file {} holds samples of shape {}, expected {}: {}".format(
            path, samples.shape, want, action)), stacklevel=2)
        return None
    return CachedResult(samples, info, seconds, from_cache=True)


def store_result(path: Path, settings: dict, result: CachedResult) -> Path:
    """Write one result with its full settings to ``path`` atomically (a reader never sees half a file)."""
    buf = io.BytesIO()
    np.savez(buf, samples=result.samples, info=json.dumps(result.info), seconds=result.seconds,
             settings=canonical_json(settings))
    return atomic_write_bytes(path, buf.getvalue())
