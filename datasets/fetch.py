"""Download and verify an image data set into the cache (a script, not a package).

    python datasets/fetch.py cifar10 [--data-dir DIR]
    python datasets/fetch.py mnist | fashion-mnist [--data-dir DIR] [--split train|test]
    python datasets/fetch.py mnist5k       # checks the bundled copy
    python datasets/fetch.py celeba        # cannot download (Google Drive): says where to put it

Downloads go to ROOT/<name>/, ROOT being --data-dir, else $CHAINER_VA_DATA or ~/.cache/chainer_va; a
file already in ROOT/<name>/ or ROOT/ is checked, not downloaded again (the places
``chainer_va.data.load_images`` reads). Every file is checked against its published sha256 before it
is kept; offline, the error says which file to place where.
"""
from __future__ import annotations

import argparse
import sys

from chainer_va import data  # project package first (compat layer)
from va_core.download import DownloadError, sha256_of


def main(argv: list[str] | None = None) -> int:
    """``python datasets/fetch.py NAME``: download and checksum a data set into the data cache."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=data.DATASETS + ("all",),
                        help="data set to fetch ('all' = every downloadable one)")
    parser.add_argument("--data-dir", default=None,
                        help="folder to download into / check (default: the cache)")
    parser.add_argument("--split", choices=data.SPLITS, action="append", default=None,
                        help="mnist/fashion-mnist split(s) to fetch (default: both)")
    args = parser.parse_args(argv)
    names = ("cifar10", "mnist", "fashion-mnist", "mnist5k") if args.name == "all" else (args.name,)
    status = 0
    for name in names:
        try:
            paths = data.fetch_dataset(name, args.data_dir, splits=args.split or data.SPLITS)
        except (data.DataError, DownloadError, FileNotFoundError) as exc:
            print("{}: FAILED\n  {}".format(name, exc), file=sys.stderr)
            status = 1
            continue
        for path in paths:
            if path.is_dir():
                print("{}: OK {} ({} JPEGs)".format(name, path, sum(1 for _ in path.glob("*.jpg"))))
            else:
                print("{}: OK {} sha256 {}".format(name, path, sha256_of(path)))
    return status


if __name__ == "__main__":
    sys.exit(main())
