"""Score a finished training run: ``python -m chainer_va.evaluate RUN_DIR [--scorer inception|classifier]``.

Loads ``RUN_DIR/gen_final.npz`` through :func:`chainer_va.train.load_generator`, computes the Inception
Score and FID (SPEC section 5; chainer-gan-lib's protocol) against the training images of the run's own
data set (``--reference`` for another) and writes ``RUN_DIR/metrics.json`` atomically, with the settings the
numbers depend on; an existing one with the same settings is reused (``--force`` recomputes).
``--scorer classifier``: the offline MNIST classifier of ``reproduce/table1.sh --quick``, NOT comparable
with the paper. Bad settings or a missing run print one line ``error: ...`` and exit with status 2, a
damaged snapshot with 1 (:mod:`va_core.errors`, as every command).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import List, Optional

from chainer_va import compat  # noqa: F401  (must precede chainer)

from chainer_va.device import add_device_argument, get_device
from va_core import cli_checks, errors
from chainer_va.metrics import evaluation, scores

METRICS_FILE = "metrics.json"
SCORERS = ("inception", "classifier")


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m chainer_va.evaluate RUN_DIR``."""
    parser = cli_checks.OneLineParser(prog="python -m chainer_va.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--scorer", choices=SCORERS, default="inception")
    parser.add_argument("--n-is", type=int, default=evaluation.IS_SAMPLES, help="IS samples (50000)")
    parser.add_argument("--n-fid", type=int, default=evaluation.FID_SAMPLES, help="FID samples (10000)")
    parser.add_argument("--splits", type=int, default=scores.IS_SPLITS, help="IS splits (10)")
    parser.add_argument("--fid-chunk", type=int, default=None,
                        help="FID as the mean over chunks of this many samples (default: one FID over --n-fid); the "
                             "quick and study tables use 500, the size of MNIST-5k's held-out real digits")
    parser.add_argument("--batchsize", type=int, default=evaluation.EVAL_BATCHSIZE)
    parser.add_argument("--reference", default=None,
                        help="FID reference data set (default: the run's own training data set)")
    parser.add_argument("--data-dir", default=None, help="folder of the reference data set")
    parser.add_argument("--weights", default=None,
                        help="converted Inception .npz (default: download/convert); --scorer inception only")
    parser.add_argument("--seed", type=int, default=0, help="seed of the evaluation latents (0)")
    parser.add_argument("--force", action="store_true", help="recompute even if metrics.json matches")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_device_argument(parser)
    return parser


def evaluate_run(run_dir, scorer: str = "inception", n_is: int = evaluation.IS_SAMPLES,
                 n_fid: int = evaluation.FID_SAMPLES, splits: int = scores.IS_SPLITS,
                 batchsize: int = evaluation.EVAL_BATCHSIZE, reference: Optional[str] = None, data_dir=None,
                 weights=None, seed: int = 0, device="-1", force: bool = False, progress: bool = True,
                 classifier_overrides: Optional[dict] = None, fid_chunk: Optional[int] = None) -> dict:
    """IS and FID of a finished run's generator; written to ``run_dir/metrics.json`` and returned.

    ``classifier_overrides`` change the quick-mode classifier's training settings
    (:data:`chainer_va.metrics.classifier.CLASSIFIER_DEFAULTS`), e.g. fewer epochs in tests.
    """
    from va_core import download
    from chainer_va.train import GEN_FINAL, load_generator

    check_settings(scorer, n_is, n_fid, splits, batchsize, weights, fid_chunk)
    run_dir = Path(run_dir)
    gen, config = load_generator(run_dir)
    channels = int(gen.out_channels)
    size = int(gen.size)
    trained_on = config.get("dataset", "mnist5k")
    if reference is None:  # FID against the training set of the run's own data set
        if str(trained_on).endswith(".npy"):
            raise ValueError("the run in {} was trained on the file {}: pass --reference with the data set "
                             "whose statistics FID should use (e.g. cifar10)".format(run_dir, trained_on))
        reference = trained_on
    data_dir = data_dir or config.get("data_dir")
    # what the numbers depend on: a metrics.json with other values is recomputed
    settings = {"scorer": scorer, "n_is": n_is, "n_fid": n_fid, "splits": splits, "fid_chunk": fid_chunk,
                "reference": reference,
                "seed": seed, "weights": None if weights is None else str(weights), "data_dir": data_dir,
                "classifier_overrides": classifier_overrides or None,
                "classifier": classifier_id(classifier_overrides) if scorer == "classifier" else None,
                "generator_sha256": download.sha256_of(run_dir / GEN_FINAL)}
    target = run_dir / METRICS_FILE
    previous = json.loads(target.read_text()) if target.is_file() else None
    same = previous is not None and all(previous.get(k) == v for k, v in settings.items())
    if same and not force:
        return previous
    images = reference if str(trained_on).endswith(".npy") else trained_on  # what the samples should look like
    for warning in sample_warnings(scorer, n_fid, images, classifier_overrides):
        print("warning: " + warning, file=sys.stderr)
    dev = get_device(device)
    gen.to_device(dev)
    if scorer == "inception":
        try:
            fid_extractor = evaluation.InceptionExtractor(device=dev, resize="tf", weights=weights,
                                                          batchsize=batchsize)
        except download.DownloadError as e:
            raise download.DownloadError("{}\nOffline, an MNIST-like run can be scored with --scorer classifier (a small "
                                         "classifier trained on the bundled MNIST-5k; not comparable with the "
                                         "paper).".format(e)) from e
        is_extractor = evaluation.InceptionExtractor(device=dev, resize="align_corners", batchsize=batchsize,
                                                     model=fid_extractor.model)
    else:
        from chainer_va.metrics.classifier import ClassifierExtractor, load_or_train

        model, info = load_or_train(progress=progress, **(classifier_overrides or {}))
        is_extractor = fid_extractor = ClassifierExtractor(model, info, device=dev)
    ref = evaluation.reference_statistics(reference, fid_extractor, data_dir=data_dir, channels=channels, size=size,
                                          batchsize=batchsize, progress=progress)
    result = evaluation.evaluate_generator(gen, is_extractor, fid_extractor, ref, n_is=n_is, n_fid=n_fid,
                                           splits=splits, batchsize=batchsize, seed=seed, progress=progress,
                                           fid_chunk=fid_chunk)
    result.update(settings)
    result["comparable_with_paper"] = bool(getattr(fid_extractor, "comparable_with_paper", False))
    result["run_config"] = {k: config.get(k) for k in ("objective", "anneal", "schedule", "lambda0", "seed",
                                                       "iterations", "dataset", "width")}
    if previous is not None and not same:  # scores made with other settings are kept, not overwritten
        kept = run_dir / "metrics_{}.json".format(hashlib.sha256(json.dumps(
            {k: previous.get(k) for k in settings}, sort_keys=True, default=str).encode()).hexdigest()[:10])
        os.replace(target, kept)
        print("note: the earlier {} (other settings) is kept as {}".format(METRICS_FILE, kept.name), file=sys.stderr)
    evaluation.write_metrics(target, result)
    return result


