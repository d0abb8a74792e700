"""Check every file bundled in datasets/ against its sha256 (a script, not a package).

    python datasets/verify.py [--root DIR] [--strict]

The digests live in ``sha256sum``-format files named SHA256SUMS: ``datasets/SHA256SUMS`` (paths
relative to datasets/) and any ``datasets/<folder>/SHA256SUMS`` (paths relative to that folder), so a
sub-folder such as ``uci/`` can carry its own list. Exit 1 when a listed file is missing or has another
sha256. Data files that no list names are reported; with --strict they are failures too.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from va_core.download import sha256_of  # project package first (compat layer)

CHECKSUMS = "SHA256SUMS"
NOT_DATA = {"README.md", CHECKSUMS, "fetch.py", "verify.py"}


def read_checksums(path: Path) -> dict[str, str]:
    """``{path relative to path's folder: sha256}`` from a ``sha256sum`` file (blank/# lines skipped)."""
    listed = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        digest, _, name = line.partition(" ")
        name = name.strip().lstrip("*")
        if len(digest) != 64 or not name:
            raise ValueError("{}:{}: expected '<sha256>  <path>', got {!r}".format(path, number, line))
        listed[name] = digest.lower()
    return listed


def verify(root: Path) -> tuple[list[str], list[str]]:
    """``(problems, unlisted)`` under ``root``: problems are missing or mismatching listed files;
    unlisted are data files that no SHA256SUMS names. Prints one OK line per verified file."""
    problems, listed = [], {}
    lists = sorted(root.rglob(CHECKSUMS))
    if not lists:
        return ["no {} under {}".format(CHECKSUMS, root)], []
    for checksums in lists:
        folder = checksums.parent
        for name, digest in read_checksums(checksums).items():
            listed[(folder / name).relative_to(root).as_posix()] = (digest, checksums.relative_to(root))
    for rel, (digest, source) in sorted(listed.items()):
        path = root / rel
        if not path.is_file():
            problems.append("{}: missing (listed in {}; restore it with `git checkout -- datasets/{}`)"
                            .format(rel, source, rel))
            continue
        actual = sha256_of(path)
        if actual != digest:
            problems.append("{}: sha256 {} != {} listed in {} (corrupted or replaced; restore it with "
                            "`git checkout -- datasets/{}`)".format(rel, actual, digest, source, rel))
        else:
            print("OK  {}  {}".format(digest, rel))
    unlisted = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if (path.is_file() and rel not in listed and path.name not in NOT_DATA and path.suffix != ".py"
                and "__pycache__" not in path.parts and not path.name.startswith(".")):
            unlisted.append(rel)
    return problems, unlisted


def main(argv: list[str] | None = None) -> int:
    """``python datasets/verify.py``: check the bundled files against every SHA256SUMS list under ``--root``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent,
                        help="folder to check (default: this datasets/ folder)")
    parser.add_argument("--strict", action="store_true", help="unlisted data files are failures too")
    args = parser.parse_args(argv)
    problems, unlisted = verify(args.root)
    for rel in unlisted:
        print("{} {}: not listed in any {} (add its line: cd datasets && sha256sum {} >> {})".format(
            "FAIL" if args.strict else "WARN", rel, CHECKSUMS, rel, CHECKSUMS), file=sys.stderr)
    for problem in problems:
        print("FAIL " + problem, file=sys.stderr)
    failed = len(problems) + (len(unlisted) if args.strict else 0)
    print("{} problem(s)".format(failed) if failed else "all listed files verified")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
