"""reproduce/blr.py's result cache: one .npz per sampler result, named and checked by the full settings that
made it (a changed setting is a new file, never a stale hit), written atomically; and the adoption of the
cache files of format 1, which held no settings.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from va_core.runinfo import atomic_write_bytes

#: Version of the cache files' identity; files of an older version are adopted by migrate_legacy_cache.
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
    """The result cached in ``path`` if it holds exactly ``settings`` with samples of the expected shape.

    None if there is no file. A file that cannot be read, holds other settings (or none) or samples of
    another shape gives a :class:`CacheWarning` naming it and None: the caller recomputes the result and
    replaces the file (with ``report_only`` nothing is recomputed, and the warning says so)."""
    if not path.exists():
        return None
    action = ("not used (run without --report-only to recompute it)" if report_only
              else "recomputing it; the file will be replaced")
    try:
        samples, info, seconds, stored = _read_npz(path)
    except _DAMAGED as exc:
        warnings.warn(CacheWarning("damaged cache file {} ({}: {}): {}".format(
            path, type(exc).__name__, exc, action)), stacklevel=2)
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


def store_result(path: Path, settings: dict, result: CachedResult, adopted_from: str | None = None) -> Path:
    """Write one result with its full settings to ``path`` atomically (a reader never sees half a file)."""
    buf = io.BytesIO()
    extra = {} if adopted_from is None else {"adopted_from": adopted_from}
    np.savez(buf, samples=result.samples, info=json.dumps(result.info), seconds=result.seconds,
             settings=canonical_json(settings), **extra)
    return atomic_write_bytes(path, buf.getvalue())


def legacy_cache_name(name: str, cfg, dataset: str, seed: int, attempt: int = 0) -> str:
    """The file name that this script gave a cached result before :data:`CACHE_FORMAT` 2, when the name
    held only the data set, seed, sampler and (NUTS, SVGD) a few options."""
    retry = "_retry{}".format(attempt) if attempt else ""
    if name == "nuts":
        if (cfg.nuts_parametrisation == "noncentred" and cfg.nuts_target_accept == 0.8
                and cfg.nuts_dtype == "float32"):
            tag = ""
        else:
            tag = "_{}_ta{:g}{}".format(cfg.nuts_parametrisation, cfg.nuts_target_accept,
                                        "" if cfg.nuts_dtype == "float32" else "_" + cfg.nuts_dtype)
        return "{}_s{}_nuts{}{}.npz".format(dataset, seed, tag, retry)
    if name == "svgd":
        return "{}_s{}_svgd_{}.npz".format(dataset, seed, cfg.svgd_start)
    return "{}_s{}_{}.npz".format(dataset, seed, name)


def migrate_legacy_cache(out: Path, settings_of, dim_of, log=print) -> int:
    """Adopt the format-1 cache files in ``out/cache`` for the settings that ``out/config.json`` records.

    Format-1 files (no settings inside; named by :func:`legacy_cache_name`) were reused by any later run
    whatever its settings, and that run's settings were written to config.json. So only the files the
    last format-1 run (whose config.json is still there) would have read are adopted, for that run's
    settings, and only if their samples have the shape those settings give (sample, particle and draw
    counts); steps and learning rates cannot be checked from a file and are taken from config.json.
    Each adopted result is written as a new format-2 file (``adopted_from`` inside names the old one);
    the old files stay. Nothing happens when config.json is missing or was written by format 2 or later.
    ``settings_of(name, cfg_namespace, dataset, seed, attempt)``: a sampler's settings (``blr.sampler_settings``);
    ``dim_of(dataset, seed, settings)``: the posterior's dimension. Returns the number of files adopted."""
    out = Path(out)
    cache = out / "cache"
    config_file = out / "config.json"
    if not config_file.is_file() or not cache.is_dir():
        return 0
    try:
        cfg = json.loads(config_file.read_text())["config"]
        if int(cfg.get("cache_format", 1)) >= CACHE_FORMAT:
            return 0
        ns = argparse.Namespace(**cfg)
        seeds = cfg.get("seed_list") or list(range(cfg["first_seed"], cfg["first_seed"] + cfg["seeds"]))
        plan = []
        for ds in cfg["datasets"]:
            for seed in seeds:
                for name in cfg["samplers"]:
                    for k in range(int(cfg["nuts_retries"]) + 1 if name == "nuts" else 1):
                        plan.append((ds, seed, name, k, legacy_cache_name(name, ns, ds, seed, k),
                                     settings_of(name, ns, ds, seed, k)))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        warnings.warn(CacheWarning("cannot read the settings of the old cache files from {} ({}: {}): they are "
                                   "not reused".format(config_file, type(exc).__name__, exc)), stacklevel=2)
        return 0
    adopted = skipped = 0
    for ds, seed, name, k, legacy_name, settings in plan:
        legacy, target = cache / legacy_name, cache_path(cache, settings, k)
        if not legacy.is_file() or target.exists():
            continue
        dim = dim_of(ds, seed, settings)
        try:
            samples, info, seconds, _ = _read_npz(legacy)
        except _DAMAGED as exc:
            warnings.warn(CacheWarning("damaged old cache file {} ({}: {}): not adopted".format(
                legacy, type(exc).__name__, exc)), stacklevel=2)
            skipped += 1
            continue
        want = expected_shape(settings, dim)
        if samples.shape != want:
            warnings.warn(CacheWarning("old cache file {} holds samples of shape {}, but the settings {} records "
                                       "give {}: not adopted".format(legacy, samples.shape, config_file, want)),
                          stacklevel=2)
            skipped += 1
            continue
        store_result(target, settings, CachedResult(samples, info, seconds), adopted_from=legacy_name)
        adopted += 1
    if adopted or skipped:
        log("cache: adopted {} old-format files for the settings {} records ({} not adopted); the old files "
            "are kept".format(adopted, config_file, skipped))
    return adopted