def classifier_id(overrides: Optional[dict] = None) -> str:
    """The quick scorer's identity: its cached file's name, a digest of every training setting (a scorer
    trained with other settings, or another network, gives scores that must not be reused)."""
    from chainer_va.metrics import classifier

    return classifier._cache_path(dict(classifier.CLASSIFIER_DEFAULTS, **(overrides or {}))).stem


def check_settings(scorer: str, n_is: int, n_fid: int, splits: int, batchsize: int,
                   weights: Optional[str] = None, fid_chunk: Optional[int] = None) -> None:
    """Raise ValueError, naming the flag and its fix, for settings that cannot give a score."""
    if fid_chunk is not None and (fid_chunk < 2 or n_fid % fid_chunk):
        raise ValueError("--fid-chunk {} must be at least 2 and divide --n-fid {} (e.g. --n-fid 5000 --fid-chunk "
                         "500)".format(fid_chunk, n_fid))
    if scorer not in SCORERS:
        raise ValueError("--scorer {!r}: choose one of {}".format(scorer, ", ".join(SCORERS)))
    if splits < 1:
        raise ValueError("--splits must be a positive integer, got {} (default {})".format(splits, scores.IS_SPLITS))
    if n_is < splits:
        raise ValueError("--n-is must be at least --splits ({}) samples, got {} (default {})".format(
            splits, n_is, evaluation.IS_SAMPLES))
    if n_fid < 2:
        raise ValueError("--n-fid must be at least 2 samples (FID needs their covariance), got {} (default {})".format(
            n_fid, evaluation.FID_SAMPLES))
    if batchsize < 1:
        raise ValueError("--batchsize must be a positive integer, got {} (default {})".format(
            batchsize, evaluation.EVAL_BATCHSIZE))
    if weights is not None and scorer != "inception":
        raise ValueError("--weights {} is the Inception port's weights, which --scorer {} does not use: drop --weights, "
                         "or pass --scorer inception".format(weights, scorer))
    if weights is not None and not Path(weights).is_file():
        raise ValueError("--weights {}: no such file; give the .npz written by `python -m "
                         "chainer_va.metrics.convert`, or drop --weights to download and convert it".format(weights))


def sample_warnings(scorer: str, n_fid: int, dataset: str, classifier_overrides: Optional[dict] = None) -> List[str]:
    """Warnings about scores that will mean little: the classifier scorer on images it was not trained on,
    and FID from fewer samples than feature dimensions (a singular covariance)."""
    from chainer_va.metrics import architecture, classifier

    notes = []
    if scorer == "classifier":
        note = classifier.domain_warning(dataset, classifier_overrides)
        notes += [note] if note else []
        dim = dict(classifier.CLASSIFIER_DEFAULTS, **(classifier_overrides or {}))["hidden"]
    else:
        dim = architecture.POOL3_DIM
    if n_fid <= dim:
        notes.append("FID from {} samples of {}-d features: fewer samples than dimensions make their covariance "
                     "singular and the FID biased; use --n-fid above {} (default {})".format(
                         n_fid, dim, dim, evaluation.FID_SAMPLES))
    return notes


def main(argv: Optional[List[str]] = None) -> int:
    """Score a run folder's generator (IS and FID, SPEC section 5); one-line errors (:mod:`va_core.errors`)."""
    args = build_parser().parse_args(argv)
    try:
        result = evaluate_run(args.run_dir, args.scorer, n_is=args.n_is, n_fid=args.n_fid, splits=args.splits,
                              batchsize=args.batchsize, reference=args.reference, data_dir=args.data_dir,
                              weights=args.weights, seed=args.seed, device=args.device, force=args.force,
                              progress=not args.quiet, fid_chunk=args.fid_chunk)
    except errors.RunError as exc:
        return errors.report(exc)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:  # bad settings, no run
        return errors.report(errors.UsageError(str(exc)))
    print("IS {:.3f} ± {:.3f}  FID {:.2f}  ({})".format(result["IS"], result["IS_std"], result["FID"],
                                                        result["is_extractor"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
